"""Corrupt and hostile inputs to check-config (issue 14 items 6 and 10): each one exits 2 with a message that
names the file, through a real process, never a traceback; the safetensors header is refused for exactly
what the safetensors library refuses, so no later read of an accepted file can raise."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from fgdiag.facts.values import InputError
from fgdiag.static.safetensors_io import nonfinite_tensors, read_header

try:
    from .fixtures_check_config import builders as b
except ImportError:
    from fixtures_check_config import builders as b

REPO = Path(__file__).resolve().parents[2]
F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def write(path: Path, header: object, data: bytes = b"\0" * 8, raw: bytes | None = None) -> Path:
    text = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


HEADERS = {  # name -> (header, data, words in the message)
    "unknown-dtype": ({"a": {**F32_2, "dtype": "F99"}}, b"\0" * 8, "unknown dtype 'F99'"),
    "metadata-list": ({"__metadata__": {"x": [1]}, "a": F32_2}, b"\0" * 8, "__metadata__"),
    "metadata-int": ({"__metadata__": 5, "a": F32_2}, b"\0" * 8, "__metadata__"),
    "negative-shape": ({"a": {**F32_2, "shape": [-2, -1]}}, b"\0" * 8, "shape [-2, -1]"),
    "bool-shape": ({"a": {**F32_2, "shape": [True, 2]}}, b"\0" * 8, "shape"),
    "overlap": (
        {"a": F32_2, "b": {**F32_2, "data_offsets": [4, 12]}},
        b"\0" * 12,
        "overlaps the previous tensor",
    ),
    "gap": ({"a": {**F32_2, "data_offsets": [4, 12]}}, b"\0" * 12, "leaves a gap"),
    "beyond-the-file": ({"a": F32_2}, b"\0" * 4, "truncated"),
    "span-not-shape": ({"a": {**F32_2, "data_offsets": [0, 4]}}, b"\0" * 4, "not the 8"),
    "extra-key": ({"a": {**F32_2, "x": 1}}, b"\0" * 8, "not {dtype, shape, data_offsets}"),
    "not-an-object": ([1, 2], b"", "not an object"),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_corrupt_safetensors_header_is_an_input_error(tmp_path: Path, case: str) -> None:
    header, data, words = HEADERS[case]
    path = write(tmp_path / f"{case}.safetensors", header, data)
    with pytest.raises(InputError) as info:
        read_header(path)
    assert str(info.value).startswith(f"{path}: ") and words in str(info.value)


def test_headers_we_accept_the_library_opens(tmp_path: Path) -> None:
    """Agreement the other way: every tensor of a valid tiny CLIP (F32, I64, BOOL, BF16) passes both."""
    folder = b.model_dir(tmp_path / "m", {**b.clip_tensors(), **b.fork_heads()})
    tensors, metadata = read_header(folder / "model.safetensors")
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as handle:
        assert set(handle.keys()) == set(tensors)
    assert nonfinite_tensors(folder / "model.safetensors", tensors) == [] and metadata == {}


def check_process(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fgdiag.cli.app", "check-config", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def test_hostile_files_exit_2_through_the_command(tmp_path: Path) -> None:
    """Before: SafetensorError / RecursionError tracebacks with exit 1 (F99, metadata, shape, overlap, a
    header nested 100,000 deep)."""
    paths = [write(tmp_path / f"{c}.safetensors", *HEADERS[c][:2]) for c in ("unknown-dtype", "overlap")]
    paths.append(write(tmp_path / "deep.safetensors", None, b"", raw=b"[" * 100_000 + b"]" * 100_000))
    paths.append(write(tmp_path / "huge.safetensors", None, b"", raw=b'{"a": ' + b"9" * 5000 + b"}"))
    model = b.model_dir(tmp_path / "model", b.clip_tensors())
    (model / "config.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    paths.append(model)
    data = tmp_path / "data.json"
    data.write_text('[{"f_path": "a.png", "caption": "x", "bbox_info": [{"bbox": [' + "1" * 5000 + "]}]}]")
    config = tmp_path / "run.toml"
    config.write_text(f'data_path = "{data}"\nmax_steps = 10\n')
    for path in paths:
        done = check_process(str(path))
        assert done.returncode == 2, (path, done.stderr)
        assert str(path) in done.stderr and "Traceback" not in done.stderr and done.stdout == ""
    done = check_process(str(config), str(data))
    assert done.returncode == 2 and f"{data}:1" in done.stderr and "bbox" in done.stderr


def test_fifos_and_devices_are_refused_without_reading(tmp_path: Path) -> None:
    """A FIFO used to block check-config forever (open() waits for a writer); /dev/zero never ends."""
    fifo = tmp_path / "run.toml"
    os.mkfifo(fifo)
    link = tmp_path / "data.jsonl"
    link.symlink_to("/dev/zero")
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a device"), (link, "a device")):
        done = check_process(str(path), timeout=30)
        assert done.returncode == 2 and f"{path}: {kind}" in done.stderr, done.stderr
    config = tmp_path / "c.toml"
    config.write_text(f'data_path = "{link}"\nmax_steps = 10\n')
    done = check_process(str(config), timeout=30)  # a data_path the config names is only noted
    assert done.returncode == 0 and "character device" in done.stdout
