"""Corpus inputs that are not training logs: an empty file, a binary file (a PNG plot passed by mistake) and a
text file with no training line at all (a TensorBoard server's console output). `watch` must exit 2 on them.

    python benchmarks/corpus/special_files.py [--out tests/corpus]
"""

from __future__ import annotations

import argparse
import math
import struct
import zlib
from pathlib import Path

from common import CORPUS, write


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def loss_curve_png(width: int = 160, height: int = 90) -> bytes:
    """A small greyscale PNG of a falling curve, built byte by byte (deterministic, no plotting library)."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type 0 for each scanline
        for x in range(width):
            curve = height * 0.15 + height * 0.7 * math.exp(-x / 40)
            row.append(0 if abs((height - y) - curve) < 1.5 else 255)
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + png_chunk(b"IEND", b"")
    )


TENSORBOARD = """\
/home/user/.local/lib/python3.11/site-packages/tensorboard/default.py:30: \
UserWarning: pkg_resources is deprecated as an API. \
See https://setuptools.pypa.io/en/latest/pkg_resources.html.
  import pkg_resources
TensorFlow installation not found - running with reduced feature set.

NOTE: Using experimental fast data loading logic. To disable, pass
    "--load_fast=false" and report issues on GitHub. More details:
    https://github.com/tensorflow/tensorboard/issues/4784

TensorBoard 2.16.2 at http://gpu-node-3:6006/ (Press CTRL+C to quit)
"""

WRITERS = {
    "empty.log": lambda: b"",
    "loss_curve.png": loss_curve_png,
    "tensorboard_server.log": lambda: TENSORBOARD,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=CORPUS)
    args = parser.parse_args()
    for name, writer in WRITERS.items():
        path = write(name, writer(), args.out)
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
