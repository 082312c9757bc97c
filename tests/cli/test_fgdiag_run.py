"""`fgdiag run --compare seed` as a user runs it: a real subprocess, two real trainings, the report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser

from typer.testing import CliRunner

from fgdiag.cli.app import app


def test_run_compare_seed_end_to_end(embedded, tmp_path):
    out = tmp_path / "run"
    (out / "fixed" / "checkpoint-400").mkdir(parents=True)  # an earlier run, moved aside by --overwrite
    (out / "summary.json").write_text("{}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fgdiag.cli.app",
            "run",
            "--out",
            str(out),
            "--overwrite",
            "--compare",
            "seed",
            "--no-live",
            "--json",
            "--parallel",
            "--every",
            "1",
            "--",
            "--max_steps",
            "24",
            "--per_device_train_batch_size",
            "16",
            "--gradient_accumulation_steps",
            "1",
            "--memory_bank_warmup_steps",
            "4",
            "--logging_steps",
            "2",
            "--learning_rate",
            "1e-3",
            "--head_learning_rate",
            "1e-3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    fixed, seed = summary["runs"]["fixed"], summary["runs"]["seed"]
    assert fixed["last_step"] == seed["last_step"] == 24
    assert not [f for f in fixed["findings"] if f["severity"] == "error"]
    seed_codes = {f["code"] for f in seed["findings"]}
    assert {"FGD101", "FGD201"} <= seed_codes, seed_codes
    comparison = summary["comparison"]
    assert comparison["bank_on"]["fixed"] == "step 4" and comparison["bank_on"]["seed"] == "never"
    assert comparison["region_scale"]["seed"] == "14.2 (stays)"
    assert comparison["region_scale"]["fixed"].startswith("100.0")
    assert summary["runs"]["seed"]["verdict"] == "failing"
    ids = {summary["runs"][arm]["run_id"] for arm in ("fixed", "seed")}
    assert len(ids) == 2 and all(i.endswith(("-fixed", "-seed")) for i in ids)
    (previous,) = (out / "previous").iterdir()  # the earlier run, moved aside whole
    assert (previous / "fixed" / "checkpoint-400").is_dir() and (
        previous / "summary.json"
    ).read_text() == "{}"
    manifest = json.loads((previous / "MANIFEST.json").read_text())
    assert {e["name"]: e["state"] for e in manifest["entries"]} == {"fixed": "moved", "summary.json": "moved"}
    _check_progress_lines(proc.stderr)
    report = out / "report"
    for name in ("report.html", "report.md", "comparison.md"):
        assert (report / name).is_file(), name
    assert list(report.glob("*.png"))
    check_report_html(report / "report.html", ["fixed", "seed"])
    assert (
        "FGD101" in (report / "report.md").read_text() or "FGD101" in (report / "comparison.md").read_text()
    )
    assert (out / "fixed" / "training.log").read_text().count("logit_scale (finegrained):") >= 10
    from fgdiag import read_log

    # the seed arm's scales sit on bf16's 2.65625 for the whole run, as in the fork's logs
    seed = read_log(out / "seed")
    assert {v for _s, v in seed.series("logit_scale/region")} == {2.65625}
    # the run's own stdout log (transformers 5 prints values as strings) reads back step by step
    read = read_log(out / "fixed" / "training.log")
    assert sorted(read.rows) == list(range(2, 25, 2))
    assert all(read.rows[s].get("region_loss") is not None for s in read.rows)
    assert not [e for e in read.events if e.get("kind") == "resume"]
    assert read.rows[24]["memory_bank/active"] == 1.0


class _Page(HTMLParser):
    """The images and the comparison table's rows of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self._in_compare = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table" and attrs.get("class") == "compare":
            self._in_compare = True
        elif self._in_compare and tag == "tr":
            self._row = [] if attrs.get("class") != "group" else None
        elif self._in_compare and tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self.header:
                self.rows.append(self._row)
            else:
                self.header = self._row
            self._row = None
        elif tag == "table":
            self._in_compare = False


def check_report_html(path, arms: list[str]) -> None:
    """Every image the page references exists; the comparison's header names the arms and every row has
    a value for each of them."""
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    assert page.images, "no image on the page"
    for src in page.images:
        assert (path.parent / src).is_file(), src
    assert page.header[1 : 1 + len(arms)] == arms, page.header
    assert len(page.rows) >= 10
    for row in page.rows:
        assert len(row) == len(arms) + 2, row  # label, one cell per arm, how to read it
        assert all(cell for cell in row[1 : 1 + len(arms)]), row


def _check_progress_lines(stderr: str) -> None:
    """Each run announces itself, both start before either finishes (side by side), and progress lines
    never repeat a step of their run."""
    lines = [line for line in stderr.splitlines() if line.startswith("[fgdiag run]")]
    started = [i for i, line in enumerate(lines) if "training started" in line]
    finished = [i for i, line in enumerate(lines) if ": finished in" in line]
    assert len(started) == len(finished) == 2, lines
    assert max(started) < min(finished), lines
    for name in ("fixed", "seed"):
        steps = [
            int(m.group(1))
            for line in lines
            if (m := re.match(rf"\[fgdiag run\] {name}: step (\d+)/24,", line))
        ]
        assert steps, (name, lines)
        assert steps == sorted(set(steps)), (name, steps)  # strictly increasing: no step printed twice


