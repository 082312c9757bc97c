"""Decisions taken once, by the main process, and shared with every rank before training.

Under torchrun or accelerate every rank runs `main`. Whatever touches the output folder (its lock, moving
unreadable checkpoints aside, naming a fresh subfolder) must happen once, and every rank must act on the
same answer; a refusal must stop every rank, not leave the others waiting in their first collective.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fgclip.train.errors import TrainingRefused

T = TypeVar("T")


def decided_on_main(process_index: int, decide: Callable[[], T]) -> T:
    """`decide()` on process 0; its result (or its TrainingRefused) on every rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return decide()
    box: list[Any] = [None]  # rank 0 fills it with (kind, value); broadcast_object_list copies it over
    if process_index == 0:
        try:
            box = [("ok", decide())]
        except TrainingRefused as exc:
            box = [("refused", (str(exc), exc.exit_code))]
    dist.broadcast_object_list(box, src=0)  # between our own ranks, never a user's file
    kind, value = box[0]
    if kind == "refused":
        raise TrainingRefused(*value)
    return value


__all__ = ["decided_on_main"]
