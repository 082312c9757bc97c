"""Move stale checkpoints aside, never delete them.

The seed's fix told its user to `rm -rf checkpoints/*/checkpoint-*`. Deleting a user's checkpoints is not a
diagnostic's call: a stale checkpoint (FGD401) is moved by one atomic `os.rename` into
`<output_dir>/quarantine/<UTC timestamp>/`, next to a MANIFEST.json that says what moved, why (codes, values)
and how to move it back. The manifest is written before anything moves and rewritten after, so an
interrupted run still leaves a truthful record. Nothing in this module removes a file.
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

QUARANTINE_DIR = "quarantine"
MANIFEST = "MANIFEST.json"
CODES = ("FGD401",)


@dataclass(frozen=True)
class Candidate:
    path: Path
    findings: tuple[Finding, ...]


def candidates(findings: list[Finding]) -> list[Candidate]:
    """Checkpoint directories (`checkpoint-*`) that FGD401 findings name, in order of appearance."""
    by_path: dict[Path, list[Finding]] = {}
    for finding in findings:
        if finding.code not in CODES:
            continue
        path = Path(finding.evidence.get("path") or finding.location)
        if path.is_dir() and CHECKPOINT_DIR.match(path.name):
            by_path.setdefault(path, []).append(finding)
    return [Candidate(path, tuple(found)) for path, found in by_path.items()]


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write atomically: a partial file is renamed over the manifest only once complete."""
    partial = folder / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, folder / MANIFEST)


def _fresh_folder(output_dir: Path, stamp: str) -> Path:
    base = output_dir / QUARANTINE_DIR / stamp
    folder, n = base, 1
    while folder.exists():
        folder = base.with_name(f"{stamp}-{n}")
        n += 1
    folder.mkdir(parents=True)
    return folder


def quarantine(items: list[Candidate], now: float | None = None) -> list[dict[str, Any]]:
    """Move each candidate into its output directory's quarantine folder; return one record per folder."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    by_output: dict[Path, list[Candidate]] = {}
    for item in items:
        by_output.setdefault(item.path.parent, []).append(item)
    records = []
    for output_dir, group in by_output.items():
        folder = _fresh_folder(output_dir, stamp)
        entries = []
        for item in group:
            target = folder / item.path.name
            entries.append(
                {
                    "original_path": str(item.path.resolve()),
                    "quarantined_path": str(target.resolve()),
                    "codes": sorted({f.code for f in item.findings}),
                    "reasons": [f.message for f in item.findings],
                    "differences": [d for f in item.findings for d in f.evidence.get("differences", [])],
                    "restore": f"mv {shlex.quote(str(target.resolve()))} "
                    f"{shlex.quote(str(item.path.resolve()))}",
                    "status": "pending",
                }
            )
        manifest = {
            "tool": "fgdiag check-config --quarantine",
            "created_utc": stamp,
            "output_dir": str(output_dir.resolve()),
            "note": "Nothing was deleted. To restore, run each entry's `restore` command (or "
            "os.rename(quarantined_path, original_path)).",
            "entries": entries,
        }
        _write_manifest(folder, manifest)
        for item, entry in zip(group, entries, strict=True):
            try:
                os.rename(item.path, folder / item.path.name)
                entry["status"] = "moved"
            except OSError as exc:
                entry["status"] = f"not moved: {exc}"
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
