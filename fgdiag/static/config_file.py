"""Read a training configuration file (TOML or JSON) into `ConfigValues`, with the line of every field.

The file uses the argument names of docs/CONTRACTS.md, flat or grouped in `[model]`, `[data]`, `[training]`
sections (any other table, e.g. `[targets]`, stays one nested value). Neither tomllib nor json report line
numbers, so the line of each key is found by scanning the text: findings must point at the line to edit.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from fgdiag.facts.values import ConfigValues, Field, InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser under its PyPI name
    import tomli as tomllib

SECTIONS = ("model", "data", "training")
MODEL_CONFIG_KEYS = {"architectures", "text_config", "vision_config"}


def _key_lines(text: str, key: str, toml: bool) -> list[int]:
    if toml:
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", re.MULTILINE)
    else:
        pattern = re.compile(rf"\"{re.escape(key)}\"\s*:")
    return [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]


def _section_start(text: str, section: str, toml: bool) -> int:
    if toml:
        match = re.search(rf"^\s*\[\s*{re.escape(section)}\s*\]", text, re.MULTILINE)
    else:
        match = re.search(rf"\"{re.escape(section)}\"\s*:\s*\{{", text)
    return 0 if match is None else text.count("\n", 0, match.start()) + 1


def _line_of(text: str, key: str, section: str | None, toml: bool) -> int | None:
    lines = _key_lines(text, key, toml)
    if not lines:
        return None
    if section:
        start = _section_start(text, section, toml)
        after = [n for n in lines if n > start]
        return after[0] if after else lines[0]
    return lines[0]


def parse_text(text: str, path: Path) -> dict[str, Any]:
    """Decode TOML or JSON by suffix (JSON when the text starts with `{`); InputError with the line on
    failure."""
    is_json = path.suffix.lower() == ".json" or text.lstrip().startswith("{")
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise InputError(path, f"invalid TOML: {exc}", line=int(line.group(1)) if line else None) from None
    if not isinstance(data, dict):
        raise InputError(path, f"a training configuration must be a table/object, got {type(data).__name__}")
    return data


def looks_like_model_config(data: dict[str, Any]) -> bool:
    """A transformers config.json (a model's own config), not a training configuration."""
    return bool(MODEL_CONFIG_KEYS & set(data)) or data.get("model_type") in {"clip", "fgclip"}


def read_config_file(path: Path, values: ConfigValues | None = None) -> ConfigValues:
    """Load one config file into `values` (a new ConfigValues when None)."""
    values = values if values is not None else ConfigValues()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    data = parse_text(text, path)
    toml = not (path.suffix.lower() == ".json" or text.lstrip().startswith("{"))
    shown = str(path)
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise InputError(
                    path, f"[{key}] must be a table", line=_line_of(text, key, None, toml), field=key
                )
            for sub_key, sub_value in value.items():
                if isinstance(sub_value, dict) and sub_key != "targets":
                    line = _line_of(text, sub_key, key, toml)
                    raise InputError(
                        path, "nested tables are not training arguments", line=line, field=f"{key}.{sub_key}"
                    )
                values.set(Field(sub_key, sub_value, shown, _line_of(text, sub_key, key, toml)))
        else:
            values.set(Field(key, value, shown, _line_of(text, key, None, toml)))
    return values
