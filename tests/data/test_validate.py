"""Every invalid-box reason under every policy: the right count, the right field, nothing lost uncounted."""

from __future__ import annotations

import pytest

from fgclip.data.boxes import ALL_REASONS
from fgclip.data.errors import BoxValidationError
from fgclip.data.reader import read_raw_records
from fgclip.data.schema import parse_image_record, parse_video_record
from fgclip.data.validate import RecordValidator

from .data_helpers import GRID, image_record, write_records

GOOD = [0.1, 0.1, 0.6, 0.6]
IMAGE_CASES = {  # reason -> the bad box planted as bbox_info[1]
    "malformed": [0.1, 0.2, 0.3],
    "non_finite": [None, 0.1, 0.5, 0.5],
    "wrong_space": [12.0, 30.0, 50.0, 60.0],
    "inverted": [0.6, 0.1, 0.2, 0.5],
    "zero_area": [0.3, 0.1, 0.3, 0.5],
    "out_of_range": [0.2, 0.1, 1.3, 0.5],
    "sub_cell": [0.2, 0.2, 0.25, 0.25],
}


def _video(box_infos, captions=None, timestamps=None):
    captions = captions if captions is not None else [f"region {i}" for i in range(len(box_infos))]
    return {
        "video": "v.mp4",
        "global_caption": "g",
        "region_captions": captions,
        "box_infos": box_infos,
        "timestamps": timestamps,
    }


def _key(frame, bbox=GOOD):
    return {"frame": frame, "bbox": bbox}


VIDEO_CASES = {  # reason -> (record, field of the failure)
    "count_mismatch": (_video([[_key(1)]], ["a", "b"]), "box_infos[1]"),  # a caption without boxes
    "no_keyframe": (_video([[_key(1), _key(4)], []]), "box_infos[1]"),
    "keyframe_beyond_video": (_video([[_key(1), _key(40)]]), "box_infos[0][1].frame"),
    "duplicate_keyframe": (_video([[_key(1), _key(1, [0.2, 0.2, 0.7, 0.7])]]), "box_infos[0][1].frame"),
    "inverted": (_video([[_key(1), _key(3, [0.6, 0.1, 0.2, 0.5])]]), "box_infos[0][1].bbox"),
}


def _validate_image(tmp_path, bad, policy):
    path = write_records(
        tmp_path / "img.json", [image_record("a.png", []), image_record("b.png", [GOOD, bad])]
    )
    validator = RecordValidator(policy, grid_size=GRID)
    cleans = [validator.image(parse_image_record(r)) for r in read_raw_records(path)]
    return validator.report, cleans[1]


@pytest.mark.parametrize("reason", sorted(IMAGE_CASES))
def test_image_reason_under_drop(tmp_path, reason):
    report, clean = _validate_image(tmp_path, IMAGE_CASES[reason], "drop")
    assert dict(report.invalid) == {reason: 1} and dict(report.dropped) == {reason: 1}
    assert report.boxes == 2 and clean.dropped == 1 and len(clean.regions) == 1
    issue = report.issues[0]
    assert issue["field"] == "bbox_info[1].bbox" and issue["index"] == 1 and issue["reason"] == reason


@pytest.mark.parametrize("reason", sorted(IMAGE_CASES))
def test_image_reason_under_clip(tmp_path, reason):
    report, clean = _validate_image(tmp_path, IMAGE_CASES[reason], "clip")
    assert dict(report.invalid) == {reason: 1}
    if reason == "out_of_range":
        assert report.repaired == 1 and not report.dropped and clean.dropped == 0
        assert clean.regions[1].box == (0.2, 0.1, 1.0, 0.5)
    else:
        assert dict(report.dropped) == {reason: 1} and clean.dropped == 1


@pytest.mark.parametrize("reason", sorted(IMAGE_CASES))
def test_image_reason_under_error_names_file_index_field(tmp_path, reason):
    with pytest.raises(BoxValidationError) as info:
        _validate_image(tmp_path, IMAGE_CASES[reason], "error")
    message = str(info.value)
    assert info.value.reason == reason
    assert "img.json:" in message and "(record 1)" in message and "bbox_info[1].bbox" in message


