"""Target profiles: the built-in `ucf` table, every *.toml of fgdiag/targets/ picked up, user profiles by
path, errors that name the file and field, and `fgdiag targets [--json]`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fgdiag import events as ev
from fgdiag import targets as T
from fgdiag.cli.app import app


def test_targets_ucf_profile_is_the_seed_table():
    ucf = T.get_profile("ucf")
    assert ucf.logit_scale == pytest.approx(4.6052)
    assert ucf.memory_bank_active_by == 7
    region = ev.head_metric(ev.HEAD_LOSS, "region")
    assert [(c.metric, c.step, c.threshold, c.below) for c in ucf.points] == [
        (region, 50, 1.0, True),
        (region, 200, 0.7, True),
        (region, 500, 0.5, True),
    ]
    assert ucf.points[0].passes(0.9) and not ucf.points[0].passes(1.0)


def test_targets_every_toml_in_the_folder_is_loaded(tmp_path, monkeypatch):
    (tmp_path / "ucf.toml").write_text((T.builtin_dir() / "ucf.toml").read_text())
    (tmp_path / "embedded.toml").write_text(
        'description = "measured"\nmemory_bank_active_by = 3\n'
        '[[points]]\nmetric = "loss"\nstep = 100\nbelow = 2.5\n'
    )
    monkeypatch.setattr(T, "builtin_dir", lambda: tmp_path)
    profiles = T.builtin_profiles()
    assert sorted(profiles) == ["embedded", "ucf"]  # the name defaults to the file stem
    assert profiles["embedded"].points[0].describe() == "loss < 2.5 @ 100"


def test_targets_user_profile_by_path_and_above(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[[points]]\nmetric = "logit_scale/region"\nstep = 10\nabove = 4.0\n')
    profile = T.get_profile(str(path))
    assert profile.name == "mine" and not profile.points[0].below
    assert profile.points[0].passes(4.5)
    older = tmp_path / "older.toml"  # profiles written before target points had their own name
    older.write_text('[[checkpoints]]\nmetric = "loss"\nstep = 10\nbelow = 2.0\n')
    assert T.get_profile(str(older)).points[0].describe() == "loss < 2 @ 10"


@pytest.mark.parametrize(
    "body, field",
    [
        ('[[points]]\nmetric = "nope"\nstep = 1\nbelow = 1.0\n', "metric"),
        ("[[points]]\nstep = -3\nbelow = 1.0\n", "step"),
        ("[[points]]\nstep = 3\nbelow = 1.0\nabove = 0.5\n", "below"),
        ('memory_bank_active_by = "soon"\n', "memory_bank_active_by"),
        ("name = [1]\n", "name"),
        ("this is not toml", "invalid TOML"),
    ],
)
def test_targets_errors_name_file_and_field(tmp_path, body, field):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(T.TargetError) as err:
        T.load_profile(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_targets_unknown_name_lists_known():
    with pytest.raises(T.TargetError, match="ucf"):
        T.get_profile("no-such-profile")


def test_targets_cli_lists_profiles_text_and_json():
    runner = CliRunner()
    result = runner.invoke(app, ["targets"])
    assert result.exit_code == 0 and "ucf" in result.output and "< 0.7 @ 200" in result.output
    result = runner.invoke(app, ["targets", "--json"])
    data = json.loads(result.output)
    ucf = next(p for p in data if p["name"] == "ucf")
    assert ucf["memory_bank_active_by"] == 7 and len(ucf["points"]) == 3
    result = runner.invoke(app, ["targets", "missing-profile"])
    assert result.exit_code == 2
