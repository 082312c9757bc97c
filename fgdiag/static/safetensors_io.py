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
ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
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


def read_header(path: Path) -> tuple[dict[str, TensorMeta], dict[str, str]]:
    """Parse and validate the header: every tensor's dtype, shape and byte range (InputError if malformed)."""
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
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(path, "not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise InputError(path, "not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + length
    tensors: dict[str, TensorMeta] = {}
    for name, entry in header.items():
        try:
            dtype = str(entry["dtype"])
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"malformed header entry for tensor {name!r}") from None
        meta = TensorMeta(dtype, shape, base + start, base + end)
        if not (base <= meta.start <= meta.end <= size) or (
            dtype in ITEMSIZE and meta.end - meta.start != meta.numel * ITEMSIZE[dtype]
        ):
            raise InputError(
                path, f"tensor {name!r}: byte range {start}..{end} does not match its shape/file"
            )
        tensors[name] = meta
    return tensors, {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


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
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return float(np.asarray(handle.get_tensor(name)).reshape(-1)[0])


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
