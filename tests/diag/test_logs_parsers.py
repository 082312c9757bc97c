"""Each log format through `read_log`: steps, metric names from events.py, events, and the odd cases
(tqdm on the same line, rank and host prefixes, mojibake, tracebacks, trainer_state.json, JSONL)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from logs_fixtures import hf_trainer_log, mojibake, openclip_log, our_log, vad_group, vad_log

from fgdiag import events as ev
from fgdiag import read_log
from fgdiag.logs.reader import LogReader

REGION = ev.head_metric(ev.HEAD_LOSS, "region")
K = ev.head_metric(ev.CANDIDATES, "region")
SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_ee5b119e27431efd.txt"


def write(tmp_path: Path, text: str, name: str = "train.log") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("bars", ["cr", "lines", "none"])
def test_logs_hf_trainer_steps_from_bar_or_count(tmp_path, bars):
    read = read_log(write(tmp_path, hf_trainer_log(steps=40, logging_steps=10, bars=bars)))
    expected = [10, 20, 30, 40] if bars != "none" else [1, 2, 3, 4]
    assert read.steps == expected
    second = read.rows[expected[1]]
    assert second[ev.LOSS] == pytest.approx(1.5)
    assert second[ev.GRAD_NORM] == pytest.approx(1.5)
    assert ev.LEARNING_RATE in second and ev.EPOCH in second
    assert [e["kind"] for e in read.events] == [ev.EVENT_TRAIN_END]
    assert read.events[0]["data"]["train_runtime"] == pytest.approx(12.5)
    assert "hf-trainer" in read.formats
    if bars != "none":
        assert read.run_info["planned_steps"] == 40


@pytest.mark.parametrize("bars", ["cr", "lines", "none"])
def test_logs_hf_evaluation_lines_are_no_logging_steps(tmp_path, bars):
    """The Trainer evaluates at the step it has just logged and prints the evaluation's dict after that
    step's: it is no step of its own (counted as one, every later step moved by one, and the bulk reader
    stopped at the first evaluation)."""
    original = hf_trainer_log(steps=40, logging_steps=10, bars=bars)
    lines = original.split("\n")
    at = next(i for i, line in enumerate(lines) if "'epoch': 0.50" in line)
    lines.insert(
        at + 1, "{'eval_loss': 1.9, 'eval_runtime': 1.5, 'eval_samples_per_second': 3.2, 'epoch': 0.5}"
    )
    kw = {"logging_steps": 10} if bars == "none" else {}
    counted = read_log(write(tmp_path, "\n".join(lines)), **kw)
    base = read_log(write(tmp_path, original, "base.log"), **kw)
    assert counted.steps == [10, 20, 30, 40]
    assert (counted.rows, counted.unparsed, counted.lines) == (base.rows, base.unparsed, base.lines + 1)
    text = hf_trainer_log(steps=400, logging_steps=1, bars=bars)
    text = text.replace(
        "'epoch': 0.50}", "'epoch': 0.50}\n{'eval_loss': 1.9, 'eval_runtime': 1.5, 'epoch': 0.5}"
    )
    fast, slow = LogReader(), LogReader(fast=False)
    for reader in (fast, slow):
        reader.feed(text.encode())
        reader.flush(final=True)
    rows = fast.drain()[0]
    assert rows == slow.drain()[0]
    assert [s for s, _ in rows] == list(range(1, 401)) if bars != "none" else len(rows) == 400


def test_logs_hf_logging_steps_option_counts_lines(tmp_path):
    read = read_log(
        write(tmp_path, hf_trainer_log(steps=40, logging_steps=10, bars="none")), logging_steps=10
    )
    assert read.steps == [10, 20, 30, 40]


def test_logs_hf_values_nan_inf_numpy_and_json(tmp_path):
    text = (
        "{'loss': nan, 'grad_norm': inf, 'learning_rate': np.float64(1.5e-05), 'epoch': 0.1}\n"
        '{"loss": 1.25, "grad_norm": NaN, "learning_rate": 1e-05, "epoch": 0.2}\n'
        "{'loss': tensor(0.75, device='cuda:0'), 'grad_norm': -inf, 'epoch': 0.3}\n"
    )
    read = read_log(write(tmp_path, text))
    rows = [read.rows[s] for s in read.steps]
    assert math.isnan(rows[0][ev.LOSS]) and rows[0][ev.GRAD_NORM] == math.inf
    assert rows[0][ev.LEARNING_RATE] == pytest.approx(1.5e-5)
    assert rows[1][ev.LOSS] == 1.25 and math.isnan(rows[1][ev.GRAD_NORM])
    assert rows[2][ev.LOSS] == 0.75 and rows[2][ev.GRAD_NORM] == -math.inf
    assert read.unparsed == 0
    assert any(f.code == "FGD701" and f.step == read.steps[0] for f in read.findings)


def test_logs_trainer_state_json(tmp_path):
    state = {
        "max_steps": 240,
        "logging_steps": 10,
        "global_step": 30,
        "log_history": [
            {"loss": 2.5, "grad_norm": 6784.0, "learning_rate": 1e-6, "epoch": 0.1, "step": 10},
            {"loss": 2.1, "grad_norm": float("nan"), "learning_rate": 2e-6, "epoch": 0.2, "step": 20},
            {"eval_loss": 3.0, "step": 20},
            {"train_runtime": 100.0, "train_loss": 2.0, "epoch": 0.3, "step": 30},
        ],
    }
    path = tmp_path / "checkpoint-30" / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(json.dumps(state))
    read = read_log(tmp_path)  # a run directory resolves to the newest checkpoint's trainer_state.json
    assert read.steps == [10, 20]
    assert read.run_info["planned_steps"] == 240
    assert math.isnan(read.rows[20][ev.GRAD_NORM])
    assert [e["kind"] for e in read.events] == [ev.EVENT_TRAIN_END]
    assert any(f.code == "FGD701" and f.step == 20 for f in read.findings)
    assert list(read.metrics.index) == [10, 20]


def test_logs_openclip_exp_space_scale(tmp_path):
    read = read_log(write(tmp_path, openclip_log(steps=30, per_step=256)))
    assert read.steps[:3] == [1, 2, 3]
    row = read.rows[1]
    assert row[ev.head_metric(ev.LOGIT_SCALE_EXP, "global")] == pytest.approx(15.788, abs=1e-3)
    assert row[ev.head_metric(ev.LOGIT_SCALE, "global")] == pytest.approx(math.log(15.788), abs=1e-4)
    assert row[ev.LOSS] == pytest.approx(5.4)  # the running mean in parentheses is not the value
    assert row[ev.head_metric(ev.HEAD_LOSS, "global")] == pytest.approx(5.4)
    assert read.rows[30][ev.head_metric(ev.LOGIT_SCALE_EXP, "global")] == pytest.approx(100.0)


def test_logs_vad_block_metrics_and_candidates(tmp_path):
    read = read_log(write(tmp_path, vad_log(steps=12, ga=4, bank_at=5)))
    assert read.steps == list(range(1, 13))
    row = read.rows[2]
    assert row[REGION] == pytest.approx(1.38)
    assert row[K] == 4.0 and row[ev.head_metric(ev.CHANCE, "region")] == pytest.approx(math.log(4))
    assert row[ev.head_metric(ev.LOGIT_SCALE, "region")] == pytest.approx(4.59375)
    assert row[ev.head_metric(ev.LOGITS_MAX, "region")] == pytest.approx(3.7188)
    assert row[ev.head_metric(ev.COS_STD, "region")] == pytest.approx(2.8438 / math.exp(4.59375), rel=1e-4)
    assert row[ev.LEARNING_RATE] == pytest.approx(4.17e-7)
    late = read.rows[10]
    assert late[K] == 132.0 and late[ev.MB_ACTIVE] == 1.0 and late[ev.MB_FILL] == 128.0
    assert read.rows[10][ev.GRAD_NORM] == 908.0
    enabled = [e for e in read.events if e["kind"] == ev.EVENT_MB_ENABLED]
    assert len(enabled) == 1 and enabled[0]["data"]["training_step"] == 20
    assert read.unparsed == 0


def test_logs_vad_mojibake_reads_like_utf8(tmp_path):
    text = vad_log(steps=10, ga=2, bank_at=4, zero_every=3)
    plain = read_log(write(tmp_path, text, "utf8.log"))
    for errors in ("ignore", "replace"):
        broken = read_log(write(tmp_path, mojibake(text, errors), f"{errors}.log"))
        assert broken.rows == plain.rows
        assert [e["kind"] for e in broken.events] == [e["kind"] for e in plain.events]
        assert broken.unparsed == plain.unparsed
        assert "已" in broken.events[0]["message"]  # messages are repaired for display


def test_logs_vad_head_variant_two_queues_and_mb_forward(tmp_path):
    lines = vad_group(3, 10, valid=4, bank=96, variant="head")
    lines.insert(9, "[MB-FORWARD] 使用96个历史负样本 | Batch内: 4 | 总负样本: 100")
    read = read_log(write(tmp_path, mojibake("\n".join(lines) + "\n")))
    row = read.rows[4]
    assert row[ev.MB_FILL] == 96.0 and row[ev.MB_SIZE] == 128.0
    assert row[K] == 100.0
    assert read.unparsed == 0


def test_logs_region_zero_means_no_region_and_zero_norms(tmp_path):
    lines = vad_group(0, 1, region=0.0) + vad_group(0, 2, region=2.0, valid=5, zero=2)
    read = read_log(write(tmp_path, "\n".join(lines) + "\n"))
    row = read.rows[1]
    assert row[REGION] == 2.0  # the fork's 0.0 ("no valid region") is skipped, not averaged
    assert row[ev.REGIONS_ZERO_NORM] == pytest.approx(1.0)  # mean of 0 and 2 zero-norm features
    assert any(f.code == "FGD301" for f in read.findings)


def test_logs_fast_path_equals_line_path():
    text = (
        vad_log(steps=15, ga=3, bank_at=6, zero_every=4)
        + vad_log(steps=4, ga=2, variant="head", bank_at=1)
        + "\n".join(vad_group(2, 99, std="nan") + vad_group(2, 100, region=0.0))
        + "\n"
    )
    data = text.encode("utf-8")
    results = []
    for fast in (True, False):
        reader = LogReader(fast=fast)
        for i in range(0, len(data), 7919):  # odd chunk sizes split groups across feeds
            reader.feed(data[i : i + 7919])
        reader.flush(final=True)
        rows, events = reader.drain()
        results.append((rows, events, reader.lines, reader.unparsed, reader.blank))
    (rows_a, *rest_a), (rows_b, *rest_b) = results
    assert rest_a == rest_b
    assert [s for s, _ in rows_a] == [s for s, _ in rows_b]
    for (_, a), (_, b) in zip(rows_a, rows_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-12, nan_ok=True), key


def test_logs_our_lines_and_bank_event(tmp_path):
    read = read_log(write(tmp_path, our_log(steps=40, every=5, bank_at=7)))
    assert read.steps == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert read.rows[0][ev.head_metric(ev.LOGIT_SCALE, "hardneg")] == pytest.approx(4.6052)
    assert read.rows[10][K] == 132.0 and read.rows[5][K] == 4.0
    enabled = [e for e in read.events if e["kind"] == ev.EVENT_MB_ENABLED]
    assert enabled[0]["data"] == {"training_step": 7, "candidates_before": 4, "candidates_after": 132}
    assert read.formats == ["fgdiag"]


def test_logs_jsonl_events_roundtrip(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = ev.EventWriter(path)
    writer.write(
        ev.run_record({"planned_steps": 100, "memory_bank_size": 128, "memory_bank_warmup_steps": 5})
    )
    for step in (10, 20):
        writer.write(ev.metrics_record(step, {ev.LOSS: 1.0 / step, ev.GRAD_NORM: float("nan")}))
    writer.write(ev.event_record(20, ev.EVENT_MB_ENABLED, "bank on", {"candidates_after": 132}))
    writer.close()
    read = read_log(tmp_path)  # a run directory resolves to its events.jsonl
    assert read.steps == [10, 20]
    assert math.isnan(read.rows[10][ev.GRAD_NORM])
    assert read.run_info["memory_bank_size"] == 128
    assert read.events[0]["kind"] == ev.EVENT_MB_ENABLED
    codes = {f.code for f in read.findings}
    assert "FGD701" in codes and "FGD201" in codes  # bank expected by step 7, first seen at 20


def test_logs_rank_prefix_dedup_and_host_prefix(tmp_path):
    lines = []
    for s in (10, 20):
        for rank in (0, 1):
            lines.append(
                f"[rank{rank}]: {{'loss': {s / 10 + rank}, 'grad_norm': 1.0, 'learning_rate': 1e-5}}"
            )
    lines.append("[rank1]: Traceback (most recent call last):")
    read = read_log(write(tmp_path, "\n".join(lines) + "\n"), logging_steps=10)
    assert [read.rows[s][ev.LOSS] for s in read.steps] == [1.0, 2.0]  # rank 1 dropped
    assert [e["kind"] for e in read.events] == [ev.EVENT_CRASH]
    hosted = "\n".join(f"10.0.0.{h}: {{'loss': {h}.5, 'grad_norm': 2.0}}" for h in (1, 2)) + "\n"
    read = read_log(write(tmp_path, hosted, "hosts.log"))
    assert [read.rows[s][ev.LOSS] for s in read.steps] == [1.5]


def test_logs_traceback_and_oom_become_events(tmp_path):
    read = read_log(write(tmp_path, vad_log(steps=8, ga=2, crash_at=5)))
    assert read.last_step == 6
    crash = [e for e in read.events if e["kind"] in (ev.EVENT_CRASH, ev.EVENT_OOM)]
    assert len(crash) == 1 and crash[0]["kind"] == ev.EVENT_OOM and crash[0]["step"] == 6
    assert "CUDA out of memory" in crash[0]["message"]
    assert read.unparsed == 0
    text = (
        "{'loss': 1.0}\nTraceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'video_path'\n"
    )
    read = read_log(write(tmp_path, text, "keyerror.log"))
    assert read.events[-1]["kind"] == ev.EVENT_CRASH and "KeyError" in read.events[-1]["message"]
    cut = read_log(write(tmp_path, 'Traceback (most recent call last):\n  File "x.py", line 1\n', "cut.log"))
    assert cut.events[-1]["kind"] == ev.EVENT_CRASH


def test_logs_seed_document_is_read_without_crash():
    if not SEED.exists():
        pytest.skip("shared/seed is not beside this checkout")
    read = read_log(SEED)
    assert read.lines > 100
    scale = [v for s, v in read.series(ev.head_metric(ev.LOGIT_SCALE, "region"))]
    assert scale and scale[0] == pytest.approx(4.6052)  # `logit_scale (finegrained): 4.605200 (exp=100.0000)`
    assert any(e["kind"] == ev.EVENT_MB_ENABLED and e["data"]["training_step"] == 50 for e in read.events)


def test_logs_metrics_frame_columns_are_event_names(tmp_path):
    read = read_log(write(tmp_path, vad_log(steps=5, ga=2)))
    frame = read.metrics
    assert frame.index.name == "step" and list(frame.index) == read.steps
    assert all(ev.is_metric_name(c) for c in frame.columns)
    assert frame[REGION].iloc[0] == pytest.approx(1.38)


def test_logs_partial_last_line_is_read_at_end(tmp_path):
    read = read_log(write(tmp_path, "{'loss': 1.0, 'grad_norm': 1.0}\n{'loss': 0.5, 'grad_norm': 1.0}"))
    assert [read.rows[s][ev.LOSS] for s in read.steps] == [1.0, 0.5]


def test_logs_malformed_known_line_is_named(tmp_path):
    read = read_log(write(tmp_path, "  - logits_i2t: min=oops\n[fgdiag] step 3 | loss abc\n"))
    assert read.unparsed == 2
    fields = [m[1] for m in read.malformed]
    assert fields == ["logits_i2t", "[fgdiag] summary"]
    assert [m[0] for m in read.malformed] == [1, 2]


def test_logs_events_reach_the_rules_in_log_order(tmp_path):
    """The bank switching on at step 13 is judged late at step 8 (expected by 7), not at the first row."""
    read = read_log(write(tmp_path, mojibake(vad_log(steps=30, ga=4, bank_at=13))), targets="ucf")
    late = [f for f in read.findings if f.code == "FGD201"]
    assert len(late) == 1 and late[0].step == 8 and "not active at step 8" in late[0].message
