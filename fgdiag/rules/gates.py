"""The episode gate every runtime check reports through: a condition is reported when it starts holding and
again only after `clear_points` logging points where it did not (one finding per episode, not one per row).
"""

from __future__ import annotations


class Gates:
    """Open episodes by key (a check's code plus what it is about: "FGD603/region")."""

    __slots__ = ("clear_points", "open")

    def __init__(self, clear_points: int) -> None:
        self.clear_points = clear_points
        self.open: dict[str, int] = {}  # episode key -> clear points seen (-1 while the condition holds)

    def gate(self, key: str, condition: bool, *, once: bool = False) -> bool:
        """True when `condition` starts a new episode for `key`. An episode ends after `clear_points` clear
        logging points; `once` keys never re-arm (first occurrence only: data problems, first NaN)."""
        state = self.open.get(key)
        if condition:
            self.open[key] = -1
            return state is None
        if state is not None and not once:
            state = (0 if state < 0 else state) + 1
            if state >= self.clear_points:
                del self.open[key]
            else:
                self.open[key] = state
        return False

    def fire(self, ops: list[tuple[str, bool]]) -> bool:
        """Whether `gate(key, condition)` calls in this order would start an episode; nothing changes (a
        check's quick path settles a batch only when none would, then `apply` replays them)."""
        state: dict[str, int | None] = {}
        for key, condition in ops:
            s = state[key] if key in state else self.open.get(key)
            if condition:
                if s is None:
                    return True
                state[key] = -1
            elif s is not None:
                s = (0 if s < 0 else s) + 1
                state[key] = None if s >= self.clear_points else s
        return False

    def apply(self, ops: list[tuple[str, bool]]) -> None:
        for key, condition in ops:
            self.gate(key, condition)

    def close(self, key: str) -> None:
        """End an episode at once (the condition can no longer hold)."""
        self.open.pop(key, None)

    def is_open(self, prefix: str) -> bool:
        """An episode whose key starts with `prefix` is open (clear points still count): quick paths must
        then let `observe` count them."""
        return any(key.startswith(prefix) for key in self.open)
