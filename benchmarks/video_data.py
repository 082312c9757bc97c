"""The UCF-style video data path on the CPU: decode, sample, collate, and the DataLoader per worker count.

Embedded videos (MPEG-4, 64 frames at 8 fps, 240 x 240, moving shapes tracked by keyframe boxes) go through
the real pipeline: PyAV decode of 8 sampled frames, resize to 224, per-frame box tracks of each region,
then RegionCollator (de-duplicated texts, frame list). Printed, each with its command-line setting:
  decode       PyAV alone (read_frames), frames/s in this process
  sample       VideoRegionDataset.__getitem__ (decode + transform + tracks), frames/s
  collate      RegionCollator on ready samples, ms per batch
  loader w=N   DataLoader with N workers, after its first batch: frames/s in all and per worker

    python benchmarks/video_data.py [--videos 24 --batch 4 --workers 0 1 2 --batches 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fgclip.data import build_data_module, build_tokenizer, generate_embedded
from fgclip.data.datasets import VideoRegionDataset
from fgclip.data.frames import read_frames, sample_frame_indices

VIDEO_SIZE, VIDEO_FRAMES, IMAGE_SIZE, FRAMES = 240, 64, 224, 8


def video_set(
    root: Path, videos: int, image_size: int = IMAGE_SIZE, frames: int = FRAMES, tiny: bool = False
):
    """(dataset, collator) over freshly generated UCF-style videos; `tiny` renders 64-px 16-frame clips."""
    data = generate_embedded(
        root / "videos",
        seed=0,
        n_images=0,
        n_videos=videos,
        image_size=64 if tiny else VIDEO_SIZE,
        video_frames=16 if tiny else VIDEO_FRAMES,
    )
    tokenizer = build_tokenizer(root / "tokenizer", data.texts())
    module = build_data_module(
        data.videos_json,
        tokenizer=tokenizer,
        image_size=image_size,
        num_frames=frames,
        max_boxes_per_sample=4,
    )
    return module.train_dataset, module.collator


def loader(dataset, collator, workers: int, batch: int, pin: bool = False) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=collator,
        pin_memory=pin,
        drop_last=True,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )


def decode_rate(dataset: VideoRegionDataset) -> float:
    """Frames/s of PyAV decoding alone: the frames each clip samples (second pass: codecs and files warm)."""
    for _ in range(2):
        frames, start = 0, time.perf_counter()
        for item, path in zip(dataset.items, dataset.paths, strict=True):
            wanted = sample_frame_indices(*item.frame_range, dataset.num_frames)
            frames += len(read_frames(path, wanted))
    return frames / (time.perf_counter() - start)


def endless(data_loader: DataLoader):
    """Batches over as many epochs as asked (persistent workers are reused between epochs)."""
    while True:
        yield from data_loader


def loader_rate(dataset, collator, workers: int, batch: int, batches: int) -> tuple[float, float]:
    """(frames/s, mean ms waited per batch) of a DataLoader after its first batch (worker start-up)."""
    it = endless(loader(dataset, collator, workers, batch))
    next(it)
    frames, waits, start = 0, [], time.perf_counter()
    for _ in range(batches):
        tick = time.perf_counter()
        out = next(it)
        waits.append(time.perf_counter() - tick)
        frames += int(out["frame_mask"].sum())
    return frames / (time.perf_counter() - start), statistics.mean(waits) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        dataset, collator = video_set(Path(tmp), args.videos)
        print(
            f"{args.videos} videos {VIDEO_SIZE}x{VIDEO_SIZE}, {VIDEO_FRAMES} frames; {FRAMES} sampled, "
            f"resized to {IMAGE_SIZE}; batch {args.batch}; torch threads 1"
        )
        print(f"{'stage':<14} {'frames/s':>9} {'per worker':>11} {'ms/batch':>9}")
        print(f"{'decode':<14} {decode_rate(dataset):9.1f} {'':>11} {'':>9}")
        start = time.perf_counter()
        samples = [dataset[i] for i in range(len(dataset))]
        per_sample = (time.perf_counter() - start) / len(samples)
        print(f"{'sample':<14} {FRAMES / per_sample:9.1f} {'':>11} {per_sample * args.batch * 1000:9.1f}")
        chunks = [samples[i : i + args.batch] for i in range(0, len(samples) - args.batch + 1, args.batch)]
        start = time.perf_counter()
        for chunk in chunks:
            collator(chunk)
        print(f"{'collate':<14} {'':>9} {'':>11} {(time.perf_counter() - start) / len(chunks) * 1000:9.2f}")
        for workers in args.workers:
            rate, wait = loader_rate(dataset, collator, workers, args.batch, args.batches)
            per = rate / max(workers, 1)
            print(f"{f'loader w={workers}':<14} {rate:9.1f} {per:11.1f} {wait:9.1f}")


if __name__ == "__main__":
    main()
