"""FGD8xx, distributed training: docs. No check is registered yet: `fgclip.train` writes every rank's queue
checksum to `memory_bank_ranks.json`, which a future static check can compare (a new class or function
here)."""

from __future__ import annotations

from fgdiag.rules.registry import register

register(
    "FGD801",
    "ranks-disagree",
    "warning",
    what="Ranks hold different memory-bank queues or report diverging losses.",
    why="The bank must be gathered across ranks so every rank trains against the same negatives.",
    example="queue checksum differs between rank 0 and rank 1",
    fix="Gather keys across ranks before enqueueing (fgclip does).",
)
