"""Configuration values with their provenance, and the one error type for unreadable input.

Every value check-config judges came from somewhere: a TOML line, a `--flag` on line 23 of a shell script, a
default of transformers' TrainingArguments. Findings and input errors must name that place (file, line,
field), so values travel as `Field`s instead of bare Python objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

UNSET_WORDS = {"none", "null", "nil", "off", ""}
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


class InputError(Exception):
    """An input check-config cannot read or trust; the CLI exits 2 with this message on stderr."""

    def __init__(
        self, path: object, reason: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.path + (f":{line}" if line else "") + (f": field {field}" if field else "")
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Field:
    """One configuration value and where it was written (path + 1-based line, both optional for defaults)."""

    name: str
    value: Any
    path: str = ""
    line: int | None = None
    default: bool = False  # True for a value check-config assumed (a library default), not one it read
    why: str = ""  # for an assumed value: where the assumption comes from ("FGCLIPConfig default")

    @property
    def location(self) -> str:
        """`path:line:field`, `path:field` or just the field name for an assumed default."""
        if not self.path:
            return self.name
        return f"{self.path}:{self.line}:{self.name}" if self.line else f"{self.path}:{self.name}"

    @property
    def origin(self) -> str:
        """How to cite the value in a message: its location, or why it was assumed."""
        return (self.why or "default") if self.default else self.location

    def error(self, reason: str) -> InputError:
        return InputError(self.path or "<config>", reason, line=self.line, field=self.name)


class ConfigValues:
    """Merged training arguments: later inputs override earlier ones, the override is remembered as a note."""

    def __init__(self) -> None:
        self._fields: dict[str, Field] = {}
        self.notes: list[str] = []
        # keys a JSON object repeats: (the field json kept, every line the key is written on)
        self.duplicates: list[tuple[Field, list[int]]] = []

    def set(self, field: Field) -> None:
        old = self._fields.get(field.name)
        if old is not None and old.path and old.path != field.path and old.value != field.value:
            self.notes.append(f"{field.name}: {field.location} overrides {old.location}")
        self._fields[field.name] = field

    def get(self, name: str) -> Field | None:
        return self._fields.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def __iter__(self) -> Iterator[Field]:
        return iter(self._fields.values())

    def names(self) -> frozenset[str]:
        return frozenset(self._fields)

    def value(self, name: str, default: Any = None) -> Any:
        field = self._fields.get(name)
        return default if field is None else field.value

    def number(self, name: str) -> float | None:
        field = self._fields.get(name)
        return None if field is None else as_float(field)

    def integer(self, name: str) -> int | None:
        field = self._fields.get(name)
        return None if field is None else as_int(field)

    def flag(self, name: str) -> bool | None:
        field = self._fields.get(name)
        return None if field is None else as_bool(field)

    def text(self, name: str) -> str | None:
        field = self._fields.get(name)
        if field is None or field.value is None:
            return None
        return str(field.value)


def unresolved(value: Any) -> bool:
    """A shell value that still holds `$VAR` or `$(cmd)`: check-config cannot know it."""
    return isinstance(value, str) and "$" in value


def as_float(field: Field) -> float | None:
    """The field as a finite float, None when unset/unresolved; raise InputError naming the field
    otherwise."""
    value = field.value
    if value is None or unresolved(value):
        return None
    if isinstance(value, bool):
        raise field.error(f"expected a number, got {value!r}")
    if isinstance(value, str):
        if value.strip().lower() in UNSET_WORDS:
            return None
        try:
            value = float(value)
        except ValueError:
            raise field.error(f"expected a number, got {field.value!r:.80}") from None
    if not isinstance(value, (int, float)):
        raise field.error(f"expected a number, got {value!r:.80}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range (400 digits): no training value is that large
        raise field.error(f"expected a number, got an integer of {int(value).bit_length()} bits") from None
    if not math.isfinite(number):
        raise field.error(f"expected a finite number, got {value!r}")
    return number


def as_int(field: Field) -> int | None:
    number = as_float(field)
    if number is None:
        return None
    if number != int(number):
        raise field.error(f"expected an integer, got {field.value!r:.80}")
    return int(number)


def as_bool(field: Field) -> bool | None:
    value = field.value
    if value is None or unresolved(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise field.error(f"expected true or false, got {value!r:.80}")
