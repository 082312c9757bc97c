"""Planning arithmetic: how many optimizer steps a run will take, when its memory bank switches on, how many
regions each step sees, and the loss floor a temperature allows.

The seed's bank never switched on because nobody did this arithmetic: a warm-up of 400 forward passes at
gradient accumulation 8 is 50 optimizer steps, longer than the run. These functions are pure so the rules,
the summary and the tests all use the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fgdiag.facts.settings import Settings
from fgdiag.facts.values import as_float, as_int

COUNT_LIMIT = (
    10**12
)  # no run has more samples, steps or batch entries; beyond it a value is nonsense (FGD001)


def planned_steps(
    max_steps: int | None, epochs: float | None, data_size: int | None, batch: int, world: int, accum: int
) -> int | None:
    """Optimizer steps of the run: max_steps when > 0, else epochs x ceil(N / (batch x world x accum))."""
    if max_steps is not None and max_steps > 0:
        return max_steps
    if not epochs or not data_size or batch <= 0 or world <= 0 or accum <= 0:
        return None
    steps = epochs * math.ceil(data_size / (batch * world * accum))
    return math.ceil(steps) if math.isfinite(steps) and steps <= COUNT_LIMIT else None


def activation_step(warmup: float, unit: str, accum: int) -> float:
    """Optimizer step at which the bank joins the loss; a warm-up in forward passes divides by
    accumulation."""
    return warmup / accum if unit == "forward" else float(warmup)


def loss_floor(candidates: int, scale: float, gap: float = 2.0) -> float:
    """Lowest cross-entropy reachable with `candidates` columns at multiplier `scale` = exp(raw):
    ln(1 + (K - 1) exp(-scale * gap)), gap being the best cosine margin (2: positive +1, negatives -1)."""
    if candidates <= 1:
        return 0.0
    return math.log1p((candidates - 1) * math.exp(-scale * gap))


@dataclass
class Plan:
    """The run as the configuration plans it; None where an input is missing (a note says which)."""

    world_size: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    data_size: int | None
    planned_optimizer_steps: int | None
    memory_bank_size: int | None
    memory_bank_candidates: int | None  # queue entries a query can actually see (the fork fills one queue)
    memory_bank_warmup: float | None
    memory_bank_warmup_unit: str | None
    memory_bank_activation_step: float | None
    regions_per_forward: int
    regions_per_optimizer_step: int

    def to_dict(self) -> dict:
        return asdict(self)


def _at_least(value: int | None, low: int) -> int | None:
    """A count the plan can use: impossible ones (FGD001 reports them) count as unknown."""
    return value if value is not None and low <= value <= COUNT_LIMIT else None


def make_plan(settings: Settings, data_size: int | None) -> Plan:
    batch = _at_least(settings.integer("per_device_train_batch_size"), 1) or 1
    accum = _at_least(settings.integer("gradient_accumulation_steps"), 1) or 1
    world = _at_least(as_int(settings.fields["world_size"]), 1) or 1
    epochs = settings.number("num_train_epochs")
    epochs = epochs if epochs is not None and epochs <= COUNT_LIMIT else None
    data_size = _at_least(data_size, 0)
    steps = planned_steps(_at_least(settings.integer("max_steps"), 1), epochs, data_size, batch, world, accum)
    size = _at_least(as_int(settings.bank_size), 0) if settings.bank_size is not None else None
    warmup = as_float(settings.warmup) if settings.warmup is not None else None
    warmup = warmup if warmup is not None and 0 <= warmup <= COUNT_LIMIT else None
    active = activation_step(warmup, settings.warmup_unit, accum) if warmup is not None and size else None
    per_forward = batch * settings.boxes_per_sample
    return Plan(
        world,
        batch,
        accum,
        data_size,
        steps,
        size,
        settings.bank_effective if settings.bank_effective is not None else size,
        warmup,
        settings.warmup_unit if warmup is not None else None,
        active,
        per_forward,
        per_forward * accum * world,
    )
