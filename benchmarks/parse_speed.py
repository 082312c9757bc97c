"""Parse-speed benchmark of `fgdiag watch --once --json` on a generated 1,000,000-line log.

The log mixes what a real fgclip-vad run with ENABLE_RUNTIME_DIAG and the HF Trainer prints: per micro-batch a
[DIAG] block, a [LOSS] line and an [Epoch][Step][Batch] line (a tqdm bar after `\\r` on the last micro-batch),
`[统计]` blocks, Trainer dict lines every 10 steps, warnings and a final train_runtime line.

It times the whole `fgdiag watch --once --json` process (interpreter start and imports included; best of three
after one untimed warm-up run), checks that
the process never imports torch (or pandas/matplotlib), and times a naive parser that calls ast.literal_eval on
every line, in the same run. Goal: >= 500,000 lines/s and >= 5x the naive parser.

    python benchmarks/parse_speed.py [--lines N] [--keep PATH]
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GA = 8
WARNING = (
    "/opt/conda/lib/python3.11/site-packages/transformers/trainer.py:2073: UserWarning: To copy construct "
    "from a tensor, it is recommended to use sourceTensor.detach().clone()"
)


def micro_batch(rng: random.Random, step: int, batch: int, steps: int, bank: bool) -> list[str]:
    n = rng.choice((4, 4, 4, 5, 6))
    k = 128 if bank else 0
    region = max(0.05, 4.8 * math.exp(-step / 60) + rng.gauss(0, 0.1))
    lo, hi = rng.uniform(-8, -2), rng.uniform(20, 95)
    zero = rng.random() < 0.05
    lines = [
        "[DIAG] Region batch diagnostics:",
        f"  - valid_count={n} | bbox_batch_size={n}",
        f"  - img_norms: min={0.0 if zero else 1.0:.4f}, max=1.0000, mean={(n - zero) / n:.4f}, std=0.0000, "
        "has_nan=False",
        "  - txt_norms: min=1.0000, max=1.0000, mean=1.0000, std=0.0000, has_nan=False",
        f"  - logits_i2t: min={lo:.4f}, max={hi:.4f}, mean={(lo + hi) / 2:.4f}, std={rng.uniform(1, 40):.4f}, "
        "has_nan=False",
        "  - logit_scale (finegrained): 4.605200 (exp=100.0000)",
        f"  - memory_bank: ptr={(batch * n) % 128 if bank else 0}, full={bank}, size=128",
        "  - any_nan=False, any_inf=False",
        f"[LOSS] Total: {1.4 + 0.5 * region:.4f} | Global: 1.4000 | Region: {region:.4f} | HardNeg: 0.0000",
    ]
    bar = ""
    if batch % GA == 0:
        bar = f"\r{100 * (step + 1) // steps:3d}%|██▏       | {step + 1}/{steps} [01:00<1:15:07, 19.02s/it]"
    mb = f" | MB: {k}/128 ✓" if bank else ""
    lines.append(
        f"{bar}[Epoch 0][Step {step}][Batch {batch}] Loss: {1.4 + 0.5 * region:.6f} | Global: 1.400000 | "
        f"Region: {region:.6f} | Hard: 0.000000{mb} | LR: 4.17e-07 | Time: 0.77s"
    )
    return lines


def generate(path: Path, n_lines: int, seed: int = 0) -> int:
    """Write about n_lines lines; returns the exact count."""
    rng = random.Random(seed)
    per_step = GA * 10 + 2
    steps = max(1, n_lines // per_step)
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        batch = 0
        for step in range(steps):
            chunk: list[str] = []
            for _ in range(GA):
                batch += 1
                chunk += micro_batch(rng, step, batch, steps, bank=step >= 7)
                if batch % 10 == 0:
                    chunk += [
                        "",
                        "=" * 100,
                        f"[统计] 最近10个batch平均Loss: {rng.uniform(1, 3):.6f}",
                        "=" * 100,
                    ]
            if (step + 1) % 10 == 0:
                chunk.append(
                    f"{{'loss': {rng.uniform(1, 3):.4f}, 'grad_norm': {rng.uniform(100, 900):.1f}, "
                    f"'learning_rate': 4.17e-07, 'epoch': {step / steps * 5:.2f}}}"
                )
            if step % 50 == 0:
                chunk.append(WARNING)
            remaining = n_lines - written - 1
            chunk = chunk[:remaining]
            fh.write("\n".join(chunk) + "\n")
            written += len(chunk)
            if written >= n_lines - 1:
                break
        fh.write(
            "{'train_runtime': 4067.2, 'train_samples_per_second': 1.9, 'train_steps_per_second': 0.06, "
            "'train_loss': 2.1, 'epoch': 5.0}\n"
        )
    return written + 1


def naive_parse(path: Path) -> int:
    """The baseline: ast.literal_eval on every line, a regex for the tagged ones. Returns records found."""
    found = 0
    tag = re.compile(r"(\w+)[=:]\s*([-\d.e+]+)")
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                value = ast.literal_eval(line.strip())
                if isinstance(value, dict):
                    found += 1
                continue
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
            if tag.findall(line):
                found += 1
    return found


def run_watch(path: Path) -> tuple[float, dict]:
    """One timed `fgdiag watch --once --json` process. Bytecode caching is left on (Python's default, as in an
    installed package) even where the environment sets PYTHONDONTWRITEBYTECODE; the untimed warm-up run
    writes the cache."""
    cmd = [sys.executable, "-m", "fgdiag.cli.app", "watch", "--once", "--json", str(path)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"watch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def heavy_imports(path: Path) -> list[str]:
    """Modules the watch process imported that it must not (checked in a fresh interpreter)."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['fgdiag', 'watch', '--once', '--json', {str(path)!r}]\n"
        "try:\n    runpy.run_module('fgdiag.cli.app', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + ','.join(bad) + '\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")]
    if not marker:
        raise SystemExit(f"import check failed: {proc.stderr[-2000:]}")
    return [m for m in marker[0][6:].split(",") if m]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the log here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "train.log"
        n = generate(path, args.lines)
        size = path.stat().st_size
        print(f"log: {n:,} lines, {size / 1e6:.1f} MB ({path})")
        heavy = heavy_imports(path)
        print(f"heavy modules imported by watch: {', '.join(heavy) if heavy else 'none'}")
        run_watch(path)  # warm-up: bytecode cache and page cache
        runs = sorted((run_watch(path) for _ in range(3)), key=lambda r: r[0])
        elapsed, summary = runs[0]
        median = runs[1][0]
        start = time.perf_counter()
        found = naive_parse(path)
        naive = time.perf_counter() - start
        rate, naive_rate = n / elapsed, n / naive
        print(
            f"fgdiag watch --once --json: {elapsed:.2f} s (whole process, best of 3; median {median:.2f} s) = "
            f"{rate:,.0f} lines/s; {summary['steps']} steps, verdict {summary['verdict']}, "
            f"{summary['unparsed']} lines not recognised"
        )
        print(f"naive ast.literal_eval parser: {naive:.2f} s = {naive_rate:,.0f} lines/s ({found:,} records)")
        print(f"speed-up: {naive / elapsed:.1f}x")
        ok = rate >= 500_000 and naive / elapsed >= 5 and "torch" not in heavy
        print("goal (>= 500,000 lines/s, >= 5x naive, no torch):", "met" if ok else "NOT met")
        if args.keep is None:
            os.unlink(path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
