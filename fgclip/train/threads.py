"""Torch intra-op threads and DataLoader workers for the embedded default on a small CPU machine.

torch's default (one thread per physical core) oversubscribes a shared 2-core box: 10 embedded steps took
58-76 s with the default threads and 3.5-4.1 s with one thread under the same load (issue 11). Measured
here (`python benchmarks/threads.py --steps 20 --repeats 2`, 2 cores shared with other agents, load 3-6,
seconds per optimizer step, median): 1 thread 0.22, 2 threads 0.99; next to a busy process 0.39 vs 3.05;
DataLoader workers 0 vs 1: 0.25 vs 0.26; two 20-step trainings one after the other 26 s (1 thread each)
or 121 s (2 threads each), side by side 16 s. So: one thread per training process, no worker process,
and `fgdiag run --compare seed` trains its two arms side by side, one core each.

Override: $FGCLIP_NUM_THREADS (or an explicit $OMP_NUM_THREADS, which torch already obeys).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

logger = logging.getLogger("fgclip.train")

THREADS_ENV = "FGCLIP_NUM_THREADS"
DEFAULT_THREADS = 1
DEFAULT_WORKERS = 0


def _positive(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"${name}={raw!r}: expected a whole number of threads >= 1") from None
    if value < 1:
        raise SystemExit(f"${name}={raw!r}: expected a whole number of threads >= 1")
    return value


def choose_threads(env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(threads, where the number came from): $FGCLIP_NUM_THREADS, else $OMP_NUM_THREADS, else 1."""
    env = os.environ if env is None else env
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        raw = (env.get(name) or "").strip()
        if raw:
            return _positive(name, raw), f"${name}"
    return DEFAULT_THREADS, "default for the embedded preset"


def configure_torch_threads(env: Mapping[str, str] | None = None) -> int:
    """Set torch's intra-op threads for this process; returns the number."""
    import torch

    threads, source = choose_threads(env)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    logger.info("torch threads: %d (%s; %d CPUs visible)", threads, source, os.cpu_count() or 0)
    return threads


__all__ = ["DEFAULT_WORKERS", "THREADS_ENV", "choose_threads", "configure_torch_threads"]
