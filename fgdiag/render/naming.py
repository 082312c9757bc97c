"""Names for runs given by their paths: the first folder level, from the file upwards, at which the paths
differ (`a/training.log` and `b/training.log` are `a` and `b`; `runs/fixed/fgdiag/events.jsonl` and
`runs/seed/fgdiag/events.jsonl` are `fixed` and `seed`), so a comparison names what the user named."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def run_names(paths: Sequence[str | Path]) -> list[str]:
    """One distinct, short name per path (the file's stem when the stems already differ)."""
    parts = [list(reversed(Path(p).resolve().with_suffix("").parts)) for p in paths]
    if len(parts) <= 1:
        return [Path(p).stem or str(p) for p in paths]
    depth = max(len(p) for p in parts)
    for level in range(depth):
        names = [p[level] if level < len(p) else "" for p in parts]
        if all(names) and len(set(names)) == len(names):
            return names
    names = [Path(p).stem or str(p) for p in paths]  # the same file twice: number the repeats
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out
