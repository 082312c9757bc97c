"""Torch datasets over annotation files: images (upstream FG-CLIP) and videos (fgclip-vad), read from disk.

Every record is parsed and validated once at construction (videos are probed for their length first, so a
keyframe beyond the decodable frames is counted there); `dataset.report` holds the counts. A sample is a
`Sample` of tensors and strings (a read-only mapping the Trainer passes through whole);
`fgclip.data.collate.RegionCollator` tokenises and pads samples into the batch contract.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import cast

import torch
from PIL import Image
from torch.utils.data import Dataset

from fgclip.data.boxes import TOLERANCE, GridSize, region_failure
from fgclip.data.errors import DataFormatError
from fgclip.data.frames import DEFAULT_FOLDER_FPS, clip_range, probe_video, read_frames, sample_frame_indices
from fgclip.data.reader import RawRecord, default_root, detect_format, read_raw_records, resolve_media
from fgclip.data.sample import Sample
from fgclip.data.schema import parse_image_record, parse_video_record
from fgclip.data.tracks import NO_BOX, region_track
from fgclip.data.transforms import image_transform
from fgclip.data.validate import (
    CleanImage,
    CleanImageRegion,
    CleanVideo,
    CleanVideoRegion,
    RecordValidator,
    ValidationReport,
)

REGION_TEXTS = ("short", "long", "random")


def _truncate(regions: tuple, max_boxes: int | None, report: ValidationReport) -> tuple:
    if max_boxes is not None and len(regions) > max_boxes:
        report.truncated_regions += len(regions) - max_boxes
        return regions[:max_boxes]
    return regions


def _records(data_path: str | Path, raw_records: list[RawRecord] | None, kind: str) -> list[RawRecord]:
    records = read_raw_records(data_path) if raw_records is None else raw_records
    detect_format(records, kind)
    return records


class ImageRegionDataset(Dataset):
    """Upstream FG-CLIP image records: squash-resized image, captions, valid boxes with their texts."""

    def __init__(
        self,
        data_path: str | Path,
        image_root: str | Path | None = None,
        *,
        box_policy: str = "drop",
        grid_size: GridSize = None,
        image_size: int = 224,
        max_boxes_per_sample: int | None = None,
        region_text: str = "random",
        tolerance: float = TOLERANCE,
        raw_records: list[RawRecord] | None = None,
    ) -> None:
        if region_text not in REGION_TEXTS:
            raise ValueError(f"region_text={region_text!r}: must be one of {REGION_TEXTS}")
        self.root = Path(image_root) if image_root is not None else default_root(data_path)
        self.region_text = region_text
        self.transform = image_transform(image_size)
        validator = RecordValidator(box_policy, grid_size=grid_size, tolerance=tolerance)
        self.report = validator.report
        self.items: list[CleanImage] = []
        self.paths: list[Path] = []
        for raw in _records(data_path, raw_records, "image"):
            clean = validator.image(parse_image_record(raw))
            path = resolve_media(self.root, clean.record.f_path)
            if not path.is_file():
                raise DataFormatError(raw.location.at("f_path"), f"image file {str(path)!r} does not exist")
            regions = _truncate(clean.regions, max_boxes_per_sample, self.report)
            self.items.append(CleanImage(clean.record, regions, clean.dropped))
            self.paths.append(path)

    def __len__(self) -> int:
        return len(self.items)

    epoch = 0
    seed = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's data loader: the short/long choice changes per epoch."""
        self.epoch = int(epoch)

    def _region_text(self, region: CleanImageRegion, index: int, slot: int) -> str:
        options = [t for t in (region.short_expr, region.long_expr) if t]
        if self.region_text == "long":
            return options[-1]
        if self.region_text == "short":
            return options[0]
        # upstream picks short or long at random per step; a choice derived from (seed, epoch, sample, region)
        # instead of the global RNG keeps a resumed run identical (the loader prefetches past a checkpoint)
        return random.Random(f"{self.seed}:{self.epoch}:{index}:{slot}").choice(options)

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        try:
            with Image.open(self.paths[index]) as image:
                pixels = self.transform(image.convert("RGB"))  # (3, H, W)
        except OSError as exc:
            raise DataFormatError(item.record.location.at("f_path"), f"cannot read image: {exc}") from None
        boxes = torch.tensor([r.box for r in item.regions], dtype=torch.float32).reshape(-1, 4)  # (R_i, 4)
        return Sample(
            index=index,
            pixel_values=pixels,
            long_caption=item.record.caption,
            short_caption=item.record.short_caption,
            boxes=boxes,
            region_texts=[self._region_text(r, index, j) for j, r in enumerate(item.regions)],
            hard_texts=[
                (r.short_expr, *r.negatives) if r.short_expr and r.negatives else () for r in item.regions
            ],
            boxes_dropped=item.dropped,
        )


