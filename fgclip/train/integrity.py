"""Can a checkpoint be resumed from? Header-level checks that never unpickle, and a move aside for the
ones that cannot (never a deletion).

A run killed while saving, or a full disk, leaves a `checkpoint-N` whose weights are truncated. Resuming
from it crashes; training past it would write into the same folder (or rotate it away). So an unreadable
checkpoint is named, moved into `<output_dir>/quarantine/<UTC time>/` by one atomic rename next to a
MANIFEST.json (same layout as `fgdiag check-config --quarantine`) that says how to move it back, and the
run resumes from the newest intact one.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import zipfile
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TORCH_ARCHIVES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")  # torch.save zip archives
JSON_FILES = ("trainer_state.json", "config.json")
QUARANTINE_DIR = "quarantine"
MANIFEST = "MANIFEST.json"


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            fh.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        return f"{path.name}: {exc}"
    return None


def _weight_files(checkpoint: Path) -> list[Path] | str:
    if (checkpoint / WEIGHTS).exists():
        return [checkpoint / WEIGHTS]
    index = checkpoint / WEIGHTS_INDEX
    if not index.exists():
        return f"no {WEIGHTS}"
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [checkpoint / name for name in sorted(set(weight_map.values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{WEIGHTS_INDEX}: {exc}"


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (the file and the reason), or None when it looks intact."""
    files = _weight_files(checkpoint)
    if isinstance(files, str):
        return files
    for path in files:
        if not path.exists():
            return f"{path.name} is missing"
        if problem := _safetensors_problem(path):
            return problem
    for name in JSON_FILES:  # absent is allowed (save_pretrained writes no trainer state); cut is not
        path = checkpoint / name
        if not path.exists():
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"{name}: {exc}"
    for name in TORCH_ARCHIVES:  # a truncated zip loses its central directory at the end
        path = checkpoint / name
        if path.exists() and not zipfile.is_zipfile(path):
            return f"{name} is not a complete torch archive ({path.stat().st_size} bytes)"
    return None


def _fresh_folder(output_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = output_dir / QUARANTINE_DIR / stamp, 1
    while folder.exists():
        folder = output_dir / QUARANTINE_DIR / f"{stamp}-{n}"
        n += 1
    folder.mkdir(parents=True)
    return folder


def _write_manifest(folder: Path, manifest: dict) -> None:
    partial = folder / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, folder / MANIFEST)


def set_aside(output_dir: Path, unreadable: dict[Path, str]) -> Path:
    """Move each unreadable checkpoint into a fresh quarantine folder; the manifest is rewritten after
    every move, so an interrupted run still leaves a truthful record. Returns the folder."""
    folder = _fresh_folder(output_dir)
    entries: list[dict[str, Any]] = []
    manifest = {
        "tool": "fgclip.train (unreadable checkpoints)",
        "output_dir": str(output_dir.resolve()),
        "note": "Nothing was deleted. To restore, run each entry's `restore` command.",
        "entries": entries,
    }
    for checkpoint, problem in unreadable.items():
        target = folder / checkpoint.name
        entries.append(
            {
                "original_path": str(checkpoint.resolve()),
                "quarantined_path": str(target.resolve()),
                "reasons": [problem],
                "restore": (
                    f"mv {shlex.quote(str(target.resolve()))} {shlex.quote(str(checkpoint.resolve()))}"
                ),
                "status": "pending",
            }
        )
        _write_manifest(folder, manifest)
        os.rename(checkpoint, target)
        entries[-1]["status"] = "moved"
        _write_manifest(folder, manifest)
    return folder


__all__ = ["MANIFEST", "QUARANTINE_DIR", "checkpoint_problem", "set_aside"]
