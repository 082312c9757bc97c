"""check-config on the seed's story: the seed's configuration (fixes #1 and #2 not done, an old checkpoint in
the output directory) is caught; the fixed configuration is clean; launch scripts in the fork's and upstream's
style are read with line numbers."""

from __future__ import annotations

from pathlib import Path

from fgdiag.check import check_paths
from fgdiag.diagnostic import Severity, exit_code

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b

SEED = b.HERE / "seed.toml"
FIXED = b.HERE / "fixed.toml"


def codes(findings, severity=None):
    return {f.code for f in findings if severity is None or f.severity is severity}


def test_check_config_seed_configuration_is_caught(tmp_path: Path) -> None:
    out = tmp_path / "out"
    b.seed_checkpoint(out, 20)
    findings, summary = check_paths([SEED, out])
    assert {"FGD101", "FGD201", "FGD202", "FGD401"} <= codes(findings)
    assert {"FGD101", "FGD201", "FGD401"} <= codes(findings, Severity.ERROR)
    assert exit_code(findings) == 1
    fgd101 = [f for f in findings if f.code == "FGD101"]
    assert {f.location for f in fgd101} == {
        f"{SEED}:6:finegrained_logit_scale_init",
        f"{SEED}:7:hardneg_logit_scale_init",
    }
    assert "assumed" in fgd101[0].message and "4.6052" in fgd101[0].message
    warmup = next(f for f in findings if f.code == "FGD202" and f.location.startswith(str(SEED)))
    assert "optimizer step 50" in warmup.message and warmup.location.endswith(
        ":9:memory_bank_warmup_forward_passes"
    )
    never = next(f for f in findings if f.code == "FGD201")
    assert "never activates" in never.message and "40" in never.message
    stale = next(f for f in findings if f.code == "FGD401")
    assert stale.location == str(out / "checkpoint-20")
    assert "2.6562" in stale.message and "from-scratch" in stale.message
    counter = next(f for f in findings if f.code == "FGD202" and "checkpoint-20" in f.location)
    assert "160 forward passes at optimizer step 20" in counter.message
    assert summary["plan"]["memory_bank_activation_step"] == 50
    assert summary["plan"]["planned_optimizer_steps"] == 40
    assert summary["checkpoints"][0]["naming"] == "fork"


def test_check_config_fixed_configuration_is_clean(tmp_path: Path) -> None:
    out = tmp_path / "out"
    b.fixed_checkpoint(out, 100)
    b.fixed_checkpoint(out, 200)
    findings, summary = check_paths([FIXED, out])
    assert findings == []
    assert summary["errors"] == summary["warnings"] == 0 and summary["exit_code"] == 0
    assert [c["step"] for c in summary["checkpoints"]] == [100, 200]


def test_check_config_fixed_configuration_flags_old_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "out"
    b.seed_checkpoint(out, 20)
    b.fixed_checkpoint(out, 100)
    findings, _ = check_paths([FIXED, out])
    stale = [f for f in findings if f.code == "FGD401"]
    assert [f.location for f in stale] == [str(out / "checkpoint-20")]
    assert "configured 4.6052" in stale[0].message
    assert codes(findings, Severity.ERROR) == {"FGD401"}


def test_check_config_fork_script_is_read(tmp_path: Path) -> None:
    script = b.HERE / "train_ucf_full.sh"
    findings, summary = check_paths([script])
    assert summary["dialect"] == "fork"
    plan = summary["plan"]
    assert (plan["per_device_train_batch_size"], plan["gradient_accumulation_steps"], plan["world_size"]) == (
        2,
        16,
        1,
    )
    assert plan["memory_bank_activation_step"] == 12.5
    assert {"FGD102", "FGD103", "FGD202", "FGD203", "FGD403", "FGD501"} <= codes(findings)
    assert exit_code(findings) == 0  # the fork at HEAD: warnings only
    decay = next(f for f in findings if f.code == "FGD103")
    assert decay.location == f"{script}:30:weight_decay"
    loader = next(f for f in findings if f.code == "FGD403")
    assert loader.location == f"{script}:17:model_name_or_path" and "in_proj" in loader.message


def test_check_config_fork_script_with_seed_checkpoint(tmp_path: Path) -> None:
    """Script + output directory: the fork's checkpoint holding 2.6562 heads is stale whatever the script
    says."""
    out = tmp_path / "checkpoints"
    b.seed_checkpoint(out, 20)
    findings, _ = check_paths([b.HERE / "train_ucf_full.sh", out])
    assert "FGD401" in codes(findings, Severity.ERROR)


def test_check_config_torchrun_script_reports_unresolved(tmp_path: Path) -> None:
    findings, summary = check_paths([b.HERE / "train_ucf_torchrun.sh"])
    assert summary["dialect"] == "fgclip"
    assert any("$NUM_GPUS" in n for n in summary["notes"])
    assert any("world size not resolvable" in n for n in summary["notes"])
    assert summary["plan"]["world_size"] == 1
    fp16 = next(f for f in findings if f.code == "FGD701")
    assert fp16.severity is Severity.ERROR and fp16.location.endswith(":18:fp16")


def test_check_config_upstream_script_reads_deepspeed_config() -> None:
    findings, summary = check_paths([b.HERE / "scripts" / "train.sh"])
    assert summary["dialect"] == "upstream"
    assert summary["plan"]["world_size"] == 8
    assert any("no gradient_clipping" in n for n in summary["notes"])
    assert "FGD103" in codes(findings) and "FGD102" in codes(findings)
    assert summary["plan"]["memory_bank_size"] is None  # no bank upstream


def test_check_config_unresolved_values_do_not_crash(tmp_path: Path) -> None:
    """`$LR`, `$STEPS` from the caller's environment: reported as unresolved, judged as unknown."""
    script = tmp_path / "train.sh"
    script.write_text(
        "python -m fgclip.train --learning_rate $LR --max_steps $STEPS --region_head roi_projection "
        "--memory_bank_size 128 --memory_bank_warmup_steps 6 --gradient_accumulation_steps 8\n"
    )
    findings, summary = check_paths([script])
    assert summary["plan"]["planned_optimizer_steps"] is None
    assert any("$LR" in n for n in summary["notes"]) and any("$STEPS" in n for n in summary["notes"])
    lr = next(f for f in findings if f.code == "FGD501")
    assert "$LR" in lr.message
