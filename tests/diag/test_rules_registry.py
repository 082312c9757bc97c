"""The registry: every code has its docs and is checked in exactly one family module; a new rule is one class
in
one family file (shown by adding one to a copy of the tree, with nothing else edited)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fgdiag.rules import registry

REPO = Path(__file__).resolve().parents[2]
FAMILY_MODULES = {
    "0": "configuration",
    "1": "scales",
    "2": "bank",
    "3": "data",
    "4": "weights",
    "5": "optimisation",
    "6": "convergence",
    "7": "numerics",
    "8": "distributed",
}


def test_rules_every_code_checked_in_exactly_one_family_module():
    rules = registry.load_all()
    modules: dict[str, set[str]] = {code: set() for code in rules}
    for entry in registry.CHECKS:
        for code in entry.codes:
            modules[code].add(entry.module)
    unchecked = sorted(code for code, found in modules.items() if not found)
    assert unchecked == ["FGD801"]  # documented; no check reads rank checksums yet
    for code, found in modules.items():
        assert len(found) <= 1, (code, found)
        family = f"fgdiag.rules.{FAMILY_MODULES[code[3]]}"
        assert all(m == family or m.startswith(family + ".") for m in found), (code, found)


def test_rules_kinds_consumers_iterate():
    kinds = {kind: registry.codes_of(kind) for kind in ("static", "live", "runtime")}
    assert "FGD401" in kinds["static"] and "FGD701" in kinds["runtime"] and kinds["live"] == ("FGD103",)
    assert [c.__name__ for c in registry.checks("runtime")][:3] == [
        "ScaleAtInit",
        "ScaleAtClamp",
        "ScaleFrozenOrDecaying",
    ]


NEW_RULE = """

register(
    "FGD709",
    "loss-exploded",
    "error",
    what="The total loss above 1000.",
    why="A contrastive loss is bounded by ln K plus the margin; 1000 means the logits overflowed.",
    example="{'loss': 4096.0}",
    fix="Lower the learning rate.",
)


@runtime_check
class LossExploded(Check):
    codes = ("FGD709",)
    reads = (ev.LOSS,)

    def observe(self, step, m):
        self.engine.judge("FGD709")
        loss = m.get(ev.LOSS)
        if self.engine.gate("FGD709", loss is not None and loss > 1000):
            self.engine.emit("FGD709", f"loss {loss} at step {step}", step)
"""


def test_rules_a_new_rule_is_one_class_in_one_family_file(tmp_path):
    for package in ("fgdiag", "fgclip"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    family = tmp_path / "fgdiag" / "rules" / "numerics.py"
    family.write_text(family.read_text() + NEW_RULE)
    log = tmp_path / "train.log"
    log.write_text("".join(f"{{'loss': {v}, 'grad_norm': 1.0}}\n" for v in (2.0, 1.9, 4096.0, 1.8)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = [sys.executable, "-m", "fgdiag.cli.app"]
    watch = subprocess.run(
        [*run, "watch", "--once", "--json", str(log)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert watch.returncode == 1, watch.stderr
    found = json.loads(watch.stdout)["findings"]
    assert [(f["code"], f["step"]) for f in found] == [("FGD709", 3)]
    explain = subprocess.run(
        [*run, "explain", "FGD709"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert explain.returncode == 0 and "loss-exploded" in explain.stdout
