"""Property tests: whatever bytes arrive (invalid UTF-8, NUL bytes, huge lines, NaN/inf, truncated records,
known tags with broken fields), the reader never raises and never hangs; bad lines are counted unparsed."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logs_fixtures import mojibake, vad_group

from fgdiag.logs.reader import MAX_LINE, LogReader
from fgdiag.session import LogSession

GOOD = [
    "{'loss': 1.5, 'grad_norm': 2.0, 'learning_rate': 1e-05, 'epoch': 0.1}",
    "[fgdiag] step 5 | loss 1.0000",
    "logit_scale (finegrained): 4.605200 (exp=100.0000)",
    *vad_group(3, 7, bank=128),
    "Traceback (most recent call last):",
    '  File "x.py", line 3',
    "ValueError: boom",
    '{"type": "metrics", "step": 3, "metrics": {"loss": null}, "nonfinite": ["loss"]}',
    "Train Epoch: 0 [ 256/1000 (25%)] LR: 0.1 Logit Scale: 14.286 Contrastive_loss: 5.0 (5.0) Loss: 5.0 "
    "(5.0)",
    "\r 10%|█         | 1/10 [00:01<00:09,  1.00it/s]",
    "[rank1]: {'loss': 9.0}",
    "10.0.0.2: [LOSS] Total: x",
]
FRAGMENTS = st.sampled_from(
    GOOD
    + [mojibake(g) for g in GOOD]
    + [
        "nan",
        "inf",
        "-inf",
        "NaN",
        "{",
        "}",
        "'",
        '"',
        ":",
        "|",
        "=",
        "[",
        "]",
        "\r",
        "\x00",
        "\ufffd",
        "1e999",
        "np.float64(",
        "tensor(",
        "[Epoch 0][Step ",
        "[DIAG] Region batch diagnostics:",
        "  - valid_count=",
        "  - img_norms: min=",
        "[MB-FORWARD] ",
        "[Memory Bank] ",
        "@ training_step ",
        "MB: 1/",
        "{'loss': ",
    ]
)
TEXT_LINES = st.lists(
    st.one_of(FRAGMENTS, st.text(max_size=80), st.lists(FRAGMENTS, max_size=6).map("".join)), max_size=40
)
PROPERTY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_bytes(data: bytes, chunk: int = 0) -> LogSession:
    session = LogSession("property")
    if chunk:
        for i in range(0, len(data), chunk):
            session.feed(data[i : i + chunk])
    else:
        session.feed(data)
    session.flush(final=True)
    return session


@PROPERTY
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=64))
def test_logs_arbitrary_bytes_never_raise(data, chunk):
    session = read_bytes(data, chunk)
    r = session.reader
    assert 0 <= r.unparsed <= r.lines
    session.result()


@PROPERTY
@given(
    TEXT_LINES,
    st.sampled_from(["utf-8", "cp1252-mojibake", "latin-1"]),
    st.integers(min_value=0, max_value=97),
)
def test_logs_mixed_fragments_never_raise(lines, encoding, chunk):
    text = "\n".join(lines)
    if encoding == "utf-8":
        data = text.encode("utf-8", "surrogatepass")
    elif encoding == "latin-1":
        data = text.encode("latin-1", "replace")
    else:
        data = mojibake(text, "replace").encode("utf-8", "surrogatepass")
    session = read_bytes(data, chunk)
    assert session.reader.unparsed <= session.reader.lines
    for step, row in session.rows.items():
        assert isinstance(step, int) and all(isinstance(v, float) for v in row.values() if v is not None)


@PROPERTY
@given(st.lists(st.sampled_from(GOOD), min_size=1, max_size=30), st.data())
def test_logs_truncated_records_count_as_unparsed_not_errors(lines, data):
    cut = [line[: data.draw(st.integers(min_value=0, max_value=len(line)))] for line in lines]
    session = read_bytes(("\n".join(cut) + "\n").encode("utf-8"))
    assert session.reader.lines == len(cut)


def test_logs_huge_line_is_skipped_quickly():
    huge = b"{'loss': " + b"9" * (10 * 1024 * 1024) + b"}\n"
    data = (
        b"{'loss': 1.0, 'grad_norm': 1.0}\n" + huge + b"\x00" * 1000 + b"\n{'loss': 2.0, 'grad_norm': 1.0}\n"
    )
    start = time.monotonic()
    for chunk in (0, 1 << 16):
        session = read_bytes(data, chunk)
        assert [row["loss"] for _s, row in sorted(session.rows.items())] == [1.0, 2.0]
        assert session.reader.unparsed == 2  # the huge line and the NUL line
    assert time.monotonic() - start < 10
    assert len(huge) > MAX_LINE


def test_logs_nested_literal_fallback_is_bounded():
    deep = "{'loss': " + "(" * 5000 + ")" * 5000 + "}"
    reader = LogReader()
    reader.feed((deep + "\n{" + "[" * 3000 + "\n").encode())
    reader.flush(final=True)
    assert reader.unparsed == 2


GROUP = st.builds(
    lambda step, valid, region, bank, zero, variant, std, bar: vad_group(
        step,
        1,
        valid=valid,
        region=region,
        bank=bank,
        zero=min(zero, valid),
        variant=variant,
        std=std,
        bar=f"\r 5%|▏ | {step + 1}/99 [00:01<00:09, 1.0s/it]" if bar else "",
    ),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=1, max_value=7),
    st.sampled_from([0.0, 0.5, 1.38, 4.9, float("nan"), float("inf")]),
    st.sampled_from([0, 32, 96, 128]),
    st.integers(min_value=0, max_value=2),
    st.sampled_from(["legacy", "head"]),
    st.sampled_from(["2.8438", "nan", "inf", "1e-3"]),
    st.booleans(),
)
NOISE = st.sampled_from(
    [
        "",
        "=" * 100,
        "{'loss': 2.5, 'grad_norm': 3.0, 'learning_rate': 1e-06, 'epoch': 0.1}",
        "UserWarning: something",
        "[Memory Bank] ✅ 已启用 @ training_step 200",
        "[MB-FORWARD] 使用32个历史负样本 | Batch内: 4 | 总负样本: 36",
        "[rank1]: [DIAG] x",
        "  - valid_count=3 | bbox_batch_size=3",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(GROUP, NOISE.map(lambda s: [s])), min_size=1, max_size=25),
    st.sampled_from([0, 1, 7, 64, 513]),
    st.booleans(),
)
def test_logs_fast_path_matches_line_path(parts, chunk, mangle):
    text = "\n".join(line for part in parts for line in part) + "\n"
    if mangle:
        text = mojibake(text, "replace")
    data = text.encode("utf-8")
    results = []
    for fast in (True, False):
        reader = LogReader(fast=fast)
        for i in range(0, len(data), chunk or len(data) or 1):
            reader.feed(data[i : i + (chunk or len(data) or 1)])
        reader.flush(final=True)
        rows, events = reader.drain()
        results.append((rows, [(e["step"], e["kind"]) for e in events], reader.lines, reader.unparsed))
    (rows_a, *rest_a), (rows_b, *rest_b) = results
    assert rest_a == rest_b
    assert [s for s, _ in rows_a] == [s for s, _ in rows_b]
    for (_, a), (_, b) in zip(rows_a, rows_b, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12, nan_ok=True), key
