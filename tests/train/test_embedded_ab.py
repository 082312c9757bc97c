"""The seed arm of `fgdiag run --compare seed` on the real trainer: its region and hard-negative scales
stay on bf16's 2.65625 (as in the fork's bf16 model) and its memory bank never joins the loss."""

from __future__ import annotations

import json

import pytest
import torch

from fgclip.modeling import FGCLIPModel
from fgclip.train.bf16_storage import parse_names, round_to_bf16
from fgclip.train.main import main
from fgdiag.runs import SEED_SETTINGS

from .conftest import tiny_args

BF16_SEED_SCALE = 2.65625  # what the fork's logs print for 2.6592 stored in bf16


def _metrics(out) -> list[dict]:
    records = [json.loads(line) for line in (out / "fgdiag" / "events.jsonl").read_text().splitlines()]
    return [r["metrics"] for r in records if r["type"] == "metrics"]


def test_seed_arm_scale_stays_put_and_bank_stays_off(embedded, tmp_path, monkeypatch):
    monkeypatch.setenv("ENABLE_RUNTIME_DIAG", "1")
    # 30x the preset's lr: an fp32 scale moves visibly, yet each Adam step (about the lr) stays below half
    # of bf16's spacing at 2.66 (2**-7 = 0.0078), so the bf16 grid rounds every step away
    fast = ("--logit_scale_learning_rate", "3e-3")
    seed = tmp_path / "seed"
    assert main(tiny_args(seed, *SEED_SETTINGS, *fast)) == 0
    rows = _metrics(seed)
    assert len(rows) == 6
    for row in rows:
        assert row["logit_scale/region"] == BF16_SEED_SCALE
        assert row["logit_scale/hardneg"] == BF16_SEED_SCALE
        assert row["memory_bank/active"] == 0.0
    model = FGCLIPModel.from_pretrained(seed)
    assert model.logit_scale_finegrained.item() == BF16_SEED_SCALE
    assert model.memory_bank.activated_step.item() == -1 and model.memory_bank.optimizer_steps.item() == 12
    # control: the same run stored in fp32 moves its scale, so the bf16 grid is what holds it
    control = tmp_path / "control"
    settings = list(SEED_SETTINGS)
    at = settings.index("--bf16_parameter_storage")
    del settings[at : at + 2]
    assert main(tiny_args(control, *settings, *fast)) == 0
    moved = _metrics(control)[-1]["logit_scale/region"]
    assert abs(moved - 2.6592) > 0.005


def test_round_to_bf16_names_the_known_scalars():
    model = torch.nn.Module()
    model.scale = torch.nn.Parameter(torch.tensor(2.6592))
    round_to_bf16(model, ("scale",))
    assert model.scale.item() == BF16_SEED_SCALE and model.scale.dtype == torch.float32
    with pytest.raises(ValueError, match=r"no parameter named nope.*scalars of this model: scale"):
        round_to_bf16(model, ("nope",))
    assert parse_names(" a, b ,,") == ("a", "b") and parse_names(None) == ()
