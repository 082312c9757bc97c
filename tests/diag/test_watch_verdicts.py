"""Verdicts, exit codes and the run-level findings through the real CLI and read_log: a log that ends in a
crash is CRASHED (FGD702, exit 1), a crash the log trained on after is `recovered`; input with nothing to
read exits 2 naming the formats tried; skipped fp16 steps, a bank that never switched on or whose clock never
moved; absurd scales (710, a clamp of 1000) give findings, not tracebacks, in watch, report and run; one
finding per code and step for the seed's heads and for an events.jsonl that already holds the callback's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgdiag import events as ev
from fgdiag import read_log
from fgdiag.cli.app import app
from fgdiag.diagnostic import Finding, Severity
from fgdiag.runs import RunResult, comparison, judge, summary_json

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
H = ev.head_metric


def cli(*args: str):
    return CliRunner().invoke(app, [*args])


def watch_json(path: Path, *args: str) -> tuple[int, dict | None, str]:
    result = cli("watch", str(path), "--once", "--json", *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None, result.stderr


def jsonl(tmp_path: Path, records: list[dict], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_a_log_that_ends_in_a_crash_is_crashed_and_exits_1():
    rc, data, _ = watch_json(CORPUS / "hf_rank_prefix_oom_end.log")  # rank 1 dies of CUDA OOM at step ~318
    assert rc == 1 and data["verdict"] == "crashed" and data["recovered"] is False
    (crash,) = [f for f in data["findings"] if f["code"] == "FGD702"]
    assert crash["severity"] == "error" and "rank 1" in crash["message"]
    assert data["verdict_detail"] == f"ended in a crash at step {crash['step']}"


def test_a_crash_followed_by_a_run_that_trains_on_is_recovered():
    rc, data, _ = watch_json(CORPUS / "hf_oom_restart_healthy.log")  # OOM at step 0, the retry trains to 390
    assert rc == 0 and data["verdict"] == "healthy" and data["recovered"] is True
    assert data["verdict_detail"] == "recovered after CUDA out of memory at step 0"
    assert data["crashed"]["step"] == 0  # the crash itself is still reported
    rc, data, _ = watch_json(CORPUS / "vad_oom_restart_above_chance_collapse.log")
    assert rc == 1 and data["verdict"] == "failing" and data["recovered"] is True  # judged by its findings


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "an empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "none of them a training line"),
        (
            b"TensorBoard 2.16.2 at http://gpu-node-3:6006/ (Press CTRL+C to quit)\n",
            "none of them a training",
        ),
    ],
)
def test_nothing_to_read_exits_2_naming_the_formats_tried(tmp_path, content, what):
    path = tmp_path / "input.log"
    path.write_bytes(content)
    rc, error, stderr = watch_json(path)
    assert rc == 2 and what in stderr and "formats tried" in stderr and "open_clip" in stderr
    assert error["exit_code"] == 2 and error["path"] == str(path) and len(error["formats_tried"]) >= 6
    plain = cli("watch", str(path), "--once")
    assert plain.exit_code == 2 and plain.stdout == ""
    rc, error, _ = watch_json(tmp_path / "missing.log")
    assert rc == 2 and "no such file" in error["error"]


def test_skipped_fp16_steps_beyond_the_calibration():
    many = read_log(CORPUS / "deepspeed_fp16_overflow_many.log")  # skipped=104 at step 500
    (hit,) = [f for f in many.findings if f.code == "FGD703"]
    assert hit.severity is Severity.WARNING and "loss scale 256" in hit.message
    healthy = read_log(CORPUS / "deepspeed_fp16_healthy.log")  # the first 6 while the scale calibrates
    assert "FGD703" not in {f.code for f in healthy.findings}
    assert healthy.rows[500][ev.SKIPPED_STEPS] == 6


def test_a_finished_run_whose_bank_never_switched_on():
    read = read_log(CORPUS / "ours_bank_warmup_beyond_run.log")  # warm-up 1000 in a 60-step run
    (hit,) = [f for f in read.findings if f.code == "FGD201"]
    assert hit.step == 60 and "never switched on" in hit.message


def test_a_bank_clock_that_never_moves_means_no_fgclip_callback(tmp_path):
    def records(clock):
        out = [ev.run_record({"memory_bank_size": 128, "memory_bank_warmup_steps": 20})]
        for s in range(2, 42, 2):
            row = {ev.MB_OPTIMIZER_STEPS: clock(s), ev.MB_SIZE: 128.0, ev.MB_ACTIVE: 0.0, ev.LOSS: 2.0}
            out.append(ev.metrics_record(s, row, when=1.0))
        return out

    stuck = read_log(jsonl(tmp_path, records(lambda s: 0.0)))
    (hit,) = [f for f in stuck.findings if "FGCLIPCallback" in f.message]
    assert (
        hit.code == "FGD201"
        and hit.step == 8
        and "stays at 0 while the run went from step 2 to 8" in hit.message
    )
    moving = read_log(jsonl(tmp_path, records(float)))
    assert not [f for f in moving.findings if "FGCLIPCallback" in f.message]


def absurd(tmp_path: Path) -> Path:
    rows = [
        ev.run_record({"logit_scale_max": 1000.0, "planned_steps": 40}),
        *(
            ev.metrics_record(
                s,
                {
                    ev.LOSS: 5.0,
                    H(ev.HEAD_LOSS, "region"): 5.0,
                    H(ev.LOGIT_SCALE, "region"): 710.0,
                    H(ev.LOGIT_SCALE, "global"): 4.6052,
                    H(ev.LOGITS_MIN, "region"): -1.0,
                    H(ev.LOGITS_MAX, "region"): 1.0,
                },
                when=1.0,
            )
            for s in range(2, 42, 2)
        ),
    ]
    return jsonl(tmp_path, rows)


def test_absurd_scales_give_findings_not_overflow_errors(tmp_path):
    path = absurd(tmp_path)
    rc, data, stderr = watch_json(path)
    assert rc == 1 and "Traceback" not in stderr
    messages = " ".join(f["message"] for f in data["findings"] if f["code"] == "FGD101")
    assert "710" in messages and "inf" in messages  # exp(710) overflows a float: printed as inf
    report = cli("report", str(path), "--out", str(tmp_path / "report"))
    assert report.exit_code in (0, 1), report.exception
    assert (tmp_path / "report" / "report.md").is_file()
    run = judge(RunResult("seed", tmp_path, 0, 1.0, tmp_path / "training.log", path), None)
    table = {row.key: row.cells for row in comparison({"seed": run})}
    assert table["region_scale"] != ("-",)  # the absurd scale is shown, not dropped or raised
    assert summary_json({"seed": run}, tmp_path)["runs"]["seed"]


def test_heads_sharing_a_cause_make_one_finding_per_step(tmp_path):
    def row(s):
        return {
            H(ev.LOGIT_SCALE, h): v
            for h, v in (("global", 4.6052), ("region", 2.65625), ("hardneg", 2.65625))
        }

    records = [ev.metrics_record(s, row(s), when=1.0) for s in range(5, 30, 5)]
    read = read_log(jsonl(tmp_path, records))
    (hit,) = [f for f in read.findings if f.code == "FGD101"]
    assert hit.step == 5 and hit.message.startswith("region and hardneg logit scale 2.656250")
    # the callback already wrote its own FGD101 at step 5, in older words: the re-judged one is the same
    said = Finding(
        "FGD101", Severity.ERROR, "region logit scale 2.656250 is CLIP's init (callback)", "step 5", "", 5
    )
    again = read_log(jsonl(tmp_path, [records[0], ev.finding_record(said), *records[1:]]))
    assert [f.message for f in again.findings if f.code == "FGD101"] == [said.message]


def test_a_target_profile_judges_only_runs_of_its_schedule(tmp_path):
    old_preset = read_log(CORPUS / "ours_healthy_s0.log", targets="embedded")  # peak lr 2e-3, profile 2e-5
    reasons = " ".join(n["reason"] for n in old_preset.not_judged if n["code"] == "FGD604")
    assert "peaks at 0.00197" in reasons and "another schedule" in reasons
    assert "FGD604" not in {f.code for f in old_preset.findings}

    def fine_tune(s):
        return {H(ev.HEAD_LOSS, "region"): 2.0, ev.LEARNING_RATE: 2e-5 * min(1.0, s / 10), ev.LOSS: 3.0}

    records = [ev.metrics_record(s, fine_tune(s), when=1.0) for s in range(5, 65, 5)]
    read = read_log(jsonl(tmp_path, records), targets="embedded")  # its schedule, and it misses < 0.8 @ 50
    assert [f.evidence["point"] for f in read.findings if f.code == "FGD604"] == [50]
    assert math.isfinite(read.target_results[0]["value"])
