"""audit() over generated sets with planted defects: the counts must be exactly the planted ones."""

from __future__ import annotations

import json

import pytest

from fgclip.data.audit import audit, read_test_list
from fgclip.data.errors import BoxValidationError, DataFormatError
from fgclip.data.synthetic import IMAGE_DEFECTS, VIDEO_DEFECTS

from .data_helpers import DEFECTS, GRID, image_record, write_records

IMAGE_INVALID = {k: v for k, v in DEFECTS.items() if k in IMAGE_DEFECTS and k != "clipped"}
VIDEO_INVALID = {k: v for k, v in DEFECTS.items() if k in VIDEO_DEFECTS}


def test_image_audit_reports_exactly_the_planted_defects(defective):
    result = audit(defective.images_json, grid_size=GRID, test_list=defective.test_list)
    truth = defective.truth
    assert result["format"] == "image" and result["records"] == truth["images"] == 30
    assert result["boxes"] == truth["image_boxes"]
    assert result["invalid"] == IMAGE_INVALID and result["dropped"] == IMAGE_INVALID
    assert result["clipped"] == DEFECTS["clipped"] and result["repaired"] == 0
    assert result["invalid_total"] == sum(IMAGE_INVALID.values())
    assert result["invalid_ratio"] == pytest.approx(sum(IMAGE_INVALID.values()) / truth["image_boxes"])
    assert sum(result["boxes_per_sample"].values()) == 30
    kept = sum(int(k) * v for k, v in result["boxes_per_sample"].items())
    assert kept == truth["image_boxes"] - result["invalid_total"]
    assert result["missing_media"] == 0
    overlap = result["test_overlap"]
    assert overlap["overlapping_records"] == 3 and overlap["test_items"] == 4
    json.dumps(result)  # JSON-ready


def test_video_audit_reports_exactly_the_planted_defects(defective):
    result = audit(defective.videos_jsonl, grid_size=GRID)
    truth = defective.truth
    assert result["format"] == "video" and result["records"] == truth["videos"]
    assert result["boxes"] == truth["video_boxes"]
    assert result["invalid"] == VIDEO_INVALID
    assert result["regions_dropped"] == {"no_keyframe": DEFECTS["no_keyframe"]}
    assert result["abnormal_records"] == truth["abnormal_videos"]
    assert result["normal_records"] == truth["videos"] - truth["abnormal_videos"]
    without_media = audit(defective.videos_jsonl, grid_size=GRID, check_media=False)
    assert without_media["invalid"] == {
        "no_keyframe": DEFECTS["no_keyframe"]
    }  # lengths unknown: no range check


def test_clean_set_and_policies(embedded, defective):
    clean = audit(embedded.images_jsonl, grid_size=GRID)
    assert clean["invalid"] == {} and clean["invalid_ratio"] == 0.0 and clean["clipped"] == 0
    assert clean["hard_boxes"] > 0
    clipped = audit(defective.images_jsonl, grid_size=GRID, policy="clip")
    assert clipped["invalid"] == IMAGE_INVALID  # what is wrong does not depend on the policy
    assert clipped["repaired"] == DEFECTS["out_of_range"] and "out_of_range" not in clipped["dropped"]
    with pytest.raises(BoxValidationError):
        audit(defective.images_jsonl, grid_size=GRID, policy="error")
    assert audit(defective.images_jsonl)["invalid"].get("sub_cell") is None  # no grid: no sub-cell check


def test_caption_repetition_and_truncation(tmp_path, one_image):
    records = [image_record(one_image, [[0.1, 0.1, 0.5, 0.5]] * 5) for _ in range(3)]
    path = write_records(tmp_path / "d.json", records)
    result = audit(path, max_boxes_per_sample=4, top_k=2)
    global_rep = result["caption_repetition"]["global"]
    assert (
        global_rep["top"] == [{"caption": records[0]["caption"], "count": 3}] and global_rep["distinct"] == 1
    )
    region_rep = result["caption_repetition"]["region"]
    assert len(region_rep["top"]) == 2 and region_rep["top"][0]["count"] == 3 and region_rep["total"] == 15
    assert result["truncated_regions"] == 3 and result["boxes_per_sample"] == {"5": 3}


def test_missing_media_and_unreadable_input(tmp_path):
    path = write_records(tmp_path / "d.jsonl", [image_record("nowhere.png", [])])
    assert audit(path)["missing_media"] == 1
    path.write_text("{broken\n")
    with pytest.raises(DataFormatError, match="d.jsonl:1"):
        audit(path)


def test_test_list_forms(tmp_path, defective):
    names = read_test_list(defective.test_list)
    assert len(names) == 4
    assert len(read_test_list(defective.images_jsonl)) == 30  # an annotation file works as a test list
    result = audit(defective.images_jsonl, test_list=defective.images_json, check_media=False)
    assert result["test_overlap"]["overlapping_records"] == 30
