"""The architecture a checkpoint implies, from tensor shapes alone (torch-free).

An OpenAI state dict has no config: like OpenAI's `build_model`, widths come from `conv1` / `ln_final`, the
patch size from `conv1`, the image size from the position table (patch x grid), depths from the block indices,
the context length and vocabulary from the text tables, the embedding size from `text_projection`, and the
head count from the width (width / 64: the state dict does not record it). Upstream FG-CLIP folders have a
config.json; only the long-caption table length and the fork's `roi_projection` head come from the tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fgclip.weights.errors import ArchitectureError
from fgclip.weights.names import UPSTREAM_ORI, UPSTREAM_RES, layer_counts

HEAD_WIDTH = 64  # OpenAI's build_model: heads = width // 64

Shapes = Mapping[str, Sequence[int]]


def _shape(shapes: Shapes, *names: str) -> tuple[int, ...]:
    for name in names:
        if name in shapes:
            return tuple(int(d) for d in shapes[name])
    raise ArchitectureError(f"no {' / '.join(names)} tensor: cannot infer the architecture")


def _heads(width: int, tensor: str) -> int:
    if width < HEAD_WIDTH or width % HEAD_WIDTH:
        raise ArchitectureError(
            f"{tensor} gives width {width}, not a multiple of {HEAD_WIDTH}: the head count (OpenAI's rule: "
            f"width / {HEAD_WIDTH}) cannot be inferred; pass a config with num_attention_heads"
        )
    return width // HEAD_WIDTH


def _inner(shapes: Shapes, prefix: str, layers: int, width: int) -> int:
    for i in range(layers):
        if f"{prefix}.{i}.mlp.c_fc.weight" in shapes:
            return int(shapes[f"{prefix}.{i}.mlp.c_fc.weight"][0])
    return 4 * width  # OpenAI's MLP ratio


def openai_clip_config(shapes: Shapes) -> dict[str, Any]:
    """`CLIPConfig` keyword arguments (text_config, vision_config, projection_dim) of an OpenAI ViT state dict
    given by normalised name -> shape. eos = vocab - 1 and bos = vocab - 2, as in CLIP's tokenizer (49407,
    49406), so pooling at the first eos equals OpenAI's argmax over token ids."""
    if any(k.startswith("visual.layer1.") for k in shapes):
        raise ArchitectureError("a ResNet CLIP (visual.layer1.*): only ViT checkpoints are supported")
    text_layers, vision_layers = layer_counts(list(shapes), "openai")
    conv = _shape(shapes, "visual.conv1.weight")  # (width, channels, patch, patch)
    v_width, channels, patch = conv[0], conv[1], conv[-1]
    rows = _shape(shapes, "visual.positional_embedding")[0]
    grid = math.isqrt(rows - 1)
    if grid * grid + 1 != rows:
        raise ArchitectureError(f"visual.positional_embedding has {rows} rows, not grid^2 + 1")
    t_width = _shape(shapes, "ln_final.weight", "token_embedding.weight", "positional_embedding")[-1]
    vocab = _shape(shapes, "token_embedding.weight")[0]
    embed = _shape(shapes, "text_projection", "visual.proj")[-1]
    text = {
        "hidden_size": t_width,
        "intermediate_size": _inner(shapes, "transformer.resblocks", text_layers, t_width),
        "num_hidden_layers": text_layers,
        "num_attention_heads": _heads(t_width, "ln_final.weight"),
        "max_position_embeddings": _shape(shapes, "positional_embedding")[0],
        "vocab_size": vocab,
        "eos_token_id": vocab - 1,
        "pad_token_id": vocab - 1,
        "bos_token_id": vocab - 2,
        "hidden_act": "quick_gelu",
    }
    vision = {
        "hidden_size": v_width,
        "intermediate_size": _inner(shapes, "visual.transformer.resblocks", vision_layers, v_width),
        "num_hidden_layers": vision_layers,
        "num_attention_heads": _heads(v_width, "visual.conv1.weight"),
        "num_channels": channels,
        "patch_size": patch,
        "image_size": patch * grid,
        "hidden_act": "quick_gelu",
    }
    return {"text_config": text, "vision_config": vision, "projection_dim": embed}


def upstream_fields(shapes: Shapes) -> dict[str, Any]:
    """FGCLIPConfig fields an upstream FG-CLIP / fork checkpoint fixes by its tensors: the long table's length
    and, when the fork's `roi_projection` is saved, the separate region head."""
    fields: dict[str, Any] = {}
    for name in (UPSTREAM_ORI, UPSTREAM_RES):
        if name in shapes:
            fields["long_text_max_positions"] = int(shapes[name][0])
            break
    if "roi_projection.weight" in shapes:
        fields["region_head"] = "roi_projection"
    return fields


__all__ = ["HEAD_WIDTH", "ArchitectureError", "openai_clip_config", "upstream_fields"]
