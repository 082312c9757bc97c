"""How long `fgdiag check-config` takes on a ViT-B/16-sized model directory plus an output directory with
three checkpoints: the whole CLI process, from interpreter start to exit, as a user would run it.

Target: at most 2 s on the project machine, with no model instantiated and no torch imported. The files are
real ViT-B/16 CLIP shapes (transformers' CLIPModel: 150M parameters, ~600 MB in fp32 per file) plus fgclip's
heads and a 128-entry memory bank, with random values, written with safetensors into a temporary folder that
this script creates and removes (pass --keep to keep it). Four files are scanned end to end for NaN/Inf
(~2.4 GB), so the figure includes reading every byte once (from the page cache right after writing).

    python benchmarks/check_config_speed.py [--runs 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from fgdiag.facts.clip_keys import clip_state_shapes

LN_100 = float(np.log(100.0))
VIT_B16 = {
    "architectures": ["CLIPModel"],
    "model_type": "clip",
    "projection_dim": 512,
    "logit_scale_init_value": 2.6592,
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 77,
    },
    "vision_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 16,
        "num_channels": 3,
    },
}
CONFIG = """\
[model]
model_name_or_path = "{source}"
finegrained_logit_scale_init = 4.6052
hardneg_logit_scale_init = 4.6052
logit_scale_max = 4.6052
memory_bank_size = 128
memory_bank_warmup_steps = 6
region_head = "roi_projection"

[training]
output_dir = "{output}"
per_device_train_batch_size = 2
gradient_accumulation_steps = 8
max_steps = 300
learning_rate = 5e-6
head_learning_rate = 2e-5
bf16 = true
"""


def tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {
        name: rng.standard_normal(shape, dtype=np.float32) * 0.02
        for name, shape in clip_state_shapes(VIT_B16).items()
        if shape
    }
    out["logit_scale"] = np.array(LN_100, dtype=np.float32)
    return out


def heads(step: int) -> dict[str, np.ndarray]:
    scalar = lambda v, t=np.float32: np.array(v, dtype=t)  # noqa: E731
    return {
        "logit_scale_finegrained": scalar(LN_100),
        "logit_scale_hardneg": scalar(LN_100),
        "text_long_projection.weight": np.zeros((512, 512), np.float32),
        "long_position_embedding.weight": np.zeros((248, 512), np.float32),
        "roi_projection.weight": np.zeros((512, 768), np.float32),
        "memory_bank.image_queue": np.zeros((128, 512), np.float32),
        "memory_bank.text_queue": np.zeros((128, 512), np.float32),
        "memory_bank.caption_keys": np.zeros((128,), np.int64),
        "memory_bank.entry_step": np.zeros((128,), np.int64),
        "memory_bank.ptr": scalar(0, np.int64),
        "memory_bank.fill": scalar(128, np.int64),
        "memory_bank.optimizer_steps": scalar(step, np.int64),
        "memory_bank.activated_step": scalar(6, np.int64),
        "memory_bank.warmup_steps": scalar(6, np.int64),
    }


def build(root: Path) -> tuple[Path, Path, Path, int]:
    """Model dir (the pretrained source), output dir with checkpoint-100/200/300, and the config."""
    source, output = root / "clip-vit-base-patch16", root / "out"
    weights = tensors(0)
    source.mkdir()
    (source / "config.json").write_text(json.dumps(VIT_B16, indent=2))
    save_file(weights, str(source / "model.safetensors"))
    total = (source / "model.safetensors").stat().st_size
    for step in (100, 200, 300):
        folder = output / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(VIT_B16, indent=2))
        save_file({**weights, **heads(step)}, str(folder / "model.safetensors"))
        total += (folder / "model.safetensors").stat().st_size
    config = root / "fixed.toml"
    config.write_text(CONFIG.format(source=source, output=output))
    return config, source, output, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fgdiag-check-config-bench-"))
    try:
        started = time.perf_counter()
        config, source, output, total = build(root)
        print(
            f"built {root}: 1 model dir + 3 checkpoints, {total / 1e9:.2f} GB of safetensors "
            f"in {time.perf_counter() - started:.1f} s"
        )
        command = [
            sys.executable,
            "-m",
            "fgdiag.cli.app",
            "check-config",
            str(config),
            str(source),
            str(output),
            "--json",
        ]
        times = []
        for run in range(args.runs):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
                print(f"check-config exited {done.returncode}; expected 0 on this clean setup")
                return 1
            summary = json.loads(done.stdout)["summary"]
            print(
                f"run {run + 1}: {times[-1]:.2f} s  (exit {done.returncode}, {len(summary['checkpoints'])} "
                f"checkpoints + {len(summary['models'])} model scanned, {summary['warnings']} warnings)"
            )
        print(
            f"check-config, whole process: median {statistics.median(times):.2f} s, best {min(times):.2f} s "
            f"(target <= 2 s)"
        )
        return 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root)  # the folder this script created, nothing else


if __name__ == "__main__":
    sys.exit(main())
