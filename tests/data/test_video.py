"""Video records: real files decoded with PyAV, frame folders, sampling with a mask, region tracks."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from fgclip.data.collate import RegionCollator
from fgclip.data.datasets import VideoRegionDataset
from fgclip.data.errors import BoxValidationError, DataFormatError
from fgclip.data.frames import clip_range, probe_video, read_frames, sample_frame_indices
from fgclip.data.module import build_data_module
from fgclip.data.synthetic import generate_embedded
from fgclip.data.synthetic_render import COLOURS
from fgclip.data.tracks import FULL_BOX, region_track

from .data_helpers import GRID, assert_batch_contract, write_records


def test_generated_video_decodes_with_its_frame_count(embedded):
    path = embedded.root / "videos" / "clip_0000.mp4"
    info = probe_video(path)
    assert info.num_frames == 16 and info.fps == pytest.approx(8.0)
    frames = read_frames(path, list(range(16)))
    assert sorted(frames) == list(range(16)) and frames[0].size == (64, 64)
    late = read_frames(path, [12, 15, 40])  # seeks; a frame the video lacks is simply absent
    assert sorted(late) == [12, 15]
    assert late[12].tobytes() == frames[12].tobytes()  # the seek lands on the same frame
    # decoded pixels match the drawing: the keyframe box centre holds the colour its caption names
    record = json.loads(embedded.videos_jsonl.read_text().splitlines()[0])
    key = record["box_infos"][0][0]
    colour = COLOURS[record["region_captions"][0].split()[1]]
    x1, y1, x2, y2 = (round(v * 64) for v in key["bbox"])
    centre = frames[key["frame"]].getpixel(((x1 + x2) // 2, (y1 + y2) // 2 + 2))
    assert max(abs(a - b) for a, b in zip(centre, colour, strict=True)) < 40


def test_sampling_and_frame_mask(embedded, tokenizer):
    assert sample_frame_indices(0, 16, 4) == [0, 5, 10, 15]
    assert sample_frame_indices(2, 5, 4) == [2, 3, 4]
    assert sample_frame_indices(0, 9, 1) == [4]
    dataset = VideoRegionDataset(embedded.videos_json, image_size=32, num_frames=20, grid_size=GRID)
    sample = dataset[0]  # 16 frames into 20 slots: 4 masked padding frames
    assert sample["pixel_values"].shape == (20, 3, 32, 32)
    assert sample["frame_mask"].tolist() == [True] * 16 + [False] * 4
    assert (sample["pixel_values"][16:] == 0).all() and not sample["box_frame_mask"][16:].any()
    short = VideoRegionDataset(embedded.videos_json, image_size=32, num_frames=4)
    assert short[0]["frame_mask"].all() and short[0]["pixel_values"].shape[0] == 4


def test_region_tracks():
    keys = [(10, (0.0, 0.0, 0.4, 0.4)), (20, (0.2, 0.4, 0.6, 0.8))]
    boxes, mask = region_track(keys, [0, 10, 15, 20, 30])
    assert mask == [False, True, True, True, False]
    assert boxes[2] == pytest.approx((0.1, 0.2, 0.5, 0.6))  # halfway between the keyframes
    assert boxes[0] == (0.0, 0.0, 0.0, 0.0)
    single, single_mask = region_track([(13, (0.1, 0.1, 0.3, 0.3))], [0, 10, 15, 20])
    assert single_mask == [False, False, True, False] and single[2] == (0.1, 0.1, 0.3, 0.3)
    _tie, tie_mask = region_track([(15, (0.1, 0.1, 0.3, 0.3))], [10, 20])
    assert tie_mask == [True, False]  # equal distance: the earlier frame
    _short, short_mask = region_track([(11, keys[0][1]), (13, keys[1][1])], [0, 10, 20])
    assert short_mask == [False, True, False]  # shorter than the stride: kept on the nearest frame
    normal, normal_mask = region_track([], [0, 5, 9])
    assert normal == [FULL_BOX] * 3 and all(normal_mask)


@pytest.mark.parametrize("name", ["videos_json", "videos_jsonl"])
def test_round_trip_through_dataloader(embedded, tokenizer, name):
    module = build_data_module(
        getattr(embedded, name),
        tokenizer=tokenizer,
        image_size=32,
        grid_size=GRID,
        max_boxes_per_sample=3,
        num_frames=6,
    )
    assert module.data_format == "video" and module.report.invalid_total == 0
    loader = DataLoader(module.train_dataset, batch_size=6, collate_fn=module.collator)
    batch = next(iter(loader))
    assert_batch_contract(batch, video=True, size=6, slots=3, frames=6)
    assert "hard_text_index" not in batch
    labels, box_mask = batch["region_labels"], batch["box_mask"]
    records = [json.loads(line) for line in embedded.videos_jsonl.read_text().splitlines()]
    for b, record in enumerate(records):
        abnormal = any(record["box_infos"][0])
        count = len(record["region_captions"])
        assert labels[b, :count].tolist() == [int(abnormal)] * count and (labels[b, count:] == -1).all()
        assert box_mask[b].tolist() == [True] * count + [False] * (3 - count)
        if not abnormal:  # normal region: virtual full box on every real frame
            assert torch.equal(batch["boxes"][b, :, 0], torch.tensor([FULL_BOX] * 6))
            assert batch["box_frame_mask"][b, :, 0].all()
    assert (batch["boxes"][~batch["box_frame_mask"]] == 0).all()


def test_timestamps_select_a_clip(embedded):
    records = [json.loads(line) for line in embedded.videos_jsonl.read_text().splitlines()]
    stamped = next(i for i, r in enumerate(records) if r["timestamps"])
    info = probe_video(embedded.root / records[stamped]["video"])
    start, end = clip_range(info, tuple(records[stamped]["timestamps"]))
    assert (start, end) == (2, 14)  # [0.25 s, 1.75 s] at 8 fps
    dataset = VideoRegionDataset(embedded.videos_jsonl, image_size=32, num_frames=4)
    assert dataset.items[stamped].frame_range == (2, 14)


def test_frame_folders_and_keyframes_beyond_the_video(tmp_path, tokenizer):
    data = generate_embedded(
        tmp_path,
        n_images=0,
        n_videos=4,
        video_frames=8,
        video_container="frames",
        defects={"keyframe_beyond_video": 2, "no_keyframe": 1},
    )
    assert (tmp_path / "videos" / "clip_0000").is_dir()
    assert probe_video(tmp_path / "videos" / "clip_0000").num_frames == 8
    dataset = VideoRegionDataset(data.videos_json, image_size=32, num_frames=4)
    assert dataset.report.invalid == {"keyframe_beyond_video": 2, "no_keyframe": 1}
    assert dataset.report.regions_dropped == {"no_keyframe": 1}
    batch = RegionCollator(tokenizer, max_boxes_per_sample=3)([dataset[i] for i in range(len(dataset))])
    assert_batch_contract(batch, video=True, size=4, slots=3, frames=4)
    assert batch["boxes_dropped"].sum() == 3
    with pytest.raises(
        BoxValidationError, match=r"videos.json:\d+ \(record 0\) box_infos\[0\]\[\d+\]\.frame"
    ):
        VideoRegionDataset(data.videos_json, image_size=32, box_policy="error")


def test_missing_video_names_record_and_file(tmp_path):
    record = {
        "video": "gone.mp4",
        "global_caption": "g",
        "region_captions": ["r"],
        "box_infos": [[]],
        "timestamps": None,
    }
    path = write_records(tmp_path / "v.jsonl", [record])
    with pytest.raises(
        DataFormatError, match=r"v.jsonl:1 \(record 0\) video: .*gone.mp4: video file does not exist"
    ):
        VideoRegionDataset(path)
    (tmp_path / "gone.mp4").write_bytes(b"not a video")
    with pytest.raises(DataFormatError, match="cannot open video"):
        VideoRegionDataset(path)


def test_frames_missing_at_decode_time_are_counted(tmp_path, tokenizer):
    data = generate_embedded(tmp_path, n_images=0, n_videos=1, video_frames=12, video_container="frames")
    dataset = VideoRegionDataset(data.videos_json, image_size=32, num_frames=12)
    strict = VideoRegionDataset(data.videos_json, image_size=32, num_frames=12, box_policy="error")
    keyframes = dataset.items[0].regions[0].keyframes
    for frame in sorted((tmp_path / "videos" / "clip_0000").iterdir())[6:]:
        frame.unlink()  # the folder now holds fewer frames than probed when the dataset was built
    sample = dataset[0]
    assert sample["frame_mask"].tolist() == [True] * 6 + [False] * 6
    late = sum(1 for frame, _ in keyframes if frame >= 6)
    assert late > 0 and sample["boxes_dropped"] == late
    with pytest.raises(BoxValidationError, match="keyframe_beyond_video"):
        strict[0]
