"""The one finding type every fgdiag rule produces, and the severities that drive exit codes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    """Ordered: an `error` makes commands exit 1; `warning` and `info` do not."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One judged problem.

    Attributes:
        code: rule code, `FGD` + three digits (see `fgdiag.rules.registry`).
        severity: info / warning / error.
        message: one sentence with the observed values.
        location: where it was found: `path`, `path:line`, `path:field`, or `step N`.
        help: the fix, one or two sentences.
        step: optimizer step for runtime and log findings (None for static ones).
        evidence: the numbers behind the judgement (JSON-serialisable).
    """

    code: str
    severity: Severity
    message: str
    location: str = ""
    help: str = ""
    step: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            code=str(data["code"]),
            severity=Severity(data.get("severity", "warning")),
            message=str(data.get("message", "")),
            location=str(data.get("location", "")),
            help=str(data.get("help", "")),
            step=data.get("step"),
            evidence=dict(data.get("evidence") or {}),
        )


def worst(findings: list[Finding]) -> Severity | None:
    """Highest severity among findings (None when there are none)."""
    return max((f.severity for f in findings), key=lambda s: s.rank, default=None)


def exit_code(findings: list[Finding]) -> int:
    """0 clean (or only warnings/info), 1 when any finding is an error."""
    return 1 if worst(findings) is Severity.ERROR else 0
