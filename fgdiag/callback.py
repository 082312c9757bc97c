"""FGDiagCallback: the runtime layer, a transformers TrainerCallback plus read-only probes.

Attach it to any Trainer training an fgclip model with `FGDiagCallback.attach(trainer)` (fgclip.train
does so through the `fgclip.callbacks` entry point when ENABLE_RUNTIME_DIAG is on). On logging steps it
reads the probes once, writes a metrics record and findings to `<output_dir>/fgdiag/events.jsonl` (one file
per run, every record with the run id), prints the human lines (rank 0 only) and adds the measurements to
the Trainer's log dict as `fgdiag/<name>`. The Trainer calls callbacks in list order and puts
`callbacks=[...]` after the report_to integrations (TensorBoard, W&B), which would then miss them: `attach`
places it before them and after FGCLIPCallback, whose loss parts it reads. On other steps it only keeps
references to device tensors: no host-device synchronisation.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import DefaultFlowCallback, TrainerCallback

from fgdiag import events as ev
from fgdiag.probes.model_stats import GradNormProbe, ModelStatsProbe, read_scalars

if TYPE_CHECKING:
    from fgdiag.rules.engine import RuleEngine

logger = logging.getLogger("fgdiag")
SWITCH = "ENABLE_RUNTIME_DIAG"
OFF = {"", "0", "false", "no", "off"}
ON = {"1", "true", "yes", "on"}


def parse_switch(value: str | None) -> int | None:
    """Logging interval in logging steps, or None when off. `0` is off (the fork treated it as on)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in OFF:
        return None
    if text in ON:
        return 1
    try:
        n = int(text)
    except ValueError:
        raise ValueError(
            f"{SWITCH}={value!r}: use 1/true/yes, a positive interval, or 0/false/no/empty"
        ) from None
    return n if n > 0 else None


def callback_factory(training_args: Any, model: Any) -> TrainerCallback | None:
    """Entry point of the `fgclip.callbacks` group: a callback when the switch is on, else nothing."""
    interval = parse_switch(os.environ.get(SWITCH))
    if interval is None:
        return None
    callback = FGDiagCallback(interval=interval, targets=os.environ.get("FGDIAG_TARGETS"))
    callback.attached = True  # fgclip.train places plugin callbacks before the report_to integrations
    return callback


def _is_integration(callback: Any) -> bool:
    """A report_to callback (TensorBoardCallback, WandbCallback, ...): transformers.integrations'."""
    return type(callback).__module__.startswith("transformers.integrations")


def _is_loss_parts(callback: Any) -> bool:
    from fgclip.train.callback import FGCLIPCallback

    return isinstance(callback, FGCLIPCallback)


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module"):
        model = model.module
    return model


def _scales(model: Any) -> dict[str, tuple[str, Any]]:
    """head -> (parameter name, parameter), from the model's own `logit_scales()` (fgclip models)."""
    if model is None or not hasattr(model, "logit_scales"):
        return {}
    names = {id(p): n for n, p in model.named_parameters()}
    return {head: (names.get(id(p), head), p) for head, p in model.logit_scales().items()}