def test_count_mismatch_in_images(tmp_path):
    record = image_record("a.png", [GOOD, GOOD])
    del record["bbox_info"][0]["bbox"]
    record["bbox_info"][1]["short_expr"] = record["bbox_info"][1]["long_expr"] = ""
    path = write_records(tmp_path / "img.jsonl", [record])
    validator = RecordValidator("drop")
    clean = validator.image(parse_image_record(read_raw_records(path)[0]))
    assert dict(validator.report.invalid) == {"count_mismatch": 2} and clean.regions == ()
    assert [i["field"] for i in validator.report.issues] == ["bbox_info[0]", "bbox_info[1]"]
    with pytest.raises(
        BoxValidationError, match=r"img.jsonl:1 \(record 0\) bbox_info\[0\]: invalid box: count_mismatch"
    ):
        RecordValidator("error").image(parse_image_record(read_raw_records(path)[0]))


def _validate_video(tmp_path, record, policy):
    path = write_records(tmp_path / "v.json", [record])
    validator = RecordValidator(policy, grid_size=GRID)
    clean = validator.video(parse_video_record(read_raw_records(path)[0]), frame_range=(0, 16))
    return validator.report, clean


@pytest.mark.parametrize("reason", sorted(VIDEO_CASES))
@pytest.mark.parametrize("policy", ["drop", "clip"])
def test_video_reason_is_counted(tmp_path, reason, policy):
    record, field = VIDEO_CASES[reason]
    report, clean = _validate_video(tmp_path, record, policy)
    assert dict(report.invalid) == {reason: 1} and dict(report.dropped) == {reason: 1}
    assert clean.dropped == 1 and report.issues[0]["field"] == field
    assert all(r.abnormal and r.keyframes for r in clean.regions)


@pytest.mark.parametrize("reason", sorted(VIDEO_CASES))
def test_video_reason_under_error(tmp_path, reason):
    record, field = VIDEO_CASES[reason]
    with pytest.raises(BoxValidationError) as info:
        _validate_video(tmp_path, record, "error")
    assert info.value.reason == reason and f"(record 0) {field}" in str(info.value)


def test_boxes_without_a_caption_are_a_count_mismatch(tmp_path):
    report, clean = _validate_video(tmp_path, _video([[_key(1)], [_key(2)]], ["only one"]), "drop")
    assert dict(report.invalid) == {"count_mismatch": 1} and report.issues[0]["field"] == "region_captions[1]"
    assert len(clean.regions) == 1


def test_normal_records_are_legal_and_get_the_full_box(tmp_path):
    report, clean = _validate_video(tmp_path, _video([[]]), "error")
    assert report.invalid_total == 0 and report.boxes == 1
    assert len(clean.regions) == 1 and not clean.regions[0].abnormal and clean.regions[0].keyframes == ()
    report, clean = _validate_video(tmp_path, _video([[], []]), "error")
    assert len(clean.regions) == 2


def test_region_losing_every_keyframe_is_counted_whole(tmp_path):
    record = _video([[_key(1)], [_key(2, [0.5, 0.5, 0.1, 0.1]), _key(50)]])
    report, clean = _validate_video(tmp_path, record, "drop")
    assert dict(report.invalid) == {"inverted": 1, "keyframe_beyond_video": 1}
    assert dict(report.regions_dropped) == {"no_valid_keyframe": 1} and len(clean.regions) == 1
    assert report.boxes == 3 and report.regions == 2


def test_keyframes_are_sorted_and_unprobed_videos_skip_the_range_check(tmp_path):
    record = _video([[_key(9), _key(2), _key(40)]])
    path = write_records(tmp_path / "v.json", [record])
    validator = RecordValidator("drop")
    clean = validator.video(parse_video_record(read_raw_records(path)[0]))  # no frame range known
    assert [f for f, _ in clean.regions[0].keyframes] == [2, 9, 40] and validator.report.invalid_total == 0


def test_every_reason_has_a_case():
    covered = set(IMAGE_CASES) | set(VIDEO_CASES) | {"count_mismatch"}
    assert covered == set(ALL_REASONS)
