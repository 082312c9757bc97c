"""Callbacks from installed plugins, found through the `fgclip.callbacks` entry-point group.

fgclip never imports a diagnostics package: a plugin registers a factory `(training_args, model) ->
TrainerCallback | None`; returning None (e.g. a switch is off) attaches nothing.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from transformers import TrainerCallback

GROUP = "fgclip.callbacks"
logger = logging.getLogger("fgclip.train")


def plugin_callbacks(training_args, model) -> list[TrainerCallback]:
    callbacks: list[TrainerCallback] = []
    for ep in entry_points(group=GROUP):
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plugin must not stop training; say which one and why
            logger.warning("plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        callback = factory(training_args, model)
        if callback is not None:
            logger.info("plugin %s attached %s", ep.name, type(callback).__name__)
            callbacks.append(callback)
    return callbacks
