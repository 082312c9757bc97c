"""Helpers shared by the corpus writers: bf16 rounding, tqdm bars, learning-rate schedules, mojibake, output.

The written logs imitate what the real programs print, byte for byte where it matters (carriage returns of
tqdm, bf16-quantised values, Python float reprs); every number comes from a seeded `random.Random`.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CORPUS = ROOT / "tests" / "corpus"
BLOCKS = " ▏▎▍▌▋▊▉█"


def bf16(x: float) -> float:
    """`x` rounded to bfloat16 (round to nearest even), as a bf16 training run prints it."""
    if not math.isfinite(x):
        return x
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def half(x: float) -> float:
    """`x` rounded to float16 (the fork's loss parts are fp16-precise: 0.708984, 1.081665)."""
    if not math.isfinite(x) or abs(x) > 65504:
        return x
    return struct.unpack("<e", struct.pack("<e", x))[0]


def interval(seconds: float) -> str:
    """tqdm's format_interval: MM:SS or H:MM:SS."""
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def tqdm_bar(n: int, total: int, sec_per_it: float | None) -> str:
    """One tqdm redraw, e.g. ` 4%|▍         | 10/240 [03:01<1:06:41, 17.40s/it]` (no carriage return)."""
    frac = n / total
    cells = frac * 10
    full = int(cells)
    bar = "█" * full
    if full < 10:
        bar += BLOCKS[int((cells - full) * 8)] if cells > full else ""
    bar = bar.ljust(10)
    if sec_per_it is None or n == 0:
        return f"{100 * frac:3.0f}%|{bar}| {n}/{total} [00:00<?, ?it/s]"
    elapsed = interval(n * sec_per_it)
    remaining = interval((total - n) * sec_per_it)
    rate = f"{sec_per_it:.2f}s/it" if sec_per_it >= 1 else f"{1 / sec_per_it:.2f}it/s"
    return f"{100 * frac:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}]"


def warmup_cosine(step: int, total: int, base: float, warmup: int) -> float:
    """transformers' get_cosine_schedule_with_warmup."""
    if step < warmup:
        return base * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return base * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_linear(step: int, total: int, base: float, warmup: int) -> float:
    """transformers' get_linear_schedule_with_warmup."""
    if step < warmup:
        return base * step / max(1, warmup)
    return base * max(0.0, (total - step) / max(1, total - warmup))


def mojibake(text: str) -> str:
    """UTF-8 bytes decoded as cp1252 (the bytes cp1252 leaves undefined are lost), as a Windows editor or a
    misconfigured terminal double-encodes a log; written back as UTF-8."""
    return text.encode("utf-8").decode("cp1252", errors="ignore")


def write(name: str, content: str | bytes, out: Path = CORPUS) -> Path:
    """Write one corpus file (bytes as they are, text as UTF-8 without newline translation)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    path.write_bytes(data)
    return path