class VideoRegionDataset(Dataset):
    """fgclip-vad video records: `num_frames` sampled frames with a mask, per-frame region tracks, labels.

    The global caption serves as both long and short caption (the fork has no short one). Region labels:
    1 for a region with keyframes (abnormal), 0 for a normal region (virtual full box).
    """

    def __init__(
        self,
        data_path: str | Path,
        video_root: str | Path | None = None,
        *,
        box_policy: str = "drop",
        grid_size: GridSize = None,
        image_size: int = 224,
        num_frames: int = 8,
        max_boxes_per_sample: int | None = None,
        folder_fps: float = DEFAULT_FOLDER_FPS,
        tolerance: float = TOLERANCE,
        raw_records: list[RawRecord] | None = None,
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames={num_frames}: must be >= 1")
        self.root = Path(video_root) if video_root is not None else default_root(data_path)
        self.num_frames = num_frames
        self.policy = box_policy
        self.transform = image_transform(image_size)
        self.image_size = image_size
        validator = RecordValidator(box_policy, grid_size=grid_size, tolerance=tolerance)
        self.report = validator.report
        self.items: list[CleanVideo] = []
        self.paths: list[Path] = []
        for raw in _records(data_path, raw_records, "video"):
            record = parse_video_record(raw)
            path = resolve_media(self.root, record.video)
            try:
                info = probe_video(path, folder_fps=folder_fps)
            except DataFormatError as exc:
                raise DataFormatError(raw.location.at("video"), f"{exc.location}: {exc.reason}") from None
            start, end = clip_range(info, record.timestamps)
            if end <= start:
                raise DataFormatError(
                    raw.location.at("timestamps"),
                    f"clip {record.timestamps} holds no frame of {path} "
                    f"({info.num_frames} frames at {info.fps} fps)",
                )
            clean = validator.video(record, (start, end))
            regions = _truncate(clean.regions, max_boxes_per_sample, self.report)
            self.items.append(CleanVideo(record, regions, clean.dropped, clean.frame_range))
            self.paths.append(path)

    def __len__(self) -> int:
        return len(self.items)

    def _decoded_regions(self, item: CleanVideo, real: list[int], wanted: int) -> tuple[list, int]:
        """Regions and dropped count once decoding is known; a video shorter than its metadata said loses
        the keyframes after its last decoded sample, and they are counted (raised under policy "error")."""
        if len(real) == wanted:
            return list(item.regions), item.dropped
        decoded_end, regions, dropped = real[-1] + 1, [], item.dropped
        for region in item.regions:
            keyframes = tuple(kf for kf in region.keyframes if kf[0] < decoded_end)
            lost = len(region.keyframes) - len(keyframes)
            if lost:
                region_failure(
                    "keyframe_beyond_video",
                    self.policy,
                    item.record.location.at("box_infos"),
                    f"{lost} keyframe(s) at or after frame {decoded_end}, where decoding ended",
                )
                dropped += lost
                region = CleanVideoRegion(region.caption, keyframes, True)
            if region.keyframes or not region.abnormal:
                regions.append(region)
        return regions, dropped

    def __getitem__(self, index: int) -> Sample:
        item = self.items[index]
        start, end = cast(tuple[int, int], item.frame_range)  # set for every item: each clip is probed
        wanted = sample_frame_indices(start, end, self.num_frames)
        frames = read_frames(self.paths[index], wanted)
        real = [i for i in wanted if i in frames]
        if not real:
            raise DataFormatError(
                item.record.location.at("video"), f"no frame of [{start}, {end}) could be decoded"
            )
        regions, dropped = self._decoded_regions(item, real, len(wanted))
        pad = self.num_frames - len(real)
        pixels = torch.stack([self.transform(frames[i]) for i in real])  # (T_real, 3, H, W)
        if pad:
            pixels = torch.cat([pixels, pixels.new_zeros((pad, *pixels.shape[1:]))])  # (T, 3, H, W)
        boxes = torch.zeros((self.num_frames, len(regions), 4), dtype=torch.float32)  # (T, R_i, 4)
        box_frame_mask = torch.zeros((self.num_frames, len(regions)), dtype=torch.bool)  # (T, R_i)
        for r, region in enumerate(regions):
            track, mask = region_track(region.keyframes, real)
            boxes[: len(real), r] = torch.tensor(
                [b if m else NO_BOX for b, m in zip(track, mask, strict=True)]
            )
            box_frame_mask[: len(real), r] = torch.tensor(mask)
        return Sample(
            index=index,
            pixel_values=pixels,
            frame_mask=torch.arange(self.num_frames) < len(real),
            long_caption=item.record.global_caption,
            short_caption=item.record.global_caption,
            boxes=boxes,
            box_frame_mask=box_frame_mask,
            region_texts=[r.caption for r in regions],
            region_labels=torch.tensor([int(r.abnormal) for r in regions], dtype=torch.long),
            hard_texts=[() for _ in regions],
            boxes_dropped=dropped,
        )


__all__ = ["REGION_TEXTS", "ImageRegionDataset", "VideoRegionDataset"]
