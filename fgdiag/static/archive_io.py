"""The `clip` package's TorchScript archives (`~/.cache/clip/ViT-B-32.pt`) as check-config reads them: names
and shapes through `fgclip.weights.archive.TorchScriptArchive` (which runs none of the archive's code, and
refuses anything beyond tensors and module attributes), values with numpy straight from the zip's storage
records, so neither torch nor the archive's code is ever loaded.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fgclip.weights.archive import TensorRef, TorchScriptArchive, is_torchscript_archive
from fgclip.weights.errors import ArchiveError
from fgdiag.facts.values import InputError
from fgdiag.static.safetensors_io import bf16_to_float32

# torch dtype names of the archive's storages -> (safetensors-style code, numpy dtype, float?)
STORAGE = {
    "float32": ("F32", np.float32, True),
    "float64": ("F64", np.float64, True),
    "float16": ("F16", np.float16, True),
    "bfloat16": ("BF16", np.uint16, True),
    "int64": ("I64", np.int64, False),
    "int32": ("I32", np.int32, False),
    "int16": ("I16", np.int16, False),
    "int8": ("I8", np.int8, False),
    "uint8": ("U8", np.uint8, False),
    "bool": ("BOOL", np.bool_, False),
}


def is_archive(path: Path) -> bool:
    try:
        return path.is_file() and is_torchscript_archive(path)
    except (OSError, ValueError):
        return False


def open_archive(path: Path) -> TorchScriptArchive:
    """The archive's tensor table (its zip closed again: values are read on demand); InputError naming the
    file for an unsafe or unreadable one."""
    try:
        archive = TorchScriptArchive(path)
        archive.close()
        return archive
    except ArchiveError as exc:
        raise InputError(path, f"{exc}".replace(f"{path}: ", "").replace(f"{path}:", "")) from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, f"unreadable TorchScript archive: {exc}") from None


def dtype_code(ref: TensorRef) -> str:
    return STORAGE.get(ref.storage.dtype, (ref.storage.dtype, None, False))[0]


def _values(archive: TorchScriptArchive, ref: TensorRef, zf: zipfile.ZipFile) -> np.ndarray:
    """The storage's values as a flat numpy array (bf16 as float32); InputError when its record is short."""
    code, dtype, _ = STORAGE[ref.storage.dtype]
    name = f"{archive.prefix}data/{ref.storage.key}"
    try:
        raw = zf.read(name)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(archive.path, f"storage {name} unreadable ({exc})") from None
    need = ref.storage.numel * np.dtype(dtype).itemsize
    if len(raw) < need:
        raise InputError(archive.path, f"storage {name} has {len(raw)} bytes, its tensors need {need}")
    flat = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"), count=ref.storage.numel)
    return bf16_to_float32(flat) if code == "BF16" else flat


def scalar(archive: TorchScriptArchive, name: str) -> float:
    ref = archive.tensors[name]
    if any(n != 1 for n in ref.size):
        raise InputError(archive.path, f"tensor {name!r} has shape {list(ref.size)}, expected a scalar")
    if ref.storage.dtype not in STORAGE:
        raise InputError(archive.path, f"tensor {name!r}: unsupported dtype {ref.storage.dtype}")
    with zipfile.ZipFile(archive.path) as zf:
        return float(_values(archive, ref, zf)[ref.offset])


def nonfinite(archive: TorchScriptArchive) -> list[str]:
    """Float tensors whose storage holds NaN or Inf (one storage in memory at a time)."""
    by_storage: dict[str, list[str]] = {}
    for name, ref in archive.tensors.items():
        if STORAGE.get(ref.storage.dtype, ("", None, False))[2] and ref.storage.numel:
            by_storage.setdefault(ref.storage.key, []).append(name)
    found = []
    with zipfile.ZipFile(archive.path) as zf:
        for names in by_storage.values():
            if not np.isfinite(_values(archive, archive.tensors[names[0]], zf)).all():
                found.extend(names)
    return sorted(found)


__all__ = ["dtype_code", "is_archive", "nonfinite", "open_archive", "scalar"]
