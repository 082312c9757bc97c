"""Torch-free, bounded-memory reads of `.safetensors` files: the header, scalars, and a non-finite scan.

check-config must answer in about a second for a ViT-B/16 model plus three checkpoints, and importing torch
alone costs more than that, so tensors are read through safetensors' numpy backend (`safe_open`, lazily, one
tensor at a time). numpy has no bfloat16, and fgclip-vad saves its scales in bf16, so bf16 tensors are
decoded from their raw bits instead (the file format is an 8-byte header length, a JSON header with dtype,
shape and byte offsets, then the data). Large tensors are scanned in slices so memory stays bounded.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgdiag.facts.values import InputError

NUMPY_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
BITS = {  # every dtype the safetensors format defines, with its width in bits
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
SLICE_BYTES = 64 << 20  # scan big tensors in slices of about this many bytes
MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class TensorMeta:
    dtype: str  # safetensors dtype code: F32, BF16, I64, ...
    shape: tuple[int, ...]
    start: int  # absolute byte offset of the data in the file
    end: int

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


USIZE = 2**64  # the library reads every count and offset as a 64-bit unsigned integer


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < USIZE


def _entry(path: Path, name: str, entry: object, base: int) -> TensorMeta:
    """One header entry checked as the safetensors library checks it: a known dtype, a shape of counts,
    two offsets whose span is exactly the tensor's bytes."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise InputError(
            path, f"corrupt safetensors header: entry {name!r} is not {{dtype, shape, data_offsets}}"
        )
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in BITS:
        raise InputError(path, f"corrupt safetensors header: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise InputError(
            path, f"corrupt safetensors header: tensor {name!r} has shape {shape!r} (expected counts >= 0)"
        )
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise InputError(path, f"corrupt safetensors header: tensor {name!r} has data_offsets {offsets!r}")
    meta = TensorMeta(dtype, tuple(shape), base + offsets[0], base + offsets[1])
    bits = meta.numel * BITS[dtype]
    running = [1]
    for dim in shape:  # the library multiplies dims in order, with overflow checks
        running.append(running[-1] * dim)
    if max(running) >= USIZE or bits >= USIZE:
        raise InputError(path, f"corrupt safetensors header: tensor {name!r}: shape {shape} overflows")
    if offsets[1] < offsets[0] or bits % 8 or offsets[1] - offsets[0] != bits // 8:
        raise InputError(
            path,
            f"corrupt safetensors header: tensor {name!r} ({dtype} {list(shape)}) spans bytes "
            f"{offsets[0]}..{offsets[1]}, not the {bits / 8:g} its shape needs",
        )
    return meta


def _contiguous(path: Path, tensors: dict[str, TensorMeta], base: int, size: int) -> None:
    """Tensors must tile the data section exactly, as the safetensors library requires: no overlap, no gap,
    nothing beyond the end of the file."""
    end = base
    for name, meta in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if meta.start != end:
            what = "overlaps the previous tensor" if meta.start < end else "leaves a gap before it"
            raise InputError(
                path,
                f"corrupt safetensors header: tensor {name!r} starts at byte {meta.start - base} and {what} "
                f"(which ends at {end - base})",
            )
        end = meta.end
    if end != size:
        raise InputError(
            path,
            f"corrupt or truncated safetensors file: the header describes {end - base} data bytes, the file "
            f"holds {size - base}",
        )


