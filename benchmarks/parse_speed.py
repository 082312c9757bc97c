"""Parse-and-judge speed of `fgdiag watch --once --json` on three generated 1,000,000-line logs, side by side.

    mix      the fgclip-vad run with ENABLE_RUNTIME_DIAG and the HF Trainer: per micro-batch a [DIAG] block, a
             [LOSS] line and an [Epoch][Step][Batch] line (a tqdm bar after `\\r` on the last micro-batch),
             `[统计]` blocks, a Trainer dict line every 10 optimizer steps (logging steps are rare)
    trainer  transformers Trainer stdout captured to a file: per logging step a line of `\\r`-separated tqdm
             redraws, the dict line, a warning printed every step and a blank line (a dict every 4th line)
    fork     the fgclip-vad fork's trainer output: per optimizer step our `logit_scale (finegrained)` line,
             the model's `[ACCUMULATED] Total` line, the trainer's `[ACCUMULATED][Epoch e][Step s][Batch b]
             ... | MB: 128/128 ✓` line behind its tqdm bar and a `[MB-FORWARD]` line; a `[DIAG]` block every
             16 steps (a logging step every ~4.5 lines)

Each log goes through the whole `fgdiag watch --once --json` process (interpreter start and imports
included; best of `--runs` after one untimed warm-up run). In the same run a naive reader that calls
`ast.literal_eval` on every line reads the Trainer log, and a 1 GB Trainer log (generated under the temporary
directory and removed afterwards) is read once to measure the process's peak RSS. The machine's load average
is printed before and after: figures on a shared machine are noisy, the ratios measured in one run less so,
and each process's CPU seconds (user + system, best of the runs) are printed beside its wall time.
Goals (issue 12): >= 500,000 lines/s on each log, >= 10x the naive reader on the Trainer log, <= 300 MB peak
RSS for 1 GB.

    python benchmarks/parse_speed.py [--lines N] [--gb G] [--runs R] [--keep DIR]
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
from collections.abc import Callable, Iterator
from pathlib import Path

GA = 8
WARNING = (
    "/opt/conda/lib/python3.11/site-packages/torch/utils/checkpoint.py:464: UserWarning: "
    "torch.utils.checkpoint: please pass in use_reentrant=True or use_reentrant=False explicitly."
)


def _bar(n: int, total: int, rate: str = "1.66it/s") -> str:
    pct = 100 * n // total
    fill = "█" * (pct // 10) + "▏" + " " * (9 - pct // 10)
    return f"{pct:3d}%|{fill}| {n}/{total} [01:00<01:24, {rate}]"


def diag_block(rng: random.Random, bank: bool, n: int, ptr: int) -> list[str]:
    lo, hi = rng.uniform(-8, -2), rng.uniform(20, 95)
    zero = rng.random() < 0.05
    return [
        "[DIAG] Region batch diagnostics:",
        f"  - valid_count={n} | bbox_batch_size={n}",
        f"  - img_norms: min={0.0 if zero else 1.0:.4f}, max=1.0000, mean={(n - zero) / n:.4f}, std=0.0000, "
        "has_nan=False",
        "  - txt_norms: min=1.0000, max=1.0000, mean=1.0000, std=0.0000, has_nan=False",
        f"  - logits_i2t: min={lo:.4f}, max={hi:.4f}, mean={(lo + hi) / 2:.4f}, "
        f"std={rng.uniform(1, 40):.4f}, has_nan=False",
        "  - logit_scale (finegrained): 4.605200 (exp=100.0000)",
        f"  - memory_bank: ptr={ptr if bank else 0}, full={bank}, size=128",
        "  - any_nan=False, any_inf=False",
    ]


def mix_steps(rng: random.Random, steps: int) -> Iterator[list[str]]:
    batch = 0
    for step in range(steps):
        bank = step >= 7
        chunk: list[str] = []
        for _ in range(GA):
            batch += 1
            n = rng.choice((4, 4, 4, 5, 6))
            region = max(0.05, 4.8 * math.exp(-step / 60) + rng.gauss(0, 0.1))
            chunk += diag_block(rng, bank, n, (batch * n) % 128)
            chunk.append(
                f"[LOSS] Total: {1.4 + 0.5 * region:.4f} | Global: 1.4000 | Region: {region:.4f} | "
                "HardNeg: 0.0000"
            )
            bar = f"\r{_bar(step + 1, steps, '19.02s/it')}" if batch % GA == 0 else ""
            mb = " | MB: 128/128 ✓" if bank else ""
            chunk.append(
                f"{bar}[Epoch 0][Step {step}][Batch {batch}] Loss: {1.4 + 0.5 * region:.6f} | Global: "
                f"1.400000 | Region: {region:.6f} | Hard: 0.000000{mb} | LR: 4.17e-07 | Time: 0.77s"
            )
            if batch % 10 == 0:
                chunk += ["", "=" * 100, f"[统计] 最近10个batch平均Loss: {rng.uniform(1, 3):.6f}", "=" * 100]
        if (step + 1) % 10 == 0:
            chunk.append(
                f"{{'loss': {rng.uniform(1, 3):.4f}, 'grad_norm': {rng.uniform(100, 900):.1f}, "
                f"'learning_rate': 4.17e-07, 'epoch': {step / steps * 5:.2f}}}"
            )
        if step % 50 == 0:
            chunk.append(WARNING)
        yield chunk


def trainer_steps(rng: random.Random, steps: int) -> Iterator[list[str]]:
    for step in range(1, steps + 1):
        loss = 2.5 * math.exp(-3 * step / steps) + rng.gauss(0, 0.05)
        redraws = "\r".join(_bar(max(0, step - k), steps) for k in (2, 1, 0))
        yield [
            "\r" + redraws,
            f"{{'loss': {loss:.4f}, 'grad_norm': {rng.uniform(0.5, 3):.4f}, 'learning_rate': "
            f"{5e-5 * (1 - step / steps):.4e}, 'epoch': {3 * step / steps:.2f}}}",
            WARNING,
            "",
        ]


def fork_steps(rng: random.Random, steps: int) -> Iterator[list[str]]:
    for step in range(steps):
        region = max(0.05, 4.8 * math.exp(-5 * step / steps) + rng.gauss(0, 0.1))
        total = 1.4 + 0.5 * region
        chunk = diag_block(rng, True, 4, (16 * step) % 128) if step % 16 == 0 else []
        chunk += [
            "logit_scale (finegrained): 4.605170 (exp=100.0000)",
            f"[ACCUMULATED] Total: {total:.4f} | Global: 1.4000 | Region: {region:.4f} | HardNeg: 0.0000",
            f"\r{_bar(step + 1, steps, '19.02s/it')}[ACCUMULATED][Epoch 0][Step {step}][Batch "
            f"{GA * (step + 1)}] AvgLoss: {total:.6f} | Global: 1.400000 | Region: {region:.6f} | Hard: "
            f"0.000000 | MB: 128/128 ✓ | LR: {4.17e-07 * (1 - step / steps):.2e} | Time: 0.77s",
            "[MB-FORWARD] 使用128个历史负样本 | Batch内: 4 | 总负样本: 132",
        ]
        yield chunk


KINDS: dict[str, tuple[Callable[[random.Random, int], Iterator[list[str]]], float]] = {
    "mix": (mix_steps, GA * 10.4),  # about the lines per step, to size the run
    "trainer": (trainer_steps, 4.0),
    "fork": (fork_steps, 4.0 + 9 / 16),
}


def generate(kind: str, path: Path, n_lines: int, seed: int = 0) -> int:
    """Write exactly n_lines lines of one kind; returns the count."""
    rng = random.Random(seed)
    steps_of, per_step = KINDS[kind]
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        for chunk in steps_of(rng, max(1, int(1.2 * n_lines / per_step) + 10)):  # more steps than needed
            chunk = chunk[: n_lines - 1 - written]
            fh.write("\n".join(chunk) + "\n")
            written += len(chunk)
            if written >= n_lines - 1:
                break
        fh.write(
            "{'train_runtime': 4067.2, 'train_samples_per_second': 1.9, 'train_loss': 2.1, 'epoch': 5.0}\n"
        )
    return written + 1


def grow(path: Path, size: int) -> int:
    """Write a Trainer log of about `size` bytes (one logging step per 4 lines); returns its line count."""
    rng, written, step = random.Random(1), 0, 0
    total = 10**7
    with path.open("w", encoding="utf-8") as fh:
        while written < size:
            block = []
            for _ in range(1000):
                step += 1
                redraws = "\r".join(_bar(max(0, step - k), total) for k in (2, 1, 0))
                block += [
                    "\r" + redraws,
                    f"{{'loss': {2.0 + rng.gauss(0, 0.05):.4f}, 'grad_norm': {rng.uniform(0.5, 3):.4f}, "
                    f"'learning_rate': 5.0000e-05, 'epoch': {step / 1000:.2f}}}",
                    WARNING,
                    "",
                ]
            text = "\n".join(block) + "\n"
            fh.write(text)
            written += len(text.encode())
    return step * 4


_TAG = re.compile(r"(\w+)[=:]\s*([-\d.e+]+)")


def naive_parse(path: Path) -> int:
    """The baseline: ast.literal_eval on every line, a regex for the tagged ones. Returns records found."""
    found = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                value = ast.literal_eval(line.strip())
                if isinstance(value, dict):
                    found += 1
                continue
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
            if _TAG.findall(line):
                found += 1
    return found


def watch_cmd(path: Path) -> list[str]:
    return [sys.executable, "-m", "fgdiag.cli.app", "watch", "--once", "--json", str(path)]


def run_watch(path: Path, tmp: Path) -> tuple[float, dict, int, float]:
    """One `fgdiag watch --once --json` process: (seconds, its JSON summary, its peak RSS in bytes, its CPU
    seconds (user + system), from wait4: on a shared machine the CPU time varies less than the wall time).
    Bytecode caching is left on (as in an installed package); the untimed warm-up run writes it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out_path, err_path = tmp / "watch.out", tmp / "watch.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(watch_cmd(path), stdout=out, stderr=err, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"watch failed ({code}): {err_path.read_text()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, json.loads(out_path.read_text()), usage.ru_maxrss * 1024, cpu  # ru_maxrss: KB on Linux


def heavy_imports(path: Path) -> list[str]:
    """Modules the watch process imported that it must not (checked in a fresh interpreter)."""
    code = (
        f"import sys, runpy\nsys.argv = ['fgdiag', 'watch', '--once', '--json', {str(path)!r}]\ntry:\n    "
        "runpy.run_module('fgdiag.cli.app', run_name='__main__')\nexcept SystemExit:\n    pass\nbad = [m "
        "for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in "
        "sys.modules]\nsys.stderr.write('HEAVY=' + ','.join(bad) + '\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")]
    if not marker:
        raise SystemExit(f"import check failed: {proc.stderr[-2000:]}")
    return [m for m in marker[0][6:].split(",") if m]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the RSS log in GB (0: skip)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the logs here and keep them")
    args = parser.parse_args()
    print(load())
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rates: dict[str, float] = {}
        for kind in KINDS:
            path = folder / f"{kind}.log"
            n = generate(kind, path, args.lines)
            if kind == "mix":
                heavy = heavy_imports(path)
                print(f"modules imported by watch that must not be: {', '.join(heavy) or 'none'}")
                ok = ok and "torch" not in heavy
            run_watch(path, Path(tmp))  # warm-up: bytecode cache and page cache
            runs = sorted((run_watch(path, Path(tmp)) for _ in range(args.runs)), key=lambda r: r[0])
            elapsed, summary, rss, _cpu = runs[0]
            cpu = min(r[3] for r in runs)
            rates[kind] = n / elapsed
            print(
                f"{kind:8s} {n:,} lines, {path.stat().st_size / 1e6:.0f} MB: {elapsed:.2f} s (best of "
                f"{args.runs}, median {runs[len(runs) // 2][0]:.2f} s) = {n / elapsed:,.0f} lines/s; "
                f"{summary['steps']:,} logging steps, {len(summary['findings'])} findings, verdict "
                f"{summary['verdict']}, peak RSS {rss / 1e6:.0f} MB; CPU {cpu:.2f} s = {n / cpu:,.0f} "
                "lines per CPU second"
            )
            ok = ok and rates[kind] >= 500_000
            if kind == "trainer":
                start = time.perf_counter()
                cpu_start = time.process_time()
                found = naive_parse(path)
                naive = time.perf_counter() - start
                naive_cpu = time.process_time() - cpu_start
                print(
                    f"         naive ast.literal_eval reader: {naive:.2f} s = {n / naive:,.0f} lines/s "
                    f"({found:,} records); fgdiag watch is {naive / elapsed:.1f}x faster (CPU: "
                    f"{naive_cpu:.2f} s, {naive_cpu / cpu:.1f}x)"
                )
                ok = ok and naive / elapsed >= 10
            if args.keep is None:
                path.unlink()
        if args.gb > 0:
            path = folder / "big.log"
            lines = grow(path, int(args.gb * 1e9))
            seconds, summary, rss, cpu = run_watch(path, Path(tmp))
            print(
                f"big      {path.stat().st_size / 1e9:.2f} GB Trainer log ({lines:,} lines, "
                f"{summary['steps']:,} logging steps): {seconds:.1f} s = {lines / seconds:,.0f} lines/s, "
                f"peak RSS {rss / 1e6:.0f} MB, CPU {cpu:.1f} s (the log is removed now)"
            )
            ok = ok and rss <= 300e6
            path.unlink()
    print(load())
    print(
        "goals (>= 500,000 lines/s each, >= 10x naive, <= 300 MB for 1 GB, no torch):",
        "met" if ok else "NOT met",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
