"""benchmarks/pretrain_cosines.py measures the pretrained tiny CLIP on the collator's batch contract
(unique texts + index maps, padded region slots): a real measurement on the session's embedded model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "pretrain_cosines", ROOT / "benchmarks" / "pretrain_cosines.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pretrain_cosines_counts_every_image_and_valid_region(embedded):
    result = _benchmark().measure(
        embedded["model_name_or_path"], embedded["data_path"], embedded["image_root"]
    )
    assert result["images"] == 256
    assert 0 < result["distinct_region_captions"] < result["regions"]
    for key in ("image_matched", "image_unmatched", "region_matched", "region_unmatched"):
        assert -1.0 <= result[key]["mean"] <= 1.0 and result[key]["std"] >= 0.0
    assert 0.0 <= result["region_top1"] <= 1.0 and 0.0 <= result["image_top1"] <= 1.0
