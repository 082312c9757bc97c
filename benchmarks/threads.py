"""Threads, DataLoader workers and side-by-side arms for the embedded fine-tune on this machine.

All configurations run inside one invocation, alternating, so they share the machine's load (printed with
each row). Each trial is a real `python -m fgclip.train --preset embedded` child with the diagnostics on;
the figure is transformers' `train_runtime` (training loop only, no start-up) per optimizer step.

- threads: 1 vs 2 torch threads, alone and next to a busy process (`yes > /dev/null`, one core);
- workers: 0 vs 1 DataLoader worker (1 thread);
- arms: two trainings one after the other (1 or 2 threads each) vs side by side (1 thread each), wall time.

    python benchmarks/threads.py [--steps 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNTIME = re.compile(r"train_runtime['\"]?\s*:\s*'?([0-9.]+)")


def _command(out: Path, steps: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fgclip.train",
        "--preset",
        "embedded",
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--save_steps",
        "100000",
        "--logging_steps",
        "5",
        "--disable_tqdm",
        "true",
        "--dataloader_num_workers",
        str(workers),
    ]


def _start(out: Path, steps: int, threads: int, workers: int = 0) -> subprocess.Popen:
    env = {
        **os.environ,
        "FGCLIP_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "ENABLE_RUNTIME_DIAG": "1",
    }
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "log.txt").open("w")
    return subprocess.Popen(_command(out, steps, workers), env=env, stdout=log, stderr=subprocess.STDOUT)


def _runtime(out: Path) -> float:
    found = RUNTIME.findall((out / "log.txt").read_text())
    if not found:
        raise SystemExit(f"no train_runtime in {out / 'log.txt'}:\n" + (out / "log.txt").read_text()[-2000:])
    return float(found[-1])


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def trial(tmp: Path, tag: str, steps: int, threads: int, workers: int = 0, busy: bool = False) -> dict:
    hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if busy else None
    try:
        load = _load()
        out = tmp / f"{tag}-{time.monotonic_ns()}"
        proc = _start(out, steps, threads, workers)
        if proc.wait() != 0:
            raise SystemExit(f"training failed: {out / 'log.txt'}")
    finally:
        if hog is not None:
            hog.terminate()
            hog.wait()
    return {"trial": tag, "s_per_step": round(_runtime(out) / steps, 4), "load1": load}


def arms(tmp: Path, tag: str, steps: int, threads: int, side_by_side: bool) -> dict:
    load = _load()
    start = time.monotonic()
    outs = [tmp / f"{tag}-{i}-{time.monotonic_ns()}" for i in range(2)]
    if side_by_side:
        procs = [_start(out, steps, threads) for out in outs]
        codes = [p.wait() for p in procs]
    else:
        codes = [_start(out, steps, threads).wait() for out in outs]
    if any(codes):
        raise SystemExit(f"training failed: {outs}")
    return {"trial": tag, "wall_s": round(time.monotonic() - start, 1), "load1": load}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from fgclip.train.embedded import prepare_embedded

    prepare_embedded()  # build the cache first, outside every timing
    rows: list[dict] = []
    print(json.dumps({"cpus": os.cpu_count(), "load1_at_start": _load()}), flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for _ in range(args.repeats):
            for busy in (False, True):
                for threads in (1, 2):
                    tag = f"threads={threads}{' +busy' if busy else ''}"
                    rows.append(trial(tmp, tag, args.steps, threads, busy=busy))
                    print(json.dumps(rows[-1]), flush=True)
            for workers in (0, 1):
                rows.append(trial(tmp, f"workers={workers}", args.steps, 1, workers=workers))
                print(json.dumps(rows[-1]), flush=True)
            for tag, threads, side in (
                ("sequential x1", 1, False),
                ("sequential x2", 2, False),
                ("side by side x1", 1, True),
            ):
                rows.append(arms(tmp, f"arms {tag}", args.steps, threads, side))
                print(json.dumps(rows[-1]), flush=True)
    summary: dict[str, float] = {}
    for tag in dict.fromkeys(r["trial"] for r in rows):
        key = "s_per_step" if "s_per_step" in rows[[r["trial"] for r in rows].index(tag)] else "wall_s"
        summary[f"{tag} ({key}, median)"] = statistics.median(r[key] for r in rows if r["trial"] == tag)
    print(json.dumps({"summary": summary, "load1_at_end": _load()}, indent=1))


if __name__ == "__main__":
    main()
