"""The embedded A/B over seeds: the fixed arm and the seed arm (`fgdiag.runs.SEED_SETTINGS`) fine-tuned from
the same pretrained tiny CLIP, same data, seed and steps; the figures behind `fgdiag/targets/embedded.toml`
and the README.

Per arm and seed: region loss at each checkpoint (the logging step's value, and the mean FGD604 judges: the
last max(2 logging intervals, 10 % of the step) steps), candidates K, the step the bank switched on, wall
time, and whether each target of the `embedded` and `ucf` profiles is met. For the seed arm it also prints
what the runtime diagnostics show in its first 50 steps (loss / ln K, logits range, the positive-negative
gap, the loss floor the temperature allows), the numbers a rule can flag it from; and for both arms the
run-based temperature signal over the first 50 steps: each head's loss next to the loss its own logits give
at the clamp scale (`loss_at_max_scale`), and the gap to the hardest negative in cosine units.

    python benchmarks/embedded_profile.py --seeds 0 1 2 [--steps 400] [--sequential]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

CHECKPOINTS = (50, 100, 200, 400)
EARLY = ("loss_over_chance", "logits_min", "logits_max", "pos_logit_mean", "neg_logit_mean", "loss_floor")
SIGNAL = ("head_loss", "loss_at_max_scale", "hardest_gap")  # first 50 steps, both arms, region and hardneg


def _events(out: Path) -> tuple[dict[int, dict], list[dict]]:
    records = [json.loads(line) for line in (out / "fgdiag" / "events.jsonl").read_text().splitlines()]
    metrics = {r["step"]: r["metrics"] for r in records if r["type"] == "metrics"}
    return metrics, records


def smoothed(metrics: dict[int, dict], step: int, interval: int, name: str = "head_loss/region") -> float:
    """The value FGD604 judges at `step`: mean over the last max(2 intervals, 10 % of step) steps."""
    span = max(2 * interval, 0.1 * step)
    vals = [
        m[name]
        for s, m in metrics.items()
        if step - span <= s <= step and math.isfinite(m.get(name, math.nan))
    ]
    vals = [v for v in vals if v != 0.0]
    return sum(vals) / len(vals) if vals else math.nan


def summarise(arm: str, seed: int, out: Path, wall: float, interval: int) -> dict:
    metrics, records = _events(out)
    enabled = [r["step"] for r in records if r["type"] == "event" and r["kind"] == "memory_bank_enabled"]
    row: dict = {
        "arm": arm,
        "seed": seed,
        "wall_s": round(wall, 1),
        "bank_on_at": enabled[0] if enabled else None,
        "scale_start": metrics[min(metrics)].get("logit_scale/region"),
        "scale_end": metrics[max(metrics)].get("logit_scale/region"),
        "findings": sorted({r["finding"]["code"] for r in records if r["type"] == "finding"}),
    }
    for step in CHECKPOINTS:
        m = metrics.get(step, {})
        row[f"loss@{step}"] = round(m.get("head_loss/region", math.nan), 3)
        row[f"smoothed@{step}"] = round(smoothed(metrics, step, interval), 3)
        row[f"K@{step}"] = round(m.get("candidates/region", math.nan), 1)
    early = [m for s, m in sorted(metrics.items()) if s <= 50]
    for head in ("region", "hardneg"):
        for name in SIGNAL:
            vals = [m[f"{name}/{head}"] for m in early if math.isfinite(m.get(f"{name}/{head}", math.nan))]
            row[f"first50 {name}/{head}"] = round(statistics.fmean(vals), 4) if vals else None
    if arm == "seed":
        for name in EARLY:
            vals = [m[f"{name}/region"] for m in early if f"{name}/region" in m]
            row[f"first50 {name}"] = [round(min(vals), 3), round(max(vals), 3)] if vals else None
        scale = math.exp(row["scale_start"])
        gaps = [(m["pos_logit_mean/region"] - m["neg_logit_mean/region"]) / scale for m in early]
        row["first50 cos gap pos-neg"] = [round(min(gaps), 3), round(max(gaps), 3)]
    return row


def run_arms(seed: int, steps: int, tmp: Path, sequential: bool) -> list[tuple[str, Path, float]]:
    from fgclip.train.threads import choose_threads
    from fgdiag import runs as R

    env = R.child_env(choose_threads()[0])
    extra = ["--seed", str(seed), "--max_steps", str(steps)]
    plan = [("fixed", extra), ("seed", [*extra, *R.SEED_SETTINGS])]
    done = []
    batches = [[p] for p in plan] if sequential else [plan]
    for batch in batches:
        running = [
            R.start_training(
                arm, R.train_command(None, tmp / f"{arm}{seed}", args), tmp / f"{arm}{seed}", env
            )
            for arm, args in batch
        ]
        for name, result in R.wait_all(running).items():
            if result.returncode != 0:
                raise SystemExit(f"{name} seed {seed} failed: {result.log_path}")
            done.append((name, result.out_dir, result.seconds))
    return done


def verdicts(row: dict, profile) -> dict[str, bool]:
    out = {}
    for cp in profile.points:
        value = row.get(f"smoothed@{cp.step}") if cp.metric == "head_loss/region" else None
        if value is not None and math.isfinite(value):
            out[f"{profile.name} {cp.describe()}"] = cp.passes(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--sequential", action="store_true", help="one arm after the other")
    args = parser.parse_args()
    from fgclip.train.embedded import prepare_embedded
    from fgclip.train.presets import EMBEDDED
    from fgdiag.targets import get_profile

    start = time.monotonic()
    prepare_embedded()  # built once, outside the arms' timings
    print(
        json.dumps({"prepare_s": round(time.monotonic() - start, 1), "load1": os.getloadavg()[0]}), flush=True
    )
    profiles = [get_profile("embedded"), get_profile("ucf")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arm, out, wall in run_arms(seed, args.steps, Path(tmp), args.sequential):
                row = summarise(arm, seed, out, wall, int(EMBEDDED["logging_steps"]))
                for profile in profiles:
                    row.update(verdicts(row, profile))
                row["load1"] = round(os.getloadavg()[0], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    head = "| arm | seed | bank on at | " + " | ".join(f"@{s} (K)" for s in CHECKPOINTS) + " | wall s |"
    lines = [head, "|" + "---|" * (5 + len(CHECKPOINTS))]
    for r in rows:
        cells = [f"{r[f'smoothed@{s}']:.3f} ({r[f'K@{s}']:.0f})" for s in CHECKPOINTS]
        bank = f"step {r['bank_on_at']}" if r["bank_on_at"] is not None else "never"
        lines.append(f"| {r['arm']} | {r['seed']} | {bank} | " + " | ".join(cells) + f" | {r['wall_s']} |")
    for arm in ("fixed", "seed"):
        worst = {s: max(r[f"smoothed@{s}"] for r in rows if r["arm"] == arm) for s in CHECKPOINTS}
        best = {s: min(r[f"smoothed@{s}"] for r in rows if r["arm"] == arm) for s in CHECKPOINTS}
        lines.append(f"\n{arm}: worst seed " + json.dumps(worst) + ", best seed " + json.dumps(best))
    walls = [r["wall_s"] for r in rows]
    lines.append(f"median wall per arm: {statistics.median(walls)} s")
    lines += ["", "Temperature signal, mean over the logging steps <= 50:", signal_table(rows)]
    return "\n".join(lines)


def signal_table(rows: list[dict]) -> str:
    """Per arm and seed: head loss vs loss at the clamp scale, and the hardest gap, region and hardneg."""
    heads = ("region", "hardneg")
    cols = [f"{h} loss / at max scale / hardest gap" for h in heads]
    lines = ["| arm | seed | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for h in heads:
            vals = [r.get(f"first50 {n}/{h}") for n in SIGNAL]
            cells.append(" / ".join("-" if v is None else f"{v:.3f}" for v in vals))
        lines.append(f"| {r['arm']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
