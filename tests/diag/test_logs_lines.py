"""Our human lines: what the live callback prints (fgdiag.wire) is exactly what the reader parses."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgdiag import events as ev
from fgdiag.logs.reader import LogReader
from fgdiag.wire import (
    format_logit_scale,
    format_memory_bank_enabled,
    format_step_summary,
    parse_step_summary,
)

H = ev.head_metric
FINITE = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
VALUE = st.one_of(FINITE, st.sampled_from([math.nan, math.inf, -math.inf]))
NAMES = [
    ev.LOSS,
    ev.GRAD_NORM,
    ev.LEARNING_RATE,
    ev.EPOCH,
    ev.MB_FILL,
    ev.MB_SIZE,
    ev.REGIONS_VALID,
    ev.REGIONS_ZERO_NORM,
    ev.REGIONS_NONFINITE,
    H(ev.GRAD_NORM_GROUP, "heads_decay"),
    *(H(b, h) for b in (ev.HEAD_LOSS, ev.LOGIT_SCALE, ev.LOGITS_STD, ev.COS_STD) for h in ev.HEADS),
]
# printed precision per metric family (the summary line is for people; JSONL keeps full precision)
TOL = {
    ev.LOSS: 5e-5,
    ev.HEAD_LOSS: 5e-5,
    ev.LOGIT_SCALE: 5e-7,
    ev.LOGITS_STD: 5e-5,
    ev.COS_STD: 5e-6,
    ev.LOGITS_MIN: 5e-5,
    ev.LOGITS_MAX: 5e-5,
    ev.EPOCH: 5e-4,
}


def close(name: str, a: float, b: float) -> bool:
    if math.isnan(a) or math.isinf(a):
        return (math.isnan(a) and math.isnan(b)) or a == b
    tol = TOL.get(name.split("/")[0])
    if tol is not None:
        return abs(a - b) <= tol
    return math.isclose(a, b, rel_tol=6e-4, abs_tol=1e-9) or abs(a - b) <= 0.5  # .4g / .3e / .0f fields


@settings(max_examples=500, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**7),
    st.dictionaries(st.sampled_from(NAMES), VALUE),
    st.booleans(),
    st.one_of(st.none(), st.integers(min_value=2, max_value=70000)),
)
def test_logs_summary_line_roundtrip(step, metrics, active, k):
    metrics[ev.MB_ACTIVE] = 1.0 if active else 0.0
    if k is not None and H(ev.HEAD_LOSS, "region") in metrics:
        metrics[H(ev.CANDIDATES, "region")] = float(k)
    line = format_step_summary(step, metrics)
    parsed_step, parsed = parse_step_summary(line)
    assert parsed_step == step
    for name, value in metrics.items():
        if name == ev.MB_SIZE and ev.MB_FILL not in metrics:
            continue  # the bank size prints only next to its fill
        if name == ev.MB_FILL and not math.isfinite(value):
            assert name in parsed
            continue
        assert name in parsed, (name, line)
        assert close(name, value, parsed[name]), (name, value, parsed[name], line)
    if k is not None and H(ev.HEAD_LOSS, "region") in metrics:
        assert parsed[H(ev.CHANCE, "region")] == pytest.approx(math.log(k))


def test_logs_summary_line_shape_and_unknown_segments():
    metrics = {
        ev.LOSS: 2.31,
        H(ev.HEAD_LOSS, "region"): 0.84,
        H(ev.CANDIDATES, "region"): 132.0,
        H(ev.LOGIT_SCALE, "region"): 4.6052,
        ev.MB_ACTIVE: 1.0,
        ev.MB_FILL: 128.0,
        ev.MB_SIZE: 128.0,
    }
    line = format_step_summary(40, metrics)
    assert line.startswith("[fgdiag] step 40 | loss 2.3100 | region 0.8400 (K=132, ln K=4.8828) | ")
    assert "scale region=4.605200" in line and "mb on 128/128" in line
    step, parsed = parse_step_summary(line + " | future_segment x=1")
    assert step == 40 and parsed[ev.MB_FILL] == 128.0
    assert parse_step_summary("no summary here") is None
    with pytest.raises(ValueError, match="segment 'loss'"):
        parse_step_summary("[fgdiag] step 3 | loss abc")


def test_logs_scale_and_bank_lines_read_back():
    text = (
        "\n".join(
            [
                format_logit_scale("region", math.log(100)),
                format_logit_scale("global", 2.6592),
                format_logit_scale("hardneg", math.nan),
                format_memory_bank_enabled(7, 4, 132),
                format_memory_bank_enabled(9),
            ]
        )
        + "\n"
    )
    assert text.splitlines()[0] == "logit_scale (finegrained): 4.605170 (exp=100.0000)"
    assert text.splitlines()[3] == "[Memory Bank] enabled @ training_step 7 (candidates 4 -> 132)"
    reader = LogReader()
    reader.feed(text.encode())
    reader.flush(final=True)
    rows, events = reader.drain()
    row = rows[0][1]
    assert row[H(ev.LOGIT_SCALE, "region")] == pytest.approx(4.60517)
    assert row[H(ev.LOGIT_SCALE_EXP, "global")] == pytest.approx(math.exp(2.6592), abs=1e-4)
    assert math.isnan(row[H(ev.LOGIT_SCALE, "hardneg")])
    assert [e["data"] for e in events] == [
        {"training_step": 7, "candidates_before": 4, "candidates_after": 132},
        {"training_step": 9},
    ]
    assert reader.unparsed == 0
