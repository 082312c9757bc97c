"""Each check-config rule: one fixture that triggers it and one that does not (configs as JSON files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fgdiag.check import check_paths
from fgdiag.diagnostic import Severity

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b


def run(tmp_path: Path, config: dict[str, Any], *extra: Path, name: str = "config.json"):
    path = b.write_json_config(tmp_path / name, config)
    return check_paths([path, *extra])


def found(findings, code: str):
    return [f for f in findings if f.code == code]


TRIGGER = {
    "FGD001-negative-bank": ("FGD001", Severity.ERROR, {"memory_bank_size": -1}),
    "FGD001-zero-accumulation": ("FGD001", Severity.ERROR, {"gradient_accumulation_steps": 0}),
    "FGD002": ("FGD002", Severity.WARNING, {"max_stepz": 240}),
    "FGD101-clip-init": ("FGD101", Severity.ERROR, {"finegrained_logit_scale_init": 2.6592}),
    "FGD101-bf16-init": ("FGD101", Severity.ERROR, {"hardneg_logit_scale_init": 2.65625}),
    "FGD101-far-apart": ("FGD101", Severity.ERROR, {"finegrained_logit_scale_init": 3.3}),
    "FGD102-above-clamp": (
        "FGD102",
        Severity.ERROR,
        {"logit_scale_max": 4.0, "finegrained_logit_scale_init": 4.0, "hardneg_logit_scale_init": 4.2},
    ),
    "FGD102-no-clamp": ("FGD102", Severity.WARNING, {"logit_scale_max": "none"}),
    "FGD103-decayed": ("FGD103", Severity.WARNING, {"decay_logit_scales": True}),
    "FGD103-frozen": ("FGD103", Severity.WARNING, {"freeze_logit_scales": True}),
    "FGD103-scale-lr-0": ("FGD103", Severity.WARNING, {"logit_scale_learning_rate": 0}),
    "FGD103-no-group": ("FGD103", Severity.WARNING, {"param_groups": ["towers_decay", "heads_decay"]}),
    "FGD201-never": ("FGD201", Severity.ERROR, {"memory_bank_warmup_steps": 240}),
    "FGD201-late": ("FGD201", Severity.ERROR, {"memory_bank_warmup_steps": 200}),
    "FGD201-epochs": (
        "FGD201",
        Severity.ERROR,
        {"max_steps": None, "num_train_epochs": 2, "memory_bank_warmup_steps": 190},
    ),  # 2 x ceil(1559/16) = 196
    "FGD201-profile": ("FGD201", Severity.ERROR, {"targets": "ucf", "memory_bank_warmup_steps": 12}),
    "FGD202": (
        "FGD202",
        Severity.WARNING,
        {"memory_bank_warmup_steps": None, "memory_bank_warmup_forward_passes": 48},
    ),
    "FGD203-small": ("FGD203", Severity.WARNING, {"memory_bank_size": 64}),
    "FGD203-large": ("FGD203", Severity.WARNING, {"memory_bank_size": 512}),  # 5 % of 1559 x 4 regions = 312
    "FGD203-floor": (
        "FGD203",
        Severity.WARNING,
        {
            "finegrained_logit_scale_init": 1.0,
            "logit_scale_max": 4.6052,
            "targets": {"region_loss": {"50": 0.3}},
        },
    ),
    "FGD203-chance": ("FGD203", Severity.WARNING, {"target_region_loss": 5.0}),
    "FGD501-no-head-lr": ("FGD501", Severity.WARNING, {"head_learning_rate": None}),
    "FGD501-equal": ("FGD501", Severity.WARNING, {"head_learning_rate": 5e-6}),
    "FGD501-10x": ("FGD501", Severity.WARNING, {"head_learning_rate": 5e-5}),
    "FGD501-no-clip": ("FGD501", Severity.WARNING, {"max_grad_norm": 0}),
    "FGD701": ("FGD701", Severity.ERROR, {"bf16": False, "fp16": True}),
}


@pytest.mark.parametrize("case", sorted(TRIGGER))
def test_check_config_rule_triggers(tmp_path: Path, case: str) -> None:
    code, severity, changes = TRIGGER[case]
    findings, _ = run(tmp_path, b.fixed_with(**changes))
    hits = found(findings, code)
    assert hits, f"{case}: expected {code}, got {[f.code for f in findings]}"
    assert any(f.severity is severity for f in hits)
    assert all(f.help and f.location for f in hits)


CLEAN = {
    "FGD001": {"memory_bank_size": 0, "max_steps": -1, "num_train_epochs": 1},
    "FGD002": {"max_steps": 240},
    "FGD003": {"max_steps": 240},
    "FGD101": {"finegrained_logit_scale_init": 4.6052},
    "FGD101-from-scratch": {
        "model_name_or_path": None,
        "finegrained_logit_scale_init": 2.6592,
        "hardneg_logit_scale_init": 2.6592,
    },
    "FGD102": {"logit_scale_max": 4.6052, "finegrained_logit_scale_init": 4.6052},
    "FGD103": {"decay_logit_scales": False, "freeze_logit_scales": False},
    "FGD201": {"memory_bank_warmup_steps": 6},
    "FGD202": {"memory_bank_warmup_steps": 6},
    "FGD203": {"targets": {"region_loss": [[50, 1.0], [200, 0.7]]}},
    "FGD501": {"head_learning_rate": 2e-5, "max_grad_norm": 1.0},
    "FGD701": {"bf16": True},
}


@pytest.mark.parametrize("code", sorted(CLEAN))
def test_check_config_rule_stays_quiet(tmp_path: Path, code: str) -> None:
    findings, _ = run(tmp_path, b.fixed_with(**CLEAN[code]))
    assert not found(findings, code.split("-")[0]), [f.message for f in findings]


def test_check_config_fgd101_reads_the_source_scale(tmp_path: Path) -> None:
    """The source's own logit_scale (not the ln 100 assumption) is the reference when it is readable."""
    source = b.model_dir(tmp_path / "clip", b.clip_tensors(logit_scale=2.6592))
    config = b.fixed_with(
        model_name_or_path=str(source),
        finegrained_logit_scale_init=2.6592,
        hardneg_logit_scale_init=2.6592,
        logit_scale_max=4.6052,
    )
    findings, _summary = run(tmp_path, config)
    assert not found(findings, "FGD101")  # from-scratch source at 2.6592: heads agree with it
    far = b.model_dir(tmp_path / "clip100", b.clip_tensors())
    findings, _ = run(tmp_path, dict(config, model_name_or_path=str(far)))
    hit = found(findings, "FGD101")
    assert hit and "read from" in hit[0].message


