"""The option names `python -m fgclip.train` accepts, and transformers' defaults, without importing
transformers.

fgclip.train parses fgclip's option dataclasses plus transformers' `TrainingArguments` and refuses any
other name. Importing `TrainingArguments` costs about two seconds (it imports torch), more than a whole
check-config run, so its field names and literal defaults are read from the installed
`transformers/training_args.py` with `ast` (parsed, never executed). When transformers is not installed,
only fgclip's own names are known and a note says so.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from dataclasses import MISSING, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from fgclip.train.options import OPTION_GROUPS
from fgdiag.facts.values import ConfigValues, Field

SECTIONS = ("model", "data", "training", "targets")  # the tables a configuration file may hold
# keys check-config itself reads: its own (dialect, targets, plan inputs) and FGCLIPConfig fields a run
# folder's config.json carries
CHECK_CONFIG_KEYS = {
    "dialect",
    "targets",
    "target_region_loss",
    "num_train_samples",
    "world_size",
    "nproc_per_node",
    "num_gpus",
    "decay_logit_scales",
    "freeze_logit_scales",
    "param_groups",
    "memory_bank_warmup_forward_passes",
}


@lru_cache(maxsize=1)
def trainer_defaults() -> dict[str, Any]:
    """TrainingArguments field -> its literal default (None when not a literal); {} without transformers."""
    try:
        spec = importlib.util.find_spec("transformers")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return {}
    source = Path(spec.origin).parent / "training_args.py"
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainingArguments"), None)
    out: dict[str, Any] = {}
    for node in cls.body if cls is not None else []:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = _literal_default(node.value)
    return out


def _literal_default(value: ast.expr | None) -> Any:
    """`x: int = 3` -> 3; `x: int = field(default=3, ...)` -> 3; anything computed -> None."""
    if isinstance(value, ast.Call):
        value = next((k.value for k in value.keywords if k.arg == "default"), None)
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except ValueError:
        return None


@lru_cache(maxsize=1)
def fgclip_defaults() -> dict[str, Any]:
    """fgclip's own options (model overrides, data, training) -> default."""
    return {
        f.name: (f.default if f.default is not MISSING else None)
        for group in OPTION_GROUPS
        for f in fields(group)
    }


def known_options() -> set[str]:
    """Every name a training configuration may set (see the module docstring)."""
    return set(fgclip_defaults()) | set(trainer_defaults()) | CHECK_CONFIG_KEYS


def unknown_keys(values: ConfigValues) -> list[tuple[Field, str | None]]:
    """Keys written in a file or a launch command that no option reads, with the closest known name
    (tables: the closest known table). Values a preset or a run folder supplied are never unknown."""
    known = known_options()
    out = []
    for field in values:
        if not field.path or field.why or field.name in known:
            continue
        if isinstance(field.value, dict):
            out.append((field, closest(field.name, set(SECTIONS))))
        else:
            out.append((field, closest(field.name, known)))
    return out


def closest(name: str, known: set[str]) -> str | None:
    """The known name a typo most likely meant (difflib ratio >= 0.6), or None."""
    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return match[0] if match else None


__all__ = ["SECTIONS", "closest", "fgclip_defaults", "known_options", "trainer_defaults", "unknown_keys"]
