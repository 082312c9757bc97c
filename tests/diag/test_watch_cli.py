"""`fgdiag watch`: --once / --json through typer's runner and a real subprocess (exit codes, keys), the live
follower in a subprocess (latency of a new finding), and the plain-text output when stdout is not a TTY."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from logs_fixtures import hf_trainer_log, mojibake, our_log, vad_log
from typer.testing import CliRunner

from fgdiag.cli.app import app

KEYS = {"steps", "last_step", "metrics", "findings", "verdict", "not_judged"}
REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "train.log") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def cli(*args: str):
    return CliRunner().invoke(app, ["watch", *args])


def test_watch_once_json_healthy_exit_0(tmp_path):
    result = cli(str(write(tmp_path, hf_trainer_log())), "--once", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= KEYS
    assert data["steps"] == 4 and data["last_step"] == 40 and data["verdict"] == "healthy"
    assert data["metrics"]["loss"] == 1.0


def test_watch_once_json_error_finding_exit_1(tmp_path):
    path = write(tmp_path, mojibake(vad_log(steps=60, ga=2)))  # the bank never switches on
    result = cli(str(path), "--json", "--targets", "ucf")
    assert result.exit_code == 1
    data = json.loads(result.output)
    found = {f["code"] for f in data["findings"]}
    assert {"FGD201", "FGD601", "FGD604"} <= found
    assert all({"code", "severity", "step"} <= set(f) for f in data["findings"])
    assert data["verdict"] == "failing"
    assert data["targets"]["points"][0]["status"] == "missed"
    assert data["targets"]["points"][1]["status"] == "pending"


def test_watch_not_judged_says_what_to_pass(tmp_path):
    # 1.45 sits on no ln n (4.6 % above ln 4): nothing to infer K from
    text = "\n".join(f"[fgdiag] step {s} | loss 1.0000 | region 1.4500" for s in range(5, 200, 5)) + "\n"
    data = json.loads(cli(str(write(tmp_path, text)), "--json").output)
    reasons = " ".join(n["reason"] for n in data["not_judged"])
    assert "no candidate count in this log; pass --candidates" in reasons
    data = json.loads(cli(str(write(tmp_path, text)), "--json", "--candidates", "4").output)
    assert "FGD601" in {f["code"] for f in data["findings"]}


def test_watch_missing_file_and_bad_targets_exit_2(tmp_path):
    result = cli(str(tmp_path / "nope.log"), "--once")
    assert result.exit_code == 2 and "no such file" in result.output
    result = cli(str(write(tmp_path, "x\n")), "--once", "--targets", "no-such")
    assert result.exit_code == 2 and "unknown target profile" in result.output


def test_watch_once_text_dashboard(tmp_path):
    result = cli(str(write(tmp_path, our_log())), "--once")
    assert result.exit_code == 0
    assert "fgdiag watch" in result.output and "region" in result.output and "memory bank" in result.output
    assert "\x1b[" not in result.output  # not a TTY: plain text


def _run(args, **kw):
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "fgdiag.cli.app", "watch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        **kw,
    )


def test_watch_subprocess_exit_codes_and_keys(tmp_path):
    ok = _run([str(write(tmp_path, hf_trainer_log(), "ok.log")), "--once", "--json"])
    assert ok.returncode == 0 and set(json.loads(ok.stdout)) >= KEYS
    bad = _run([str(write(tmp_path, "{'loss': nan, 'grad_norm': nan}\n", "nan.log")), "--once", "--json"])
    assert bad.returncode == 1 and json.loads(bad.stdout)["findings"][0]["code"] == "FGD701"
    missing = _run([str(tmp_path / "missing.log"), "--once", "--json"])
    assert missing.returncode == 2 and "missing.log" in missing.stderr


def test_watch_subprocess_json_does_not_import_heavy_modules(tmp_path):
    path = write(tmp_path, vad_log(steps=5, ga=2))
    code = (
        f"import sys, runpy\nsys.argv = ['fgdiag', 'watch', '--once', '--json', {str(path)!r}]\ntry:\n    "
        "runpy.run_module('fgdiag.cli.app', run_name='__main__')\nexcept SystemExit:\n    "
        "pass\nprint('HEAVY', sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-2000:]


def test_watch_follow_latency_and_stop_at_end(tmp_path):
    """A finding appears within 0.5 s of its line being appended; watch stops by itself at the end line."""
    path = tmp_path / "live.log"
    path.write_text("{'loss': 1.0, 'grad_norm': 1.0}\n{'loss': 0.9, 'grad_norm': 1.0}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fgdiag.cli.app",
            "watch",
            str(path),
            "--interval",
            "0.05",
            "--max-seconds",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=REPO,
    )
    seen: dict[str, float] = {}
    out: list[str] = []

    def reader():
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if line.startswith("[fgdiag] step 1 "):
                seen["ready"] = time.monotonic()  # the first poll has been read and printed
            if "FGD701" in line:
                seen["at"] = time.monotonic()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while "ready" not in seen and time.monotonic() < deadline:  # interpreter start and the first poll
            time.sleep(0.02)
        assert "ready" in seen, "".join(out)
        appended = time.monotonic()
        with path.open("a") as fh:
            fh.write("{'loss': 0.0, 'grad_norm': nan}\n")
        deadline = appended + 5
        while "at" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "at" in seen, "".join(out)
        assert seen["at"] - appended <= 0.5 + 0.3  # 0.5 s goal, 0.3 s slack for a loaded 2-core CI box
        with path.open("a") as fh:
            fh.write("{'train_runtime': 1.0, 'train_loss': 0.5, 'epoch': 1.0}\n")
        assert proc.wait(timeout=10) == 1  # the FGD701 error
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    thread.join(timeout=5)
    assert any(line.startswith("verdict:") for line in out)


def test_watch_run_dir_events_with_recorded_findings(tmp_path):
    from fgdiag import events as ev
    from fgdiag.rules.engine import RuleEngine
    from fgdiag.rules.registry import get

    folder = tmp_path / "run" / "fgdiag"
    folder.mkdir(parents=True)
    writer = ev.EventWriter(folder / "events.jsonl")
    info = {"planned_steps": 100, "memory_bank_size": 0}
    writer.write(ev.run_record(info))
    writer.write(
        ev.finding_record(
            get("FGD103").finding("logit_scale_finegrained decayed (static)", location="optimizer")
        )
    )
    engine = RuleEngine(info)  # the live callback judges with the same engine and records what it found
    for step in range(10, 60, 10):
        metrics = {ev.LOSS: 1.0, ev.GRAD_NORM: float("nan") if step == 30 else 1.0}
        writer.write(ev.metrics_record(step, metrics))
        for finding in engine.observe(step, metrics):
            writer.write(ev.finding_record(finding))
    writer.close()
    result = cli(str(tmp_path / "run"), "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    codes = [f["code"] for f in data["findings"]]
    assert sorted(codes) == ["FGD103", "FGD701"]  # the re-judged FGD701 is not listed twice
    assert data["steps"] == 5 and data["metrics"]["grad_norm"] == 1.0
