"""Drawing for the embedded synthetic data: flat coloured shapes on grey backgrounds, PNGs and video files.

Colours and shapes are chosen to stay distinct after downscaling to 64 px and lossy video coding, so a tiny
CLIP can tell every region apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 190),
    "orange": (250, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "dark grey": (60, 60, 60),
    "grey": (110, 110, 110),
    "silver": (160, 160, 160),
    "pale grey": (200, 200, 200),
}
PixelBox = tuple[int, int, int, int]  # inclusive corner pixels (x0, y0, x1, y1)
Shape = tuple[str, str, PixelBox]  # (shape, colour, pixel box)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, colour: str, box: PixelBox) -> None:
    x0, y0, x1, y1 = box
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)
    elif shape == "diamond":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def render(size: tuple[int, int], background: str, shapes: Sequence[Shape]) -> Image.Image:
    """An RGB image of `size` (width, height) with the shapes drawn in order."""
    image = Image.new("RGB", size, BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    for shape, colour, box in shapes:
        draw_shape(draw, shape, colour, box)
    return image


def normalised(box: PixelBox, size: tuple[int, int]) -> list[float]:
    """Inclusive pixel corners -> normalised xyxy covering those pixels."""
    width, height = size
    x0, y0, x1, y1 = box
    return [
        round(x0 / width, 6),
        round(y0 / height, 6),
        round((x1 + 1) / width, 6),
        round((y1 + 1) / height, 6),
    ]


def write_video(path: Path, frames: Sequence[Image.Image], fps: int) -> Path:
    """An MPEG-4 Part 2 video in an .mp4 container (encodable by PyAV's bundled FFmpeg everywhere)."""
    import av

    width, height = frames[0].size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}  # near-lossless: colours survive chroma subsampling
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())
    return path


def write_frame_folder(folder: Path, frames: Sequence[Image.Image]) -> Path:
    """A folder of PNG frames (frame_00000.png, ...): the loader's other video input."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames):
        image.save(folder / f"frame_{i:05d}.png")
    return folder


__all__ = ["BACKGROUNDS", "COLOURS", "SHAPES", "normalised", "render", "write_frame_folder", "write_video"]
