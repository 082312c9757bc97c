"""The collector's young threshold is raised only while a chunk is read (session.few_collections)."""

from __future__ import annotations

import gc

import pytest

from fgdiag.session import GC_YOUNG, LogSession, few_collections

TRAINER_LINES = b"".join(
    b"{'loss': %.4f, 'grad_norm': 1.0, 'learning_rate': 5e-05, 'epoch': %.2f}\n" % (2.0 - i / 1000, i / 1000)
    for i in range(2000)
)


def test_threshold_raised_while_reading_and_restored() -> None:
    before = gc.get_threshold()
    session = LogSession("trainer.log")
    seen: list[int] = []
    feed = session.reader.feed

    def watched(data: bytes) -> None:
        seen.append(gc.get_threshold()[0])
        feed(data)

    session.reader.feed = watched  # type: ignore[method-assign]
    session.feed(TRAINER_LINES)
    session.flush(final=True)
    assert seen == [max(before[0], GC_YOUNG)]
    assert gc.get_threshold() == before
    assert len(session.result().rows) == 2000  # the rows were read as usual


def test_threshold_restored_when_reading_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), few_collections():
        assert gc.get_threshold()[0] >= GC_YOUNG
        raise RuntimeError("reader failed")
    assert gc.get_threshold() == before
