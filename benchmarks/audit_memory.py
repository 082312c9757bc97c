"""Peak memory of `fgdiag data-audit` on a large annotation file (issue 14 item 10).

Writes a JSON array (or JSONL) of upstream-style image records of about `--mb` megabytes (unique long
captions, region phrases from a small vocabulary, 4 boxes each, one in 50 inverted), then runs
`fgdiag data-audit FILE --no-media --json` in a child process and reports its wall time and peak RSS
(`ru_maxrss` of the waited child), next to the file size.

    python benchmarks/audit_memory.py --mb 200 [--jsonl] [--keep PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black", "white")
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")


def record(i: int) -> dict:
    boxes = []
    for k in range(4):
        x = (i * 7 + k * 13) % 50 / 100
        box = [x, 0.1, x + 0.3, 0.6] if (i + k) % 50 else [x + 0.3, 0.1, x, 0.6]  # 1 in 50 inverted
        phrase = f"{COLOURS[(i + k) % 8]} {SHAPES[(i * 3 + k) % 6]}"
        boxes.append({"bbox": box, "short_expr": phrase, "long_expr": f"a large {phrase} near item {i}"})
    return {
        "f_path": f"images/{i // 1000:04d}/{i:08d}.png",
        "caption": f"picture {i}: a scene with shapes of many colours, drawn for the memory benchmark",
        "short_caption": "a photo of shapes",
        "bbox_info": boxes,
    }


def write(path: Path, megabytes: float, jsonl: bool) -> int:
    """Write records until the file reaches `megabytes`; returns the record count."""
    limit, count = int(megabytes * 1e6), 0
    with path.open("w", encoding="utf-8") as handle:
        handle.write("" if jsonl else "[\n")
        size = handle.tell()
        while size < limit:
            text = json.dumps(record(count))
            handle.write(("" if jsonl or count == 0 else ",\n") + text + ("\n" if jsonl else ""))
            size += len(text) + 2
            count += 1
        handle.write("" if jsonl else "\n]\n")
    return count


def measure(path: Path) -> dict:
    command = [sys.executable, "-m", "fgdiag.cli.app", "data-audit", str(path), "--no-media", "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode not in (0, 1):
        raise SystemExit(f"data-audit failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "records": result["records"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--jsonl", action="store_true")
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / ("big.jsonl" if args.jsonl else "big.json")
        if not path.exists():
            write(path, args.mb, args.jsonl)
        figures = {"file": str(path), "file_mb": round(os.path.getsize(path) / 1e6, 1), **measure(path)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
