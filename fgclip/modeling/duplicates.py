"""Which region-loss candidates carry the query's own caption: exact duplicates and near-duplicates.

A candidate (another region of the batch, or a queued one) whose caption is the query's caption, or a
near-duplicate of it ("a person walking" / "a person is walking"), is a true description of the query: as a
negative it is a false negative the loss cannot train away. Three tests, all fixed-shape device ops:
- exact: equal token-id keys (`fgclip.modeling.text.caption_keys`, computed on the device);
- canonical: equal canonical keys (`fgclip.data.caption_key`, computed by the collator on the CPU);
- contained: one caption's canonical words all appear in the other's ("red circle" / "a large red circle in
  the top left"): the shorter one may well describe the other's region (word hashes from the collator);
- cosine: caption text embeddings with cosine >= `near_duplicate_cosine` (detached, on the device).
The statistics count pairs whatever is masked, so a run with masking off still shows its false negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Captions:
    """Per row: exact key (M,), canonical key (M,), L2-normalised caption embedding (M, D), and the hashes
    of its canonical words (M, W), 0-padded (a row of zeros: words unknown, never contained)."""

    exact: torch.Tensor
    canonical: torch.Tensor
    text: torch.Tensor
    words: torch.Tensor | None = None


def contained(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, K) bool: the word set of row a_m lies inside b_k's, or b_k's inside a_m's (0 = padding).

    One (M, K, Wa, Wb) comparison: 3 M booleans for 64 regions against 64 + 128 candidates of 16 words.
    """
    same = a.unsqueeze(1).unsqueeze(3) == b.unsqueeze(0).unsqueeze(2)  # (M, K, Wa, Wb)
    a_in_b = (same.any(dim=3) | (a == 0).unsqueeze(1)).all(dim=2)  # (M, K)
    b_in_a = (same.any(dim=2) | (b == 0).unsqueeze(0)).all(dim=2)  # (M, K)
    known = (a != 0).any(dim=1).unsqueeze(1) & (b != 0).any(dim=1).unsqueeze(0)  # (M, K)
    return (a_in_b | b_in_a) & known


@dataclass(frozen=True)
class Pairs:
    """(M, K) bool per (query, candidate): `exact` duplicates, `near` duplicates that are not exact, and
    `masked`, the pairs the loss removes from the negatives."""

    exact: torch.Tensor
    near: torch.Tensor
    masked: torch.Tensor


@dataclass(frozen=True)
class DuplicateMasking:
    """mask: mask duplicates at all (`memory_bank_mask_duplicates`); canonical: also canonical-key
    near-duplicates (`mask_near_duplicates`); contained: also captions whose words contain the other's
    (`mask_contained_captions`); cosine: also captions this close (`near_duplicate_cosine`)."""

    mask: bool = True
    canonical: bool = True
    contained: bool = True
    cosine: float | None = None

    @torch.no_grad()
    def pairs(self, query: Captions, candidates: Captions) -> Pairs:
        exact = query.exact.unsqueeze(1) == candidates.exact.unsqueeze(0)  # (M, K)
        canonical = query.canonical.unsqueeze(1) == candidates.canonical.unsqueeze(0)  # (M, K)
        near = canonical
        inside = None
        if query.words is not None and candidates.words is not None:  # counted whether masked or not
            inside = contained(query.words, candidates.words)
            near = near | inside
        close = None
        if self.cosine is not None:
            cos = query.text.detach().float() @ candidates.text.detach().float().T  # (M, K)
            close = cos >= self.cosine
            near = near | close
        masked = torch.zeros_like(exact)
        if self.mask:
            masked = exact
            if self.canonical:
                masked = masked | canonical
            if self.contained and inside is not None:
                masked = masked | inside
            if close is not None:
                masked = masked | close
        return Pairs(exact, near & ~exact, masked)


@torch.no_grad()
def pair_counts(pairs: Pairs, candidate: torch.Tensor, used: torch.Tensor) -> dict[str, torch.Tensor]:
    """Counts over the (query, candidate) pairs `candidate` (M, K) marks (valid query, real candidate, not
    the query itself): all of them, exact duplicates, near-duplicates (not exact); and over `used`, the
    negatives the loss keeps: all of them, and the duplicates among them (false negatives left in)."""
    return {
        "pairs": candidate.float().sum(),
        "exact": (pairs.exact & candidate).float().sum(),
        "near": (pairs.near & candidate).float().sum(),
        "used": used.float().sum(),
        "used_duplicates": ((pairs.exact | pairs.near) & used).float().sum(),
    }


def share(part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """part / whole, 0 when there is nothing to share (no host sync)."""
    return torch.where(whole > 0, part / whole.clamp(min=1), torch.zeros_like(whole))


__all__ = ["Captions", "DuplicateMasking", "Pairs", "pair_counts", "share"]
