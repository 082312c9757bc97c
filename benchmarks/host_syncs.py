"""Ops that make the host wait for the device, per training step, by op and by the code that asked.

Counted on the CPU with HostSyncCounter (fgclip/modeling/host_sync.py: a TorchDispatchMode; on a GPU each
of these ops is a stream synchronisation) over real steps of a tiny CLIP on the embedded data: forward,
backward, fused AdamW, scale clamp, memory-bank clock; images (4 boxes, 10 hard negatives each) and videos
(8 frames), the bank active, diagnostics off and on (the probe FGDiagCallback attaches). Run it on another
checkout (with this module and fgclip/modeling/host_sync.py copied in) to count an older step.

    python benchmarks/host_syncs.py [--steps 3]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import CLIPConfig, CLIPModel

from fgclip.data import build_data_module, build_tokenizer, generate_embedded
from fgclip.data.tokenizer import tokenizer_ids
from fgclip.modeling import FGCLIPModel
from fgclip.modeling.host_sync import HostSyncCounter
from fgdiag.probes.model_stats import ModelStatsProbe

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = generate_embedded(root / "data", seed=0, n_images=24, n_videos=12)
        tokenizer = build_tokenizer(root / "tokenizer", data.texts())
        config = CLIPConfig(
            text_config={**TINY, **tokenizer_ids(tokenizer)},
            vision_config={**TINY, "image_size": 32, "patch_size": 8},
            projection_dim=16,
        )
        CLIPModel(config).save_pretrained(root / "clip")
        overrides = {"memory_bank_size": 32, "memory_bank_warmup_steps": 1, "region_head": "roi_projection"}
        print(
            f"{'batch':<8} {'diagnostics':<12} {'per step':>9}  op @ origin (count over {args.steps} steps)"
        )
        for kind, path, frames in (("image", data.images_json, 1), ("video", data.videos_json, 8)):
            module = build_data_module(
                path,
                tokenizer=tokenizer,
                image_size=32,
                grid_size=4,
                max_boxes_per_sample=4,
                num_frames=frames,
            )
            batches = list(DataLoader(module.train_dataset, batch_size=4, collate_fn=module.collator))
            model = FGCLIPModel.from_pretrained(root / "clip", fgclip_overrides=overrides).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

            def step(batch, model=model, optimizer=optimizer):
                model(**batch).loss.backward()
                optimizer.step()
                model.clamp_logit_scales()
                model.optimizer_step_completed()
                optimizer.zero_grad(set_to_none=True)

            step(batches[0])  # warm-up: optimizer state, per-device caches; the bank activates
            for diagnostics in (False, True):
                probe = ModelStatsProbe()
                if diagnostics:
                    probe.attach(model)
                with HostSyncCounter() as syncs:
                    for i in range(args.steps):
                        step(batches[1 + i % (len(batches) - 1)])
                probe.detach()
                found = Counter({f"{op} @ {origin}": n for (op, origin), n in syncs.by_origin().items()})
                label = "on" if diagnostics else "off"
                print(f"{kind:<8} {label:<12} {len(syncs.events) / args.steps:9.1f}")
                for where, n in sorted(found.items()):
                    print(f"{'':<31} {n:3d}  {where}")


if __name__ == "__main__":
    main()
