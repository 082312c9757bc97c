"""The fixed-shape step equals the selection-based step it replaced, on real batches of the embedded data.

Losses (1e-6), every parameter's gradient (GRAD_TOL of its largest entry) and the memory bank's buffers after
two steps (the bank fills, then serves negatives), in float32, against `legacy_step` (a frozen copy of the old
forward). Batches: images with hard negatives, videos with padding frames, an empty (zero-area) box, repeated
captions.
"""

from __future__ import annotations

import copy

import pytest
import torch

from .legacy_step import legacy_step, to_legacy

TOL = 1e-6
# float32 rounding of sums taken in another order (B * R rows instead of N, one text call instead of
# another): measured up to 1.05e-6 of max(1, largest gradient); run in float64 the two paths agree to 2e-15
GRAD_TOL = 5e-6
BANK = ("image_queue", "text_queue", "caption_keys", "entry_step", "ptr", "fill")


def hardened(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The awkward cases: an empty box on a valid region, and a caption repeated across samples."""
    batch = {k: v.clone() for k, v in batch.items()}
    empty = torch.tensor([0.3, 0.3, 0.3, 0.9])  # zero width: RoIAlign pools zeros
    if batch["boxes"].dim() == 3:
        batch["boxes"][0, 0] = empty
    else:
        batch["boxes"][0, :, 0] = torch.where(batch["box_frame_mask"][0, :, 0, None], empty, 0.0)
    batch["region_text_index"][1, 0] = batch["region_text_index"][0, 1]  # same caption, two samples
    batch["region_caption_key"][1, 0] = batch["region_caption_key"][0, 1]  # as the collator would key it
    return batch


def max_grad_diff(a, b) -> float:
    """Largest gradient difference of any parameter, relative to that parameter's largest gradient (at
    least 1): the gradients reach ~100 here, where float32 rounding alone is ~1e-5 absolute."""
    worst = 0.0
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        if p.grad is None and q.grad is None:
            continue
        assert p.grad is not None and q.grad is not None, name
        scale = max(1.0, p.grad.abs().max().item())
        worst = max(worst, (p.grad - q.grad).abs().max().item() / scale)
    return worst


@pytest.mark.parametrize("kind,frames", [("image", 1), ("video", 20)])
def test_losses_gradients_and_bank_match_the_selection_based_step(embedded, kind, frames):
    batch = hardened(embedded.batch(kind, size=6, frames=frames))
    # the oracle masks identical captions only; near-duplicate masking (on by default) must then agree:
    # in these captions, equal canonical keys are equal token rows (test_near_duplicates covers the rest)
    rows, near = batch["region_text_index"][batch["box_mask"]], batch["region_caption_key"][batch["box_mask"]]
    assert torch.equal(rows.unsqueeze(0) == rows.unsqueeze(1), near.unsqueeze(0) == near.unsqueeze(1))
    if kind == "image":
        assert batch["hard_mask"].any()
    else:
        assert not batch["frame_mask"].all()  # 16-frame clips in 20 slots: padding frames
    new = embedded.model(  # the oracle knows no containment ("red circle" in "a large red circle ...")
        region_head="roi_projection",
        memory_bank_size=32,
        memory_bank_warmup_steps=1,
        mask_contained_captions=False,
    ).train()
    old = copy.deepcopy(new)
    for step in range(2):  # the bank fills on step 0, serves negatives on step 1
        out = new(**batch)
        out.loss.backward()
        losses, stats = legacy_step(old, to_legacy(batch))
        torch.stack(list(losses.values())).sum().backward()
        assert set(out.losses) == set(losses)
        for name, value in losses.items():
            assert abs(out.losses[name].item() - value.item()) <= TOL, (step, name)
        assert out.stats["regions/valid"].item() == stats["regions/valid"].item()
        assert out.stats["regions/zero_norm"].item() == 1  # the empty box is masked, not selected
        assert abs(out.stats["candidates/region"].item() - stats["candidates/region"].item()) <= TOL
        if step == 0:  # no queue yet: a repeated caption removes candidates
            assert out.stats["candidates/region"].item() < out.stats["regions/valid"].item()
        assert max_grad_diff(new, old) <= GRAD_TOL, step
        for name in BANK:
            a, b = getattr(new.memory_bank, name), getattr(old.memory_bank, name)
            assert torch.allclose(a.float(), b.float(), atol=TOL, rtol=0), (step, name)
        new.zero_grad()
        old.zero_grad()
        new.optimizer_step_completed()
        old.optimizer_step_completed()
    assert out.stats["memory_bank/active"].item() == 1.0 and new.memory_bank.fill.item() > 0


def test_older_collators_batches_give_the_same_step(embedded):
    batch = embedded.batch("image", size=6)
    model = embedded.model(memory_bank_size=0).eval()
    with torch.no_grad():
        indexed, legacy = model(**batch), model(**to_legacy(batch))
    for name, value in indexed.losses.items():
        assert abs(value.item() - legacy.losses[name].item()) <= TOL, name
    mixed = dict(batch, region_input_ids=to_legacy(batch)["region_input_ids"])
    with pytest.raises(ValueError, match=r"mixes text_input_ids .*region_input_ids"):
        model(**mixed)
    orphan = {k: v for k, v in batch.items() if k != "text_input_ids"}
    with pytest.raises(ValueError, match="no text_input_ids"):
        model(**orphan)


def test_separate_text_path_matches_the_fused_one(embedded):
    batch = embedded.batch("image", size=6)
    model = embedded.model().eval()
    with torch.no_grad():
        fused = model(**batch)
        model.text_path = "separate"
        separate = model(**batch)
    for name, value in fused.losses.items():
        assert abs(value.item() - separate.losses[name].item()) <= TOL, name
