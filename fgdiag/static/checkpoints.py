"""Read checkpoints and model directories safely into `CheckpointInfo` facts (the rules judge them).

Safety first: `.safetensors` files are read through their header and one tensor at a time; `.bin`/`.pt` files
only through `torch.load(weights_only=True, mmap=True)`, which refuses to run the code a pickle may carry. A
file that cannot be read that way is reported as unreadable/unsafe, never unpickled some other way.

Ours, upstream FG-CLIP's and fgclip-vad's layouts are all read: the auxiliary scale is
`logit_scale_finegrained` (ours) or `logit_scale_finegraind` (upstream/fork); the bank is `memory_bank.*`
(ours,
warm-up in optimizer steps) or the fork's `region_*_queue_{normal,abnormal}` + `training_steps` (forward
passes). Safetensors checkpoints are read without torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgdiag.facts.checkpoint import CHECKPOINT_DIR, SCALE_HEADS, CheckpointInfo, Scale
from fgdiag.facts.clip_keys import normalise_keys
from fgdiag.facts.values import InputError
from fgdiag.static import archive_io
from fgdiag.static.safetensors_io import TensorMeta, nonfinite_tensors, read_header, read_scalar

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TORCH_DTYPES = {
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.float64": "F64",
    "torch.int64": "I64",
    "torch.int32": "I32",
    "torch.bool": "BOOL",
    "torch.uint8": "U8",
}


def weight_files(path: Path) -> list[Path]:
    """The weight files of a model directory (first layout found), or the file itself."""
    if path.is_file():
        return [path]
    for name in WEIGHT_FILES:
        candidate = path / name
        if candidate.is_file():
            if name.endswith(".index.json"):
                try:
                    index = json.loads(candidate.read_text(encoding="utf-8"))
                    shards = sorted(set(index["weight_map"].values()))
                except RecursionError:
                    raise InputError(candidate, "unreadable shard index: nested too deeply") from None
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise InputError(candidate, f"unreadable shard index: {str(exc)[:200]}") from None
                if not all(isinstance(s, str) and s and "/" not in s and s != ".." for s in shards):
                    raise InputError(candidate, "shard index names a file outside its folder")
                return [path / shard for shard in shards]
            return [candidate]
    found = sorted(path.glob("*.safetensors")) or sorted([*path.glob("*.bin"), *path.glob("*.pt")])
    return [
        f
        for f in found
        if f.name not in {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"}
    ]


def _torch_state(path: Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)`; mmap when the file is a zip archive (the torch.save default)."""
    try:
        import torch
    except ImportError:
        raise InputError(path, "reading .bin/.pt weights needs torch (safetensors files do not)") from None

    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc) and "zip" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusal, corrupt archive, truncated file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            path,
            f"unreadable or unsafe: torch.load(weights_only=True) refused it ({first[:200]}); nothing in it "
            "was executed",
        ) from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    raise InputError(path, f"not a state dict (a {type(obj).__name__})")


