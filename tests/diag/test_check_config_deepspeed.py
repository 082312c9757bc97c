"""DeepSpeed configs validated against the Trainer's arguments (issue 15 item 3): given on the command line
or named by `deepspeed` in a config / `--deepspeed` in a script; one FGD802 finding per disagreement at its
line, fp16 refused at scale 100 (FGD701), "auto" everywhere is clean, no gradient_clipping means none."""

from __future__ import annotations

import json
from pathlib import Path

from fgdiag.check import check_paths
from fgdiag.diagnostic import Severity

REPO = Path(__file__).resolve().parents[2]
ZERO2 = REPO / "examples" / "zero2.json"
SCRIPT = REPO / "examples" / "train_ucf_full.sh"


def by_code(findings, code):
    return [f for f in findings if f.code == code]


def test_the_example_zero2_is_clean_alone_and_with_the_example_script() -> None:
    findings, summary = check_paths([ZERO2])
    assert findings == [] and summary["inputs"] == [{"path": str(ZERO2), "kind": "deepspeed"}]
    findings, _ = check_paths([SCRIPT, ZERO2])
    assert not by_code(findings, "FGD802") and not by_code(findings, "FGD701")
    assert not any("clip" in f.message and f.code == "FGD501" for f in findings)  # "auto" clips at 1.0
    assert not by_code(findings, "FGD002")  # the example's options are all fgclip.train's


def test_every_disagreement_is_a_finding_at_its_line(tmp_path: Path) -> None:
    ds = tmp_path / "ds.json"
    ds.write_text(
        json.dumps(
            {
                "zero_optimization": {"stage": 4},
                "bf16": {"enabled": False},
                "fp16": {"enabled": True},
                "gradient_clipping": 5.0,
                "gradient_accumulation_steps": 4,
                "train_micro_batch_size_per_gpu": 3,
                "train_batch_size": 99,
                "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
            },
            indent=1,
        )
    )
    config = tmp_path / "run.toml"
    config.write_text(
        'deepspeed = "ds.json"\nbf16 = true\nmax_grad_norm = 1.0\ngradient_accumulation_steps = 8\n'
        "per_device_train_batch_size = 2\nmax_steps = 100\n"
    )
    findings, _ = check_paths([config])
    found = {f.location: f for f in by_code(findings, "FGD802")}
    lines = ds.read_text().splitlines()

    def at(dotted: str) -> str:
        """`ds.json:LINE:dotted`, the line found as a reader of the file would: each part after the last."""
        line = 0
        for part in dotted.split("."):
            line = next(i for i, t in enumerate(lines, 1) if i >= line and f'"{part}"' in t)
        return f"{ds}:{line}:{dotted}"

    keys = ["zero_optimization.stage", "bf16.enabled", "fp16.enabled", "gradient_clipping"]
    keys += ["gradient_accumulation_steps", "train_micro_batch_size_per_gpu", "train_batch_size"]
    assert set(found) == {*map(at, keys), str(ds)}
    assert found[str(ds)].severity is Severity.WARNING and "parameter groups" in found[str(ds)].message
    assert f"{config}:4:gradient_accumulation_steps" in found[at("gradient_accumulation_steps")].message
    assert "2 x 8 x 1 = 16" in found[at("train_batch_size")].message
    [fp16] = by_code(findings, "FGD701")
    assert fp16.location == at("fp16.enabled").replace(".enabled", "") and fp16.severity is Severity.ERROR


def test_missing_gradient_clipping_means_none(tmp_path: Path) -> None:
    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 2}, "bf16": {"enabled": "auto"}}')
    script = tmp_path / "train.sh"
    script.write_text(f"torchrun --nproc_per_node 2 -m fgclip.train --deepspeed {ds.name} --max_steps 10\n")
    findings, summary = check_paths([script])
    assert any("no gradient_clipping" in n for n in summary["notes"])
    assert any(f.code == "FGD501" and "max_grad_norm" in f.message for f in findings)
    assert not by_code(findings, "FGD802")
