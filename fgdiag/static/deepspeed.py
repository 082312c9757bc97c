"""Read a DeepSpeed JSON config (given on the command line, or named by `--deepspeed` / `deepspeed = ...`)
into `DeepSpeedConfig` facts, each value with its line, for the FGD802 comparison with the Trainer args.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fgdiag.facts.deepspeed import KEYS, DeepSpeedConfig
from fgdiag.facts.values import Field, InputError
from fgdiag.static.config_file import key_lines

MARKERS = {
    "zero_optimization",
    "train_micro_batch_size_per_gpu",
    "train_batch_size",
    "zero_allow_untested_optimizer",
}
MAX_BYTES = 1 << 20


def looks_like_deepspeed(data: dict[str, Any]) -> bool:
    return bool(MARKERS & set(data))


def read_deepspeed(path: Path) -> DeepSpeedConfig:
    """The config's comparable values (InputError naming the file when it is not a readable JSON object)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError(path, f"a DeepSpeed config larger than {MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except RecursionError:
        raise InputError(path, "unreadable DeepSpeed config: nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable DeepSpeed config: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise InputError(path, "a DeepSpeed config must be a JSON object")
    config = DeepSpeedConfig(str(path), blocks={str(k) for k in data})
    for dotted in KEYS:
        value: Any = data
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            config.values[dotted] = Field(dotted, value, str(path), _line(text, dotted))
    return config


def _line(text: str, dotted: str) -> int | None:
    """The line of a dotted key: each part looked up after the line of the part before it."""
    line = 0
    for part in dotted.split("."):
        after = [n for n in key_lines(text, part, toml=False) if n >= line]
        if not after:
            return None
        line = after[0]
    return line


def find_deepspeed(value: Field, bases: list[Path]) -> Path | None:
    """The file a `deepspeed` argument names, tried as written and next to the script/config."""
    if not isinstance(value.value, str) or "$" in value.value or value.value.lstrip().startswith("{"):
        return None
    candidates = [Path(value.value)] + [base / value.value for base in bases]
    return next((c for c in candidates if c.is_file()), None)


__all__ = ["find_deepspeed", "looks_like_deepspeed", "read_deepspeed"]