@dataclass
class WeightSet:
    """Every tensor of one model directory or weights file, across shards and formats; data read lazily."""

    files: list[Path]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    _where: dict[str, tuple[Path, Any]] = field(default_factory=dict, repr=False)
    _archives: dict[Path, Any] = field(default_factory=dict, repr=False)  # TorchScript archives by file

    @classmethod
    def open(cls, path: Path) -> WeightSet:
        files = weight_files(path)
        if not files:
            raise InputError(path, "no weights (model.safetensors, pytorch_model.bin or shards) found")
        weights = cls(files)
        for file in files:
            if not file.is_file():
                raise InputError(file, "listed weight file does not exist")
            if file.suffix == ".safetensors":
                tensors, _ = read_header(file)
                for name, meta in tensors.items():
                    weights._add(name, file, meta, meta.dtype, meta.shape)
            elif archive_io.is_archive(file):  # the clip package's download: never torch.jit.load-ed
                archive = archive_io.open_archive(file)
                weights._archives[file] = archive
                for name, ref in archive.tensors.items():
                    weights._add(name, file, ref, archive_io.dtype_code(ref), tuple(ref.size))
            else:
                for name, tensor in _torch_state(file).items():
                    weights._add(
                        name,
                        file,
                        tensor,
                        TORCH_DTYPES.get(str(tensor.dtype), str(tensor.dtype)),
                        tuple(tensor.shape),
                    )
        return weights

    def _add(self, name: str, file: Path, handle: Any, dtype: str, shape: tuple[int, ...]) -> None:
        self.shapes[name], self.dtypes[name], self._where[name] = shape, dtype, (file, handle)

    def scalar(self, name: str) -> float:
        file, handle = self._where[name]
        if isinstance(handle, TensorMeta):
            return read_scalar(file, name, handle)
        if file in self._archives:
            return archive_io.scalar(self._archives[file], name)
        if handle.numel() != 1:
            raise InputError(file, f"tensor {name!r} has shape {list(handle.shape)}, expected a scalar")
        return float(handle.reshape(-1)[0].float())

    def nonfinite(self) -> dict[Path, list[str]]:
        """Per file, the tensors holding NaN/Inf (safetensors via numpy, torch tensors via torch.isfinite)."""
        out: dict[Path, list[str]] = {}
        for file in self.files:
            names = [n for n, (f, _) in self._where.items() if f == file]
            if file.suffix == ".safetensors":
                bad = nonfinite_tensors(file, {n: self._where[n][1] for n in names})
            elif file in self._archives:
                bad = archive_io.nonfinite(self._archives[file])
            else:
                import torch

                bad = sorted(
                    n
                    for n in names
                    if self._where[n][1].is_floating_point()
                    and not bool(torch.isfinite(self._where[n][1]).all())
                )
            if bad:
                out[file] = bad
        return out


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InputError(path, "unreadable JSON: nested too deeply (a corrupt or hostile file)") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError, bad UTF-8, a 5,000-digit integer
        raise InputError(path, f"unreadable JSON: {str(exc)[:200]}") from None
    return data if isinstance(data, dict) else None


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_DIR.match(path.name)
    if match:
        return int(match.group(1))
    state = _read_json(path / "trainer_state.json") if path.is_dir() else None
    step = state.get("global_step") if state else None
    return step if isinstance(step, int) else None


def list_checkpoints(output_dir: Path) -> list[Path]:
    """`checkpoint-*` directories in numeric order (checkpoint-900 before checkpoint-1000), others last."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir()]
    numeric = sorted(
        (p for p in found if CHECKPOINT_DIR.match(p.name)), key=lambda p: int(p.name.split("-")[1])
    )
    return numeric + sorted(p for p in found if not CHECKPOINT_DIR.match(p.name))


def read_checkpoint(path: Path) -> CheckpointInfo:
    """Open a checkpoint / model directory (or one weights file) and read its scales and bank settings."""
    weights = WeightSet.open(path)
    names = normalise_keys(list(weights.shapes))
    saved = set(weights.shapes)
    if {"training_steps", "queue_ptr_normal"} & saved or any(
        n.startswith("region_image_queue") for n in saved
    ):
        naming = "fork"
    elif "logit_scale_finegraind" in saved or "text_filip_projection.weight" in saved:
        naming = "upstream"
    elif "logit_scale_finegrained" in names or any(n.startswith("memory_bank.") for n in names):
        naming = "fgclip"
    else:
        naming = "clip"
    scales = {
        head: Scale(weights.scalar(names[head]), weights.dtypes[names[head]], names[head])
        for head in SCALE_HEADS
        if head in names
    }
    bank_size = warmup = passes = None
    if "memory_bank.image_queue" in names:
        bank_size = weights.shapes[names["memory_bank.image_queue"]][0]  # (K, D)
    fork_queues = [n for n in names if re.fullmatch(r"region_image_queue_(normal|abnormal)", n)]
    if fork_queues:
        bank_size = sum(weights.shapes[names[n]][-1] for n in fork_queues)  # each (D, K/2)
    if "memory_bank.warmup_steps" in names:
        warmup = int(weights.scalar(names["memory_bank.warmup_steps"]))
    if "training_steps" in names:
        passes = int(weights.scalar(names["training_steps"]))
    config = _read_json(path / "config.json") if path.is_dir() else None
    if warmup is None and config and isinstance(config.get("memory_bank_warmup_steps"), int):
        warmup = config["memory_bank_warmup_steps"]
    return CheckpointInfo(
        path,
        weights,
        naming,
        scales,
        bank_size,
        warmup,
        passes,
        checkpoint_step(path) if path.is_dir() else None,
        config,
    )
