"""Convergence-target profiles: what a healthy run reaches, and by when.

A profile is a TOML file. Every `*.toml` in the package folder `fgdiag/targets/` is a built-in profile named
by its `name` (the file stem when absent); any other path is a user profile. The format (see `ucf.toml`):

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

The file's types are checked by a msgspec schema (`ProfileSpec`), the rest by hand. Rules read profiles
(FGD201, FGD604); nothing here judges.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import msgspec

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


Finite = Annotated[float, msgspec.Meta(description="a finite number")]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class PointSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One `[[points]]` table: `metric` (an events.py name) below or above a threshold at `step`."""

    step: NonNegative
    metric: str = ev.head_metric(ev.HEAD_LOSS, "region")
    below: Finite | None = None
    above: Finite | None = None


class ProfileSpec(msgspec.Struct):
    """A profile file's fields (others are kept in `TargetProfile.extra`)."""

    name: str | None = None
    description: str = ""
    logit_scale: Finite | None = None
    logit_scale_tolerance: Finite | None = None
    memory_bank_active_by: NonNegative | None = None
    learning_rate: Finite | None = None
    points: list[PointSpec] | None = None
    checkpoints: list[PointSpec] | None = None  # the older spelling of `points`


def _finite(value: float | None, where: str, key: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise TargetError(f"{where}: field {key!r} must be a finite number, got {value!r}")
    return value


def _point(spec: PointSpec, where: str) -> TargetPoint:
    if not ev.is_metric_name(spec.metric):
        raise TargetError(f"{where}: field 'metric' is not an events.py metric name: {spec.metric!r}")
    below, above = _finite(spec.below, where, "below"), _finite(spec.above, where, "above")
    if (below is None) == (above is None):
        raise TargetError(f"{where}: give exactly one of 'below' or 'above'")
    threshold = below if below is not None else above
    assert threshold is not None
    return TargetPoint(spec.metric, spec.step, float(threshold), below is not None)


def parse_profile(data: dict[str, Any], source: str, default_name: str) -> TargetProfile:
    """Validate one decoded TOML document: types by the schema (`ProfileSpec`; the message names the
    field, `$.points[0].step`), then what a schema cannot say (metric names, exactly one threshold)."""
    try:
        spec = msgspec.convert(data, ProfileSpec)
    except msgspec.ValidationError as exc:
        raise TargetError(f"{source}: {exc}") from None
    name = default_name if spec.name is None else spec.name
    if not name.strip():
        raise TargetError(f"{source}: field 'name' must be a non-empty string")
    key = "points" if spec.points is not None or spec.checkpoints is None else "checkpoints"
    entries = (spec.points if key == "points" else spec.checkpoints) or []
    points = tuple(
        sorted(
            (_point(e, f"{source}: {key}[{i}]") for i, e in enumerate(entries)),
            key=lambda c: (c.step, c.metric),
        )
    )
    known = set(ProfileSpec.__struct_fields__)
    tolerance = _finite(spec.logit_scale_tolerance, source, "logit_scale_tolerance")
    rate = _finite(spec.learning_rate, source, "learning_rate")
    if rate is not None and rate <= 0:
        raise TargetError(f"{source}: field 'learning_rate' must be positive, got {rate!r}")
    return TargetProfile(
        name=name.strip(),
        description=spec.description,
        logit_scale=_finite(spec.logit_scale, source, "logit_scale"),
        logit_scale_tolerance=0.02 if tolerance is None else float(tolerance),
        memory_bank_active_by=spec.memory_bank_active_by,
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
