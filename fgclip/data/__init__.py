"""fgclip.data: annotation formats, box validation and policy, datasets (image / video), collate, synthetic
data.

Public names are loaded lazily so that torch-free parts (reader, boxes, validate, audit) stay cheap to import:

    from fgclip.data import generate_embedded, build_tokenizer, build_data_module, data_kwargs_from_config
    data = generate_embedded("out/embedded")
    tokenizer = build_tokenizer("out/tokenizer", data.texts())
    module = build_data_module(data.images_json, tokenizer=tokenizer, **data_kwargs_from_config(config))
    loader = DataLoader(module.train_dataset, batch_size=16, collate_fn=module.collator)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "audit": "fgclip.data.audit",
    "read_test_list": "fgclip.data.audit",
    "ALL_REASONS": "fgclip.data.boxes",
    "POLICIES": "fgclip.data.boxes",
    "BoxDecision": "fgclip.data.boxes",
    "classify_box": "fgclip.data.boxes",
    "decide_box": "fgclip.data.boxes",
    "RegionCollator": "fgclip.data.collate",
    "ImageRegionDataset": "fgclip.data.datasets",
    "VideoRegionDataset": "fgclip.data.datasets",
    "BoxValidationError": "fgclip.data.errors",
    "DataFormatError": "fgclip.data.errors",
    "Location": "fgclip.data.errors",
    "probe_video": "fgclip.data.frames",
    "read_frames": "fgclip.data.frames",
    "sample_frame_indices": "fgclip.data.frames",
    "DataModule": "fgclip.data.module",
    "build_data_module": "fgclip.data.module",
    "data_kwargs_from_config": "fgclip.data.module",
    "make_dataset": "fgclip.data.module",
    "detect_format": "fgclip.data.reader",
    "read_raw_records": "fgclip.data.reader",
    "EmbeddedData": "fgclip.data.synthetic",
    "generate_embedded": "fgclip.data.synthetic",
    "build_tokenizer": "fgclip.data.tokenizer",
    "load_tokenizer": "fgclip.data.tokenizer",
    "tokenizer_ids": "fgclip.data.tokenizer",
    "region_track": "fgclip.data.tracks",
    "image_transform": "fgclip.data.transforms",
    "RecordValidator": "fgclip.data.validate",
    "ValidationReport": "fgclip.data.validate",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fgclip.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(_EXPORTS)


__all__ = sorted(_EXPORTS)
