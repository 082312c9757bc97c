"""The 77-position texts of a step: one list of token rows plus index maps from each use into it.

The collator (`fgclip.data.collate`, on the CPU, in the DataLoader workers) de-duplicates short captions,
region captions and hard negatives into `text_input_ids` (U, L) and gives the model fixed-shape index
tensors, so the device never runs `unique` and no shape depends on device data. Batches of older collators
(one id tensor per group) are turned into the same form here without de-duplication: fixed shapes, no host
sync, only more rows through the text tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fgclip.modeling.text import pad_to

LEGACY_KEYS = ("short_input_ids", "region_input_ids", "hard_input_ids")
INDEX_KEYS = ("short_text_index", "region_text_index", "hard_text_index")


@dataclass
class TextIndex:
    """`ids` (U, L) token rows; `short` (B,), `region` (B, R), `hard` (B, R, 1 + N) rows of `ids`.

    A padding slot (box_mask / hard_mask False) points at any row; the masks decide what counts.
    """

    ids: torch.Tensor
    short: torch.Tensor | None = None
    region: torch.Tensor | None = None
    hard: torch.Tensor | None = None

    def groups(self) -> dict[str, torch.Tensor]:
        """name -> index tensor, for the groups present."""
        pairs = (("short", self.short), ("region", self.region), ("hard", self.hard))
        return {name: index for name, index in pairs if index is not None}


def from_groups(
    short_ids: torch.Tensor | None,
    region_ids: torch.Tensor | None,
    hard_ids: torch.Tensor | None,
    pad_id: int,
) -> TextIndex | None:
    """Per-group ids (an older collator's batch) -> one list with identity maps (no de-duplication)."""
    present = [g for g in (short_ids, region_ids, hard_ids) if g is not None]
    if not present:
        return None
    length = max(g.shape[-1] for g in present)
    rows: list[torch.Tensor] = []
    maps: list[torch.Tensor | None] = []
    start = 0
    for group in (short_ids, region_ids, hard_ids):
        if group is None:
            maps.append(None)
            continue
        flat = pad_to(group.reshape(-1, group.shape[-1]), length, pad_id)  # (n, L)
        rows.append(flat)
        index = torch.arange(start, start + flat.shape[0], device=flat.device)
        maps.append(index.reshape(group.shape[:-1]))
        start += flat.shape[0]
    return TextIndex(torch.cat(rows, dim=0), *maps)


def from_batch(
    text_input_ids: torch.Tensor | None,
    indices: dict[str, torch.Tensor | None],
    legacy: dict[str, torch.Tensor | None],
    pad_id: int,
) -> TextIndex | None:
    """The step's texts from either batch layout; a batch mixing both layouts is refused by key name."""
    given_index = sorted(k for k, v in indices.items() if v is not None)
    given_legacy = sorted(k for k, v in legacy.items() if v is not None)
    if text_input_ids is None:
        if given_index:
            raise ValueError(
                f"batch has {given_index} but no text_input_ids: the rows they index are missing"
            )
        short, region, hard = (legacy.get(k) for k in LEGACY_KEYS)
        return from_groups(short, region, hard, pad_id=pad_id)
    if given_legacy:
        raise ValueError(
            f"batch mixes text_input_ids (the de-duplicated layout) with {given_legacy} (the per-group "
            "layout of older collators); send one layout"
        )
    return TextIndex(text_input_ids, *(indices.get(k) for k in INDEX_KEYS))


__all__ = ["INDEX_KEYS", "LEGACY_KEYS", "TextIndex", "from_batch", "from_groups"]
