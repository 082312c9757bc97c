"""Queue of region negatives (image and text side) that survives checkpoints and counts optimizer steps.

Everything that must survive a resume is a registered buffer: the queues, the caption keys used to mask
duplicates (exact token-id keys, the collator's canonical keys and word hashes), the optimizer step each
entry was written at, the pointer, the fill count, the optimizer-step counter, the warm-up and the step it
activated at. The trainer calls `optimizer_step_completed()` once per optimizer step, so warm-up means the
same thing under any gradient accumulation (the fgclip-vad fork counted forward passes and never switched
on in time).
"""

from __future__ import annotations

import torch
from torch import nn

import fgclip.modeling.dist as dist
from fgclip.data.caption_key import CAPTION_WORDS
from fgclip.modeling.duplicates import Captions

MIN_KEY_NORM = 1e-6  # zero region features (empty boxes) must never become negatives


class RegionMemoryBank(nn.Module):
    # registered buffers (see `__init__`), declared so the type checker knows them as tensors
    image_queue: torch.Tensor
    text_queue: torch.Tensor
    caption_keys: torch.Tensor
    near_keys: torch.Tensor
    caption_words: torch.Tensor
    entry_step: torch.Tensor
    ptr: torch.Tensor
    fill: torch.Tensor
    optimizer_steps: torch.Tensor
    activated_step: torch.Tensor
    warmup_steps: torch.Tensor

    def __init__(self, size: int, dim: int, warmup_steps: int, mask_duplicates: bool = True):
        super().__init__()
        self.size = size
        self.dim = dim
        self.mask_duplicates = mask_duplicates
        self.register_buffer("image_queue", torch.zeros(size, dim))
        self.register_buffer("text_queue", torch.zeros(size, dim))
        self.register_buffer("caption_keys", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("near_keys", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("caption_words", torch.zeros(size, CAPTION_WORDS, dtype=torch.long))
        self.register_buffer("entry_step", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("fill", torch.zeros((), dtype=torch.long))
        self.register_buffer("optimizer_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("activated_step", torch.full((), -1, dtype=torch.long))
        self.register_buffer("warmup_steps", torch.full((), warmup_steps, dtype=torch.long))

    def reset_buffers(self) -> None:
        """Initial state (used by the model's weight init when a checkpoint lacks the bank)."""
        self.image_queue.zero_()
        self.text_queue.zero_()
        self.caption_keys.fill_(-1)
        self.near_keys.fill_(-1)
        self.caption_words.zero_()
        self.entry_step.fill_(-1)
        self.ptr.zero_()
        self.fill.zero_()
        self.optimizer_steps.zero_()
        self.activated_step.fill_(-1)

    @property
    def active(self) -> torch.Tensor:
        """Bool tensor (no host sync): True once warm-up optimizer steps have completed."""
        return self.optimizer_steps >= self.warmup_steps

    @torch.no_grad()
    def optimizer_step_completed(self) -> None:
        self.optimizer_steps += 1
        newly = (self.activated_step < 0) & (self.optimizer_steps >= self.warmup_steps)
        self.activated_step.copy_(torch.where(newly, self.optimizer_steps, self.activated_step))

    def available(self) -> torch.Tensor:
        """(Kq,) bool: entries that are filled, once the bank is active (a device tensor, no host sync)."""
        filled = torch.arange(self.size, device=self.ptr.device) < self.fill  # (Kq,)
        return filled & self.active

    def entries(self) -> tuple[torch.Tensor, Captions, torch.Tensor]:
        """Queued region features (Kq, D), their captions (exact keys, canonical keys, text features) and
        which are filled (Kq,), active or not (`active` says whether they join the loss). Copies: `enqueue`
        writes in place after the logits were computed."""
        captions = Captions(
            self.caption_keys.clone(),
            self.near_keys.clone(),
            self.text_queue.detach().clone(),
            self.caption_words.clone(),
        )
        filled = torch.arange(self.size, device=self.ptr.device) < self.fill  # (Kq,)
        return self.image_queue.detach().clone(), captions, filled

    def negatives(self, positive_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queued (image, text) negatives and a (N, Kq) mask of usable entries per query, masking exact
        caption duplicates only (the region loss masks near-duplicates too, through `entries`).

        An entry is usable when it is filled, the bank is active, and (with duplicate masking) its caption
        differs from the query's. Shapes stay static (Kq = size) so nothing syncs with the host.
        """
        usable = self.available().unsqueeze(0).expand(positive_keys.shape[0], -1)  # (N, Kq)
        if self.mask_duplicates:
            usable = usable & (self.caption_keys.unsqueeze(0) != positive_keys.unsqueeze(1))
        return (
            self.image_queue.detach().clone(),
            self.text_queue.detach().clone(),
            usable,
        )  # enqueue writes in place

    @torch.no_grad()
    def enqueue(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        keys: torch.Tensor,
        valid: torch.Tensor | None = None,
        near_keys: torch.Tensor | None = None,
        words: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Write L2-normalised features gathered from all ranks, after the logits were computed, with their
        exact caption `keys`, canonical `near_keys` (default: the exact keys) and word hashes `words`
        (M, W <= CAPTION_WORDS; default: unknown, zeros).

        Rows that are not `valid` (padding slots) or whose image or text feature is zero or non-finite are
        skipped; the others are written in order from the pointer, wrapping around, the newest kept when
        they outnumber the queue. A fixed-shape masked write: the count stays on the device, nothing waits
        for it. Returns the number of rows written (a device scalar).
        """
        m_local = image.shape[0]
        valid = torch.ones(m_local, dtype=torch.bool, device=image.device) if valid is None else valid
        near_keys = keys if near_keys is None else near_keys
        width = 0 if words is None else words.shape[1]
        words = keys.new_zeros((m_local, CAPTION_WORDS)) if words is None else words
        words = nn.functional.pad(words, (0, CAPTION_WORDS - width)) if width else words  # (M, CAPTION_WORDS)
        gathered = (dist.gather_variable(x) for x in (image, text, keys, near_keys, words, valid))
        image, text, keys, near_keys, words, valid = gathered
        m = image.shape[0]
        if m == 0:  # a shape, known on the host
            return torch.zeros((), dtype=torch.long, device=self.ptr.device)
        ok = (
            valid
            & torch.isfinite(image).all(dim=1)
            & torch.isfinite(text).all(dim=1)
            & (image.norm(dim=1) > MIN_KEY_NORM)
            & (text.norm(dim=1) > MIN_KEY_NORM)
        )  # (M,)
        n = ok.sum()  # rows to write, on the device
        order = torch.sort((~ok).to(torch.uint8), stable=True).indices  # (M,): written rows first, in order
        # slot s takes the row of rank k: the newest row with k = s - ptr (mod size) among the last `size`
        lag = (torch.arange(self.size, device=self.ptr.device) - self.ptr) % self.size  # (K,)
        first = (n - self.size).clamp(min=0)
        rank = first + (lag - first) % self.size  # (K,)
        written = rank < n  # (K,)
        rows = order.index_select(0, rank.clamp(max=m - 1))  # (K,)
        mask = written.unsqueeze(1)
        for queue, source in ((self.image_queue, image), (self.text_queue, text)):
            new = nn.functional.normalize(source.float().index_select(0, rows), dim=1).to(queue.dtype)
            queue.copy_(torch.where(mask, new, queue))
        self.caption_keys.copy_(torch.where(written, keys.index_select(0, rows), self.caption_keys))
        self.near_keys.copy_(torch.where(written, near_keys.index_select(0, rows), self.near_keys))
        self.caption_words.copy_(torch.where(mask, words.index_select(0, rows), self.caption_words))
        self.entry_step.copy_(torch.where(written, self.optimizer_steps, self.entry_step))
        self.ptr.copy_((self.ptr + n) % self.size)
        self.fill.copy_((self.fill + n).clamp(max=self.size))
        return n.clamp(max=self.size)

    @torch.no_grad()
    def stats(self) -> dict[str, torch.Tensor]:
        """Detached device tensors for the diagnostics (read on logging steps only). The duplicate shares of
        the queue are the region loss's (it knows the queries): `fgclip.modeling.losses`."""
        filled = torch.arange(self.size, device=self.ptr.device) < self.fill
        norms = self.image_queue.float().norm(dim=1)
        big = torch.finfo(torch.float32).max
        return {
            "active": self.active.float(),
            "activated_step": self.activated_step.float(),
            "fill": self.fill.float(),
            "ptr": self.ptr.float(),
            "optimizer_steps": self.optimizer_steps.float(),
            "oldest_age": torch.where(
                filled.any(),
                (self.optimizer_steps - torch.where(filled, self.entry_step, self.optimizer_steps)).max(),
                torch.zeros_like(self.optimizer_steps),
            ).float(),
            "key_norm_min": torch.where(filled, norms, torch.full_like(norms, big)).min(),
            "key_norm_max": torch.where(filled, norms, torch.zeros_like(norms)).max(),
        }

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, mask_duplicates={self.mask_duplicates}"
