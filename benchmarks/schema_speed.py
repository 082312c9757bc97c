"""Should events.jsonl be validated by a schema library? Decode-and-check speed of our event records with
today's hand checks (json.loads + the checks `fgdiag.logs.ours` does), msgspec Structs and pydantic models.

Records are what `FGDiagCallback` writes: a metrics record per logging step with the ~70 metrics of a real
fgclip run (names from `fgdiag.events`), an event or finding record every 25th line, the run record first;
every record carries its `run_id`. `--records` records are decoded per variant (a pool of `--distinct`
different lines, decoded in turn, so the figures do not include generating them). Then a file of
`--file-records` records goes through the whole `fgdiag watch --once --json` process, to show which share
of reading a file the decoding is; with `--baseline-src DIR` (a checkout from before the schema, e.g. the
main branch) the same file also goes through that checkout's watch, alternating, best of 2 each. The
machine's load average is printed before and after: compare the ratios measured in one run, not the
absolute figures.

    python benchmarks/schema_speed.py [--records 1000000] [--distinct 20000] [--file-records 200000]
                                      [--baseline-src /path/to/older/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fgdiag import events as ev

HEAD_METRICS = [ev.head_metric(m, h) for h in ev.HEADS for m in (*ev.HEAD_STATS, ev.LOSS_OVER_CHANCE)]
GROUPS = [
    f"{ev.GRAD_NORM_GROUP}/{g}" for g in ("towers_decay", "towers_no_decay", "heads_decay", "logit_scales")
]
PLAIN = sorted(ev.GLOBAL_METRICS)


def record_lines(n: int, seed: int = 0) -> list[bytes]:
    """n JSONL lines as the callback writes them (json.dumps of events.py's records)."""
    rng = random.Random(seed)
    names = [*PLAIN, *HEAD_METRICS[:60], *GROUPS]
    run_id = "20250101T000000Z-0a1b2c"
    out = [json.dumps({**ev.run_record({"planned_steps": n, "source": "bench"}), "run_id": run_id})]
    for i in range(1, n):
        if i % 25 == 0:
            rec = ev.event_record(i, ev.EVENT_MB_FULL, "memory bank full", {"queue": 128})
        else:
            rec = ev.metrics_record(i, {k: rng.uniform(-50, 100) for k in names}, when=1.7e9 + i)
        out.append(json.dumps({**rec, "run_id": run_id}))
    return [line.encode() for line in out]


# --- variant 1: today's hand checks ---------------------------------------------------------------------
def hand(line: bytes) -> Any:
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("record")
    kind = record.get("type")
    if kind == "metrics":
        metrics = record.get("metrics")
        if not isinstance(metrics, dict):
            raise ValueError("metrics")
        int(record["step"])
        for value in metrics.values():
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
                raise ValueError("value")
    elif kind == "event":
        int(record.get("step", 0))
        str(record.get("kind", "event"))
    elif kind not in ("run", "finding"):
        raise ValueError("type")
    return record


# --- variant 2: msgspec ---------------------------------------------------------------------------------
def msgspec_decoder() -> Callable[[bytes], Any]:
    import msgspec

    class Metrics(msgspec.Struct, tag_field="type", tag="metrics"):
        step: int
        metrics: dict[str, float | None]
        time: float = 0.0
        nonfinite: list[str] = []
        run_id: str | None = None

    class Event(msgspec.Struct, tag_field="type", tag="event"):
        step: int
        kind: str
        message: str = ""
        data: dict[str, Any] = {}
        run_id: str | None = None

    class Run(msgspec.Struct, tag_field="type", tag="run"):
        info: dict[str, Any]
        step: int = 0
        run_id: str | None = None

    class FindingRecord(msgspec.Struct, tag_field="type", tag="finding"):
        finding: dict[str, Any]
        step: int | None = None
        run_id: str | None = None

    return msgspec.json.Decoder(Metrics | Event | Run | FindingRecord).decode


# --- variant 3: pydantic ----------------------------------------------------------------------------------
def pydantic_decoder() -> Callable[[bytes], Any]:
    from typing import Annotated, Literal

    from pydantic import BaseModel, Field, TypeAdapter

    class Metrics(BaseModel):
        type: Literal["metrics"]
        step: int
        metrics: dict[str, float | None]
        time: float = 0.0
        nonfinite: list[str] = []
        run_id: str | None = None

    class Event(BaseModel):
        type: Literal["event"]
        step: int
        kind: str
        message: str = ""
        data: dict[str, Any] = {}
        run_id: str | None = None

    class Run(BaseModel):
        type: Literal["run"]
        info: dict[str, Any]
        step: int = 0
        run_id: str | None = None

    class FindingRecord(BaseModel):
        type: Literal["finding"]
        finding: dict[str, Any]
        step: int | None = None
        run_id: str | None = None

    union = Annotated[Metrics | Event | Run | FindingRecord, Field(discriminator="type")]
    return TypeAdapter(union).validate_json


def timed(decode: Callable[[bytes], Any], lines: list[bytes], total: int) -> float:
    """Seconds to decode `total` records, cycling through `lines`."""
    n = len(lines)
    start = time.perf_counter()
    done = 0
    while done < total:
        for line in lines[: min(n, total - done)]:
            decode(line)
        done += min(n, total - done)
    return time.perf_counter() - start


def watch_seconds(path: Path, src: str | None = None) -> tuple[float, int]:
    """One `fgdiag watch --once --json` process over the file (the code under `src`, default this one):
    (seconds, logging steps read)."""
    cmd = [sys.executable, "-m", "fgdiag.cli.app", "watch", "--once", "--json", str(path)]
    env = {**os.environ, "PYTHONPATH": src} if src else None
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"watch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)["steps"]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=20_000)
    parser.add_argument("--file-records", type=int, default=200_000)
    parser.add_argument("--baseline-src", default=None, help="an older checkout to time watch against")
    args = parser.parse_args()
    print(load())
    lines = record_lines(args.distinct)
    size = sum(map(len, lines)) / len(lines)
    print(f"{args.records:,} records (pool of {len(lines):,} lines, {size:,.0f} bytes each on average)")
    variants = {
        "hand checks (json.loads)": hand,
        "msgspec Struct union": msgspec_decoder(),
        "pydantic TypeAdapter union": pydantic_decoder(),
    }
    for decode in variants.values():  # every variant accepts every line, and the warm-up
        for line in lines[:100]:
            decode(line)
    base = None
    for name, decode in variants.items():
        seconds = timed(decode, lines, args.records)
        base = base or seconds
        rate = args.records / seconds
        print(
            f"  {name:28s} {seconds:6.2f} s = {rate:9,.0f} records/s = {rate * size / 1e6:6.1f} MB/s "
            f"({base / seconds:.2f}x hand)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        pool = record_lines(args.file_records, seed=1)
        path.write_bytes(b"\n".join(pool) + b"\n")
        decoder = variants["msgspec Struct union"]
        share = timed(decoder, pool, len(pool))
        srcs = {"this checkout": None, **({"baseline": args.baseline_src} if args.baseline_src else {})}
        for src in srcs.values():
            watch_seconds(path, src)  # warm-up
        best: dict[str, tuple[float, int]] = {}
        for _ in range(2):
            for name, src in srcs.items():
                seconds, steps = watch_seconds(path, src)
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, steps)
        size = path.stat().st_size / 1e6
        for name, (seconds, steps) in best.items():
            print(
                f"fgdiag watch --once --json, {name}, {len(pool):,} records ({size:.0f} MB): "
                f"{seconds:.2f} s = {len(pool) / seconds:,.0f} records/s ({steps:,} logging steps)"
            )
        print(
            f"  msgspec decoding is {100 * share / best['this checkout'][0]:.0f} % of this checkout's watch"
        )
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
