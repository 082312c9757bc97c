"""Near-duplicate captions are masked as false negatives in the batch and in the queue; the duplicate shares
and the run-based temperature signal (`loss_at_max_scale`, `hardest_gap`) have the values a constructed case
dictates.

Real batches: samples of the embedded data through the real collator (canonical keys made on the CPU) and a
real FGCLIPModel forward; the captions are set so the answer is known: every region gets a distinct
colour-shape caption, then a few are replaced by near-duplicates ("red circle" / "a red circle." / "red
circles" / "The red circle is"), a caption containing them ("a large red circle in the top left"), one
that does not ("a large red square in the top left") or an exact repeat.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fgclip.config import CLIP_FROM_SCRATCH_SCALE, LN_100, FGCLIPConfig, FGCLIPConfigError
from fgclip.data import build_data_module
from fgclip.data.synthetic_render import COLOURS, SHAPES
from fgclip.modeling.duplicates import contained
from fgclip.modeling.losses import HardNegativeLoss, RegionContrastiveLoss
from fgclip.modeling.memory_bank import RegionMemoryBank

NEAR = ["red circle", "a red circle.", "red circles", "The red circle is"]
EXACT = "yellow triangle"
CONTAINS, OTHER = "a large red circle in the top left", "a large red square in the top left"
TAKEN = ("red circle", "red square", EXACT)  # no pool caption may be contained in a planted one
POOL = [f"{c} {s}" for c in COLOURS for s in SHAPES if f"{c} {s}" not in TAKEN]


def samples_with(embedded, indices: range, captions: dict[tuple[int, int], str], pool: list[str]):
    """Real samples of the embedded images whose region captions are pool captions (distinct), except the
    (sample, region) slots in `captions`; returns the collated batch and the pool captions left over."""
    module = build_data_module(
        embedded.data.images_json, tokenizer=embedded.tokenizer, image_size=32, grid_size=4
    )
    samples = [module.train_dataset[i] for i in indices]
    pool = list(pool)
    for b, sample in enumerate(samples):
        texts = sample["region_texts"]
        for r in range(len(texts)):
            texts[r] = captions.get((b, r)) or pool.pop(0)
    return module.collator(samples), pool


def forward(model, batch):
    out = model(**batch)
    return {k: v.item() for k, v in out.stats.items()}


def test_near_duplicates_in_the_batch_are_masked_and_counted(embedded):
    planted = {(b, 0): text for b, text in enumerate(NEAR)} | {(4, 0): EXACT, (5, 0): EXACT}
    planted |= {(4, 1): CONTAINS, (5, 1): OTHER}  # CONTAINS holds the NEAR group's words, OTHER does not
    batch, _ = samples_with(embedded, range(6), planted, POOL)
    v = int(batch["box_mask"].sum())
    pairs = v * (v - 1)
    exact, canonical, inside = 2, 4 * 3, 2 * 4  # ordered pairs: the repeat, the NEAR group, CONTAINS x NEAR
    seen, masked = {}, {}
    for name, overrides, count in (
        ("default", {}, exact + canonical + inside),
        ("canonical", {"mask_contained_captions": False}, exact + canonical),
        ("exact", {"mask_near_duplicates": False, "mask_contained_captions": False}, exact),
        ("off", {"memory_bank_mask_duplicates": False}, 0),
    ):
        seen[name], masked[name] = forward(embedded.model(**overrides).train(), batch), count
        assert seen[name]["regions/valid"] == v
        assert seen[name]["exact_duplicate_share/region"] == pytest.approx(exact / pairs)
        assert seen[name]["near_duplicate_share/region"] == pytest.approx((canonical + inside) / pairs)
        # candidates per query: the positive and the other regions, less the masked duplicates
        assert seen[name]["candidates/region"] == pytest.approx(v - count / v), name
        left = exact + canonical + inside - count  # duplicates still among the negatives
        assert seen[name]["unmasked_duplicate_share/region"] == pytest.approx(left / (pairs - count)), name


def test_near_duplicates_in_the_queue_are_masked_and_counted(embedded):
    pool = [p for p in POOL if p != "blue square"]
    first, pool = samples_with(embedded, range(3), {(0, 0): "red circle", (1, 0): "blue square"}, pool)
    planted = {(0, 0): "the red circles", (1, 0): "blue square", (2, 0): "a small blue square at the bottom"}
    second, _ = samples_with(embedded, range(3, 6), planted, pool)
    v1, v2 = int(first["box_mask"].sum()), int(second["box_mask"].sum())
    # queue pairs: 1 exact (blue square), 2 near (red circle ~ the red circles; blue square in the third);
    # in the second batch: blue square in the third caption, both ways
    seen = {}
    for name, overrides in (
        ("default", {}),
        ("exact", {"mask_near_duplicates": False, "mask_contained_captions": False}),
    ):
        model = embedded.model(memory_bank_size=64, memory_bank_warmup_steps=1, **overrides).train()
        before = forward(model, first)  # fills the queue (not active yet: counted, not used)
        assert before["memory_bank/duplicate_share"] == 0.0 and before["memory_bank/fill"] == 0
        model.optimizer_step_completed()
        seen[name] = forward(model, second)
        assert seen[name]["memory_bank/fill"] == v1  # as the logits saw it: the batch is written after
        assert seen[name]["memory_bank/duplicate_share"] == pytest.approx(1 / (v2 * v1))
        assert seen[name]["memory_bank/near_duplicate_share"] == pytest.approx(2 / (v2 * v1))
        assert seen[name]["near_duplicate_share/region"] == pytest.approx(2 / (v2 * (v2 - 1)))
    waiting = embedded.model(memory_bank_size=64, memory_bank_warmup_steps=5).train()
    forward(waiting, first)
    queued = forward(waiting, second)  # a filled queue is counted before it joins the loss
    assert queued["memory_bank/duplicate_share"] == pytest.approx(1 / (v2 * v1))
    assert queued["memory_bank/near_duplicate_share"] == pytest.approx(2 / (v2 * v1))
    assert queued["candidates/region"] == pytest.approx(v2 - 2 / v2) and queued["memory_bank/active"] == 0.0
    assert seen["default"]["candidates/region"] == pytest.approx(v2 + v1 - (2 + 3) / v2)
    assert seen["exact"]["candidates/region"] == pytest.approx(v2 + v1 - 1 / v2)
    used = v2 * (v2 - 1) + v2 * v1 - 1
    assert seen["exact"]["unmasked_duplicate_share/region"] == pytest.approx(4 / used)
    assert seen["default"]["unmasked_duplicate_share/region"] == 0.0


def spread_rows(n: int, pos: float, neg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit region and text rows with cos(region_i, text_i) = pos and cos(region_i, text_j) = neg (i != j)."""
    eye = torch.eye(n)
    shared = torch.full((n, 1), math.sqrt(neg))
    own = math.sqrt(pos - neg) * eye
    rest = math.sqrt(1 - pos)
    region = torch.cat([shared, own, rest * eye, torch.zeros(n, n)], dim=1)
    text = torch.cat([shared, own, torch.zeros(n, n), rest * eye], dim=1)
    return region, text


