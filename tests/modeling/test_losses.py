"""Loss modules: chance level for uniform logits, targets, masking, stats."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fgclip.modeling.losses import GlobalContrastiveLoss, HardNegativeLoss, RegionContrastiveLoss
from fgclip.modeling.memory_bank import RegionMemoryBank

SCALE = torch.tensor(math.log(100.0))


def same_rows(n: int, d: int = 8) -> torch.Tensor:
    return F.normalize(torch.ones(n, d), dim=-1)


@pytest.mark.parametrize("n", [2, 4, 7])
def test_global_loss_is_ln_b_for_uniform_logits(n):
    parts, stats = GlobalContrastiveLoss("global_long", 1.0)(same_rows(n), same_rows(n), SCALE)
    assert parts["global_long_loss"].item() == pytest.approx(math.log(n), abs=1e-5)
    assert stats["chance"].item() == pytest.approx(math.log(n), abs=1e-6)
    assert stats["candidates"].item() == n


def test_region_loss_is_ln_k_with_an_active_bank():
    bank = RegionMemoryBank(size=16, dim=8, warmup_steps=0).train()
    bank.enqueue(same_rows(10), same_rows(10), torch.arange(100, 110))
    bank.optimizer_step_completed()
    loss = RegionContrastiveLoss(0.1)
    parts, stats = loss(same_rows(4), same_rows(4), SCALE, torch.arange(4), bank)
    k = 4 + 10
    assert parts["region_loss"].item() == pytest.approx(0.1 * math.log(k), abs=1e-5)
    assert stats["candidates"].item() == k
    assert stats["head_loss"].item() == pytest.approx(math.log(k), abs=1e-5)
    assert bank.fill.item() == 14  # the four queries were enqueued after the logits


def test_region_loss_masks_queued_duplicates_of_the_positive():
    bank = RegionMemoryBank(size=8, dim=8, warmup_steps=0).train()
    bank.enqueue(same_rows(6), same_rows(6), torch.tensor([7, 7, 7, 1, 2, 3]))
    bank.optimizer_step_completed()
    parts, stats = RegionContrastiveLoss(1.0)(same_rows(2), same_rows(2), SCALE, torch.tensor([7, 9]), bank)
    # query 0 (caption 7) sees 2 in-batch + 3 queued; query 1 sees 2 + 6
    expected = (math.log(5) + math.log(8)) / 2
    assert parts["region_loss"].item() == pytest.approx(expected, abs=1e-5)
    assert stats["candidates"].item() == pytest.approx((5 + 8) / 2)


def test_region_loss_identity_targets_and_perfect_pairs():
    x = torch.eye(4)
    parts, stats = RegionContrastiveLoss(1.0)(x, x, SCALE, torch.arange(4))
    assert parts["region_loss"].item() < 1e-6
    assert stats["pos_logit_mean"].item() == pytest.approx(100.0, rel=1e-5)
    assert stats["neg_logit_mean"].item() == pytest.approx(0.0, abs=1e-5)
    assert stats["loss_floor"].item() < 1e-6
    shuffled, _ = RegionContrastiveLoss(1.0)(x, x[[1, 2, 3, 0]], SCALE, torch.arange(4))
    assert shuffled["region_loss"].item() > math.log(4)  # misaligned labels sit above chance


def test_hard_negative_loss_is_ln_eleven_when_uniform():
    texts = same_rows(3 * 11).reshape(3, 11, 8)
    parts, stats = HardNegativeLoss(0.5)(same_rows(3), texts, SCALE)
    assert parts["hard_negative_loss"].item() == pytest.approx(0.5 * math.log(11), abs=1e-5)
    assert stats["candidates"].item() == 11


def test_no_regions_gives_zero_loss_with_a_graph():
    region = torch.zeros(0, 8, requires_grad=True)
    parts, stats = RegionContrastiveLoss(1.0)(
        region, torch.zeros(0, 8), SCALE, torch.zeros(0, dtype=torch.long)
    )
    assert parts["region_loss"].item() == 0.0
    parts["region_loss"].backward()
    assert torch.isnan(stats["logits_min"])


def test_logits_are_float32_under_bf16_features():
    x = F.normalize(torch.randn(4, 8), dim=-1).bfloat16()
    parts, stats = GlobalContrastiveLoss("global_short", 1.0)(x, x, SCALE.bfloat16())
    assert parts["global_short_loss"].dtype == torch.float32
    assert stats["logits_max"].dtype == torch.float32
