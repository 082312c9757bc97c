"""Thread choice for the embedded default: one torch thread unless the user says otherwise."""

from __future__ import annotations

import pytest
import torch

from fgclip.train.threads import DEFAULT_THREADS, choose_threads, configure_torch_threads
from fgdiag.runs import child_env, plan_parallel


def test_choice_and_its_source():
    assert choose_threads({}) == (DEFAULT_THREADS, "default for the embedded preset") and DEFAULT_THREADS == 1
    assert choose_threads({"OMP_NUM_THREADS": "2"}) == (2, "$OMP_NUM_THREADS")
    assert choose_threads({"OMP_NUM_THREADS": "2", "FGCLIP_NUM_THREADS": "3"}) == (3, "$FGCLIP_NUM_THREADS")
    for bad in ("0", "two", "-1"):
        with pytest.raises(SystemExit, match="FGCLIP_NUM_THREADS"):
            choose_threads({"FGCLIP_NUM_THREADS": bad})


def test_configure_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert configure_torch_threads({"FGCLIP_NUM_THREADS": "2"}) == 2 == torch.get_num_threads()
        assert configure_torch_threads({}) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_arms_side_by_side_only_with_a_core_each():
    assert plan_parallel(2, 1, cpus=2) and not plan_parallel(2, 2, cpus=2) and not plan_parallel(1, 1, cpus=8)
    assert plan_parallel(2, 2, cpus=4) and not plan_parallel(2, 1, cpus=1)
    env = child_env(1, "embedded")
    assert env["FGCLIP_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "1" and env["FGDIAG_TARGETS"] == "embedded"
    assert env["ENABLE_RUNTIME_DIAG"] and env["PYTHONUNBUFFERED"] == "1"
