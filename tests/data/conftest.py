"""Shared fixtures of the data tests: one small generated data set, its tokenizer, record writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fgclip.data.synthetic import EmbeddedData, generate_embedded
from fgclip.data.tokenizer import build_tokenizer

from .data_helpers import DEFECTS

torch.set_num_threads(1)  # the machine is shared: keep the data tests on one core


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedData:
    """A clean generated set: 24 images, 6 videos (mp4)."""
    return generate_embedded(tmp_path_factory.mktemp("embedded"), seed=0, n_images=24, n_videos=6)


@pytest.fixture(scope="session")
def defective(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedData:
    """A generated set with every plantable defect at a known count, and a test list overlapping 3 images."""
    return generate_embedded(
        tmp_path_factory.mktemp("defective"), seed=1, n_images=30, n_videos=6, defects=DEFECTS, test_overlap=3
    )


@pytest.fixture(scope="session")
def tokenizer(embedded: EmbeddedData, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"), embedded.texts(), vocab_size=1000)


@pytest.fixture
def one_image(tmp_path: Path, embedded: EmbeddedData) -> str:
    """Copy one generated PNG into tmp_path; returns its relative name."""
    (tmp_path / "img.png").write_bytes((embedded.root / "images" / "img_00000.png").read_bytes())
    return "img.png"
