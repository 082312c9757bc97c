"""Video frames: probe a video's length, choose the frames to sample, decode them.

A video is a real file decoded with PyAV (the optional `video` extra) or a folder of frame images (PNG/JPG,
in natural name order). Frames are addressed by absolute frame number, the numbering of the fork's keyframes.
Decoding seeks to the clip start, so a late timestamped clip of a long video does not decode from frame 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fgclip.data.errors import DataFormatError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_FOLDER_FPS = 30.0


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    """Frame images of a frame folder in natural order (frame_2 before frame_10)."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)


def _open_container(path: Path):  # av.container.InputContainer; av is imported lazily
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is in the `video` extra
        raise DataFormatError(
            str(path), "decoding video files needs PyAV: pip install 'fgdiag[video]'"
        ) from exc
    try:
        return av.open(str(path))
    except (OSError, ValueError, av.FFmpegError) as exc:
        raise DataFormatError(str(path), f"cannot open video: {exc}") from None


def probe_video(path: str | Path, *, folder_fps: float = DEFAULT_FOLDER_FPS) -> VideoInfo:
    """Frame count and frame rate from the container's metadata (a frame folder: file count, `folder_fps`)."""
    path = Path(path)
    if path.is_dir():
        return VideoInfo(len(frame_files(path)), folder_fps)
    if not path.exists():
        raise DataFormatError(str(path), "video file does not exist")
    with _open_container(path) as container:
        if not container.streams.video:
            raise DataFormatError(str(path), "file has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else DEFAULT_FOLDER_FPS
        count = int(stream.frames or 0)
        if count == 0 and stream.duration and stream.time_base:
            count = round(float(stream.duration * stream.time_base) * fps)
        if count == 0:  # no usable metadata: count by decoding
            count = sum(1 for _ in container.decode(stream))
    return VideoInfo(count, fps)


def clip_range(info: VideoInfo, timestamps: tuple[float, float] | None) -> tuple[int, int]:
    """[start, end) absolute frames of the clip: the whole video, or the timestamped part of it."""
    if timestamps is None:
        return 0, info.num_frames
    start = min(info.num_frames, math.floor(timestamps[0] * info.fps))
    end = min(info.num_frames, math.ceil(timestamps[1] * info.fps))
    return start, end


def sample_frame_indices(start: int, end: int, num_frames: int) -> list[int]:
    """`num_frames` evenly spaced frames of [start, end) (first and last included); all frames when fewer."""
    count = end - start
    if count <= 0:
        return []
    if count <= num_frames:
        return list(range(start, end))
    if num_frames == 1:
        return [start + (count - 1) // 2]
    return [start + round(i * (count - 1) / (num_frames - 1)) for i in range(num_frames)]


def _read_container(path: Path, wanted: set[int]) -> dict[int, Image.Image]:
    found: dict[int, Image.Image] = {}
    last = max(wanted)
    with _open_container(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        origin = stream.start_time or 0
        first = min(wanted)
        if first > 0 and fps and stream.time_base:
            container.seek(origin + int(first / fps / float(stream.time_base)), stream=stream, backward=True)
        for counter, frame in enumerate(container.decode(stream)):
            if frame.pts is not None and fps and stream.time_base:
                index = round(float((frame.pts - origin) * stream.time_base) * fps)
            else:  # no timestamps: count frames (only exact without a seek)
                index = counter
            if index in wanted:
                found[index] = frame.to_image().convert("RGB")
            if index >= last:
                break
    return found


def read_frames(path: str | Path, indices: list[int]) -> dict[int, Image.Image]:
    """Decoded RGB frames for the wanted absolute indices; indices the video does not have are absent."""
    path = Path(path)
    wanted = set(indices)
    if not wanted:
        return {}
    if path.is_dir():
        files = frame_files(path)
        out = {}
        for i in sorted(wanted):
            if i < len(files):
                with Image.open(files[i]) as image:
                    out[i] = image.convert("RGB")
        return out
    if not path.exists():
        raise DataFormatError(str(path), "video file does not exist")
    try:
        return _read_container(path, wanted)
    except DataFormatError:
        raise
    except Exception as exc:  # decoder errors come in several types; name the file either way
        raise DataFormatError(str(path), f"cannot decode video: {type(exc).__name__}: {exc}") from None


__all__ = [
    "FRAME_SUFFIXES",
    "VideoInfo",
    "clip_range",
    "frame_files",
    "probe_video",
    "read_frames",
    "sample_frame_indices",
]
