"""A tiny CLIP built and saved locally (no hub): 32-px images, 8-px patches (4x4 grid), width 32; and the
embedded data with a tokenizer and a tiny CLIP of its vocabulary, for real batches from the DataLoader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Subset
from transformers import CLIPConfig, CLIPModel

from fgclip.config import LN_100
from fgclip.data import build_data_module, build_tokenizer, generate_embedded, tokenizer_ids
from fgclip.data.synthetic import EmbeddedData
from fgclip.modeling import FGCLIPModel

VOCAB, BOS, EOS = 100, 98, 99

TEXT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=VOCAB,
    max_position_embeddings=77,
    eos_token_id=EOS,
    bos_token_id=BOS,
    pad_token_id=EOS,
)
VISION = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
)


def tiny_clip_config(**kw) -> CLIPConfig:
    return CLIPConfig(
        text_config=TEXT, vision_config=VISION, projection_dim=16, logit_scale_init_value=LN_100, **kw
    )


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = CLIPModel(tiny_clip_config()).eval()
    path = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(path)
    return path


def make_ids(n: int, length: int, seed: int, eos_at: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, BOS, (n, length), generator=g)
    ids[:, 0] = BOS
    ends = torch.randint(2, length, (n,), generator=g) if eos_at is None else torch.full((n,), eos_at)
    for i, e in enumerate(ends.tolist()):
        ids[i, e:] = EOS
    return ids


def make_image_batch(b: int = 3, r: int = 2, n_neg: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.6, 0.7]]).repeat(b, 1).reshape(b, 2, 4)[:, :r]
    box_mask = torch.ones(b, r, dtype=torch.bool)
    box_mask[-1, -1] = False
    return {
        "pixel_values": torch.randn(b, 3, 32, 32, generator=g),
        "long_input_ids": make_ids(b, 120, seed + 1),
        "short_input_ids": make_ids(b, 12, seed + 2),
        "boxes": boxes.clone(),
        "box_mask": box_mask,
        "region_input_ids": make_ids(b * r, 9, seed + 3).reshape(b, r, 9),
        "hard_input_ids": make_ids(b * r * (1 + n_neg), 9, seed + 4).reshape(b, r, 1 + n_neg, 9),
        "hard_mask": torch.ones(b, r, dtype=torch.bool),
    }


@dataclass(frozen=True)
class Embedded:
    """The embedded data, its tokenizer and a tiny CLIP of the same vocabulary (32-px frames, 4x4 grid)."""

    data: EmbeddedData
    tokenizer: Any
    clip_dir: Path

    def batch(self, kind: str, size: int = 6, frames: int = 4, start: int = 0) -> dict[str, torch.Tensor]:
        """A real batch from the DataLoader (image records with hard negatives, or decoded videos)."""
        path = self.data.images_json if kind == "image" else self.data.videos_json
        module = build_data_module(
            path,
            tokenizer=self.tokenizer,
            image_size=32,
            grid_size=4,
            max_boxes_per_sample=4,
            num_frames=frames,
        )
        subset = Subset(module.train_dataset, range(start, start + size))
        return next(iter(DataLoader(subset, batch_size=size, collate_fn=module.collator)))

    def model(self, **overrides: Any) -> FGCLIPModel:
        return FGCLIPModel.from_pretrained(self.clip_dir, fgclip_overrides=overrides)


@pytest.fixture(scope="session")
def embedded(tmp_path_factory) -> Embedded:
    root = tmp_path_factory.mktemp("embedded_modeling")
    data = generate_embedded(root / "data", seed=0, n_images=24, n_videos=12)
    tokenizer = build_tokenizer(root / "tokenizer", data.texts(), vocab_size=1000)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={**TEXT, **tokenizer_ids(tokenizer)},
        vision_config=VISION,
        projection_dim=16,
        logit_scale_init_value=LN_100,
    )
    CLIPModel(config).save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")  # a model folder the trainer can load alone
    return Embedded(data, tokenizer, root / "clip")
