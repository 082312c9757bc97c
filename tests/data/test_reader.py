"""Reading annotation files: formats, line numbers of malformed JSON, structural errors naming the field."""

from __future__ import annotations

import json

import pytest

from fgclip.data.errors import DataFormatError
from fgclip.data.reader import detect_format, read_raw_records
from fgclip.data.schema import parse_image_record, parse_video_record

from .data_helpers import image_record, write_records


def test_array_and_lines_give_the_same_records_with_lines(tmp_path):
    records = [image_record(f"{i}.png", [[0.1, 0.1, 0.5, 0.5]]) for i in range(3)]
    array = read_raw_records(write_records(tmp_path / "a.json", records))
    lines = read_raw_records(write_records(tmp_path / "a.jsonl", records))
    assert [r.data for r in array] == [r.data for r in lines] == records
    assert [r.location.line for r in lines] == [1, 2, 3]
    assert [r.location.index for r in array] == [0, 1, 2]
    text = (tmp_path / "a.json").read_text().splitlines()
    for raw in array:  # each array record's line is where its object opens
        assert text[raw.location.line - 1].strip().startswith("{")
    assert array[1].location.line > array[0].location.line


def test_malformed_json_line_names_file_and_line(tmp_path):
    good = json.dumps(image_record("a.png", []))
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{good}\n\n{good[:-5]}\n{good}\n")
    with pytest.raises(DataFormatError) as info:
        read_raw_records(path)
    assert str(path) in str(info.value) and ":4" in str(info.value) and "invalid JSON" in str(info.value)
    assert info.value.location.line == 4


def test_malformed_json_array_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"f_path": "a.png",\n  "caption": "x"\n  "short_caption": "y"}\n]\n')
    with pytest.raises(DataFormatError) as info:
        read_raw_records(path)
    assert info.value.location.line == 4 and f"{path}:4" in str(info.value)
    path.write_text('[{"f_path": "a.png"}]\n{"x": 1}\n')
    with pytest.raises(DataFormatError, match="extra data"):
        read_raw_records(path)


def test_jsonl_under_a_json_name_and_a_single_object(tmp_path):
    records = [image_record("a.png", []), image_record("b.png", [])]
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [r.data for r in read_raw_records(path)] == records
    path.write_text(json.dumps(records[0], indent=2))
    assert [r.data for r in read_raw_records(path)] == records[:1]


def test_txt_list_and_directory(tmp_path):
    write_records(tmp_path / "b.jsonl", [image_record("b.png", [])])
    write_records(tmp_path / "a.json", [image_record("a.png", []), image_record("a2.png", [])])
    listing = tmp_path / "list.txt"
    listing.write_text("b.jsonl\n# comment\na.json\n")
    assert [r.data["f_path"] for r in read_raw_records(listing)] == ["b.png", "a.png", "a2.png"]
    assert [r.data["f_path"] for r in read_raw_records(tmp_path)] == ["a.png", "a2.png", "b.png"]
    listing.write_text("missing.json\n")
    with pytest.raises(DataFormatError, match=r"list\.txt:1"):
        read_raw_records(listing)
    with pytest.raises(DataFormatError, match="no such file"):
        read_raw_records(tmp_path / "nope.json")


def test_non_object_record(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"f_path": "a"}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match=r"x.jsonl:2 \(record 1\).*expected an object"):
        read_raw_records(path)


def test_detect_format(tmp_path, embedded):
    images = read_raw_records(embedded.images_jsonl)
    videos = read_raw_records(embedded.videos_json)
    assert detect_format(images) == "image" and detect_format(videos) == "video"
    with pytest.raises(DataFormatError, match="looks like video"):
        detect_format(videos, "image")
    odd = read_raw_records(write_records(tmp_path / "odd.jsonl", [{"path": "x"}]))
    with pytest.raises(DataFormatError, match="cannot tell image from video"):
        detect_format(odd)
    with pytest.raises(ValueError, match="data_format"):
        detect_format(images, "audio")


def test_structural_errors_name_the_field(tmp_path):
    record = image_record("a.png", [[0.1, 0.1, 0.5, 0.5]])
    del record["caption"]
    record["bbox_info"][0]["short_expr_negs"] = {"a": 3}
    record["bbox_info"][0]["flag_short_neg"] = 1
    raws = read_raw_records(write_records(tmp_path / "s.jsonl", [image_record("ok.png", []), record]))
    with pytest.raises(DataFormatError) as info:
        parse_image_record(raws[1])
    assert "s.jsonl:2 (record 1) caption" in str(info.value)
    record["caption"] = "back"
    raws = read_raw_records(write_records(tmp_path / "s.jsonl", [record]))
    with pytest.raises(DataFormatError, match=r"bbox_info\[0\]\.short_expr_negs"):
        parse_image_record(raws[0])
    video = {
        "video": "v.mp4",
        "global_caption": "g",
        "region_captions": ["r"],
        "box_infos": [[]],
        "timestamps": [5, 2],
    }
    raws = read_raw_records(write_records(tmp_path / "v.jsonl", [video]))
    with pytest.raises(DataFormatError, match="timestamps"):
        parse_video_record(raws[0])


def test_video_record_pairs_regions_and_labels(tmp_path):
    normal = {
        "video": "n.mp4",
        "global_caption": "g",
        "region_captions": ["r"],
        "box_infos": [[]],
        "timestamps": [0, 3.5],
    }
    abnormal = {
        "video": "a.mp4",
        "global_caption": "g",
        "region_captions": ["r0", "r1", "r2"],
        "box_infos": [[{"frame": 3, "bbox": [0.1, 0.1, 0.5, 0.5]}], []],
        "timestamps": None,
    }
    raws = read_raw_records(write_records(tmp_path / "v.json", [normal, abnormal]))
    parsed_normal, parsed_abnormal = (parse_video_record(r) for r in raws)
    assert not parsed_normal.abnormal and parsed_normal.timestamps == (0.0, 3.5)
    assert parsed_abnormal.abnormal
    assert [r.keyframes is None for r in parsed_abnormal.regions] == [False, False, True]
    assert parsed_abnormal.regions[0].keyframes[0].frame == 3
