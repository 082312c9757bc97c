"""`preset = "embedded"` (or `--preset embedded` in a script) applied as `fgclip.train` applies it.

fgclip.train layers its arguments: defaults < preset < config file < command line. check-config used to
judge the raw file, so a preset's values were invisible to the rules (a config with both head scales at
2.6592 passed, and the transformers default learning rate was reported instead of the preset's). The
values come from `fgclip.train.presets.PRESETS` itself, never a copy; each one is cited at the line that
names the preset, so a finding says where it came from.
"""

from __future__ import annotations

from fgclip.train.presets import PRESETS
from fgdiag.facts.values import ConfigValues, Field

EMBEDDED_SOURCE = "tiny-clip"  # fgclip.train.embedded writes the pretrained tiny CLIP here under its root


def apply_preset(values: ConfigValues) -> list[str]:
    """Fill every option the preset sets and nothing set explicitly; returns notes. InputError (naming the
    file, line and field) for an unknown preset."""
    chosen = values.get("preset")
    if chosen is None or chosen.value is None:
        return []
    name = str(chosen.value)
    if name not in PRESETS:
        raise chosen.error(f"unknown preset {name!r}; fgclip.train knows: {', '.join(sorted(PRESETS))}")
    applied = []
    for key, value in PRESETS[name].items():
        if key not in values:
            values.set(Field(key, value, chosen.path, chosen.line, why=f"preset {name}"))
            applied.append(key)
    notes = [
        f"{chosen.location}: preset {name!r} supplies {len(applied)} option(s) the configuration leaves unset"
    ]
    if name == "embedded" and "model_name_or_path" not in values:
        from fgclip.train.embedded import default_root

        source = default_root() / EMBEDDED_SOURCE
        values.set(Field("model_name_or_path", str(source), chosen.path, chosen.line, why="preset embedded"))
        if not (source / "config.json").is_file():
            notes.append(
                f"{chosen.location}: the embedded tiny CLIP ({source}) is built on the first training run; "
                "its logit_scale is taken as ln 100, the value fgclip.train.pretrain exports"
            )
    return notes


__all__ = ["apply_preset"]
