"""The rule registry: one table from code to rule docs, shared by check-config, the runtime layer and watch.

Codes are `FGD` + three digits; the hundreds digit is the family (1xx logit scale/temperature, 2xx memory
bank, 3xx data and boxes, 4xx checkpoints/weights/resume, 5xx optimizer/lr/gradients, 6xx loss trend/targets/
chance level, 7xx numerics, 8xx distributed). A code may be registered once; its docs must carry the four
sections that `fgdiag explain` prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fgdiag.diagnostic import Finding, Severity

CODE_PATTERN = re.compile(r"^FGD[1-8]\d\d$")
FAMILIES = {
    "1": "logit scale / temperature",
    "2": "memory bank",
    "3": "data and boxes",
    "4": "checkpoints / weights / resume",
    "5": "optimizer / learning rate / gradients",
    "6": "loss trend / targets / chance level",
    "7": "numerics",
    "8": "distributed",
}


@dataclass(frozen=True)
class Rule:
    """Metadata and docs of one rule code; the checks themselves live in the rule modules."""

    code: str
    name: str  # describes the problem, e.g. "region-scale-at-clip-init"
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
        evidence: dict | None = None,
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
            f"{self.code} {self.name} ({self.family}, default severity {self.severity.value})\n\n"
            f"What it checks\n  {self.what}\n\nWhy it matters\n  {self.why}\n\n"
            f"Example\n  {self.example}\n\nFix\n  {self.fix}\n"
        )


RULES: dict[str, Rule] = {}


def register(
    code: str, name: str, severity: Severity | str, *, what: str, why: str, example: str, fix: str
) -> Rule:
    """Add a rule to the table; reject malformed or duplicate codes and empty doc sections."""
    if not CODE_PATTERN.match(code):
        raise ValueError(f"rule code {code!r} does not match FGD + three digits with family 1-8")
    if code in RULES:
        raise ValueError(f"rule code {code} registered twice ({RULES[code].name} and {name})")
    for section, text in (("what", what), ("why", why), ("example", example), ("fix", fix)):
        if not text.strip():
            raise ValueError(f"rule {code}: empty docs section {section!r}")
    rule = Rule(code, name, Severity(severity), what.strip(), why.strip(), example.strip(), fix.strip())
    RULES[code] = rule
    return rule


def get(code: str) -> Rule:
    load_all()
    try:
        return RULES[code.upper()]
    except KeyError:
        raise KeyError(f"unknown rule code {code!r}; known: {', '.join(sorted(RULES))}") from None


def load_all() -> dict[str, Rule]:
    """Import the modules that declare rules (they register on import) and return the table."""
    from fgdiag.rules import catalog  # noqa: F401

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
