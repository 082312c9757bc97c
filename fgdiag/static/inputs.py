"""Recognise what each path on the command line is, read it, and gather the paths a configuration names.

One command takes configs, launch scripts, model directories, output directories, single checkpoints,
weight files and data sets in any order; they are judged together. A configuration also points at other
inputs (its `output_dir` with checkpoints to compare, its `model_name_or_path` whose scale matters, its
`data_path` whose size fixes the planned steps): those are read when they exist here, with a note.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from fgdiag.facts.checkpoint import CHECKPOINT_DIR, CheckpointInfo
from fgdiag.facts.deepspeed import DeepSpeedConfig
from fgdiag.facts.values import ConfigValues, InputError
from fgdiag.static.checkpoints import list_checkpoints, read_checkpoint, weight_files
from fgdiag.static.config_file import looks_like_model_config, parse_text, read_config_file
from fgdiag.static.deepspeed import MARKERS as DEEPSPEED_MARKERS
from fgdiag.static.deepspeed import read_deepspeed
from fgdiag.static.presets import apply_preset
from fgdiag.static.run_folder import LOCK_FILES, config_folder, quarantine_notes, read_run_folder
from fgdiag.static.shell_script import ScriptInfo, read_script

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth"}
SCRIPT_SUFFIXES = {".sh", ".bash"}
RUN_FILES = {"config.json", "trainer_state.json", "memory_bank_ranks.json", "tokenizer.json", *LOCK_FILES}
RUN_FILES |= {"tokenizer_config.json", "special_tokens_map.json", "vocab.json", "generation_config.json"}


@dataclass
class Inputs:
    values: ConfigValues = field(default_factory=ConfigValues)
    configs: list[Path] = field(default_factory=list)
    script: ScriptInfo | None = None
    models: list[CheckpointInfo] = field(default_factory=list)  # model dirs / weight files (not checkpoint-*)
    given_models: list[CheckpointInfo] = field(default_factory=list)  # those named on the command line
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    data: list[Path] = field(default_factory=list)
    listed: list[dict[str, str]] = field(default_factory=list)  # [{"path", "kind"}] in command-line order
    notes: list[str] = field(default_factory=list)
    deepspeed: DeepSpeedConfig | None = None  # a DeepSpeed JSON given on the command line
    run_folder: Path | None = None  # an output folder / checkpoint read as the configuration (none given)
    run_source: CheckpointInfo | None = None  # that run's own weights: its global scale stands for the source
    _seen: set[Path] = field(default_factory=set)

    @property
    def has_config(self) -> bool:
        return bool(self.configs) or self.script is not None or self.run_folder is not None

    @property
    def anchor(self) -> str:
        if self.configs:
            return str(self.configs[-1])
        if self.script is not None:
            return str(self.script.path)
        return str(self.run_folder / "config.json") if self.run_folder is not None else ""


def classify(path: Path) -> str:
    """config | script | model_dir | checkpoint | output_dir | weights | deepspeed | data (InputError when
    none fits)."""
    if not path.exists():
        raise InputError(path, "does not exist")
    mode = os.stat(path).st_mode
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) else "not a regular file"
        raise InputError(path, f"{kind}: refusing to read an input that may never end")
    if path.is_dir():
        if CHECKPOINT_DIR.match(path.name) and weight_files(path):
            return "checkpoint"
        if list_checkpoints(path):
            return "output_dir"
        if weight_files(path):
            return "model_dir"
        if (path / "config.json").is_file():
            raise InputError(
                path,
                "model directory without weights (model.safetensors, pytorch_model.bin or shards next to "
                "config.json)",
            )
        if any(p.suffix.lower() in {".json", ".jsonl"} and p.name not in RUN_FILES for p in path.iterdir()):
            return "data"
        raise InputError(path, "directory holds no checkpoint-*, model weights or data files")
    suffix = path.suffix.lower()
    if suffix in WEIGHT_SUFFIXES:
        return "weights"
    if suffix in SCRIPT_SUFFIXES:
        return "script"
    if suffix == ".toml":
        return "config"
    if suffix == ".jsonl":
        return "data"
    try:
        with path.open("r", encoding="utf-8") as handle:
            head = handle.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    stripped = head.lstrip()
    if suffix == ".json" or stripped[:1] in {"{", "["}:
        if stripped.startswith("["):
            return "data"
        if any(f'"{marker}"' in head for marker in DEEPSPEED_MARKERS):
            return "deepspeed"
        if '"weight_map"' in head:
            return "model_dir"
        return "config"
    if head.startswith("#!") or any(word in head for word in ("python", "torchrun", "deepspeed")):
        return "script"
    raise InputError(
        path,
        "unrecognised input: expected a config (.toml/.json), a launch script, a model or output directory, "
        "a weights file or a data set",
    )


def resolve_near(text: str, bases: list[Path]) -> Path | None:
    """A path written in a config or script, tried relative to each base (the launch directory is unknown)."""
    try:
        candidate = Path(text).expanduser()
        if candidate.is_absolute():
            return candidate if candidate.exists() else None
        return next((base / candidate for base in bases if (base / candidate).exists()), None)
    except (OSError, RuntimeError, ValueError):  # a name too long, a NUL, an unknown ~user: not here
        return None


def _bases(inputs: Inputs) -> list[Path]:
    bases = [Path.cwd()]
    for config in inputs.configs:
        bases.insert(0, config.parent)
    if inputs.script is not None:
        bases += [inputs.script.path.parent, inputs.script.path.parent.parent]
    return bases


def _add_checkpoints(inputs: Inputs, output_dir: Path) -> None:
    for checkpoint in list_checkpoints(output_dir):
        if checkpoint.resolve() not in inputs._seen and weight_files(checkpoint):
            inputs._seen.add(checkpoint.resolve())
            inputs.checkpoints.append(read_checkpoint(checkpoint))


def _add_model(inputs: Inputs, path: Path) -> CheckpointInfo:
    info = read_checkpoint(path)
    inputs._seen.add(path.resolve())
    inputs.models.append(info)
    return info


def _read_path(inputs: Inputs, path: Path, kind: str) -> None:
    if kind == "config":
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json" and looks_like_model_config(parse_text(text, path)):
            raise InputError(
                path, "this is a model's config.json; pass its directory (config.json + weights)"
            )
        read_config_file(path, inputs.values)
        inputs.configs.append(path)
    elif kind == "script":
        if inputs.script is not None:
            raise InputError(path, f"only one launch script per check (already read {inputs.script.path})")
        inputs.script = read_script(path)
        for f in inputs.script.values:
            inputs.values.set(f)
    elif kind == "checkpoint":
        inputs._seen.add(path.resolve())
        inputs.checkpoints.append(read_checkpoint(path))
    elif kind == "output_dir":
        _add_checkpoints(inputs, path)
        inputs.notes.extend(quarantine_notes(path))
        if weight_files(path):
            _add_model(inputs, path)
            inputs.notes.append(
                f"{path}: the model saved at the top of the output directory is checked for non-finite "
                "weights and missing keys, not compared as a checkpoint"
            )
    elif kind == "deepspeed":
        if inputs.deepspeed is not None:
            raise InputError(
                path, f"only one DeepSpeed config per check (already read {inputs.deepspeed.path})"
            )
        inputs.deepspeed = read_deepspeed(path)
    elif kind in {"model_dir", "weights"}:
        inputs.given_models.append(_add_model(inputs, path.parent if path.suffix == ".json" else path))
    else:
        inputs.data.append(path)


def _run_folder(inputs: Inputs, runs: list[Path]) -> None:
    """Without a config or script, an output folder / checkpoint is judged by the configuration it ran
    with."""
    if inputs.configs or inputs.script is not None:
        return
    for folder in runs:
        where = config_folder(folder)
        if where is None:
            continue
        inputs.notes.extend(read_run_folder(folder, inputs.values))
        inputs.run_folder = where
        own = [i for i in inputs.models + inputs.checkpoints if i.path.resolve() == where.resolve()]
        inputs.run_source = own[0] if own else read_checkpoint(where)
        if len(runs) > 1:
            inputs.notes.append(f"{len(runs)} run folders given; their configuration read from {folder}")
        return


def load_inputs(paths: list[Path]) -> Inputs:
    """Read every path (InputError on the first unreadable one), then the paths the configuration names."""
    inputs = Inputs()
    runs = []
    for path in paths:
        kind = classify(path)
        inputs.listed.append({"path": str(path), "kind": kind})
        _read_path(inputs, path, kind)
        if kind in {"output_dir", "checkpoint", "model_dir"}:
            runs.append(path)
    _run_folder(inputs, runs)
    inputs.notes.extend(apply_preset(inputs.values))
    inputs.notes.extend(inputs.values.notes)
    _follow_config(inputs)
    return inputs


def _follow_config(inputs: Inputs) -> None:
    """Read the output_dir and model_name_or_path the configuration names, when they exist here."""
    if not inputs.has_config:
        return
    bases = _bases(inputs)
    out = inputs.values.get("output_dir")
    if out is not None and isinstance(out.value, str) and "$" not in out.value:
        found = resolve_near(out.value, bases)
        if found is not None and found.is_dir() and list_checkpoints(found):
            before = len(inputs.checkpoints)
            _add_checkpoints(inputs, found)
            if len(inputs.checkpoints) > before:
                inputs.notes.append(
                    f"{out.location}: read {len(inputs.checkpoints) - before} checkpoint(s) from {found}"
                )
    source = inputs.values.get("model_name_or_path")
    if source is not None and isinstance(source.value, str) and "$" not in source.value:
        found = resolve_near(source.value, bases)
        readable = found is not None and (
            (found.is_dir() and bool(weight_files(found)))
            or (found.is_file() and found.suffix.lower() in WEIGHT_SUFFIXES)  # an OpenAI CLIP file
        )
        if found is not None and readable and found.resolve() not in inputs._seen:
            _add_model(inputs, found)
            inputs.notes.append(f"{source.location}: read the pretrained source {found}")


def pretrained_source(inputs: Inputs) -> tuple[CheckpointInfo | None, str | None]:
    """The model the run starts from, and a note when it is inferred.

    The model directory model_name_or_path names when it exists here; else the one model directory given on
    the command line (a local copy of a hub model, say); for a run folder judged on its own, its own weights
    (the global scale barely moves in fine-tuning); else none (the rules then assume, and say so).
    """
    if inputs.run_source is not None and "model_name_or_path" not in inputs.values:
        info = inputs.run_source
        return info, f"{info.path}: the run's own global logit_scale stands for its pretrained source's"
    source = inputs.values.get("model_name_or_path")
    if source is not None and isinstance(source.value, str):
        found = resolve_near(source.value, _bases(inputs))
        for info in inputs.models:
            if found is not None and info.path.resolve() == found.resolve():
                return info, None
    if len(inputs.given_models) == 1:
        info = inputs.given_models[0]
        if source is None:
            return info, f"{info.path} taken as the pretrained source"
        return info, (
            f"{info.path} taken as the pretrained source ({source.location} = {source.value!r} is not "
            "readable here)"
        )
    return None, None
