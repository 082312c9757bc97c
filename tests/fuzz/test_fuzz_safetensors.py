"""Fuzz: safetensors headers, structured (names, dtypes, shapes, offsets, metadata at and past their valid
ranges) and raw. `read_header` accepts a file exactly when the safetensors library opens it (both ways), and
an accepted file is then scanned and judged without an error; a refused one is an InputError naming it."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open

from fgdiag.check import check_paths
from fgdiag.facts.values import InputError
from fgdiag.static.safetensors_io import BITS, nonfinite_tensors, read_header

from .strategies import JSON_VALUES, budget

WORK = Path(tempfile.mkdtemp(prefix="fgdiag-fuzz-st-"))
DTYPES = st.one_of(st.sampled_from(sorted(BITS)), st.sampled_from(["F99", "f32", "", "BF8"]), JSON_VALUES)
COUNTS = st.one_of(st.integers(0, 6), st.integers(-3, 3), st.booleans(), st.floats(0, 4), st.integers(2**62))


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(header JSON, data bytes): mostly well-formed tensors tiling the data, with one thing bent."""
    header: dict = {}
    offset = 0
    for i in range(draw(st.integers(0, 4))):
        dtype = draw(st.sampled_from(["F32", "BF16", "I64", "U8", "BOOL", "F16", "F4"]))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        count = 1
        for n in shape:
            count *= n
        nbytes = count * BITS[dtype] // 8
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    bend = draw(st.integers(0, 7))
    name = draw(st.sampled_from(sorted(header))) if header else None
    if name is not None and bend == 1:
        header[name]["dtype"] = draw(DTYPES)
    elif name is not None and bend == 2:
        header[name]["shape"] = draw(st.lists(COUNTS, max_size=3))
    elif name is not None and bend == 3:
        header[name]["data_offsets"] = draw(st.lists(COUNTS, max_size=3))
    elif bend == 4:
        header["__metadata__"] = draw(JSON_VALUES)
    elif name is not None and bend == 5:
        header[name] = draw(JSON_VALUES)
    data = bytes(draw(st.integers(0, 255)) for _ in range(max(0, offset + draw(st.integers(-2, 2)))))
    return json.dumps(header).encode(), data


def write(path: Path, header: bytes, data: bytes, length: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


def opens(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="numpy") as handle:
            handle.keys()
        return True
    except Exception:
        return False


@budget(600)
@given(headers())
def test_fuzz_header_agrees_with_the_library(case: tuple[bytes, bytes]) -> None:
    path = write(WORK / "model.safetensors", *case)
    try:
        tensors, _ = read_header(path)
    except InputError as exc:
        assert str(exc).startswith(str(path))
        assert not opens(path), f"read_header refused a file safetensors opens: {exc}"
        return
    assert opens(path), "read_header accepted a file safetensors refuses"
    nonfinite_tensors(path, tensors)
    try:
        check_paths([path])
    except InputError as exc:
        assert str(path) in str(exc)


@budget(300)
@given(st.binary(max_size=400), st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_fuzz_raw_bytes(raw: bytes, length: int | None) -> None:
    path = write(WORK / "raw.safetensors", raw, b"", length)
    try:
        read_header(path)
    except InputError as exc:
        assert str(exc).startswith(str(path))