def read_header(path: Path) -> tuple[dict[str, TensorMeta], dict[str, str]]:
    """Parse and validate the header: every tensor's dtype, shape and byte range, and the string metadata
    (InputError naming the file for anything the safetensors library would refuse, so no later read of the
    file raises)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise InputError(path, "not a safetensors file (shorter than its 8-byte header length)")
            length = struct.unpack("<Q", prefix)[0]
            if length > min(MAX_HEADER, size - 8):
                raise InputError(path, f"not a safetensors file (header length {length} exceeds the file)")
            raw = handle.read(length)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    try:
        header = json.loads(raw)
    except RecursionError:
        raise InputError(path, "corrupt safetensors header: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError, a 5,000-digit integer, bad UTF-8
        raise InputError(path, "not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise InputError(path, "not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise InputError(path, "corrupt safetensors header: __metadata__ must map names to strings")
    base = 8 + length
    tensors = {str(name): _entry(path, str(name), entry, base) for name, entry in header.items()}
    _contiguous(path, tensors, base, size)
    return tensors, dict(metadata or {})


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the upper half of a float32: shift the 16 stored bits up."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_scalar(path: Path, name: str, meta: TensorMeta) -> float:
    """The value of a one-element tensor (a logit scale, a step counter); InputError for anything larger."""
    if meta.numel != 1:
        raise InputError(path, f"tensor {name!r} has shape {list(meta.shape)}, expected a scalar")
    if meta.dtype == "BF16":
        with path.open("rb") as handle:
            handle.seek(meta.start)
            bits = np.frombuffer(handle.read(2), dtype=np.uint16)
        return float(bf16_to_float32(bits)[0])
    if meta.dtype not in NUMPY_DTYPES:
        raise InputError(path, f"tensor {name!r}: unsupported dtype {meta.dtype}")
    with path.open("rb") as handle:
        handle.seek(meta.start)
        dtype = np.dtype(NUMPY_DTYPES[meta.dtype]).newbyteorder("<")  # the format is little-endian
        return float(np.frombuffer(handle.read(meta.end - meta.start), dtype=dtype)[0])


def _raw_nonfinite(mapped: mmap.mmap, meta: TensorMeta) -> bool:
    """Exponent bits all ones means Inf or NaN (bf16: 0x7F80; fp8 e5m2: 0x7C; e4m3 has NaN only: 0x7F)."""
    dtype, mask = {"BF16": (np.uint16, 0x7F80), "F8_E5M2": (np.uint8, 0x7C), "F8_E4M3": (np.uint8, 0x7F)}[
        meta.dtype
    ]
    item = np.dtype(dtype).itemsize
    step = max(1, SLICE_BYTES // item)
    for first in range(0, meta.numel, step):
        count = min(step, meta.numel - first)
        bits = np.frombuffer(mapped, dtype=dtype, count=count, offset=meta.start + first * item)
        if np.any((bits & mask) == mask):
            return True
    return False


def nonfinite_tensors(path: Path, tensors: dict[str, TensorMeta]) -> list[str]:
    """Names of float tensors holding NaN or Inf, reading one tensor (or one slice of a big one) at a time;
    InputError when the file changed or is unreadable since its header was read."""
    try:
        return _nonfinite(path, tensors)
    except InputError:
        raise
    except Exception as exc:  # safetensors' own refusal (SafetensorError), an mmap or I/O error
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"unreadable safetensors data: {first}") from None


def _nonfinite(path: Path, tensors: dict[str, TensorMeta]) -> list[str]:
    """Names of float tensors holding NaN or Inf, reading one tensor (or one slice of a big one) at a time."""
    from safetensors import safe_open

    found: list[str] = []
    floats = {n: m for n, m in tensors.items() if m.dtype in FLOAT_DTYPES and m.numel}
    raw = {n: m for n, m in floats.items() if m.dtype not in NUMPY_DTYPES}
    if raw:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            found.extend(name for name, meta in raw.items() if _raw_nonfinite(mapped, meta))
    with safe_open(str(path), framework="numpy") as handle:
        for name, meta in floats.items():
            if name in raw:
                continue
            nbytes = meta.end - meta.start
            if nbytes <= SLICE_BYTES or len(meta.shape) == 0 or meta.shape[0] <= 1:
                if not np.isfinite(handle.get_tensor(name)).all():
                    found.append(name)
                continue
            rows = max(1, meta.shape[0] * SLICE_BYTES // nbytes)
            view = handle.get_slice(name)
            rows_total = meta.shape[0]
            if any(
                not np.isfinite(view[first : min(first + rows, rows_total)]).all()
                for first in range(0, rows_total, rows)
            ):
                found.append(name)
    return sorted(found)
