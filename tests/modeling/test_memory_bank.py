"""Memory bank: optimizer-step warm-up, wrap-around, no zero/NaN keys, duplicates, checkpoint round trip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fgclip.modeling import FGCLIPModel
from fgclip.modeling.memory_bank import RegionMemoryBank

from .conftest import make_image_batch


def keys(n: int, start: int = 0) -> torch.Tensor:
    return torch.arange(start, start + n)


def unit(n: int, d: int = 4, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_warmup_counts_optimizer_steps_not_forwards(clip_dir):
    model = FGCLIPModel.from_pretrained(
        clip_dir, fgclip_overrides={"memory_bank_size": 64, "memory_bank_warmup_steps": 3}
    ).train()
    batch = make_image_batch()
    accumulation = 4
    active_at = []
    for step in range(1, 6):
        for _ in range(accumulation):  # four forwards per optimizer step
            out = model(**batch)
            active_at.append(out.stats["memory_bank/active"].item())
        model.optimizer_step_completed()
        if step == 3:
            assert model.memory_bank.activated_step.item() == 3
    # forwards 1-12 belong to optimizer steps 1-3 (bank inactive), 13+ see the queue
    assert active_at[:12] == [0.0] * 12 and active_at[12:] == [1.0] * 8
    assert model.memory_bank.optimizer_steps.item() == 5
    assert out.stats["candidates/region"].item() > out.stats["regions/valid"].item()


def test_wrap_around_when_batch_does_not_divide_queue():
    bank = RegionMemoryBank(size=5, dim=4, warmup_steps=0)
    for i in range(4):  # 3 rows at a time into 5 slots
        bank.enqueue(unit(3, seed=i), unit(3, seed=10 + i), keys(3, 3 * i))
    assert bank.ptr.item() == (4 * 3) % 5
    assert bank.fill.item() == 5
    # newest 5 keys are 7..11, stored circularly
    assert sorted(bank.caption_keys.tolist()) == [7, 8, 9, 10, 11]
    assert torch.allclose(bank.image_queue[(bank.ptr.item() - 1) % 5], unit(3, seed=3)[-1])


def test_more_rows_than_queue_keeps_the_newest():
    bank = RegionMemoryBank(size=4, dim=4, warmup_steps=0)
    bank.enqueue(unit(2), unit(2), keys(2))
    written = bank.enqueue(unit(7, seed=1), unit(7, seed=2), keys(7, 100))
    assert written == 4 and bank.fill.item() == 4
    assert sorted(bank.caption_keys.tolist()) == [103, 104, 105, 106]
    assert bank.ptr.item() == (2 + 7) % 4


def test_zero_and_nonfinite_keys_never_enter():
    bank = RegionMemoryBank(size=8, dim=4, warmup_steps=0)
    image = unit(4)
    image[1] = 0.0
    text = unit(4, seed=1)
    text[2, 0] = float("nan")
    assert bank.enqueue(image, text, keys(4)) == 2
    assert sorted(bank.caption_keys[: bank.fill.item()].tolist()) == [0, 3]
    assert torch.isfinite(bank.image_queue).all() and torch.isfinite(bank.text_queue).all()
    norms = bank.image_queue[:2].norm(dim=1)
    assert torch.allclose(norms, torch.ones(2), atol=1e-6)


def test_inactive_or_unfilled_entries_are_not_candidates():
    bank = RegionMemoryBank(size=6, dim=4, warmup_steps=2)
    bank.enqueue(unit(3), unit(3), keys(3))
    _, _, usable = bank.negatives(keys(2, 50))
    assert not usable.any()  # warm-up not over
    bank.optimizer_step_completed()
    bank.optimizer_step_completed()
    _, _, usable = bank.negatives(torch.tensor([1, 50]))
    assert usable.sum(dim=1).tolist() == [2, 3]  # 3 filled, caption 1 masked for the first query
    assert bank.activated_step.item() == 2


def test_state_dict_round_trip_keeps_the_clock():
    bank = RegionMemoryBank(size=6, dim=4, warmup_steps=3)
    bank.enqueue(unit(4), unit(4), keys(4))
    for _ in range(4):
        bank.optimizer_step_completed()
    clone = RegionMemoryBank(size=6, dim=4, warmup_steps=99)
    clone.load_state_dict(bank.state_dict())
    for name, buffer in bank.named_buffers():
        assert torch.equal(buffer, getattr(clone, name)), name
    assert clone.active.item() and clone.activated_step.item() == 3
    assert torch.equal(clone.near_keys[:4], keys(4))  # canonical keys default to the exact ones
    stats = clone.stats()
    assert stats["fill"].item() == 4 and stats["oldest_age"].item() == 4


def test_masked_writes_follow_a_ring_buffer():
    """Random batch sizes (some beyond the queue), padding rows and zero rows, against a plain list model."""
    g = torch.Generator().manual_seed(3)
    bank = RegionMemoryBank(size=7, dim=4, warmup_steps=0)
    ring, ptr, next_key = [-1] * 7, 0, 0
    for _ in range(30):
        m = int(torch.randint(0, 12, (), generator=g))
        image, text = unit(m, seed=next_key), unit(m, seed=next_key + 1)
        valid = torch.rand(m, generator=g) > 0.3
        image[torch.rand(m, generator=g) > 0.8] = 0.0  # empty boxes: never enter
        ids = keys(m, next_key)
        next_key += m
        written = bank.enqueue(image, text, ids, valid)
        rows = zip(ids.tolist(), valid.tolist(), image.norm(dim=1).tolist(), strict=True)
        kept = [k for k, v, norm in rows if v and norm > 0]
        for k in kept[-7:]:
            ring[(ptr + kept.index(k)) % 7] = k
        ptr = (ptr + len(kept)) % 7
        assert written.item() == min(len(kept), 7)
        assert bank.caption_keys.tolist() == ring and bank.ptr.item() == ptr
    assert bank.fill.item() == 7