class FGDiagCallback(TrainerCallback):
    """Runtime diagnostics for fgclip models in a transformers Trainer."""

    def __init__(
        self,
        interval: int = 1,
        targets: str | None = None,
        events_path: str | Path | None = None,
        echo: bool = True,
    ):
        self.interval = max(1, int(interval))
        self.targets_name = targets
        self.events_path = events_path
        self.echo = echo
        self.model_probe = ModelStatsProbe()
        self.grad_probe = GradNormProbe()
        self.writer: ev.EventWriter | None = None
        self.engine: RuleEngine | None = None
        self.findings: list = []
        self._model: Any = None
        self._optimizer: Any = None
        self._logs_seen = 0
        self._mb_announced = False
        self._last_candidates: float | None = None
        self._is_main = True
        self.attached = False  # placed by `attach` (or by fgclip.train): before the integrations
        self._callbacks: list | None = None  # the Trainer's callback list, when attached
        self.run_id: str | None = None

    @classmethod
    def attach(cls, trainer: Any, **kwargs: Any) -> FGDiagCallback:
        """Add one FGDiagCallback(**kwargs) to `trainer` (replacing any already there) right after
        FGCLIPCallback (or DefaultFlowCallback when there is none), so its `fgdiag/...` metrics reach the
        report_to integrations and it reads the loss parts FGCLIPCallback adds. Returns the callback."""
        callbacks = trainer.callback_handler.callbacks
        callbacks[:] = [cb for cb in callbacks if not isinstance(cb, cls)]
        anchors = [i for i, cb in enumerate(callbacks) if isinstance(cb, DefaultFlowCallback)]
        anchors += [i for i, cb in enumerate(callbacks) if _is_loss_parts(cb)]
        callback = cls(**kwargs)
        callback.attached = True
        callback._callbacks = callbacks
        callbacks.insert(max(anchors, default=-1) + 1, callback)
        return callback

    def placement_problem(self, args: Any) -> str | None:
        """Why report_to integrations would miss this callback's metrics (or the loss parts), None when
        they will not."""
        callbacks = self._callbacks
        if callbacks is None:
            report_to = getattr(args, "report_to", None) or []
            report_to = [report_to] if isinstance(report_to, str) else list(report_to)
            integrations = [n for n in report_to if n not in ("none", None)]
            if self.attached or not integrations:
                return None
            return (
                f"FGDiagCallback was passed in callbacks=[...], so it runs after the report_to integrations "
                f"({', '.join(integrations)}): they miss the fgdiag/... metrics. Use "
                "FGDiagCallback.attach(trainer) instead."
            )
        me = next((i for i, cb in enumerate(callbacks) if cb is self), None)
        if me is None:
            return None
        late = [type(cb).__name__ for cb in callbacks[:me] if _is_integration(cb)]
        if late:
            return f"FGDiagCallback runs after {', '.join(late)}: they miss the fgdiag/... metrics"
        parts = [type(cb).__name__ for cb in callbacks[me:] if _is_loss_parts(cb)]
        if parts:
            return (
                "FGDiagCallback runs before FGCLIPCallback, whose loss parts it reads: call "
                "FGCLIPCallback.attach(trainer) before FGDiagCallback.attach(trainer)"
            )
        return None

    # ------------------------------------------------------------------ lifecycle
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._is_main = state.is_world_process_zero
        self._model = _unwrap(model)
        self._optimizer = optimizer
        self.model_probe.attach(self._model)
        if not self._is_main:
            return
        from fgdiag.rules.engine import RuleEngine
        from fgdiag.targets import get_profile

        problem = self.placement_problem(args)
        if problem:
            logger.warning(problem)
        path = (
            Path(self.events_path) if self.events_path else Path(args.output_dir) / "fgdiag" / "events.jsonl"
        )
        resumed = state.global_step > 0  # the Trainer loaded a checkpoint: the same run goes on
        self.writer = ev.EventWriter(path, os.environ.get(ev.RUN_ID_ENV) or None, resume=resumed)
        self.run_id = self.writer.run_id
        if self.writer.moved_aside is not None and self.echo:
            print(f"[fgdiag] an earlier run's events moved to {self.writer.moved_aside}", flush=True)
        cfg = getattr(self._model, "config", None)
        info = {
            "source": "fgdiag.callback",
            "run_id": self.run_id,
            "resumed_from_step": state.global_step if resumed else None,
            "planned_steps": state.max_steps,
            "logging_steps": args.logging_steps,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "world_size": args.world_size,
            "warmup_steps": args.get_warmup_steps(state.max_steps) if state.max_steps else args.warmup_steps,
            "memory_bank_size": getattr(cfg, "memory_bank_size", 0),
            "memory_bank_warmup_steps": getattr(cfg, "memory_bank_warmup_steps", 0),
            "logit_scale_max": getattr(cfg, "logit_scale_max", None),
            "finegrained_logit_scale_init": getattr(cfg, "finegrained_logit_scale_init", None),
            "targets": self.targets_name,
            "logit_scales_weight_decay": self._scale_weight_decay(),
        }
        self.writer.write(ev.run_record(info))
        profile = get_profile(self.targets_name) if self.targets_name else None
        self.engine = RuleEngine(info, profile)
        for finding in self._static_checks(args):
            self._report(finding)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # the step about to complete is state.global_step + 1; measure only if it will be logged
        if self._is_main and args.logging_steps and (state.global_step + 1) % self._log_every(args) == 0:
            self.grad_probe.measure(optimizer or self._optimizer)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        self._logs_seen += 1
        if (self._logs_seen - 1) % self.interval:
            return
        metrics = self._measure(logs, state.global_step)
        logs.update(
            {
                f"fgdiag/{k}": v
                for k, v in metrics.items()
                if k not in logs and v is not None and math.isfinite(v)
            }
        )
        if not self._is_main or self.writer is None or self.engine is None:
            return
        self.writer.write(ev.metrics_record(state.global_step, metrics))
        self._print_lines(state.global_step, metrics)
        for finding in self.engine.observe(state.global_step, metrics):
            self._report(finding)

    def on_train_end(self, args, state, control, **kwargs):
        self.model_probe.detach()
        if self._is_main and self.writer is not None and self.engine is not None:
            for finding in self.engine.finish():
                self._report(finding)
            self.writer.write(ev.event_record(state.global_step, ev.EVENT_TRAIN_END, "training finished"))
            self.writer.close()
            self.writer = None

    # ------------------------------------------------------------------ measuring
    def _log_every(self, args) -> int:
        return max(1, int(args.logging_steps))

    def _measure(self, logs: dict[str, Any], step: int) -> dict[str, float]:
        tensors = dict(self.model_probe.latest)
        for name, value in self.grad_probe.latest.items():
            tensors[f"{ev.GRAD_NORM_GROUP}/{name}"] = value
        model = self._model
        for head, (_, param) in _scales(model).items():
            tensors[ev.head_metric(ev.LOGIT_SCALE, head)] = param.detach()
        metrics = read_scalars(tensors)  # the one host sync of this logging step
        self.grad_probe.latest = {}
        for head in ev.HEADS:
            raw = metrics.get(ev.head_metric(ev.LOGIT_SCALE, head))
            if raw is not None:
                metrics[ev.head_metric(ev.LOGIT_SCALE_EXP, head)] = math.exp(min(raw, 700.0))
            loss, chance = (
                metrics.get(ev.head_metric(ev.HEAD_LOSS, head)),
                metrics.get(ev.head_metric(ev.CHANCE, head)),
            )
            if loss is not None and chance:
                metrics[ev.head_metric(ev.LOSS_OVER_CHANCE, head)] = loss / chance
        if model is not None and getattr(model, "memory_bank", None) is not None:
            metrics[ev.MB_SIZE] = float(model.memory_bank.size)
        for key in (ev.LOSS, ev.GRAD_NORM, ev.LEARNING_RATE, ev.EPOCH, *ev.LOSS_PARTS):
            if key in logs and isinstance(logs[key], (int, float)):
                metrics[key] = float(logs[key])
        return metrics

    def _print_lines(self, step: int, metrics: dict[str, float]) -> None:
        from fgdiag.wire import format_logit_scale, format_memory_bank_enabled, format_step_summary

        # the summary line first: it carries the step, so a log reader files the lines after it under it
        lines = [format_step_summary(step, metrics)]
        for head in ev.HEADS:
            raw = metrics.get(ev.head_metric(ev.LOGIT_SCALE, head))
            if raw is not None:
                lines.append(format_logit_scale(head, raw))
        k = metrics.get(ev.head_metric(ev.CANDIDATES, "region"))
        if not self._mb_announced and metrics.get(ev.MB_ACTIVE) == 1.0:
            activated = int(metrics.get(ev.MB_ACTIVATED_STEP, step))
            before = (
                self._last_candidates if self._last_candidates is not None else metrics.get(ev.REGIONS_VALID)
            )
            line = format_memory_bank_enabled(
                activated, int(before) if before else None, int(k) if k else None
            )
            lines.append(line)
            if self.writer is not None:
                self.writer.write(
                    ev.event_record(
                        activated,
                        ev.EVENT_MB_ENABLED,
                        line,
                        {"candidates_before": before, "candidates_after": k},
                    )
                )
            self._mb_announced = True
        if k is not None and metrics.get(ev.MB_ACTIVE, 0.0) != 1.0:
            self._last_candidates = k
        if self.echo:
            for line in lines:
                print(line, flush=True)

    def _report(self, finding) -> None:
        self.findings.append(finding)
        if self.writer is not None:
            self.writer.write(ev.finding_record(finding))
        if self.echo:
            where = f"step {finding.step}" if finding.step is not None else finding.location
            print(
                f"[fgdiag] {finding.severity.value.upper()} {finding.code} ({where}): {finding.message}",
                flush=True,
            )

    def _scale_weight_decay(self) -> float | None:
        """Largest weight decay applied to any logit scale (None when unknown)."""
        model, optimizer = self._model, self._optimizer
        if model is None or optimizer is None:
            return None
        scales = [p for _, p in _scales(model).values()]
        decays = [
            g.get("weight_decay", 0.0)
            for g in optimizer.param_groups
            if any(p is s for p in g["params"] for s in scales)
        ]
        return max(decays) if decays else None

    def _static_checks(self, args) -> list:
        """The registered live checks over the model's scales and the optimizer (FGD103: trainable, in the
        optimizer exactly once, free of weight decay)."""
        from fgdiag.rules import registry

        model, optimizer = self._model, self._optimizer
        if model is None or optimizer is None:
            return []
        scales, out = _scales(model), []
        for check in registry.checks("live"):
            out += check(scales, optimizer.param_groups)
        return out
