"""Log reading: one parser per format feeding the same metric rows and events (see `reader`), a follower
that survives rotation and truncation (`follow`), and `read_log` for whole files (`session`)."""

from fgdiag.logs.session import LogRead, LogReadError, LogSession, read_log

__all__ = ["LogRead", "LogReadError", "LogSession", "read_log"]
