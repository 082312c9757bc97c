"""Diagnostic training runs: check-config, a real `fgclip.train` run with the runtime layer on, the report;
optionally the seed's broken configuration next to it, compared in a measured before/after table.

The training runs in child processes (`python -m fgclip.train`) so this process stays light and can show
the live dashboard from each run's `events.jsonl` while they train. The embedded default (data and the
pretrained tiny CLIP) is built first, once, by `python -m fgclip.train.embedded`; the two arms then start
from the same checkpoint, side by side when the machine has a core for each (`plan_parallel`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgclip.config import CLIP_FROM_SCRATCH_SCALE

# The seed's settings as the user's run had them (fgclip-vad, train_ucf_full.sh):
# - region and hard-negative heads at CLIP's from-scratch 2.6592 that never move: the fork casts the model
#   to bf16, which stores 2.6592 as 2.65625 (its logs print 2.656250 unchanged) and rounds every Adam step
#   away (bf16 spacing at 2.66 is 2**-6); emulated by keeping those two parameters on the bf16 grid;
# - a memory bank that never joins the loss: the user's run never switched it on (the seed note's table,
#   "MB switched on: never": no code set the flag; at the fork's HEAD the 200-forward activation raises
#   AttributeError on rank 0), so its warm-up lies beyond any run.
SEED_SETTINGS = (
    "--finegrained_logit_scale_init",
    str(CLIP_FROM_SCRATCH_SCALE),
    "--hardneg_logit_scale_init",
    str(CLIP_FROM_SCRATCH_SCALE),
    "--bf16_parameter_storage",
    "logit_scale_finegrained,logit_scale_hardneg",
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


def child_env(threads: int | None, targets: str | None = None) -> dict[str, str]:
    """Environment of a training child: diagnostics on, unbuffered, its torch threads pinned."""
    env = {
        **os.environ,
        "ENABLE_RUNTIME_DIAG": os.environ.get("ENABLE_RUNTIME_DIAG") or "1",
        "PYTHONUNBUFFERED": "1",
    }
    if threads is not None:
        env["FGCLIP_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    if targets:
        env["FGDIAG_TARGETS"] = targets
    return env


def plan_parallel(runs: int, threads: int, cpus: int | None = None) -> bool:
    """Train the runs side by side when the machine has `threads` cores for each of them."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return runs > 1 and runs * threads <= cpus


def prepare_embedded_default(log_path: Path, env: dict[str, str], echo: Callable[[str], None]) -> dict:
    """Build (or find) the embedded data and pretrained tiny CLIP in a child process; its progress lines go
    to `echo` as they come, everything to `log_path`. Returns the paths it printed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "fgclip.train.embedded"]
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        for line in proc.stderr:  # the child prints its paths (small) on stdout at the very end
            log.write(line)
            if "pretraining the tiny CLIP" in line:
                echo("[fgdiag run] " + line.rstrip().split(" fgclip.", 1)[-1].split(" ", 1)[-1])
        out = proc.stdout.read()
        proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"preparing the embedded default failed (exit {proc.returncode}); log: {log_path}")
    return json.loads(out)


def move_previous(out_dir: Path, now: float | None = None) -> Path | None:
    """Move an earlier run's folder aside (one atomic rename, never a deletion) so a new run neither
    resumes from its checkpoints nor appends to its events; returns where it went, None if nothing was
    there. `<parent>/previous/<UTC stamp>-<name>/MANIFEST.json` says how to move it back."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = out_dir.parent / "previous" / f"{stamp}-{out_dir.name}"
    n = 1
    while target.exists():
        n += 1
        target = out_dir.parent / "previous" / f"{stamp}-{out_dir.name}-{n}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(out_dir, target)
    manifest = {
        "moved": str(out_dir),
        "to": str(target),
        "why": "fgdiag run starts each arm in an empty folder (no resume, no appended events)",
        "undo": f"mv {target} {out_dir}",
    }
    (target / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


@dataclass
class Running:
    """A training child process in flight."""

    name: str
    proc: subprocess.Popen
    out_dir: Path
    log: Any
    start: float


def start_training(name: str, cmd: list[str], out_dir: Path, env: dict[str, str]) -> Running:
    """Start one training child; its output goes to `<out_dir>/training.log`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = (out_dir / "training.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return Running(name, proc, out_dir, log, time.monotonic())


def wait_all(
    running: list[Running], live: Callable[[str, Path, float], None] | None = None, poll: float = 1.0
) -> dict[str, RunResult]:
    """Wait for every child, calling `live(name, events_path, seconds)` for each one still training."""
    results: dict[str, RunResult] = {}
    while len(results) < len(running):
        time.sleep(poll)
        for run in running:
            if run.name in results:
                continue
            events = run.out_dir / "fgdiag" / "events.jsonl"
            seconds = time.monotonic() - run.start
            if live is not None:
                live(run.name, events, seconds)
            if run.proc.poll() is not None:
                run.log.close()
                results[run.name] = RunResult(
                    run.name, run.out_dir, run.proc.returncode, seconds, run.out_dir / "training.log", events
                )
    return {run.name: results[run.name] for run in running}


def run_training(
    name: str, cmd: list[str], out_dir: Path, live: Any = None, targets: str | None = None, poll: float = 1.0
) -> RunResult:
    """Run one training child to the end (see `start_training` / `wait_all` for several at once)."""
    run = start_training(name, cmd, out_dir, child_env(None, targets))
    return wait_all([run], live, poll)[name]


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
    row("logit_scale (region, raw) at end", lambda n, r: fmt(_at(r, "logit_scale/region", last_steps[n])))
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
    for step in (50, 100, 200, 400):
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
