"""One reader over the files weights come in: names and shapes first, tensors on demand.

- safetensors (a file, a folder's `model.safetensors`, or shards listed in `model.safetensors.index.json`):
  read lazily with `safe_open`;
- torch files (`.pt` / `.bin`, or a folder's `pytorch_model.bin`): `torch.load(weights_only=True)`,
  memory-mapped when the file is a zip; a `{"state_dict": ...}` / `{"model": ...}` wrapper is opened;
- TorchScript archives (the `clip` package's downloads): `weights.archive`, which runs none of their code.
Nothing is ever unpickled beyond what those two safe readers allow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fgclip.weights.archive import TorchScriptArchive, is_torchscript_archive
from fgclip.weights.errors import WeightsFileError
from fgclip.weights.names import coverage, detect_layout

FOLDER_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
WRAPPER_KEYS = ("state_dict", "model")


class WeightSource:
    """Tensors of one checkpoint by saved name; `layout` and `coverage()` come from the names alone."""

    def __init__(self, path: Path, kind: str, shapes: dict[str, tuple[int, ...]], fetch):
        self.path, self.kind, self._shapes, self._fetch = path, kind, shapes, fetch
        self.layout = detect_layout(shapes)

    def keys(self) -> list[str]:
        return list(self._shapes)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def tensor(self, name: str):
        if name not in self._shapes:
            raise KeyError(f"{self.path}: no tensor {name!r}")
        return self._fetch(name)

    def coverage(self, text_layers: int | None = None, vision_layers: int | None = None):
        return coverage(self._shapes, text_layers, vision_layers)

    def __repr__(self) -> str:
        return f"WeightSource({str(self.path)!r}, {self.kind}, {self.layout}, {len(self._shapes)} tensors)"


def _safetensors(files: list[Path], where: Path) -> WeightSource:
    from safetensors import safe_open

    handles, owner, shapes = [], {}, {}
    for file in files:
        try:
            handle = safe_open(str(file), framework="pt")
        except Exception as err:
            raise WeightsFileError(f"{file}: not a readable safetensors file ({err})") from None
        handles.append(handle)
        for name in handle.keys():  # noqa: SIM118 - a safe_open handle has keys() but is not iterable
            owner[name] = handle
            shapes[name] = tuple(handle.get_slice(name).get_shape())
    return WeightSource(where, "safetensors", shapes, lambda name: owner[name].get_tensor(name))


def _torch_file(path: Path) -> WeightSource:
    import zipfile

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as err:  # weights_only refuses every global beyond tensors and plain containers
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsFileError(f"{path}: torch.load(weights_only=True) cannot read it: {first}") from None
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict) and len(state) <= 4:
            state = state[key]
            break
    if not isinstance(state, dict):
        raise WeightsFileError(f"{path}: holds a {type(state).__name__}, not a state dict")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsFileError(f"{path}: no tensors in its state dict")
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    return WeightSource(path, "torch", shapes, lambda name: tensors[name])


def _archive(path: Path) -> WeightSource:
    archive = TorchScriptArchive(path)
    return WeightSource(path, "torchscript", archive.shapes(), archive.tensor)


def _file(path: Path) -> WeightSource:
    if path.suffix == ".safetensors":
        return _safetensors([path], path)
    if is_torchscript_archive(path):
        return _archive(path)
    return _torch_file(path)


def _folder(path: Path) -> WeightSource:
    if (path / "model.safetensors").is_file():
        return _safetensors([path / "model.safetensors"], path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map: dict[str, Any] = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as err:
            raise WeightsFileError(f"{index}: no readable weight_map ({err})") from None
        return _safetensors([path / f for f in sorted(set(weight_map.values()))], path)
    if (path / "pytorch_model.bin").is_file():
        return _torch_file(path / "pytorch_model.bin")
    raise WeightsFileError(f"{path}: no weights ({', '.join(FOLDER_FILES)})")


def open_source(path: str | Path) -> WeightSource:
    """The checkpoint at `path` (a weights file or a checkpoint folder), without reading its tensors yet."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _folder(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such file or folder")
    return _file(path)


__all__ = ["WeightSource", "WeightsFileError", "open_source"]
