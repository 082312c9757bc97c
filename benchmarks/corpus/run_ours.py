"""Regenerate the corpus logs that come from real runs of our trainer (`origin = "ours-run"`).

    python benchmarks/corpus/run_ours.py [--out tests/corpus] [--only NAME ...] [--list]

Each scenario runs `python -m fgclip.train --preset embedded` (through `ours_child.py`, which applies one
fault from `faults.py` to the built trainer) with `--logging_steps 5`, stdout and stderr into `NAME.log`, and,
where the scenario keeps them, the run's `fgdiag/events.jsonl` as `NAME_events.jsonl`. Runtime diagnostics are
on (`ENABLE_RUNTIME_DIAG=1`) or off (only the Trainer's lines remain). The label files are written by hand and
are not touched here. Wall seconds per scenario are printed and written to `benchmarks/corpus/timings.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fgclip.config import CLIP_FROM_SCRATCH_SCALE

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COMMON = ["--preset", "embedded", "--logging_steps", "5", "--report_to", "none", "--save_steps", "1000"]
GA16 = ["--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "16"]


@dataclass(frozen=True)
class Attempt:
    """One invocation of the trainer; several attempts append to the same log (a retry loop)."""

    fault: str = "none"
    diag: bool = True
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    attempts: tuple[Attempt, ...]
    keep_events: bool = False
    steps: int = 60


def one(fault: str = "none", diag: bool = True, *args: str) -> tuple[Attempt, ...]:
    return (Attempt(fault, diag, tuple(args)),)


SCENARIOS = (
    Scenario("ours_healthy_s0", one("none", True, "--seed", "0"), keep_events=True),
    Scenario("ours_healthy_s1", one("none", True, "--seed", "1")),
    Scenario("ours_healthy_s2_plain", one("none", False, "--seed", "2")),
    Scenario(
        "ours_scale_2p6592_frozen",
        one("freeze_region_scale", True, "--finegrained_logit_scale_init", str(CLIP_FROM_SCRATCH_SCALE)),
        keep_events=True,
    ),
    Scenario("ours_bank_warmup_beyond_run", one("none", True, "--memory_bank_warmup_steps", "1000")),
    Scenario("ours_zero_boxes", one("zero_boxes", True)),
    Scenario("ours_shuffled_captions", one("shuffle_region_captions", True)),
    Scenario(
        "ours_shuffled_captions_bank_off",
        one("shuffle_region_captions", True, "--memory_bank_warmup_steps", "1000"),
    ),
    Scenario(
        "ours_lr0",
        one(
            "none",
            True,
            "--learning_rate",
            "0",
            "--head_learning_rate",
            "0",
            "--logit_scale_learning_rate",
            "0",
        ),
    ),
    Scenario(
        "ours_b2_ga16_forklike_plain",
        one("shuffle_region_captions+undivided_accumulation", False, *GA16),
    ),
    Scenario("ours_nan_region_plain", one("nan_region_at_step_12", False)),
    Scenario("ours_nan_region", one("nan_region_at_step_12", True)),
    Scenario("ours_b2_ga16_plain", one("none", False, *GA16), steps=40),
    Scenario("ours_b2_ga16_undivided_plain", one("undivided_accumulation", False, *GA16), steps=40),
    Scenario(
        "ours_lr_diverge_plain",
        one("none", False, "--learning_rate", "5e-2", "--head_learning_rate", "5e-2"),
    ),
    Scenario(
        "ours_blank_images_b2_plain",
        one(
            "blank_images",
            False,
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "4",
        ),
    ),
    Scenario("ours_collapse", one("collapse_regions", True), keep_events=True),
    Scenario("ours_crash_oom_step25_plain", one("oom_at_step_25", False)),
    Scenario(
        "ours_oom_restart",
        (Attempt("oom_at_step_0", True), Attempt("none", True)),
    ),
)


def run_scenario(scenario: Scenario, out_dir: Path, tmp: Path) -> float:
    """Run every attempt of a scenario into one log; returns the wall seconds."""
    log_path = out_dir / f"{scenario.name}.log"
    run_dir = tmp / scenario.name
    start = time.monotonic()
    with open(log_path, "wb") as log:
        for attempt in scenario.attempts:
            env = {k: v for k, v in os.environ.items() if k != "ENABLE_RUNTIME_DIAG"}
            if attempt.diag:
                env["ENABLE_RUNTIME_DIAG"] = "1"
            cmd = [
                sys.executable,
                str(HERE / "ours_child.py"),
                attempt.fault,
                *COMMON,
                "--output_dir",
                str(run_dir),
                "--max_steps",
                str(scenario.steps),
                *attempt.args,
            ]
            subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    seconds = time.monotonic() - start
    if scenario.keep_events:
        shutil.copyfile(run_dir / "fgdiag" / "events.jsonl", out_dir / f"{scenario.name}_events.jsonl")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "corpus")
    parser.add_argument("--only", nargs="+", default=None)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if args.only is None or s.name in args.only]
    if args.list:
        for s in chosen:
            print(s.name, [(a.fault, a.diag, " ".join(a.args)) for a in s.attempts])
        return
    args.out.mkdir(parents=True, exist_ok=True)
    timings_path = HERE / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in chosen:
            seconds = run_scenario(scenario, args.out, Path(tmp))
            timings[scenario.name] = round(seconds, 1)
            print(f"{scenario.name}: {seconds:.1f} s", flush=True)
    timings_path.write_text(json.dumps(dict(sorted(timings.items())), indent=2) + "\n")


if __name__ == "__main__":
    main()