def test_check_config_fgd101_on_a_source_holding_the_bug(tmp_path: Path) -> None:
    tensors = {**b.clip_tensors(), **b.fork_heads()}
    source = b.model_dir(tmp_path / "fork-model", tensors)
    findings, _ = check_paths([source])
    assert found(findings, "FGD101") and found(findings, "FGD101")[0].location == str(source)


def test_check_config_fgd103_fork_lora_without_modules_to_save(tmp_path: Path) -> None:
    config = {
        "model_name_or_path": "ViT-B/32",
        "is_video": True,
        "use_lora": True,
        "lora_r": 8,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 16,
        "max_steps": 240,
    }
    findings, _ = run(tmp_path, config)
    assert any("LoRA" in f.message for f in found(findings, "FGD103"))
    findings, _ = run(
        tmp_path, dict(config, modules_to_save=["logit_scale", "logit_scale_finegraind"], weight_decay=0.0)
    )
    assert not found(findings, "FGD103")


def test_check_config_fgd201_data_size_from_the_data_path(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in b.video_records(160)) + "\n")
    config = b.fixed_with(
        max_steps=None,
        num_train_samples=None,
        num_train_epochs=1,
        data_path=str(data),
        memory_bank_warmup_steps=10,
    )
    findings, summary = run(tmp_path, config)
    assert summary["plan"]["data_size"] == 160
    assert summary["plan"]["planned_optimizer_steps"] == 10  # ceil(160 / (2 x 1 x 8))
    assert found(findings, "FGD201")