def test_run_refuses_a_config_with_errors(tmp_path):
    bad = tmp_path / "seed.toml"
    bad.write_text(
        'model_name_or_path = "openai/clip-vit-base-patch32"\nfinegrained_logit_scale_init = 2.6592\n'
        "memory_bank_size = 128\nmemory_bank_warmup_steps = 400\nmax_steps = 240\n"
        'data_path = "missing.json"\noutput_dir = "out"\n'
    )
    result = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "o"), "--no-live"])
    assert result.exit_code == 1
    assert "FGD101" in result.output and "--force" in result.output
    missing = CliRunner().invoke(app, ["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2


def _run_cli(out, *args):
    return CliRunner().invoke(app, ["run", "--out", str(out), "--no-live", *args])


def test_a_folder_with_a_run_is_refused_and_says_what_is_there(tmp_path):
    out = tmp_path / "run"
    (out / "fixed" / "checkpoint-60").mkdir(parents=True)
    (out / "fixed" / "training.log").write_text("x")
    (out / "summary.json").write_text("{}")
    result = _run_cli(out)
    assert result.exit_code == 2, result.output
    assert "already holds a run" in result.output and "fixed/ (checkpoint-60, training.log)" in result.output
    assert "--resume" in result.output and "--overwrite" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["fixed", "summary.json"]  # untouched
    assert _run_cli(out, "--resume", "--overwrite").exit_code == 2
    resumed = _run_cli(out, "--resume")  # no run.json: not a run fgdiag started
    assert resumed.exit_code == 2 and "run.json: no such file" in resumed.output


def test_overwrite_moves_every_entry_aside_with_a_manifest(tmp_path):
    from fgdiag.runs import existing_entries, move_run_aside

    out = tmp_path / "run"
    (out / "fixed" / "checkpoint-400").mkdir(parents=True)
    (out / "fixed" / "fgdiag").mkdir()
    (out / "fixed" / "fgdiag" / "events.jsonl").write_text('{"type": "run"}\n')
    (out / "summary.json").write_text("{}")
    moved = move_run_aside(out, now=0.0)
    assert moved == out / "previous" / "19700101T000000Z" and existing_entries(out) == []
    assert (moved / "fixed" / "checkpoint-400").is_dir() and (
        moved / "fixed" / "fgdiag" / "events.jsonl"
    ).read_text()
    manifest = json.loads((moved / "MANIFEST.json").read_text())
    assert [e["state"] for e in manifest["entries"]] == ["moved", "moved"]
    assert f"mv {moved / 'fixed'} {out / 'fixed'}" in manifest["undo"]
    (out / "x").mkdir()
    assert move_run_aside(out, now=0.0).name == "19700101T000000Z-2"  # never over an earlier one


def test_resume_continues_a_killed_run_under_its_run_id(embedded, tmp_path):
    """kill -9 of `fgdiag run` and its training mid-run, then `--resume`: the arm resumes from its
    checkpoint, appends to its events under the same run id, and the report judges the whole run."""
    out = tmp_path / "run"
    args = ["--max_steps", "16", "--save_steps", "4", "--logging_steps", "2", "--per_device_train_batch_size",
            "8", "--gradient_accumulation_steps", "1", "--memory_bank_warmup_steps", "2"]  # fmt: skip
    cmd = [sys.executable, "-m", "fgdiag.cli.app", "run", "--out", str(out), "--no-live", "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    first = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while (
        not (out / "fixed" / "checkpoint-8").is_dir() and first.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    events = out / "fixed" / "fgdiag" / "events.jsonl"
    killed_at = max(json.loads(line)["step"] for line in events.read_text().splitlines())
    assert killed_at < 16, "the run finished before it could be killed"
    again = subprocess.run(
        [*cmd[:6], "--resume", *cmd[6:]], env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode in (0, 1), again.stderr[-3000:]
    assert "fixed: training resumed" in again.stderr
    records = [json.loads(line) for line in events.read_text().splitlines()]
    plan = json.loads((out / "run.json").read_text())
    assert {r["run_id"] for r in records} == {plan["arms"]["fixed"]}
    runs = [r for r in records if r["type"] == "run"]
    assert len(runs) == 2 and runs[1]["info"]["resumed_from_step"] >= 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"]["fixed"]["last_step"] == 16
    # the tiny arm's losses sit above chance: whether FGD602 has enough points to fire depends on where the
    # kill landed (steps logged again count in its window), and the exit code follows the error findings
    errors = [f for f in summary["runs"]["fixed"]["findings"] if f["severity"] == "error"]
    assert again.returncode == (1 if errors else 0), again.stderr[-3000:]
    assert "[fgdiag run] resumed at" in (out / "fixed" / "training.log").read_text()
    assert not list(events.parent.glob("events.*.jsonl"))  # nothing moved aside: the same run went on
