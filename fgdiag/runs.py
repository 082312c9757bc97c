"""Diagnostic training runs: check-config, a real `fgclip.train` run with the runtime layer on, the report;
optionally the seed's broken configuration next to it, compared in a measured before/after table.

The training runs in a child process (`python -m fgclip.train`) so this process stays light and can show
the live dashboard from the run's `events.jsonl` while it trains.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the seed's broken settings: new heads at CLIP's from-scratch temperature, a warm-up the run never reaches
SEED_SETTINGS = (
    "--finegrained_logit_scale_init",
    "2.6592",
    "--hardneg_logit_scale_init",
    "2.6592",
    "--memory_bank_warmup_steps",
    "100000",
)


@dataclass
class RunResult:
    name: str
    out_dir: Path
    returncode: int
    seconds: float
    log_path: Path
    events_path: Path
    read: Any = None
    findings: list = field(default_factory=list)


def train_command(config: str | None, out_dir: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "fgclip.train"]
    cmd += ["--config", config] if config else ["--preset", "embedded"]
    return [*cmd, "--output_dir", str(out_dir), "--disable_tqdm", "true", *extra]


def run_training(
    name: str, cmd: list[str], out_dir: Path, live: Any = None, targets: str | None = None, poll: float = 1.0
) -> RunResult:
    """Run one training child process, its output to `<out_dir>/training.log`; refresh `live` meanwhile."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "training.log"
    events_path = out_dir / "fgdiag" / "events.jsonl"
    env = {
        **os.environ,
        "ENABLE_RUNTIME_DIAG": os.environ.get("ENABLE_RUNTIME_DIAG") or "1",
        "PYTHONUNBUFFERED": "1",
    }
    if targets:
        env["FGDIAG_TARGETS"] = targets
    start = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(poll)
            if live is not None:
                live(name, events_path, time.monotonic() - start)
    return RunResult(name, out_dir, proc.returncode, time.monotonic() - start, log_path, events_path)


def judge(result: RunResult, targets: str | None) -> RunResult:
    """Read the run's events (or its training log if the layer never wrote any) and judge them."""
    from fgdiag import read_log

    source = result.events_path if result.events_path.exists() else result.log_path
    result.read = read_log(source, targets=targets)
    result.findings = list(result.read.findings)
    return result


def _first_step(read: Any, name: str, below: float) -> int | None:
    for step in sorted(read.rows):
        value = read.rows[step].get(name)
        if value is not None and value < below:
            return step
    return None


def _at(read: Any, name: str, step: int) -> float | None:
    """Value at the last logging step <= step."""
    best = None
    for s in sorted(read.rows):
        if s > step:
            break
        value = read.rows[s].get(name)
        if value is not None:
            best = value
    return best


def comparison_rows(runs: dict[str, RunResult]) -> list[tuple[str, list[str]]]:
    """The seed's before/after table, measured: one row per quantity, one column per run."""

    def fmt(value: Any, spec: str = ".4f") -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        return format(value, spec) if isinstance(value, float) else str(value)

    rows: list[tuple[str, list[str]]] = []
    reads = {name: r.read for name, r in runs.items()}
    last_steps: dict[str, Any] = {
        name: max(read.rows) if read and read.rows else None for name, read in reads.items()
    }

    def row(label: str, fn) -> None:
        rows.append((label, [fn(name, read) for name, read in reads.items()]))

    row("logit_scale (region, raw) at start", lambda n, r: fmt(_at(r, "logit_scale/region", min(r.rows))))
    row(
        "temperature exp(scale) at start",
        lambda n, r: fmt(_at(r, "logit_scale_exp/region", min(r.rows)), ".2f"),
    )
    row(
        "region logits range at end",
        lambda n, r: (
            f"[{fmt(_at(r, 'logits_min/region', last_steps[n]), '.1f')}, "
            f"{fmt(_at(r, 'logits_max/region', last_steps[n]), '.1f')}]"
        ),
    )
    row(
        "memory bank switched on",
        lambda n, r: next(
            (f"step {int(e['step'])}" for e in r.events if e.get("kind") == "memory_bank_enabled"), "never"
        ),
    )
    row("candidates K at end", lambda n, r: fmt(_at(r, "candidates/region", last_steps[n]), ".0f"))
    row("chance ln K at end", lambda n, r: fmt(_at(r, "chance/region", last_steps[n])))
    for step in (50, 200, 400):
        row(
            f"region loss (unweighted) @ step {step}", lambda n, r, s=step: fmt(_at(r, "head_loss/region", s))
        )
    row(
        "region loss / ln K at end", lambda n, r: fmt(_at(r, "loss_over_chance/region", last_steps[n]), ".3f")
    )
    row("first step region loss < 1.0", lambda n, r: fmt(_first_step(r, "head_loss/region", 1.0)))
    row(
        "findings (errors)",
        lambda n, r: ", ".join(sorted({f.code for f in r.findings if f.severity.value == "error"})) or "none",
    )
    row("wall time (s)", lambda n, r: fmt(runs[n].seconds, ".1f"))
    return rows


def comparison_markdown(runs: dict[str, RunResult]) -> str:
    names = list(runs)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, cells in comparison_rows(runs):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_json(runs: dict[str, RunResult], report_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"report": str(report_dir), "runs": {}}
    for name, r in runs.items():
        out["runs"][name] = {
            "output_dir": str(r.out_dir),
            "returncode": r.returncode,
            "seconds": round(r.seconds, 1),
            "last_step": max(r.read.rows) if r.read and r.read.rows else None,
            "findings": [
                {"code": f.code, "severity": f.severity.value, "step": f.step, "message": f.message}
                for f in r.findings
            ],
        }
    if len(runs) > 1:
        out["comparison"] = {
            label: dict(zip(runs, cells, strict=True)) for label, cells in comparison_rows(runs)
        }
    return out


def write_outputs(runs: dict[str, RunResult], out: Path, targets: str | None) -> Path:
    from fgdiag.render.report import write_report
    from fgdiag.targets import get_profile

    report_dir = out / "report"
    profile = get_profile(targets) if isinstance(targets, str) else targets
    write_report(
        {name: r.read for name, r in runs.items()} if len(runs) > 1 else next(iter(runs.values())).read,
        report_dir,
        title="fgdiag run",
        targets=profile,
    )
    if len(runs) > 1:
        table = comparison_markdown(runs)
        (report_dir / "comparison.md").write_text(
            "# Seed configuration vs fixed configuration (measured)\n\n" + table, encoding="utf-8"
        )
    (out / "summary.json").write_text(
        json.dumps(summary_json(runs, report_dir), indent=2) + "\n", encoding="utf-8"
    )
    return report_dir
