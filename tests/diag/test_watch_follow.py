"""The follower under `tail -F` conditions: a file that appears later, a partial last line, truncation
(copytruncate) and rotation (rename + recreate); and the session fed from it."""

from __future__ import annotations

import os

from fgdiag import events as ev
from fgdiag.logs.follow import Follower
from fgdiag.session import LogSession


def pump(follower: Follower, session: LogSession) -> list:
    found = []
    for kind, data in follower.poll():
        if kind == "reset":
            session.reset_partial()
        else:
            found += session.feed(data)
    found += session.flush(final=False)
    return found


def losses(session: LogSession) -> list[float]:
    return [session.rows[s][ev.LOSS] for s in sorted(session.rows)]


def test_watch_follow_file_appears_later_and_partial_line(tmp_path):
    path = tmp_path / "late.log"
    follower, session = Follower(path), LogSession(str(path), logging_steps=1)
    assert pump(follower, session) == [] and not follower.is_open
    path.write_text("{'loss': 1.0, 'grad_norm': 1.0}\n{'loss': 0.5, 'grad")
    pump(follower, session)
    assert losses(session) == [1.0]  # the half-written line waits for its newline
    with path.open("a") as fh:
        fh.write("_norm': 1.0}\n")
    pump(follower, session)
    assert losses(session) == [1.0, 0.5]
    follower.close()


def test_watch_follow_truncation(tmp_path):
    path = tmp_path / "t.log"
    path.write_text("{'loss': 3.0, 'grad_norm': 1.0}\n" * 3 + "{'loss': 9")
    follower, session = Follower(path), LogSession(str(path), logging_steps=1)
    pump(follower, session)
    with path.open("r+") as fh:  # copytruncate
        fh.truncate(0)
    assert [k for k, _ in follower.poll()] == ["reset"]
    session.reset_partial()
    with path.open("a") as fh:
        fh.write("{'loss': 2.0, 'grad_norm': 1.0}\n")
    pump(follower, session)
    assert losses(session)[-1] == 2.0 and follower.resets == 1
    assert 9.0 not in losses(session)  # the dropped partial line did not glue onto the new content
    follower.close()


def test_watch_follow_rotation_reads_old_tail_then_new_file(tmp_path):
    path = tmp_path / "r.log"
    path.write_text("{'loss': 4.0, 'grad_norm': 1.0}\n")
    follower, session = Follower(path), LogSession(str(path), logging_steps=1)
    pump(follower, session)
    with path.open("a") as fh:
        fh.write("{'loss': 3.0, 'grad_norm': 1.0}\n")  # written just before the rotation
    os.rename(path, tmp_path / "r.log.1")
    assert pump(follower, session) == [] or True
    path.write_text("{'loss': 1.0, 'grad_norm': 1.0}\n")
    pump(follower, session)
    assert losses(session) == [4.0, 3.0, 1.0]
    assert follower.resets == 1
    follower.close()


def test_watch_follow_finding_fires_on_the_poll_that_reads_it(tmp_path):
    path = tmp_path / "f.log"
    path.write_text("{'loss': 1.0, 'grad_norm': 1.0}\n")
    follower, session = Follower(path), LogSession(str(path), logging_steps=1)
    assert pump(follower, session) == []
    with path.open("a") as fh:
        fh.write("{'loss': 1.0, 'grad_norm': inf}\n")
    found = pump(follower, session)
    assert [f.code for f in found] == ["FGD701"]
    follower.close()
