"""Fuzz: configurations (TOML, JSON) and launch scripts through the whole of check-config. Keys come from
the options fgclip.train knows (and typos of them), values from every type at the edges of its range, lines
from real launch-script constructs (continuations, comments, here-documents, quotes, variables). A check
ends with findings, or with an InputError naming the file (exit 2); nothing else may escape."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fgdiag.check import check_paths
from fgdiag.facts.values import InputError
from fgdiag.static.known_options import fgclip_defaults

from .strategies import EDGE_NUMBERS, JSON_VALUES, budget

WORK = Path(tempfile.mkdtemp(prefix="fgdiag-fuzz-config-"))
KEYS = [
    *sorted(fgclip_defaults()),
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "num_train_epochs",
    "max_grad_norm",
    "bf16",
    "fp16",
    "weight_decay",
    "targets",
    "target_region_loss",
    "dialect",
    "world_size",
    "num_train_samples",
    "memory_bank_warmup_forward_passes",
    "param_groups",
    "is_video",
    "use_lora",
    "from_openai",
    "max_stepz",
]
TEXT_VALUES = st.sampled_from(
    ["embedded", "ucf", "none", "roi_projection", "attention", "$LR", "${A:-3}", "fork"]
)
VALUES = st.one_of(JSON_VALUES, EDGE_NUMBERS, TEXT_VALUES, EDGE_NUMBERS.map(float))
SECTIONS = st.sampled_from([None, "model", "data", "training", "targets", "bogus"])


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, (int, str)):
        return json.dumps(value)
    return json.dumps(value) if isinstance(value, list) else '"x"'


@st.composite
def configs(draw: st.DrawFn) -> tuple[str, str]:
    """(suffix, text): a JSON object, or TOML with sections, possibly cut or with a duplicate line."""
    items = draw(st.lists(st.tuples(SECTIONS, st.sampled_from(KEYS), VALUES), max_size=12))
    if draw(st.booleans()):
        data: dict = {}
        for section, key, value in items:
            (data.setdefault(section, {}) if section and isinstance(data.get(section, {}), dict) else data)[
                key
            ] = value
        text = json.dumps(data, indent=draw(st.sampled_from([None, 1])))
        suffix = ".json"
    else:
        lines, current = [], None
        for section, key, value in sorted(items, key=lambda i: str(i[0])):
            if section != current and section is not None:
                lines.append(f"[{section}]")
                current = section
            lines.append(f"{key} = {toml_value(value)}")
        text, suffix = "\n".join(lines) + "\n", ".toml"
    if draw(st.integers(0, 6)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    if draw(st.integers(0, 6)) == 0 and "\n" in text:
        first = text.splitlines()[0]
        text += first + "\n"
    return suffix, text


SHELL_LINES = st.sampled_from(
    [
        "#!/bin/bash",
        "set -euo pipefail",
        "NUM_GPUS=${NUM_GPUS:-2}",
        'MODEL="openai/clip-vit-base-patch16"',
        "export CUDA_VISIBLE_DEVICES=0,1",
        "python -m fgclip.train \\",
        "torchrun --nproc_per_node $NUM_GPUS -m fgclip.train \\",
        "deepspeed --include localhost:0,1 fgclip/train/train_fgclip.py \\",
        "accelerate launch --num_processes 2 -m fgclip.train \\",
        "nohup python train.py \\",
        "  --max_steps 400 \\",
        "  --learning_rate $LR \\",
        "  # --warmup_steps 10 \\",
        "  --model_name_or_path $MODEL \\",
        "  --memory_bank_warmup_steps -3 \\",
        "  --deepspeed scripts/zero2.json \\",
        "  --run_name 'a # b' \\",
        '  --output_dir "$(pwd)/out" \\',
        "  --bf16 True 2>&1 | tee log.txt",
        "cat > x.sh <<EOF",
        "cat <<-'END'",
        "EOF",
        "\tEND",
        "N=$(( 1 << 3 ))",
        "echo `date`",
        "  --gradient_accumulation_steps 16",
    ]
)


@budget(400)
@given(configs())
def test_fuzz_config_files(case: tuple[str, str]) -> None:
    suffix, text = case
    path = WORK / f"run{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        check_paths([path])
    except InputError as exc:
        assert str(path) in str(exc)


@budget(400)
@given(st.lists(st.one_of(SHELL_LINES, SHELL_LINES, st.text(max_size=40)), min_size=1, max_size=25))
def test_fuzz_launch_scripts(lines: list[str]) -> None:
    path = WORK / "train.sh"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        check_paths([path])
    except InputError as exc:
        assert str(path) in str(exc)
