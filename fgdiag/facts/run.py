"""Everything check-config read about one planned run, handed to every registered static check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fgdiag.facts.checkpoint import CheckpointInfo
from fgdiag.facts.deepspeed import DeepSpeedConfig
from fgdiag.facts.plan import Plan
from fgdiag.facts.settings import Settings


@dataclass
class RunFacts:
    """The resolved settings and plan (None without a config or script), the data audit's report (None when
    no data set was audited), the checkpoints and model directories read, and the notes a check may add to
    (assumptions and what it could not check)."""

    settings: Settings | None = None
    plan: Plan | None = None
    data_report: dict[str, Any] | None = None
    data_location: str = ""
    regions_in_data: int | None = None  # regions (boxes) in the data set, audited or estimated
    max_invalid_ratio: float = 0.05  # FGD301 threshold on the audit's invalid-box ratio
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    models: list[CheckpointInfo] = field(default_factory=list)  # model directories and weight files
    deepspeed: DeepSpeedConfig | None = None  # the DeepSpeed JSON the run uses (or the one given alone)
    notes: list[str] = field(default_factory=list)
