"""watch streams: a poll reads a bounded amount, a long log keeps bounded state, `--max-seconds` holds while a
big file is being read, and a FIFO or a device (`/dev/zero`) is refused with exit 2 instead of hanging."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fgdiag.cli.watch import follow
from fgdiag.logs.follow import Follower
from fgdiag.logs.store import RowStore
from fgdiag.session import MAX_EVENTS, LogSession

REPO = Path(__file__).resolve().parents[2]
RUN = [sys.executable, "-m", "fgdiag.cli.app", "watch"]


def trainer_log(path: Path, steps: int, first: int = 1) -> Path:
    """A Trainer log: a bar, a dict line, a warning and a blank line per logging step."""
    with path.open("w", encoding="utf-8") as fh:
        for s in range(first, first + steps):
            fh.write(
                f"\r 10%|█         | {s}/{10**8} [00:01<00:09,  1.00it/s]\n"
                f"{{'loss': {2.0 - s * 1e-7:.6f}, 'grad_norm': 1.5, 'learning_rate': 5e-06, 'epoch': 0.1}}\n"
                "  warnings.warn(\n\n"
            )
    return path


def test_watch_stream_polls_are_bounded_and_state_stays_bounded(tmp_path):
    path = trainer_log(tmp_path / "long.log", 60_000)  # 4.6 MB, 240k lines
    limit = 1 << 16
    session = LogSession(str(path))
    session.store = RowStore(cap=4096)
    reads: list[int] = []
    follower = Follower(path, limit=limit)
    original = follower.poll

    def counting_poll():
        out = original()
        reads.append(sum(len(d) for _k, d in out))
        return out

    follower.poll = counting_poll  # type: ignore[method-assign]
    while True:
        for kind, data in follower.poll():
            if kind == "data":
                session.feed(data)
        if not follower.more:
            break
    session.flush(final=True)
    follower.close()
    assert max(reads) <= limit and sum(reads) == path.stat().st_size  # read whole, a limit at a time
    assert len(reads) > path.stat().st_size // limit
    read = session.result()
    assert read.step_count == 60_000 and len(read.rows) <= 4096  # older rows thinned
    assert read.last_step == 60_000 and read.latest["loss"] == pytest.approx(2.0 - 0.006)
    assert any("thinned" in note for note in read.notes)
    assert len(session.events) <= MAX_EVENTS


def test_watch_stream_peak_memory_does_not_grow_with_the_log(tmp_path):
    """Peak RSS of `watch --once --json` on a 4x longer log stays within a few MB of the shorter one's."""
    rss = []
    for steps in (30_000, 120_000):
        path = trainer_log(tmp_path / f"{steps}.log", steps)
        code = (
            "import resource, subprocess, sys\n"
            f"p = subprocess.run({[*RUN, '--once', '--json', str(path)]!r}, capture_output=True)\n"
            "assert p.returncode in (0, 1), p.stderr\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        cmd = [sys.executable, "-c", code]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert out.returncode == 0, out.stderr
        rss.append(int(out.stdout.strip()) * 1024)
    assert rss[1] - rss[0] < 30e6, rss  # 4x the lines, not 4x the memory


def test_watch_stream_max_seconds_holds_while_reading_a_big_file(tmp_path):
    path = trainer_log(tmp_path / "big.log", 400_000)  # ~31 MB: much longer than a second to read here
    session = LogSession(str(path))
    start = time.monotonic()
    follow(
        session,
        path,
        interval=0.05,
        max_seconds=0.5,
        stop_at_end=True,
        on_update=lambda new, rows: None,
        limit=1 << 18,
    )
    elapsed = time.monotonic() - start
    assert elapsed < 5.0
    assert 0 < session.store.count < 400_000  # it stopped in the middle of the file


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_watch_stream_dev_zero_exits_2_with_a_message():
    for args in (
        ["--once", "/dev/zero"],
        ["--once", "--json", "/dev/zero"],
        ["/dev/zero", "--max-seconds", "3"],
    ):
        result = cli(*args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert "/dev/zero: not a regular file" in result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_watch_stream_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)  # nobody writes: opening it for reading would block forever
    for args in (["--once", str(fifo)], [str(fifo), "--max-seconds", "5"]):
        result = cli(*args, timeout=30)
        assert result.returncode == 2, (args, result.stderr)
        assert "not a regular file" in result.stderr
