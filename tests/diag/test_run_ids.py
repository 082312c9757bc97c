"""Runs are never mixed: one events file per run, a run id in every record, the reader judging one run id at
a time (the newest by default, or the one asked for), whatever the chunks the file arrives in."""

from __future__ import annotations

import json
import math

import pytest

from fgdiag import events as ev
from fgdiag import read_log
from fgdiag.session import LogSession


def _write_run(writer: ev.EventWriter, steps: range, region: float, warmup: int) -> None:
    info = {"planned_steps": 100, "memory_bank_size": 128, "memory_bank_warmup_steps": warmup}
    writer.write(ev.run_record(info))
    for step in steps:
        writer.write(
            ev.metrics_record(step, {ev.LOSS: region, ev.head_metric(ev.HEAD_LOSS, "region"): region})
        )


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_record_carries_the_run_id_and_a_new_run_moves_the_old_file_aside(tmp_path):
    path = tmp_path / "fgdiag" / "events.jsonl"
    first = ev.EventWriter(path, run_id="20250101T000000Z-aaaaaa")
    _write_run(first, range(5, 30, 5), 1.0, 5)
    first.close()
    assert {r["run_id"] for r in _records(path)} == {"20250101T000000Z-aaaaaa"}
    before = path.read_bytes()

    second = ev.EventWriter(path)  # a new run into the same folder
    assert second.moved_aside == path.with_name("events.20250101T000000Z-aaaaaa.jsonl")
    assert second.moved_aside.read_bytes() == before  # moved whole, nothing deleted
    _write_run(second, range(5, 15, 5), 2.0, 5)
    second.close()
    ids = {r["run_id"] for r in _records(path)}
    assert ids == {second.run_id} and second.run_id != "20250101T000000Z-aaaaaa"

    resumed = ev.EventWriter(path, resume=True)  # a resumed run continues its own file and id
    assert resumed.moved_aside is None and resumed.run_id == second.run_id
    resumed.write(ev.metrics_record(20, {ev.LOSS: 2.0}))
    resumed.close()
    assert [r["step"] for r in _records(path) if r["type"] == "metrics"] == [5, 10, 20]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "events.20250101T000000Z-aaaaaa.jsonl",
        "events.jsonl",
    ]


def _two_runs_in_one_file(tmp_path):
    """What an older fgdiag left behind: a second run appended to the first one's file."""
    path = tmp_path / "events.jsonl"
    a = ev.EventWriter(tmp_path / "a.jsonl", run_id="run-a")
    _write_run(a, range(5, 205, 5), 5.0, 100_000)  # a bank that never switches on, a loss at 5
    a.write(ev.event_record(200, ev.EVENT_TRAIN_END, "training finished"))
    a.close()
    b = ev.EventWriter(tmp_path / "b.jsonl", run_id="run-b")
    _write_run(b, range(5, 55, 5), 0.5, 5)
    b.close()
    path.write_bytes((tmp_path / "a.jsonl").read_bytes() + (tmp_path / "b.jsonl").read_bytes())
    return path


def test_reader_judges_the_newest_run_only(tmp_path):
    path = _two_runs_in_one_file(tmp_path)
    read = read_log(path)
    assert read.steps == list(range(5, 55, 5))  # run b's rows, none of run a's steps 55..200
    assert all(read.rows[s][ev.LOSS] == 0.5 for s in read.steps)
    assert read.run_info["run_id"] == "run-b" and read.run_info["memory_bank_warmup_steps"] == 5
    assert not [e for e in read.events if e["kind"] == ev.EVENT_TRAIN_END]  # run a's end is not b's
    assert not [e for e in read.events if e["kind"] == ev.EVENT_RESUME]  # b starting over is no resume
    assert any("2 runs in this file (run-a, run-b): judged run-b" in n for n in read.notes)
    both = read_log(path, run_id="run-a")
    assert both.steps == list(range(5, 205, 5)) and both.run_info["run_id"] == "run-a"
    assert [f.message for f in read.findings if "100000" in f.message] == []  # run a's warm-up
    assert [f.step for f in both.findings if "100000" in f.message] == [5]
    missing = read_log(path, run_id="nope")
    assert not missing.rows and "run id nope not found" in " ".join(missing.notes)


@pytest.mark.parametrize("chunk", [7, 100, 4096])
def test_newest_run_whatever_the_chunks(tmp_path, chunk):
    path = _two_runs_in_one_file(tmp_path)
    whole = read_log(path)
    session = LogSession(str(path))
    data = path.read_bytes()
    for i in range(0, len(data), chunk):
        session.feed(data[i : i + chunk])
    session.flush(final=True)
    part = session.result()
    assert part.rows == whole.rows
    assert [(f.code, f.step) for f in part.findings] == [(f.code, f.step) for f in whole.findings]


def test_schema_errors_name_the_field(tmp_path):
    path = tmp_path / "events.jsonl"
    good = json.dumps({**ev.metrics_record(5, {ev.LOSS: 1.0}), "run_id": "r"})
    bad = json.dumps({"type": "metrics", "step": "five", "metrics": {}, "run_id": "r"})
    path.write_text(good + "\n" + bad + "\n")
    read = read_log(path)
    assert read.steps == [5] and math.isclose(read.rows[5][ev.LOSS], 1.0)
    (line, _field, detail), *_ = read.malformed
    assert line == 2 and "$.step" in detail
