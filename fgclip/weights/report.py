"""LoadingReport: where every tensor of a loaded FGCLIPModel came from, and the refusal of incomplete towers.

Each of the model's tensors is exactly one of: consumed (read from the checkpoint, with the saved name and the
transform), derived (made from the loaded towers: the stretched long table, copied projections) or newly
initialised (from the config: auxiliary scales, memory-bank buffers; `derived` is a subset of these). Each
saved tensor is consumed, read as metadata, or unused. A tower tensor left newly initialised is what the
fgclip-vad loader did to every q/k/v projection; `from_pretrained` raises `MissingWeightsError` for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fgclip.weights.errors import MissingWeightsError
from fgclip.weights.names import EXPECTED_NEW_PREFIXES

SHOWN = 8


@dataclass
class LoadingReport:
    """What `from_pretrained` read, derived and initialised, by name."""

    source: str
    newly_initialized: list[str] = field(default_factory=list)
    derived: dict[str, str] = field(default_factory=dict)  # name -> how it was derived
    unexpected_new: list[str] = field(default_factory=list)  # new beyond EXPECTED_NEW_PREFIXES: tower tensors
    unused_checkpoint_keys: list[str] = field(default_factory=list)
    layout: str = "clip-hf"
    consumed: dict[str, str] = field(default_factory=dict)  # our name -> saved name (and transform)
    metadata_keys: list[str] = field(default_factory=list)  # saved names read as facts, not weights
    missing_sources: dict[str, list[str]] = field(default_factory=dict)  # tower name -> saved names lacking

    def summary(self) -> str:
        lines = [
            f"loaded {self.source} ({self.layout}): {len(self.consumed)} tensors read, "
            f"{len(self.newly_initialized)} tensors newly initialised"
        ]
        random = set(self.unexpected_new)
        for name in self.newly_initialized:
            how = "RANDOM: not in the checkpoint" if name in random else "initialised from the config"
            lines.append(f"  new: {name} ({self.derived.get(name, how)})")
        if self.unexpected_new:
            lines.append(
                f"  WARNING {len(self.unexpected_new)} tensors beyond the expected new heads are random: "
                + ", ".join(self.unexpected_new[:SHOWN])
                + (" ..." if len(self.unexpected_new) > SHOWN else "")
            )
        if self.metadata_keys:
            lines.append(f"  read as metadata: {', '.join(self.metadata_keys[:SHOWN])}")
        if self.unused_checkpoint_keys:
            lines.append(
                f"  {len(self.unused_checkpoint_keys)} checkpoint tensors unused: "
                + ", ".join(self.unused_checkpoint_keys[:SHOWN])
                + (" ..." if len(self.unused_checkpoint_keys) > SHOWN else "")
            )
        return "\n".join(lines)

    def check_towers(self) -> None:
        """Raise MissingWeightsError naming every tower tensor the checkpoint did not provide."""
        if not self.unexpected_new:
            return
        parts = []
        for name in self.unexpected_new:
            lacking = self.missing_sources.get(name)
            parts.append(f"{name} (needs {', '.join(lacking)})" if lacking else name)
        raise MissingWeightsError(
            f"{self.source} ({self.layout}): {len(parts)} tower tensor(s) have no value in the checkpoint "
            f"and would stay random: {'; '.join(parts[: SHOWN * 4])}"
            + (" ..." if len(parts) > SHOWN * 4 else "")
            + ". Load a complete checkpoint, or pass strict_towers=False to accept random weights."
        )


def is_expected_new(name: str) -> bool:
    """FGCLIPModel's additions, which a CLIP checkpoint is expected to lack."""
    return name.startswith(EXPECTED_NEW_PREFIXES)


__all__ = ["LoadingReport", "MissingWeightsError", "is_expected_new"]
