"""The embedded data and tiny CLIP, generated once per test session into a temporary FGCLIP_HOME.

The pretraining stage runs PRETRAIN_STEPS steps only (the recipe's 400 take a minute or more); the value
goes through $FGCLIP_PRETRAIN_STEPS so training subprocesses find the same cache instead of rebuilding it.
"""

from __future__ import annotations

import os

import pytest

PRETRAIN_STEPS = 3


@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    home = tmp_path_factory.mktemp("fgclip_home")
    os.environ["FGCLIP_HOME"] = str(home)
    os.environ["FGCLIP_PRETRAIN_STEPS"] = str(PRETRAIN_STEPS)
    from fgclip.train.embedded import prepare_embedded

    return prepare_embedded()


def tiny_args(out, *extra: str) -> list[str]:
    """A short embedded run: batch 8, 12 optimizer steps, bank warm-up 4, logs every 2 steps."""
    return [
        "--preset",
        "embedded",
        "--output_dir",
        str(out),
        "--max_steps",
        "12",
        "--per_device_train_batch_size",
        "8",
        "--gradient_accumulation_steps",
        "2",
        "--memory_bank_warmup_steps",
        "4",
        "--logging_steps",
        "2",
        "--save_steps",
        "1000",
        "--disable_tqdm",
        "true",
        "--dataloader_pin_memory",
        "false",
        *extra,
    ]