def test_temperature_signal_on_known_cosines():
    n, pos, neg = 8, 0.5, 0.3
    region, text = spread_rows(n, pos, neg)
    keys = torch.arange(n)

    def loss_at(scale: float) -> float:
        return math.log1p((n - 1) * math.exp(-scale * (pos - neg)))

    head = {}
    for raw in (CLIP_FROM_SCRATCH_SCALE, LN_100):
        _, stats = RegionContrastiveLoss(1.0)(region, text, torch.tensor(raw), keys)
        head[raw] = stats["head_loss"].item()
        assert head[raw] == pytest.approx(loss_at(math.exp(raw)), rel=1e-4, abs=1e-6)
        assert stats["loss_at_max_scale"].item() == pytest.approx(loss_at(100.0), abs=1e-6)
        assert stats["hardest_gap"].item() == pytest.approx(pos - neg, abs=1e-5)
    assert head[CLIP_FROM_SCRATCH_SCALE] > 0.3 and head[LN_100] < 1e-6  # scale 14.3 vs 100: 0.34 vs 1e-8
    texts = torch.stack([text[[i, *[j for j in range(n) if j != i][:3]]] for i in range(n)])  # (n, 4, D)
    _, hard = HardNegativeLoss(1.0, max_raw_scale=LN_100)(
        region, texts, torch.tensor(CLIP_FROM_SCRATCH_SCALE)
    )
    assert hard["loss_at_max_scale"].item() == pytest.approx(math.log1p(3 * math.exp(-20.0)), abs=1e-7)
    assert hard["hardest_gap"].item() == pytest.approx(pos - neg, abs=1e-5)
    _, clamp_low = RegionContrastiveLoss(1.0, max_raw_scale=math.log(50.0))(
        region, text, torch.tensor(LN_100), keys
    )
    assert clamp_low["loss_at_max_scale"].item() == pytest.approx(math.log1p(7 * math.exp(-10.0)), abs=1e-5)


def test_hardest_gap_ignores_masked_negatives_and_padding_rows():
    region, text = spread_rows(4, 0.6, 0.2)
    text[1] = F.normalize(text[0] + 0.02 * text[1], dim=0)  # region 0 sees text 1 almost as its own
    keys = torch.tensor([5, 5, 6, 7])  # ... but text 1 carries the same caption: masked
    valid = torch.tensor([True, True, True, False])
    _, stats = RegionContrastiveLoss(1.0)(region, text, torch.tensor(LN_100), keys, valid=valid)
    gaps = []
    for i in range(3):
        negatives = [j for j in range(3) if j != i and keys[j] != keys[i]]
        cos = region[i] @ text.T
        gaps.append((cos[i] - max(cos[j] for j in negatives)).item())
    assert stats["hardest_gap"].item() == pytest.approx(sum(gaps) / 3, abs=1e-5)
    _, unmasked = RegionContrastiveLoss(1.0, False)(region, text, torch.tensor(LN_100), keys, valid=valid)
    assert unmasked["hardest_gap"].item() < stats["hardest_gap"].item()


