"""The tensors of a TorchScript archive (the `clip` package's `ViT-B-32.pt`), read without running its code.

Such an archive is a zip: `<name>/data.pkl` pickles the module tree (objects of `__torch__.*` classes built
with an attribute dict; tensors rebuilt by `torch._utils._rebuild_tensor_v2` from persistent ids
`('storage', torch.<T>Storage, key, location, numel)`), `<name>/data/<key>` holds each storage's raw
little-endian bytes, `<name>/code/` the TorchScript source and `constants.pkl` the code's constants.
`torch.jit.load` compiles and runs that code, and `torch.load(weights_only=True)` refuses such archives.

Here data.pkl goes through an unpickler whose every reachable global is this module's own: a tensor rebuild
that only records (storage, offset, size, stride), an empty-dict stand-in for the hooks OrderedDict, the jit
list builders as identities, a marker per storage type, and a plain attribute holder per `__torch__` class.
Anything else (another global, a non-dict object state, backward hooks, an unknown storage type) stops the
read with `UnsafeArchiveError` naming the archive and what it asked for; nothing from the archive is imported,
called or compiled, and `code/` and `constants.pkl` are never opened.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgclip.weights.errors import ArchiveError, UnsafeArchiveError

MAX_PICKLE_BYTES = 64 << 20  # data.pkl of a ViT-L/14 is ~100 KB; refuse zip bombs before inflating them
STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_KEY = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: str  # torch dtype name
    numel: int

    def __setstate__(self, state: Any) -> None:
        raise UnsafeArchiveError("object state set on a storage")


@dataclass(frozen=True)
class TensorRef:
    """Where a tensor's values lie in the archive; `TorchScriptArchive.tensor` reads them."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def __setstate__(self, state: Any) -> None:  # BUILD would rewrite a checked size or offset
        raise UnsafeArchiveError("object state set on a tensor")


class _Refused:
    """Base of every object the unpickler can reach: BUILD on it (a `__setstate__` payload) is refused."""

    def __setstate__(self, state: Any) -> None:
        raise UnsafeArchiveError(f"object state set on {type(self).__name__}")


class _Global(_Refused):
    """One of this module's functions, exposed to data.pkl under an allowed global name."""

    def __init__(self, name: str, fn):
        self.name, self._fn = name, fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


class _StorageType(_Refused):
    def __init__(self, dtype: str):
        self.dtype = dtype


class ScriptObject:
    """A `__torch__` object of the archive: only its attribute dict is kept."""

    qualified_name = "__torch__"

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise UnsafeArchiveError(
                f"{self.qualified_name} has a custom state ({type(state).__name__}), not an attribute dict"
            )
        self.attributes = state


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, metadata=None) -> TensorRef:
    """Stands in for torch._utils._rebuild_tensor_v2: records where the values lie, reads nothing."""
    if not isinstance(storage, StorageRef):
        raise UnsafeArchiveError("a tensor rebuilt from something other than an archive storage")
    if hooks:
        raise UnsafeArchiveError("a tensor with backward hooks")
    shaped = isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
    if not (shaped and _is_index(offset) and all(map(_is_index, (*size, *stride)))):
        raise UnsafeArchiveError(f"a tensor with offset {offset!r}, size {size!r}, stride {stride!r}")
    if metadata:
        raise ArchiveError(f"a tensor with metadata {metadata!r} (conjugate / negative views)")
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1 if all(size) else 0
    if extent > storage.numel:
        raise ArchiveError(f"a tensor of size {size} reaches past storage {storage.key}")
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad, hooks) -> TensorRef:
    if not isinstance(data, TensorRef) or hooks:
        raise UnsafeArchiveError("a parameter that is not a plain archive tensor")
    return data


def _empty_hooks(*args: Any) -> dict:
    if args:
        raise UnsafeArchiveError("an OrderedDict built with arguments")
    return {}


def _restore_type_tag(value: Any, type_str: Any) -> Any:
    return value


_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _Global("_rebuild_tensor_v2", _rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Global("_rebuild_parameter", _rebuild_parameter),
    ("collections", "OrderedDict"): _Global("OrderedDict", _empty_hooks),
    ("torch.jit._pickle", "restore_type_tag"): _Global("restore_type_tag", _restore_type_tag),
    **{
        ("torch.jit._pickle", f"build_{kind}list"): _Global(f"build_{kind}list", lambda data: data)
        for kind in ("int", "double", "bool", "tensor")
    },
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}
_SCRIPT_CLASSES: dict[str, type] = {}


