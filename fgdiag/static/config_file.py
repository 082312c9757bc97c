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
TOML_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-]+|\"[^\"]*\"|'[^']*')\s*=")
LONG_DIGITS = re.compile(r"\d{4000,}")
KEY_BEFORE = re.compile(r"[\"']?([A-Za-z0-9_.\-]+)[\"']?\s*[:=]\s*[\[\s\d.,+-]*$")
MODEL_CONFIG_KEYS = {"architectures", "text_config", "vision_config"}


def key_lines(text: str, key: str, toml: bool) -> list[int]:
    """1-based lines where `key` is set (`key =` in TOML, `"key":` in JSON), in file order."""
    if toml:
        pattern = re.compile(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*=", re.MULTILINE)
    else:
        pattern = re.compile(rf"\"{re.escape(key)}\"\s*:")
    return [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]


def _section_start(text: str, section: str, toml: bool) -> int:
    if toml:
        match = re.search(rf"^[ \t]*\[[ \t]*{re.escape(section)}[ \t]*\]", text, re.MULTILINE)
    else:
        match = re.search(rf"\"{re.escape(section)}\"\s*:\s*\{{", text)
    return 0 if match is None else text.count("\n", 0, match.start()) + 1


def _line_of(text: str, key: str, section: str | None, toml: bool) -> int | None:
    lines = key_lines(text, key, toml) or ([_section_start(text, key, toml)] if toml and not section else [])
    lines = [n for n in lines if n]
    if not lines:
        return None
    if section:
        start = _section_start(text, section, toml)
        after = [n for n in lines if n > start]
        return after[0] if after else lines[0]
    return lines[0]


def _toml_duplicate(text: str) -> tuple[str, int, int] | None:
    """The first key or table a TOML text defines twice, with both lines (tomllib names at most one line,
    and for a key at the end of the file none)."""
    table, seen = "", dict[tuple[str, str], int]()
    for number, line in enumerate(text.splitlines(), start=1):
        header = TOML_TABLE.match(line)
        if header:
            table = header.group(1).strip()
            key = ("[table]", table)
        else:
            assigned = TOML_KEY.match(line)
            if not assigned:
                continue
            key = (table, assigned.group(1).strip().strip("\"'"))
        if key in seen:
            name = f"[{key[1]}]" if key[0] == "[table]" else (f"{key[0]}.{key[1]}" if key[0] else key[1])
            return name, seen[key], number
        seen[key] = number
    return None


def _hostile(path: Path, text: str, exc: Exception) -> InputError:
    """A value Python's parsers reject outside their decode errors: nesting too deep, a huge integer."""
    if isinstance(exc, RecursionError):
        return InputError(path, "nested too deeply to read (a corrupt or hostile file)")
    digits = LONG_DIGITS.search(text)
    if digits is None:
        return InputError(path, f"unreadable: {exc}")
    line = text.count("\n", 0, digits.start()) + 1
    key = KEY_BEFORE.search(text, max(0, digits.start() - 4096), digits.start())
    return InputError(
        path,
        f"an integer of {len(digits.group(0))} digits: no training argument is that long",
        line=line,
        field=key.group(1) if key else None,
    )


def parse_config(text: str, path: Path) -> tuple[dict[str, Any], list[tuple[str, list[int]]]]:
    """Decode TOML or JSON by suffix (JSON when the text starts with `{`), and list the keys a JSON object
    repeats (json keeps the last silently; TOML refuses them). InputError with the line on failure."""
    is_json = path.suffix.lower() == ".json" or text.lstrip().startswith("{")
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    try:
        data = json.loads(text, object_pairs_hook=pairs) if is_json else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except tomllib.TOMLDecodeError as exc:
        twice = (
            _toml_duplicate(text) if "Cannot overwrite" in str(exc) or "Cannot declare" in str(exc) else None
        )
        if twice is not None:
            name, first, second = twice
            raise InputError(
                path,
                f"invalid TOML: {name} is set twice (lines {first} and {second})",
                line=second,
                field=name,
            ) from None
        line = re.search(r"line (\d+)", str(exc))
        raise InputError(path, f"invalid TOML: {exc}", line=int(line.group(1)) if line else None) from None
    except (ValueError, RecursionError) as exc:
        raise _hostile(path, text, exc) from None
    if not isinstance(data, dict):
        raise InputError(path, f"a training configuration must be a table/object, got {type(data).__name__}")
    duplicates = [(key, key_lines(text, key, toml=False)) for key in dict.fromkeys(repeated)]
    return data, duplicates


def parse_text(text: str, path: Path) -> dict[str, Any]:
    """`parse_config` without the repeated keys."""
    return parse_config(text, path)[0]


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
    data, duplicates = parse_config(text, path)
    toml = not (path.suffix.lower() == ".json" or text.lstrip().startswith("{"))
    shown = str(path)
    for key, lines in duplicates:
        kept = next((d[key] for d in [data, *data.values()] if isinstance(d, dict) and key in d), None)
        values.duplicates.append((Field(key, kept, shown, lines[-1] if lines else None), lines))
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
