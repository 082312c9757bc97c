"""Parity figures of the fixed-shape step against the selection-based step it replaced.

The same weights, the same real batches of the embedded data (images with hard negatives, videos with
padding frames; an empty box and a repeated caption planted as in tests/modeling/test_parity.py), two steps
(the bank fills, then serves negatives). Printed per batch and step: the largest loss difference and the
largest gradient difference, absolute and relative to max(1, that parameter's largest gradient).

`--float64` runs both steps in float64 (the model, the batch, and every `.float()` of the loss code made
to keep float64): differences then at 1e-15 say the two steps compute the same function, and the float32
differences are rounding.

    python benchmarks/step_parity.py [--float64]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import CLIPConfig, CLIPModel

from fgclip.config import LN_100
from fgclip.data import build_data_module, build_tokenizer, generate_embedded
from fgclip.data.tokenizer import tokenizer_ids
from fgclip.modeling import FGCLIPModel
from tests.modeling.legacy_step import legacy_step, to_legacy
from tests.modeling.test_parity import hardened

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def grad_diffs(a, b) -> tuple[float, float]:
    absolute = relative = 0.0
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        if p.grad is not None:
            d = (p.grad - q.grad).abs().max().item()
            absolute, relative = max(absolute, d), max(relative, d / max(1.0, p.grad.abs().max().item()))
    return absolute, relative


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--float64", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = generate_embedded(root / "data", seed=0, n_images=24, n_videos=12)
        tokenizer = build_tokenizer(root / "tokenizer", data.texts(), vocab_size=1000)
        config = CLIPConfig(
            text_config={**TINY, **tokenizer_ids(tokenizer)},
            vision_config={**TINY, "image_size": 32, "patch_size": 8},
            projection_dim=16,
            logit_scale_init_value=LN_100,
        )
        CLIPModel(config).save_pretrained(root / "clip")
        if args.float64:  # every `.float()` of the step keeps float64 (a measurement switch, not a mode)
            torch.set_default_dtype(torch.float64)
            torch.Tensor.float = lambda self, *a, **k: self.double()
        print(f"{'batch':<8} {'step':>4} {'max |loss diff|':>16} {'max |grad diff|':>16} {'relative':>10}")
        for kind, path, frames in (("image", data.images_json, 1), ("video", data.videos_json, 20)):
            module = build_data_module(
                path,
                tokenizer=tokenizer,
                image_size=32,
                grid_size=4,
                max_boxes_per_sample=4,
                num_frames=frames,
            )
            batch = hardened(
                next(iter(DataLoader(module.train_dataset, batch_size=6, collate_fn=module.collator)))
            )
            overrides = {
                "region_head": "roi_projection",
                "memory_bank_size": 32,
                "memory_bank_warmup_steps": 1,
            }
            new = FGCLIPModel.from_pretrained(root / "clip", fgclip_overrides=overrides).train()
            if args.float64:
                new = new.double()
                batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
            old = copy.deepcopy(new)
            for step in range(2):
                out = new(**batch)
                out.loss.backward()
                losses, _ = legacy_step(old, to_legacy(batch))
                torch.stack(list(losses.values())).sum().backward()
                loss_diff = max(abs(out.losses[k].item() - v.item()) for k, v in losses.items())
                absolute, relative = grad_diffs(new, old)
                print(f"{kind:<8} {step:>4} {loss_diff:16.3g} {absolute:16.3g} {relative:10.3g}")
                for model in (new, old):
                    model.zero_grad()
                    model.optimizer_step_completed()


if __name__ == "__main__":
    main()
