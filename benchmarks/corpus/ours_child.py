"""One training run of `python -m fgclip.train` with a fault from `faults.py` applied to the built trainer.

    python benchmarks/corpus/ours_child.py FAULT[+FAULT...] [fgclip.train arguments...]

Everything else is `fgclip.train.main.main` unchanged (argument parsing, resume guard, save, checksums), so
the output is exactly what the trainer prints; only `build_trainer` is wrapped to apply the fault.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults import FAULTS

import fgclip.train.main as train_main


def run(fault: str, argv: list[str]) -> int:
    faults = [FAULTS[name] for name in fault.split("+")]
    build = train_main.build_trainer

    def build_with_fault(*args, **kwargs):
        trainer = build(*args, **kwargs)
        for apply in faults:
            apply(trainer)
        return trainer

    train_main.build_trainer = build_with_fault
    return train_main.main(argv)


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1], sys.argv[2:]))
