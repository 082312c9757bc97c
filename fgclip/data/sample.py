"""`Sample`: one dataset item, the raw material `RegionCollator` turns into a batch (`fgclip/batch.py`).

A read-only mapping on purpose, not a `dict`: transformers' Trainer (with its default
`remove_unused_columns=True`) filters every *dict* sample down to the keys of `model.forward` before the
collator sees it, which would strip the captions and region texts (`KeyError: 'region_texts'`). Samples
are not model inputs; the collator's batch is, and it already carries exactly the forward's keys. The
Trainer passes any non-dict sample through unchanged, so a `Sample` reaches our collator whole under every
Trainer setting. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Sample(Mapping[str, Any]):
    """Keys and values of one item; read like a dict (`sample["boxes"]`, `.get`, `in`, `dict(sample)`)."""

    __slots__ = ("_fields",)

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Sample({', '.join(self._fields)})"

    def __reduce__(self):  # DataLoader workers pickle samples
        return (_rebuild, (self._fields,))


def _rebuild(fields: dict[str, Any]) -> Sample:
    return Sample(**fields)


__all__ = ["Sample"]
