"""Region tracks: the box of each region on each sampled frame, from keyframes on absolute frame numbers.

Rules (as in the fgclip-vad fork, plus one fix):
- between the first and last keyframe: linear interpolation of xyxy between the surrounding keyframes;
- outside that span: no box;
- a single keyframe: a box only on the nearest sampled frame (ties go to the earlier frame);
- a track shorter than the sampling stride (no sampled frame inside its span) is kept on its nearest sampled
  frame like a single keyframe, instead of vanishing (the fork lost such regions);
- a normal region (no keyframes): the virtual full box [0, 0, 1, 1] on every real frame.
Torch-free; the dataset turns the lists into tensors.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from fgclip.data.boxes import Box

FULL_BOX: Box = (0.0, 0.0, 1.0, 1.0)
NO_BOX: Box = (0.0, 0.0, 0.0, 0.0)


def box_at(keyframes: Sequence[tuple[int, Box]], frame: int) -> Box:
    """The box at `frame`: interpolated inside the span, the nearest end keyframe's box outside it."""
    frames = [f for f, _ in keyframes]
    if frame <= frames[0]:
        return keyframes[0][1]
    if frame >= frames[-1]:
        return keyframes[-1][1]
    k = bisect.bisect_right(frames, frame) - 1
    (f0, b0), (f1, b1) = keyframes[k], keyframes[k + 1]
    w = (frame - f0) / (f1 - f0)
    return tuple((1.0 - w) * a + w * b for a, b in zip(b0, b1, strict=True))  # type: ignore[return-value]


def region_track(
    keyframes: Sequence[tuple[int, Box]], sampled: Sequence[int]
) -> tuple[list[Box], list[bool]]:
    """(box per sampled frame, mask per sampled frame) for one region; `keyframes` sorted by frame."""
    count = len(sampled)
    if not keyframes:
        return [FULL_BOX] * count, [True] * count
    boxes, mask = [NO_BOX] * count, [False] * count
    if not sampled:
        return boxes, mask
    first, last = keyframes[0][0], keyframes[-1][0]
    inside = [t for t, f in enumerate(sampled) if first <= f <= last]
    if len(keyframes) >= 2 and inside:
        for t in inside:
            boxes[t], mask[t] = box_at(keyframes, sampled[t]), True
        return boxes, mask
    distance = [0 if first <= f <= last else min(abs(f - first), abs(f - last)) for f in sampled]
    t = distance.index(min(distance))
    boxes[t], mask[t] = box_at(keyframes, sampled[t]), True
    return boxes, mask


__all__ = ["FULL_BOX", "NO_BOX", "box_at", "region_track"]
