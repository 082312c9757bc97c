"""The embedded synthetic generator: deterministic, fast, clean, and captions that identify their region."""

from __future__ import annotations

import json
import time

import pytest

from fgclip.data.boxes import classify_box
from fgclip.data.synthetic import caption_claims, false_negative_pairs, generate_embedded
from fgclip.data.synthetic_render import COLOURS, SHAPES


def test_same_seed_same_data(tmp_path):
    a = generate_embedded(tmp_path / "a", seed=3, n_images=6, n_videos=2, video_container="frames")
    b = generate_embedded(tmp_path / "b", seed=3, n_images=6, n_videos=2, video_container="frames")
    c = generate_embedded(tmp_path / "c", seed=4, n_images=6, n_videos=2, video_container="frames")
    assert a.images_json.read_text() == b.images_json.read_text() != c.images_json.read_text()
    assert a.videos_jsonl.read_text() == b.videos_jsonl.read_text()
    for name in ("images/img_00003.png", "videos/clip_0001/frame_00004.png"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()
    assert json.loads((a.root / "truth.json").read_text()) == a.truth


def test_default_set_is_fast(tmp_path):
    start = time.perf_counter()
    data = generate_embedded(tmp_path)
    assert time.perf_counter() - start < 15  # seconds, on a busy 2-core machine; about 1 s when idle
    assert data.truth["images"] == 256 and data.truth["video_container"] == "mp4"


def test_records_are_clean_and_identifying(embedded):
    records = [json.loads(line) for line in embedded.images_jsonl.read_text().splitlines()]
    pairs = {f"{c} {s}" for c in COLOURS for s in SHAPES}
    for record in records:
        regions = record["bbox_info"]
        assert 2 <= len(regions) <= 4
        texts = [r["short_expr"] for r in regions]
        assert len(set(texts)) == len(texts) and set(texts) <= pairs  # each region named uniquely
        assert record["short_caption"].startswith("a photo of ")
        assert all(t in record["short_caption"] for t in texts)
        for region in regions:
            assert classify_box(region["bbox"], grid_size=8) is None
            x1, y1, x2, y2 = region["bbox"]
            assert min(x2 - x1, y2 - y1) >= 0.25  # two cells of an 8x8 grid at least
            negatives = list(region["short_expr_negs"].values())
            if region["flag_short_neg"]:
                assert region["short_expr"] not in negatives and not set(negatives) & set(texts)
                assert len(set(negatives)) == len(negatives)
    full = [r for rec in records for r in rec["bbox_info"] if len(r["short_expr_negs"]) == 10]
    assert len(full) > 0.7 * sum(len(rec["bbox_info"]) for rec in records)
    assert any(0 < len(r["short_expr_negs"]) < 10 for rec in records for r in rec["bbox_info"])
    assert any(not r["flag_short_neg"] for rec in records for r in rec["bbox_info"])


def test_videos_have_normal_and_abnormal_clips(embedded):
    records = [json.loads(line) for line in embedded.videos_jsonl.read_text().splitlines()]
    normal = [r for r in records if r["box_infos"] == [[]]]
    abnormal = [r for r in records if any(r["box_infos"][0])]
    assert len(normal) == len(abnormal) == 3
    for record in abnormal:
        assert len(record["region_captions"]) == len(record["box_infos"])
        for keys in record["box_infos"]:
            frames = [k["frame"] for k in keys]
            assert frames == sorted(frames) and max(frames) < 16
    assert any(len(keys) == 1 for r in abnormal for keys in r["box_infos"])  # single-keyframe regions occur
    assert (embedded.root / normal[0]["video"]).stat().st_size > 0


def test_unknown_defect_and_too_many(tmp_path):
    with pytest.raises(ValueError, match="unknown defects"):
        generate_embedded(tmp_path, n_images=2, n_videos=0, defects={"blurry": 1})
    with pytest.raises(ValueError, match="image defects"):
        generate_embedded(tmp_path, n_images=1, n_videos=0, defects={"zero_area": 50})
    with pytest.raises(ValueError, match="abnormal videos"):
        generate_embedded(tmp_path, n_images=1, n_videos=0, defects={"no_keyframe": 1})


@pytest.mark.parametrize("mode", ["short", "long"])
def test_region_captions_can_be_told_apart(tmp_path, mode):
    """Short-only or long-only captions: no negative is a true description of the query (loss floor 0);
    upstream-style records (short or long drawn per step) hold such false negatives by the thousand."""
    data = generate_embedded(tmp_path / mode, seed=0, n_images=64, n_videos=0, region_captions=mode)
    records = json.loads(data.images_json.read_text())
    other = "long_expr" if mode == "short" else "short_expr"
    assert not any(other in r for rec in records for r in rec["bbox_info"])
    assert false_negative_pairs(records) == 0
    both = generate_embedded(tmp_path / "both", seed=0, n_images=64, n_videos=0, region_captions="both")
    both_records = json.loads(both.images_json.read_text())
    assert false_negative_pairs(both_records) > 100
    # the same images and boxes in every mode: only the captions differ
    assert [[r["bbox"] for r in rec["bbox_info"]] for rec in records] == [
        [r["bbox"] for r in rec["bbox_info"]] for rec in both_records
    ]
    assert data.truth["region_captions"] == mode
    with pytest.raises(ValueError, match="region_captions"):
        generate_embedded(tmp_path / "x", n_images=1, n_videos=0, region_captions="medium")


def test_false_negative_pairs_counts_true_but_different_captions():
    def region(short, long):
        return {"short_expr": short, "long_expr": long}

    records = [
        {"bbox_info": [region("red circle", "a large red circle in the top left")]},
        {"bbox_info": [region("red circle", "a small red circle in the top left")]},
        {"bbox_info": [region("blue square", "a small blue square in the top left")]},
    ]
    # "red circle" (short, either red circle) is true of the other red circle when that one is captioned
    # long: 2 ordered pairs; the long captions differ in size, the blue square shares nothing
    assert false_negative_pairs(records) == 2
    assert caption_claims("a large orange star in the bottom right") == {
        "size": "large",
        "colour": "orange",
        "shape": "star",
        "place": "bottom right",
    }
