"""The errors of weight loading, each a ValueError whose message names the file or tensor and the reason."""

from __future__ import annotations


class WeightsFileError(ValueError):
    """A weights file or folder that cannot be read as weights."""


class ArchiveError(WeightsFileError):
    """A TorchScript archive whose weights cannot be read."""


class UnsafeArchiveError(ArchiveError):
    """An archive's data.pkl asked for something beyond tensors and module attributes; nothing of it ran."""


class ArchitectureError(ValueError):
    """Tensor shapes that do not determine (or do not fit) a CLIP architecture."""


class MissingWeightsError(ValueError):
    """The checkpoint lacks tower tensors: loading would leave them random."""


__all__ = [
    "ArchitectureError",
    "ArchiveError",
    "MissingWeightsError",
    "UnsafeArchiveError",
    "WeightsFileError",
]
