"""Input readers and planning arithmetic of check-config: shell scripts, config files with line numbers,
planned steps, warm-up conversion and the loss floor."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fgdiag.facts.plan import activation_step, loss_floor, planned_steps
from fgdiag.facts.values import InputError
from fgdiag.static.config_file import read_config_file
from fgdiag.static.shell_script import read_script

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.sh"
    path.write_text(text)
    return path


def test_check_config_script_fork_arguments_and_lines() -> None:
    info = read_script(b.HERE / "train_ucf_full.sh")
    assert info.launcher == "python" and info.entry == "fgclip/train/train_fgclip.py"
    values = info.values
    assert values.get("data_path").value == (
        "/data/zyy/dataset/UCF_Crimes_Videos/ucf_fgclip_train_with_timestamps_en.json"
    )
    assert values.get("per_device_train_batch_size").value == "2"  # $BATCH_SIZE resolved
    assert values.get("per_device_train_batch_size").line == 25
    assert values.get("world_size").value == 1
    assert values.get("seed").value == "42" and "2" not in {f.name for f in values}  # `2>&1 | tee` ignored
    assert info.unresolved == []


def test_check_config_script_launchers(tmp_path: Path) -> None:
    ds = read_script(script(tmp_path, "deepspeed --include localhost:0,1,2 train_mem.py --bf16 True\n"))
    assert ds.launcher == "deepspeed" and ds.values.get("world_size").value == 3
    nodes = read_script(script(tmp_path, "torchrun --nnodes 2 --nproc-per-node=4 train.py --max_steps 10\n"))
    assert nodes.values.get("world_size").value == 8
    mod = read_script(
        script(
            tmp_path,
            "python -m torch.distributed.run --nproc_per_node 2 -m fgclip.train --max_steps=10 --fp16\n",
        )
    )
    assert mod.entry == "fgclip.train" and mod.values.get("world_size").value == 2
    assert mod.values.get("max_steps").value == "10" and mod.values.get("fp16").value == "True"
    visible = read_script(
        script(tmp_path, "export CUDA_VISIBLE_DEVICES=0,1\nnohup deepspeed train.py > log &\n")
    )
    assert visible.values.get("world_size").value == 2
    acc = read_script(script(tmp_path, "accelerate launch --num_processes 4 train.py --seed 1\n"))
    assert acc.launcher == "accelerate" and acc.values.get("world_size").value == 4


def test_check_config_script_variables(tmp_path: Path) -> None:
    info = read_script(
        script(
            tmp_path,
            "\n".join(
                [
                    "#!/bin/bash",
                    "LR=${LR:-5e-6}   # default when unset",
                    'OUT="./out/$RUN_NAME"',
                    "python train.py \\",
                    "  --learning_rate $LR \\",
                    "  --output_dir $OUT \\",
                    "  --weight_decay -0.0 \\",
                    "  --flag",
                    "python eval.py --x 1",
                ]
            ),
        )
    )
    assert info.values.get("learning_rate").value == "5e-6" and info.values.get("learning_rate").line == 5
    assert info.values.get("output_dir").value == "./out/$RUN_NAME"
    assert info.unresolved == ["line 6: $RUN_NAME in '$OUT'"]
    assert info.values.get("weight_decay").value == "-0.0" and info.values.get("flag").value == "True"
    assert any("2 launch commands" in n for n in info.notes)


def test_check_config_script_without_launch_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no training launch"):
        read_script(script(tmp_path, "echo hello\nls -la\n"))


def test_check_config_config_sections_and_lines(tmp_path: Path) -> None:
    values = read_config_file(b.HERE / "seed.toml")
    field = values.get("gradient_accumulation_steps")
    assert (field.value, field.line) == (8, 18) and field.location.endswith(
        "seed.toml:18:gradient_accumulation_steps"
    )
    json_cfg = tmp_path / "c.json"
    json_cfg.write_text('{\n  "training": {\n    "max_steps": 40\n  },\n  "fp16": true\n}\n')
    values = read_config_file(json_cfg)
    assert values.get("max_steps").line == 3 and values.get("fp16").line == 5
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }\n')
    with pytest.raises(InputError) as info:
        read_config_file(bad)
    assert info.value.line == 2


def test_check_config_planning_arithmetic() -> None:
    assert planned_steps(240, 5, 1559, 2, 1, 16) == 240
    assert planned_steps(-1, 5, 1559, 2, 1, 16) == 5 * math.ceil(1559 / 32)
    assert planned_steps(None, 1.5, 100, 2, 2, 5) == 8  # ceil(1.5 x ceil(100 / 20))
    assert planned_steps(None, 3, None, 2, 1, 1) is None
    assert activation_step(400, "forward", 8) == 50 and activation_step(200, "forward", 16) == 12.5
    assert activation_step(6, "optimizer", 8) == 6
    assert loss_floor(132, 100.0) < 1e-80
    assert loss_floor(4, 1.0) == pytest.approx(math.log(1 + 3 * math.exp(-2)))
    assert loss_floor(1, 1.0) == 0.0
