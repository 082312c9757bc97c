"""The rule registry: every code with its docs, and every check the family modules declare.

Codes are `FGD` + three digits; the hundreds digit is the family (0xx the configuration itself, 1xx logit
scale/temperature, 2xx memory bank, 3xx data and boxes, 4xx checkpoints/weights/resume, 5xx optimizer/lr/
gradients, 6xx loss trend/targets/chance level, 7xx numerics, 8xx distributed). A family module registers
its codes' docs with `register`, and its checks with one decorator per kind: `static_check` (over the facts
of a planned run, for check-config), `live_check` (over the model's scales and the optimizer when training
starts, for the callback) and `runtime_check` (a class judging metric rows as they stream, for the callback
and watch). Consumers iterate what is registered; `load_all` imports the family modules listed in
`fgdiag.rules.catalog`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fgdiag.diagnostic import Finding, Severity
from fgdiag.facts.run import RunFacts

CODE_PATTERN = re.compile(r"^FGD[0-8]\d\d$")
FAMILIES = {
    "0": "configuration (impossible values, unknown or repeated keys)",
    "1": "logit scale / temperature",
    "2": "memory bank",
    "3": "data and boxes",
    "4": "checkpoints / weights / resume",
    "5": "optimizer / learning rate / gradients",
    "6": "loss trend / targets / chance level",
    "7": "numerics",
    "8": "distributed",
}
CATALOG = "fgdiag.rules.catalog"  # imported by name: the catalog imports the families, which import this


@dataclass(frozen=True)
class Rule:
    """Metadata and docs of one rule code; its checks are registered separately (see module docstring)."""

    code: str
    name: str  # describes the problem, e.g. "head-scale-at-clip-init"
    severity: Severity  # default severity; a check may raise or lower it and must say why in the message
    what: str  # What it checks
    why: str  # Why it matters
    example: str  # Example (a config, a log line)
    fix: str  # Fix

    @property
    def family(self) -> str:
        return FAMILIES[self.code[3]]

    def finding(
        self,
        message: str,
        *,
        location: str = "",
        step: int | None = None,
        severity: Severity | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> Finding:
        """Build a Finding of this rule with its fix as help."""
        return Finding(
            code=self.code,
            severity=severity or self.severity,
            message=message,
            location=location,
            help=self.fix,
            step=step,
            evidence=evidence or {},
        )

    def explain(self) -> str:
        return (
            f"{self.code} {self.name} ({self.family}, default severity {self.severity.value})\n\nWhat it "
            f"checks\n  {self.what}\n\nWhy it matters\n  {self.why}\n\nExample\n  {self.example}\n\nFix\n  "
            f"{self.fix}\n"
        )


StaticFn = Callable[[RunFacts], list[Finding]]
# live checks: (head -> (parameter name, parameter), optimizer param_groups) -> findings
LiveFn = Callable[[Mapping[str, tuple[str, Any]], list[dict[str, Any]]], list[Finding]]


@dataclass(frozen=True)
class Registered:
    """One registered check: the codes it may emit, the kind and the callable (a function or a class)."""

    codes: tuple[str, ...]
    kind: str  # static | live | runtime
    check: Any
    module: str


RULES: dict[str, Rule] = {}
CHECKS: list[Registered] = []
F = TypeVar("F")


def register(
    code: str, name: str, severity: Severity | str, *, what: str, why: str, example: str, fix: str
) -> Rule:
    """Add a rule's docs to the table; reject malformed or duplicate codes and empty doc sections."""
    if not CODE_PATTERN.match(code):
        raise ValueError(f"rule code {code!r} does not match FGD + three digits with family 0-8")
    if code in RULES:
        raise ValueError(f"rule code {code} registered twice ({RULES[code].name} and {name})")
    for section, text in (("what", what), ("why", why), ("example", example), ("fix", fix)):
        if not text.strip():
            raise ValueError(f"rule {code}: empty docs section {section!r}")
    rule = Rule(code, name, Severity(severity), what.strip(), why.strip(), example.strip(), fix.strip())
    RULES[code] = rule
    return rule


def _add(kind: str, codes: tuple[str, ...], check: Any) -> None:
    for code in codes:
        if code not in RULES:
            raise ValueError(f"{kind} check {check.__qualname__} emits {code}, whose docs are not registered")
    CHECKS.append(Registered(codes, kind, check, check.__module__))


def static_check(*codes: str) -> Callable[[F], F]:
    """Decorator: `fn(facts: RunFacts) -> list[Finding]` runs in check-config (and fgdiag run)."""

    def wrap(fn: F) -> F:
        _add("static", codes, fn)
        return fn

    return wrap


def live_check(*codes: str) -> Callable[[F], F]:
    """Decorator: `fn(scales, param_groups) -> list[Finding]` runs once when training starts (callback)."""

    def wrap(fn: F) -> F:
        _add("live", codes, fn)
        return fn

    return wrap


def runtime_check(cls: F) -> F:
    """Class decorator: a `fgdiag.rules.engine.Check` subclass; its `codes` say what it may emit."""
    _add("runtime", tuple(cls.codes), cls)  # type: ignore[attr-defined]
    return cls


def checks(kind: str) -> list[Any]:
    """The registered checks of one kind (static, live, runtime), in code order (FGD101 first)."""
    load_all()
    return [c.check for c in sorted(CHECKS, key=lambda c: c.codes[0]) if c.kind == kind]


def codes_of(kind: str) -> tuple[str, ...]:
    """Every code some check of this kind may emit, sorted."""
    load_all()
    return tuple(sorted({code for c in CHECKS if c.kind == kind for code in c.codes}))


def get(code: str) -> Rule:
    load_all()
    try:
        return RULES[code.upper()]
    except KeyError:
        raise KeyError(f"unknown rule code {code!r}; known: {', '.join(sorted(RULES))}") from None


def load_all() -> dict[str, Rule]:
    """Import the family modules (they register on import) and return the table of docs."""
    importlib.import_module(CATALOG)
    return RULES


def select(
    findings: list[Finding], select: list[str] | None = None, ignore: list[str] | None = None
) -> list[Finding]:
    """Filter findings by code prefixes (`FGD1`, `FGD201`), like ruff's --select/--ignore."""

    def match(code: str, prefixes: list[str]) -> bool:
        return any(code.upper().startswith(p.strip().upper()) for p in prefixes if p.strip())

    out = findings
    if select:
        out = [f for f in out if match(f.code, select)]
    if ignore:
        out = [f for f in out if not match(f.code, ignore)]
    return out
