"""Measure the embedded preset across seeds: wall time, memory-bank activation, region loss at checkpoints.

The figures behind `fgdiag/targets/embedded.toml` and the README:

    python benchmarks/embedded_profile.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKPOINTS = (50, 100, 200, 300, 400)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            out = Path(tmp) / f"seed{seed}"
            env = {**os.environ, "ENABLE_RUNTIME_DIAG": "1"}
            start = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "fgclip.train",
                    "--preset",
                    "embedded",
                    "--output_dir",
                    str(out),
                    "--seed",
                    str(seed),
                    "--disable_tqdm",
                    "true",
                ],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wall = time.monotonic() - start
            records = [
                json.loads(line) for line in (out / "fgdiag" / "events.jsonl").read_text().splitlines()
            ]
            metrics = {r["step"]: r["metrics"] for r in records if r["type"] == "metrics"}
            enabled = [
                r["step"] for r in records if r["type"] == "event" and r["kind"] == "memory_bank_enabled"
            ]
            findings = [r["finding"]["code"] for r in records if r["type"] == "finding"]
            row = {
                "seed": seed,
                "wall_s": round(wall, 1),
                "memory_bank_enabled": enabled[0] if enabled else None,
                "findings": findings,
            }
            for step in CHECKPOINTS:
                m = metrics.get(step, {})
                row[f"region@{step}"] = round(m.get("head_loss/region", float("nan")), 3)
                row[f"lnK@{step}"] = round(m.get("chance/region", float("nan")), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    worst = {f"region@{s}": max(r[f"region@{s}"] for r in rows) for s in CHECKPOINTS}
    print("worst seed per checkpoint:", json.dumps(worst))


if __name__ == "__main__":
    main()
