"""An output folder or `checkpoint-N` of `fgclip.train`, read back as the configuration it ran with.

A run leaves its settings in three files: `config.json` (the model's FGCLIPConfig: head scales, clamp, memory
bank), `trainer_state.json` (max_steps, epochs, the per-device batch) and `training_args.bin` (every Trainer
argument, read as data by `pickled_fields`, never unpickled). Layered in that order (a later file wins),
they let `fgdiag check-config runs/seed` judge the seed's run from its folder alone: heads at 2.6592 and a
warm-up of 100000 in its config.json are FGD101 and FGD201. Also read here: the quarantine manifests in
the folder (ours and `fgclip.train`'s, which share a layout), each reconciled with what is on disk.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from fgclip.train.lock import HOLDER_NAME, LOCK_NAME
from fgclip.train.options import ModelArguments
from fgdiag.facts.checkpoint import CHECKPOINT_DIR
from fgdiag.facts.values import ConfigValues, Field
from fgdiag.static.config_file import key_lines
from fgdiag.static.pickled_fields import PickleFieldsError, training_arguments

LOCK_FILES = (LOCK_NAME, HOLDER_NAME)  # the training lock and its holder record: never data, never judged
MODEL_FIELDS = tuple(
    f.name for f in fields(ModelArguments) if f.name not in {"model_name_or_path", "tokenizer_name_or_path"}
)
STATE_FIELDS = {  # trainer_state.json key -> training argument
    "max_steps": "max_steps",
    "num_train_epochs": "num_train_epochs",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "train_batch_size": "per_device_train_batch_size",
}
MAX_JSON_BYTES = 64 << 20
RUN = "the run's own files"  # Field.why of what a run folder supplies: saved by the trainer, never unknown


def _json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(object, text) of a small JSON file; (None, why) when it is absent, too big or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None, "absent or too large"
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except RecursionError:
        return None, "nested too deeply"
    except (OSError, ValueError) as exc:
        return None, str(exc)[:200]
    return (data, text) if isinstance(data, dict) else (None, "not a JSON object")


def is_run_config(config: dict[str, Any] | None) -> bool:
    """config.json of an fgclip model (FGCLIPConfig): its head scales and bank are the run's settings."""
    if not config:
        return False
    return config.get("model_type") == "fgclip" or "finegrained_logit_scale_init" in config


def config_folder(folder: Path) -> Path | None:
    """Where the run's config.json is: the folder itself, else its newest numbered checkpoint."""
    if is_run_config(_json(folder / "config.json")[0]):
        return folder
    numbered = sorted(
        (int(m.group(1)), p) for p in folder.glob("checkpoint-*") if (m := CHECKPOINT_DIR.match(p.name))
    )
    for _, checkpoint in reversed(numbered):
        if is_run_config(_json(checkpoint / "config.json")[0]):
            return checkpoint
    return None


def _layers(where: Path, notes: list[str]) -> dict[str, Field]:
    """The run's settings, config.json < trainer_state.json < training_args.bin (a later file wins)."""
    found: dict[str, Field] = {}
    config, text = _json(where / "config.json")
    for name in MODEL_FIELDS:
        if config is not None and config.get(name) is not None:
            lines = key_lines(text, name, toml=False)
            found[name] = Field(
                name, config[name], str(where / "config.json"), lines[0] if lines else None, why=RUN
            )
    state, text = _json(where / "trainer_state.json")
    for key, name in STATE_FIELDS.items():
        value = state.get(key) if state else None
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (key != "max_steps" or value > 0)
        ):
            lines = key_lines(text, key, toml=False)
            found[name] = Field(
                name, value, str(where / "trainer_state.json"), lines[0] if lines else None, why=RUN
            )
    args_file = where / "training_args.bin"
    if args_file.is_file():
        try:
            cls, saved = training_arguments(args_file)
        except PickleFieldsError as exc:
            notes.append(f"{args_file}: not read ({exc}); batch and accumulation from trainer_state.json")
        else:
            for name, value in saved.items():
                skip = name.startswith("_") or name in {"output_dir", "logging_dir"}
                if isinstance(value, (str, int, float, bool)) and not skip:
                    found[name] = Field(name, value, str(args_file), why=RUN)
            notes.append(f"{args_file}: {cls.rsplit('.', 1)[-1]} read as data (never unpickled)")
    return found


def read_run_folder(folder: Path, values: ConfigValues) -> list[str]:
    """Set the run's settings from `folder` into `values`; returns notes on what was read (or not)."""
    where = config_folder(folder)
    if where is None:
        return []
    notes = [f"{folder}: no configuration given; judged the run's own ({where.name}/config.json)"]
    for found in _layers(where, notes).values():
        values.set(found)
    return notes


def _entry_state(entry: dict[str, Any]) -> str:
    """What the entry's paths show on disk, whatever its status says (a kill may have cut the record)."""
    moved_to = Path(str(entry.get("quarantined_path", "")))
    here = moved_to.exists() or moved_to.is_symlink()
    there = Path(str(entry.get("original_path", ""))).exists()
    status = entry.get("status")
    if here:
        state = "moved" if status == "moved" else f"moved (the manifest says {status})"
        return state + ("; a new one has been written in its place since" if there else "")
    if there:
        return "not moved" if status != "moved" else "back in place (restored)"
    return "missing from both places"


def quarantine_notes(output_dir: Path) -> list[str]:
    """One note per quarantine manifest of `output_dir` (written by fgdiag or fgclip.train), reconciled
    with the disk, plus folders found in a quarantine folder that its manifest does not list."""
    notes = []
    for manifest in sorted(output_dir.glob("quarantine/*/MANIFEST.json")):
        data, why = _json(manifest)
        if data is None:
            notes.append(f"{manifest}: unreadable quarantine manifest ({why})")
            continue
        entries = [e for e in data.get("entries", []) if isinstance(e, dict)]
        parts = []
        for entry in entries:
            name = Path(str(entry.get("original_path", "?"))).name
            reasons = entry.get("reasons") or [""]
            reason = f" ({str(reasons[0])[:120]})" if isinstance(reasons, list) and reasons[0] else ""
            parts.append(f"{name} {_entry_state(entry)}{reason}")
        listed = {Path(str(e.get("quarantined_path", ""))).name for e in entries}
        for stray in sorted(p for p in manifest.parent.iterdir() if p.name not in listed | {manifest.name}):
            if not stray.name.startswith(manifest.name):
                parts.append(f"{stray.name} is not in the manifest (moved from {output_dir / stray.name}?)")
        tool = str(data.get("tool", "unknown tool"))
        notes.append(f"{manifest} ({tool}): " + ("; ".join(parts) or "no entries"))
    return notes


__all__ = ["LOCK_FILES", "config_folder", "is_run_config", "quarantine_notes", "read_run_folder"]