def test_check_config_fgd302_fgd301_with_an_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's report shape (fgclip.data): invalid counts per reason, caption repetition per group."""
    report = {
        "records": 1559,
        "boxes": 1000,
        "regions": 1640,
        "invalid": {"zero_area": 80, "inverted": 20},
        "invalid_total": 100,
        "invalid_ratio": 0.1,
        "caption_repetition": {
            "global": {
                "total": 1559,
                "distinct": 900,
                "top": [{"caption": "A normal video of a city street scene.", "count": 250}],
            },
            "region": {
                "total": 1640,
                "distinct": 1500,
                "top": [{"caption": "People and vehicles pass on city streets.", "count": 36}],
            },
        },
    }
    from fgdiag.static import data_source

    monkeypatch.setattr(data_source, "audit_function", lambda: (lambda path, **kw: report, None))
    data = tmp_path / "ucf.json"
    data.write_text("[]")
    findings, summary = run(tmp_path, b.fixed_with(data_path=str(data)))
    invalid = found(findings, "FGD301")
    assert invalid and "100 of 1000" in invalid[0].message and invalid[0].location == str(data)
    repeated = {f.evidence["group"] for f in found(findings, "FGD302")}
    assert repeated == {"global", "region"}
    assert summary["plan"]["data_size"] == 1559
    clean = dict(
        report,
        invalid_ratio=0.01,
        invalid_total=10,
        caption_repetition={"region": {"total": 100000, "top": [{"caption": "x", "count": 2}]}},
    )
    monkeypatch.setattr(data_source, "audit_function", lambda: (lambda path, **kw: clean, None))
    findings, _ = run(tmp_path, b.fixed_with(data_path=str(data)))
    assert not found(findings, "FGD301") and not found(findings, "FGD302")
    findings, _ = check_paths(
        [b.write_json_config(tmp_path / "c.json", b.fixed_with(data_path=str(data)))], max_invalid_ratio=0.005
    )
    assert found(findings, "FGD301")


def test_check_config_data_rules_skip_without_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fgdiag.static import data_source

    monkeypatch.setattr(
        data_source,
        "audit_function",
        lambda: (None, "fgclip.data provides no audit() yet; FGD301/FGD302 skipped"),
    )
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"caption": "a"}] * 3))
    _findings, summary = run(tmp_path, b.fixed_with(data_path=str(data)))
    assert any("FGD301/FGD302 skipped" in n for n in summary["notes"])
    assert summary["plan"]["data_size"] == 3


def test_check_config_data_rules_with_the_real_audit(tmp_path: Path) -> None:
    """fgclip.data's own audit on a small UCF-style file: 20 % inverted boxes, one caption everywhere."""
    from fgdiag.static.data_source import audit_function

    if audit_function()[0] is None:
        pytest.skip("fgclip.data has no audit() in this checkout")
    data = tmp_path / "ucf.json"
    data.write_text(
        json.dumps(b.video_records(40, inverted=8, caption="A normal video of a city street scene."))
    )
    findings, summary = check_paths([b.write_json_config(tmp_path / "c.json", b.fixed_with()), data])
    assert summary["plan"]["data_size"] == 40
    assert found(findings, "FGD301") and found(findings, "FGD302")
    data.write_text(json.dumps(b.video_records(40)))
    findings, _ = check_paths([b.write_json_config(tmp_path / "c.json", b.fixed_with()), data])
    assert not found(findings, "FGD301") and not found(findings, "FGD302")


def test_check_config_local_copy_taken_as_source(tmp_path: Path) -> None:
    """A hub name in the config plus a local model directory on the command line: the directory is read."""
    local = b.model_dir(tmp_path / "local-clip", b.clip_tensors(logit_scale=3.0))
    findings, summary = run(tmp_path, b.fixed_with(logit_scale_max=5.0), local)
    assert any("taken as the pretrained source" in n for n in summary["notes"])
    hits = found(findings, "FGD101")  # heads at 4.6052 are 1.6 apart from the source's 3.0
    assert hits and "read from" in hits[0].message and "apart in log space" in hits[0].message
