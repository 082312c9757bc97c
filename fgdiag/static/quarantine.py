"""Move stale checkpoints aside, never delete them.

The seed's fix told its user to `rm -rf checkpoints/*/checkpoint-*`. Deleting a user's checkpoints is not a
diagnostic's call: a stale checkpoint (FGD401) is moved by one atomic `os.rename` into
`<output_dir>/quarantine/<UTC timestamp>/`, next to a MANIFEST.json that says what moved, why (codes, values)
and how to move it back. The manifest is rewritten atomically after every move, so an interrupted run
leaves a record of exactly what moved. A symlinked checkpoint is moved as the link. Nothing in this module
removes a file.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgdiag.diagnostic import Finding
from fgdiag.facts.checkpoint import CHECKPOINT_DIR
from fgdiag.facts.values import InputError

QUARANTINE_DIR = "quarantine"
MANIFEST = "MANIFEST.json"
CODES = ("FGD401",)


@dataclass(frozen=True)
class Candidate:
    path: Path
    findings: tuple[Finding, ...]


class QuarantineError(InputError):
    """The quarantine folder cannot be made (read-only output folder, `quarantine` is a file, ...): nothing
    was moved; the CLI exits 2 with this message."""


def candidates(findings: list[Finding]) -> tuple[list[Candidate], list[str]]:
    """Checkpoint folders (`checkpoint-N`) that FGD401 findings name, in order of appearance; and, for the
    other flagged paths, why they stay where they are."""
    by_path: dict[Path, list[Finding]] = {}
    skipped: list[str] = []
    for finding in findings:
        if finding.code not in CODES:
            continue
        path = Path(finding.evidence.get("path") or finding.location)
        if path.is_dir() and CHECKPOINT_DIR.match(path.name):
            by_path.setdefault(path, []).append(finding)
        elif path.is_dir():
            skipped.append(
                f"{path}: not moved: only checkpoint-<number> folders are resumed from (by fgclip.train and "
                "the Trainer), so this one is never picked up by accident; rename or move it yourself"
            )
        else:
            skipped.append(f"{path}: not moved: not a folder")
    return [Candidate(path, tuple(found)) for path, found in by_path.items()], list(dict.fromkeys(skipped))


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write atomically: a partial file is renamed over the manifest only once complete (and synced)."""
    partial = folder / (MANIFEST + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, folder / MANIFEST)


def _fresh_folder(output_dir: Path, stamp: str) -> Path:
    base = output_dir / QUARANTINE_DIR / stamp
    folder, n = base, 1
    try:
        while folder.exists():
            folder = base.with_name(f"{stamp}-{n}")
            n += 1
        folder.mkdir(parents=True)
    except OSError as exc:
        raise QuarantineError(
            output_dir / QUARANTINE_DIR,
            f"cannot make the quarantine folder ({exc.strerror or exc}); nothing was moved. Make "
            f"{output_dir / QUARANTINE_DIR} a writable folder, or move the stale checkpoints yourself",
        ) from None
    return folder


def _absolute(path: Path) -> Path:
    """The path as the user sees it: its parents resolved, its own name kept (a symlinked checkpoint-N is
    recorded, and moved, as the link, never as its target)."""
    return path.parent.resolve() / path.name


def _entry(item: Candidate, target: Path, status: str) -> dict[str, Any]:
    original = _absolute(item.path)
    return {
        "original_path": str(original),
        "quarantined_path": str(target),
        "symlink_to": os.readlink(target) if target.is_symlink() else None,
        "codes": sorted({f.code for f in item.findings}),
        "reasons": [f.message for f in item.findings],
        "differences": [d for f in item.findings for d in f.evidence.get("differences", [])],
        "restore": f"mv {shlex.quote(str(target))} {shlex.quote(str(original))}",
        "status": status,
    }


def quarantine(items: list[Candidate], now: float | None = None) -> list[dict[str, Any]]:
    """Move each candidate into its output directory's quarantine folder; return one record per folder.

    The manifest is written (atomically) before the first move with no entries, and again after each move
    with that move's entry: a kill at any point leaves a manifest that lists only what was really moved
    (the one move a kill can cut between rename and record shows up as an unlisted folder next to it).
    Raises QuarantineError when the folder cannot be made; a checkpoint that cannot be moved is recorded.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    by_output: dict[Path, list[Candidate]] = {}
    for item in items:
        by_output.setdefault(_absolute(item.path).parent, []).append(item)
    records = []
    for output_dir, group in by_output.items():
        folder = _fresh_folder(output_dir, stamp)
        entries: list[dict[str, Any]] = []
        manifest = {
            "tool": "fgdiag check-config --quarantine",
            "created_utc": stamp,
            "output_dir": str(output_dir),
            "note": "Nothing was deleted. To restore, run each entry's `restore` command (or "
            "os.rename(quarantined_path, original_path)).",
            "entries": entries,
        }
        _write_manifest(folder, manifest)
        for item in group:
            target = folder.resolve() / item.path.name
            try:
                os.rename(_absolute(item.path), target)
                status = "moved"
            except OSError as exc:
                status = f"not moved: {exc.strerror or exc}"
            entries.append(_entry(item, target, status))
            _write_manifest(folder, manifest)
        records.append(
            {
                "folder": str(folder),
                "manifest": str(folder / MANIFEST),
                "moved": [e["original_path"] for e in entries if e["status"] == "moved"],
                "failed": [e["original_path"] for e in entries if e["status"] != "moved"],
            }
        )
    return records
