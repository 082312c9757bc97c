"""Fuzz: annotation files through the data audit (and check-config's data sizing). Records are built from
the image and video schemas' own keys with values of every JSON type and numbers at the edges (boxes of
strings, nested lists, NaN, 400-digit integers), written as a JSON array or JSON Lines, sometimes cut.
The audit returns its report, or raises DataFormatError naming the file (exit 2); under --policy error a
BoxValidationError (exit 1). Nothing else may escape."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st

from fgclip.data.audit import audit
from fgclip.data.errors import BoxValidationError, DataFormatError
from fgdiag.facts.values import InputError
from fgdiag.static.data_source import count_records

from .strategies import JSON_VALUES, budget

WORK = Path(tempfile.mkdtemp(prefix="fgdiag-fuzz-audit-"))
EDGE = st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, 1.0, 2.0, 0.5, 1e308, 10**400, -(10**30)])
COORD = st.one_of(st.floats(-0.2, 1.2), st.floats(-0.2, 1.2), st.floats(-0.2, 1.2), EDGE, JSON_VALUES)
BOX = st.one_of(
    st.lists(COORD, min_size=4, max_size=4),
    st.lists(COORD, min_size=4, max_size=4),
    st.lists(COORD, max_size=6),
    JSON_VALUES,
)
WORDS = st.sampled_from(["red circle", "a man", "", "x"])
TEXT = st.one_of(WORDS, WORDS, st.text(max_size=20), JSON_VALUES)


def image_record() -> st.SearchStrategy:
    region = st.fixed_dictionaries(
        {"bbox": BOX},
        optional={
            "short_expr": TEXT,
            "long_expr": TEXT,
            "flag_short_neg": JSON_VALUES,
            "short_expr_negs": st.one_of(st.dictionaries(st.text(max_size=3), TEXT, max_size=3), JSON_VALUES),
        },
    )
    base = st.fixed_dictionaries(
        {"f_path": WORDS, "caption": WORDS, "bbox_info": st.lists(region, max_size=4)},
        optional={"short_caption": TEXT},
    )
    return bent(base, {"f_path": TEXT, "caption": TEXT, "bbox_info": JSON_VALUES})


def video_record() -> st.SearchStrategy:
    keyframe = st.fixed_dictionaries({"frame": st.one_of(st.integers(-5, 100), JSON_VALUES), "bbox": BOX})
    base = st.fixed_dictionaries(
        {
            "video": WORDS,
            "global_caption": WORDS,
            "region_captions": st.lists(WORDS, max_size=3),
            "box_infos": st.lists(st.lists(keyframe, max_size=3), max_size=3),
        },
        optional={"timestamps": st.one_of(st.none(), st.lists(st.floats(-1, 100), max_size=3), JSON_VALUES)},
    )
    return bent(base, {"video": TEXT, "region_captions": JSON_VALUES, "box_infos": JSON_VALUES})


def bent(base: st.SearchStrategy, odd: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A well-formed record, one in four times with a field replaced or removed."""

    @st.composite
    def draw_record(draw: st.DrawFn) -> dict:
        record = draw(base)
        if draw(st.integers(0, 3)) == 0:
            key = draw(st.sampled_from(sorted(odd)))
            if draw(st.booleans()):
                record[key] = draw(odd[key])
            else:
                record.pop(key, None)
        return record

    return draw_record()


@st.composite
def annotation_files(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from([image_record(), video_record()]))
    records = draw(st.lists(st.one_of(kind, kind, kind, JSON_VALUES), max_size=8))
    if draw(st.booleans()):
        text, suffix = json.dumps(records, indent=draw(st.sampled_from([None, 1]))), ".json"
    else:
        text, suffix = "".join(json.dumps(r) + "\n" for r in records), ".jsonl"
    if draw(st.integers(0, 6)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return suffix, text


@budget(400)
@given(annotation_files(), st.sampled_from(["drop", "clip", "error"]))
def test_fuzz_audit(case: tuple[str, str], policy: str) -> None:
    suffix, text = case
    path = WORK / f"data{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        result = audit(path, policy=policy, check_media=False, grid_size=14)
    except DataFormatError as exc:
        event("refused: DataFormatError")
        assert str(path) in str(exc)
    except BoxValidationError as exc:
        event("refused: BoxValidationError")
        assert policy == "error" and str(path) in str(exc)
    else:
        event(f"audited ({'invalid boxes' if result['invalid_total'] else 'no invalid box'})")
        json.dumps(result)
    try:
        count_records(path)
    except InputError as exc:
        assert str(path) in str(exc)
