"""Convergence-target profiles: what a healthy run reaches, and by when.

A profile is a TOML file. Every `*.toml` in the package folder `fgdiag/targets/` is a built-in profile named
by
its `name` (the file stem when absent); any other path is a user profile. The format (see `ucf.toml`):

    name = "ucf"
    description = "..."
    logit_scale = 4.6052           # optional: raw value every head should start at
    logit_scale_tolerance = 0.02   # optional (bf16 stores ln 100 as 4.59375)
    memory_bank_active_by = 7      # optional: optimizer step by which the bank must be on
    learning_rate = 2e-5           # optional: the peak learning rate of the runs the profile was measured on;
                                   # a run whose peak is 10x away follows another schedule (not judged)

    [[points]]                     # target points, any number; judged on the smoothed metric once the run
                                   # passes `step` (`[[checkpoints]]`, the older spelling, is read too)
    metric = "head_loss/region"    # an events.py metric name
    step = 50
    below = 1.0                    # or `above = ...`

Rules read profiles (FGD201, FGD604); nothing here judges.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

from fgdiag import events as ev


class TargetError(ValueError):
    """A profile that cannot be found or read; the message names the file and the field."""


@dataclass(frozen=True)
class TargetPoint:
    """`metric` must be below (or above) `threshold` at optimizer step `step` (not a training checkpoint)."""

    metric: str
    step: int
    threshold: float
    below: bool = True

    def passes(self, value: float) -> bool:
        return value < self.threshold if self.below else value > self.threshold

    def describe(self) -> str:
        return f"{self.metric} {'<' if self.below else '>'} {self.threshold:g} @ {self.step}"


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str = ""
    logit_scale: float | None = None
    logit_scale_tolerance: float = 0.02
    memory_bank_active_by: int | None = None
    learning_rate: float | None = None
    points: tuple[TargetPoint, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "logit_scale": self.logit_scale,
            "logit_scale_tolerance": self.logit_scale_tolerance,
            "memory_bank_active_by": self.memory_bank_active_by,
            "learning_rate": self.learning_rate,
            "points": [
                {"metric": c.metric, "step": c.step, "below" if c.below else "above": c.threshold}
                for c in self.points
            ],
        }


def _number(data: dict[str, Any], key: str, where: str, *, integer: bool = False) -> float | int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TargetError(f"{where}: field {key!r} must be a finite number, got {value!r}")
    if integer:
        if int(value) != value or value < 0:
            raise TargetError(f"{where}: field {key!r} must be a non-negative integer, got {value!r}")
        return int(value)
    return float(value)


def _point(entry: Any, where: str) -> TargetPoint:
    if not isinstance(entry, dict):
        raise TargetError(f"{where}: must be a table with metric, step and below/above")
    metric = entry.get("metric", ev.head_metric(ev.HEAD_LOSS, "region"))
    if not isinstance(metric, str) or not ev.is_metric_name(metric):
        raise TargetError(f"{where}: field 'metric' is not an events.py metric name: {metric!r}")
    step = _number(entry, "step", where, integer=True)
    if step is None:
        raise TargetError(f"{where}: field 'step' is required")
    below, above = _number(entry, "below", where), _number(entry, "above", where)
    if (below is None) == (above is None):
        raise TargetError(f"{where}: give exactly one of 'below' or 'above'")
    threshold = below if below is not None else above
    assert threshold is not None
    return TargetPoint(metric, int(step), float(threshold), below is not None)


def parse_profile(data: dict[str, Any], source: str, default_name: str) -> TargetProfile:
    """Validate one decoded TOML document."""
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise TargetError(f"{source}: field 'name' must be a non-empty string")
    key = "points" if "points" in data or "checkpoints" not in data else "checkpoints"
    entries = data.get(key, [])
    if not isinstance(entries, list):
        raise TargetError(f"{source}: field {key!r} must be an array of tables ([[{key}]])")
    points = tuple(
        sorted(
            (_point(e, f"{source}: {key}[{i}]") for i, e in enumerate(entries)),
            key=lambda c: (c.step, c.metric),
        )
    )
    active_by = _number(data, "memory_bank_active_by", source, integer=True)
    tolerance = _number(data, "logit_scale_tolerance", source)
    known = {
        "name",
        "description",
        "logit_scale",
        "logit_scale_tolerance",
        "memory_bank_active_by",
        "learning_rate",
        "points",
        "checkpoints",
    }
    rate = _number(data, "learning_rate", source)
    if rate is not None and rate <= 0:
        raise TargetError(f"{source}: field 'learning_rate' must be positive, got {rate!r}")
    return TargetProfile(
        name=name.strip(),
        description=str(data.get("description", "")),
        logit_scale=_number(data, "logit_scale", source),
        logit_scale_tolerance=0.02 if tolerance is None else float(tolerance),
        memory_bank_active_by=None if active_by is None else int(active_by),
        learning_rate=rate,
        points=points,
        source=source,
        extra={k: v for k, v in data.items() if k not in known},
    )


def load_profile(path: str | Path) -> TargetProfile:
    """Read a profile file (built-in or the user's)."""
    path = Path(path)
    if tomllib is None:  # pragma: no cover
        raise TargetError(f"{path}: reading TOML on Python 3.10 needs the 'tomli' package")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot read target profile: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: invalid TOML: {exc}") from None
    return parse_profile(data, str(path), path.stem)


def builtin_dir() -> Path:
    return Path(str(resources.files("fgdiag") / "targets"))


def builtin_profiles() -> dict[str, TargetProfile]:
    """Every `*.toml` shipped in `fgdiag/targets/`, by name (files added later are picked up as they are)."""
    out: dict[str, TargetProfile] = {}
    folder = builtin_dir()
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        profile = load_profile(path)
        out[profile.name] = profile
    return out


def get_profile(name_or_path: str | Path) -> TargetProfile:
    """A built-in profile by name, or a profile file by path; TargetError lists the known names otherwise."""
    text = str(name_or_path)
    profiles = builtin_profiles()
    if text in profiles:
        return profiles[text]
    path = Path(text).expanduser()
    if path.suffix == ".toml" or path.exists():
        return load_profile(path)
    known = ", ".join(sorted(profiles)) or "none"
    raise TargetError(
        f"unknown target profile {text!r}: built-in profiles are {known}, or pass a path to a .toml"
    )