def _script_class(qualified: str) -> type:
    if qualified not in _SCRIPT_CLASSES:
        _SCRIPT_CLASSES[qualified] = type("ScriptObject", (ScriptObject,), {"qualified_name": qualified})
    return _SCRIPT_CLASSES[qualified]


class _Unpickler(pickle.Unpickler):
    """find_class and persistent_load are the only doors out of the pickle; both answer from this module."""

    def __init__(self, data: bytes, where: str):
        super().__init__(io.BytesIO(data))
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module == "__torch__" or module.startswith("__torch__.")) and name.isidentifier():
            return _script_class(f"{module}.{name}")
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        raise UnsafeArchiveError(
            f"{self.where} asks for {module}.{name}; only tensors and module attributes are read from "
            "TorchScript archives (nothing was run)"
        )

    def persistent_load(self, pid: Any) -> StorageRef:
        ok = (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and _KEY.match(pid[2]) is not None
            and isinstance(pid[4], int)
            and pid[4] >= 0
        )
        if not ok:
            raise UnsafeArchiveError(f"{self.where} has a persistent id other than a storage: {pid!r:.80}")
        return StorageRef(pid[2], pid[1].dtype, pid[4])


def is_torchscript_archive(path: str | Path) -> bool:
    """A zip with `<name>/data.pkl` and `<name>/constants.pkl`: what torch.jit.save writes."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    return any(n.endswith("/data.pkl") and n[: -len("data.pkl")] + "constants.pkl" in names for n in names)


def _collect(obj: ScriptObject, prefix: str, out: dict[str, TensorRef], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for name, value in obj.attributes.items():
        if isinstance(value, TensorRef):
            out[prefix + name] = value
        elif isinstance(value, ScriptObject):
            _collect(value, f"{prefix}{name}.", out, seen)


class TorchScriptArchive:
    """The module tree's tensors by state-dict name (`visual.conv1.weight` ...), read lazily from the zip."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._zip = zipfile.ZipFile(self.path)
        pickles = [n for n in self._zip.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ArchiveError(f"{self.path}: expected one <name>/data.pkl, found {pickles or 'none'}")
        self.prefix = pickles[0][: -len("data.pkl")]
        order = self._zip.namelist()
        if (
            self.prefix + "byteorder" in order
            and self._zip.read(self.prefix + "byteorder").strip() != b"little"
        ):
            raise ArchiveError(f"{self.path}: big-endian storages are not supported")
        info = self._zip.getinfo(pickles[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise ArchiveError(
                f"{self.path}: {pickles[0]} is {info.file_size} bytes, over {MAX_PICKLE_BYTES}"
            )
        where = f"{self.path}:{pickles[0]}"
        try:
            root = _Unpickler(self._zip.read(pickles[0]), where).load()
        except ArchiveError as err:
            msg = str(err)
            raise type(err)(msg if msg.startswith(where) else f"{where}: {msg}") from None
        except Exception as err:  # malformed pickle: say so, never retry with another unpickler
            raise ArchiveError(
                f"{where}: not a readable TorchScript pickle ({type(err).__name__}: {err})"
            ) from None
        if not isinstance(root, ScriptObject):
            raise ArchiveError(f"{where} holds a {type(root).__name__}, not a module")
        self.root_class = root.qualified_name
        self.tensors: dict[str, TensorRef] = {}
        _collect(root, "", self.tensors, set())
        self._storages: dict[str, Any] = {}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: ref.size for name, ref in self.tensors.items()}

    def _storage(self, ref: StorageRef):
        import torch

        if ref.key not in self._storages:
            name = f"{self.prefix}data/{ref.key}"
            try:
                raw = self._zip.read(name)
            except KeyError:
                raise ArchiveError(f"{self.path}: storage {name} is missing") from None
            dtype = getattr(torch, ref.dtype)
            need = ref.numel * torch.empty((), dtype=dtype).element_size()
            if len(raw) < need:
                raise ArchiveError(f"{self.path}: {name} has {len(raw)} bytes, its tensors need {need}")
            flat = (
                torch.frombuffer(bytearray(raw[:need]), dtype=dtype) if need else torch.empty(0, dtype=dtype)
            )
            self._storages[ref.key] = flat
        return self._storages[ref.key]

    def tensor(self, name: str):
        """The named tensor as a CPU torch.Tensor with its own memory."""
        import torch

        ref = self.tensors[name]
        flat = self._storage(ref.storage)
        return torch.as_strided(flat, ref.size, ref.stride, ref.offset).clone()

    def close(self) -> None:
        self._storages.clear()
        self._zip.close()


__all__ = ["ArchiveError", "TorchScriptArchive", "UnsafeArchiveError", "is_torchscript_archive"]