def test_cosine_threshold_masks_close_captions_in_batch_and_queue():
    region, text = spread_rows(4, 0.9, 0.1)
    close = F.normalize(text[0] + 0.1 * text[2], dim=0)  # cos(text 0, close) ~ 0.995
    text[2] = close
    cos02 = (text[0] @ text[2]).item()
    keys = torch.arange(4)
    for threshold, masked in ((cos02 - 1e-3, True), (cos02 + 1e-3, False)):
        loss = RegionContrastiveLoss(1.0, near_duplicate_cosine=threshold)
        _, stats = loss(region, text, torch.tensor(LN_100), keys)
        expect = 2 / 12 if masked else 0.0  # pairs (0, 2) and (2, 0) of 4 * 3
        assert stats["near_duplicate_share"].item() == pytest.approx(expect), threshold
        assert stats["candidates"].item() == pytest.approx(4 - (2 / 4 if masked else 0.0))
    bank = RegionMemoryBank(size=8, dim=region.shape[1], warmup_steps=0).train()
    bank.enqueue(region[2:3], close.unsqueeze(0), torch.tensor([99]), near_keys=torch.tensor([99]))
    bank.optimizer_step_completed()
    loss = RegionContrastiveLoss(1.0, near_duplicate_cosine=cos02 - 1e-3)
    _, stats = loss(region[:2], text[:2], torch.tensor(LN_100), keys[:2], bank)
    assert stats["memory_bank/near_duplicate_share"].item() == pytest.approx(1 / 2)  # query 0 of 2
    assert stats["candidates"].item() == pytest.approx((2 + 3) / 2)  # query 0 loses the queued entry


def test_temperature_signal_on_two_tiny_models(embedded):
    """Same weights, same batch, region and hard-negative scales at 14.24 vs 100: the seed model's loss at
    the clamp scale is the fixed model's head loss, and the cosine gaps do not depend on the scale."""
    batch = embedded.batch("image", size=6)
    seen = {}
    for raw in (CLIP_FROM_SCRATCH_SCALE, LN_100):
        torch.manual_seed(0)  # the new roi head and long table are derived, not random: same weights
        model = embedded.model(
            finegrained_logit_scale_init=raw, hardneg_logit_scale_init=raw, region_head="roi_projection"
        ).eval()
        with torch.no_grad():
            seen[raw] = forward(model, batch)
    seed, fixed = seen[CLIP_FROM_SCRATCH_SCALE], seen[LN_100]
    for head in ("region", "hardneg"):
        assert fixed[f"loss_at_max_scale/{head}"] == pytest.approx(fixed[f"head_loss/{head}"], abs=1e-6)
        assert seed[f"loss_at_max_scale/{head}"] == pytest.approx(fixed[f"head_loss/{head}"], abs=1e-5)
        assert seed[f"hardest_gap/{head}"] == pytest.approx(fixed[f"hardest_gap/{head}"], abs=1e-5)
        assert seed[f"head_loss/{head}"] != pytest.approx(fixed[f"head_loss/{head}"], abs=1e-3)
    assert fixed["loss_at_max_scale/global"] == pytest.approx(fixed["head_loss/global"], abs=1e-6)


def test_config_validates_the_near_duplicate_fields():
    assert FGCLIPConfig().mask_near_duplicates is True and FGCLIPConfig().near_duplicate_cosine is None
    for bad in (0.0, 1.5, -0.2, True, "0.9"):
        with pytest.raises(FGCLIPConfigError, match="near_duplicate_cosine"):
            FGCLIPConfig(near_duplicate_cosine=bad)
    with pytest.raises(FGCLIPConfigError, match="memory_bank_mask_duplicates=False masks nothing"):
        FGCLIPConfig(near_duplicate_cosine=0.95, memory_bank_mask_duplicates=False)
    with pytest.raises(FGCLIPConfigError, match="mask_near_duplicates"):
        FGCLIPConfig(mask_near_duplicates="yes")
    assert FGCLIPConfig(near_duplicate_cosine=0.95).near_duplicate_cosine == 0.95


def test_containment_on_word_rows():
    rows = torch.tensor([[11, 12, 0], [12, 11, 13], [11, 14, 0], [0, 0, 0]])  # the last row: words unknown
    inside = contained(rows, rows)
    expected = torch.tensor(
        [
            [True, True, False, False],  # {11, 12} lies in {11, 12, 13}, both ways counted
            [True, True, False, False],
            [False, False, True, False],
            [False, False, False, False],  # unknown words are never contained and contain nothing
        ]
    )
    assert torch.equal(inside, expected)
    assert torch.equal(contained(rows[:2], rows[:, :2]), torch.tensor([[True, True, False, False]] * 2))
