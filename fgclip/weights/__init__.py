"""Weights from the files users have: OpenAI CLIP (state dicts and the `clip` package's TorchScript archive),
upstream FG-CLIP folders, transformers CLIP; and export back to a plain `CLIPModel` folder.

`names` and `arch` are pure Python (no torch), so `fgdiag check-config` can tell which tensors a source leaves
uncovered without loading a weight; the other modules read, convert and write tensors.
"""
