"""CPU step time of the fixed-shape step against the selection-based step it replaced, in one process.

The embedded preset's tiny CLIP (64 px, 8x8 grid, width 64) on real batches of the embedded data from the
DataLoader: images (batch 16, 4 boxes with 10 hard negatives each) and videos (batch 4 x 8 frames). Each
repeat times every path for `--steps` forward+backward steps, in turn, so machine noise hits them alike;
the table gives medians over repeats and each path's ratio to the new step.

  new        this collator's batch: one de-duplicated text list, masks instead of selection
  old        the selection-based step before issue 16 (tests/modeling/legacy_step.py, a frozen copy)
  separate   the new step with upstream's text layout (one tower call per group, no de-duplication)

    python benchmarks/cpu_step.py [--repeats 5 --steps 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fgclip.data import build_data_module, build_tokenizer, generate_embedded
from fgclip.modeling import FGCLIPModel
from fgclip.train.embedded import IMAGE_SIZE, PATCH_SIZE, build_tiny_clip
from tests.modeling.legacy_step import legacy_step, to_legacy


def first_batch(data, tokenizer, kind: str, size: int, frames: int) -> dict[str, torch.Tensor]:
    path = data.images_json if kind == "image" else data.videos_json
    module = build_data_module(
        path,
        tokenizer=tokenizer,
        image_size=IMAGE_SIZE,
        grid_size=IMAGE_SIZE // PATCH_SIZE,
        num_frames=frames,
    )
    return next(iter(DataLoader(module.train_dataset, batch_size=size, collate_fn=module.collator)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = generate_embedded(root / "data", seed=0, n_images=32, n_videos=8)
        tokenizer = build_tokenizer(root / "tokenizer", data.texts())
        clip = build_tiny_clip(root / "clip", tokenizer)
        overrides = {"region_head": "roi_projection", "memory_bank_size": 128, "memory_bank_warmup_steps": 0}
        new = FGCLIPModel.from_pretrained(clip, fgclip_overrides=overrides).train()
        print(f"{'batch':<28} {'path':<9} {'ms/step':>9} {'x new':>7}  runs (ms)")
        for kind, size, frames in (("image", 16, 1), ("video", 4, 8)):
            batch = first_batch(data, tokenizer, kind, size, frames)
            legacy = to_legacy(batch)
            old = copy.deepcopy(new)

            def step_new(b=batch):
                new.text_path = "fused"
                new(**b).loss.backward()
                new.zero_grad(set_to_none=True)

            def step_separate(b=legacy):
                new.text_path = "separate"
                new(**b).loss.backward()
                new.zero_grad(set_to_none=True)
                new.text_path = "fused"

            def step_old(b=legacy, model=old):
                losses, _ = legacy_step(model, b)
                torch.stack(list(losses.values())).sum().backward()
                model.zero_grad(set_to_none=True)

            paths = {"new": step_new, "old": step_old, "separate": step_separate}
            runs: dict[str, list[float]] = {name: [] for name in paths}
            for fn in paths.values():  # warm-up
                fn()
            for _ in range(args.repeats):
                for name, fn in paths.items():
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        fn()
                    runs[name].append((time.perf_counter() - start) / args.steps * 1000)
            base = statistics.median(runs["new"])
            unique = batch["text_input_ids"].shape[0]
            uses = batch["short_text_index"].numel() + batch["region_text_index"].numel()
            uses += batch["hard_text_index"].numel() if "hard_text_index" in batch else 0
            label = f"{kind} {size}{f'x{frames}f' if kind == 'video' else ''} ({unique}/{uses} texts)"
            for name, values in runs.items():
                ms = statistics.median(values)
                print(f"{label:<28} {name:<9} {ms:9.1f} {ms / base:7.2f}  {[round(v, 1) for v in values]}")


if __name__ == "__main__":
    main()
