"""FGCLIPModel vs transformers' CLIPModel on the same saved weights (tiny CLIP built locally, no hub).

python benchmarks/parity.py
"""

from __future__ import annotations

import tempfile

import torch
from transformers import CLIPConfig, CLIPModel

from fgclip.modeling import FGCLIPModel
from fgclip.modeling.text import encode_text


def main() -> None:
    torch.manual_seed(0)
    text = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        vocab_size=1000,
        eos_token_id=999,
        bos_token_id=998,
        pad_token_id=999,
    )
    vision = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        image_size=64,
        patch_size=8,
    )
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        clip.save_pretrained(tmp)
        ours = FGCLIPModel.from_pretrained(tmp).eval()
    pixels = torch.randn(16, 3, 64, 64)
    ids = torch.randint(0, 998, (16, 30))
    ids[:, 0] = 998
    for i in range(16):
        ids[i, 5 + i :] = 999
    with torch.no_grad():
        img = (
            (ours.get_image_features(pixels) - clip.get_image_features(pixel_values=pixels).pooler_output)
            .abs()
            .max()
        )
        ref = clip.get_text_features(input_ids=ids).pooler_output
        txt = (ours.get_text_features(ids) - ref).abs().max()
        table = ours.text_model.embeddings.position_embedding.weight
        via = (ours.text_projection(encode_text(ours.text_model, ids, table)) - ref).abs().max()
        padded = torch.cat([ids, torch.full((16, 47), 999)], dim=1)
        pad = (ours.get_text_features(padded) - ours.get_text_features(ids)).abs().max()
    print(f"image features max |diff|: {img.item():.3g}")
    print(f"short-text features max |diff|: {txt.item():.3g}")
    print(f"text via our position-table path max |diff|: {via.item():.3g}")
    print(f"padded to 77 vs batch-longest max |diff|: {pad.item():.3g}")


if __name__ == "__main__":
    main()
