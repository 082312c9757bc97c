"""Report panels: each declares the metrics it needs and draws one matplotlib Axes for one or more runs.

A panel whose metrics are absent from every run is skipped with a note instead of drawing an empty plot.
matplotlib is used through `Figure` + the Agg canvas only (no pyplot, no global backend switch), so a report
can be written from inside a training process or a notebook without side effects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fgdiag import events as ev
from fgdiag.facts import CLIP_FROM_SCRATCH_SCALE, LN_100

FIGSIZE = (8.0, 4.5)
DPI = 100
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
HEAD_STYLES = {"global": "-", "region": "--", "hardneg": ":"}


@dataclass(frozen=True)
class Panel:
    name: str  # file stem of the PNG
    title: str
    needs: tuple[str, ...]  # metric names or prefixes ending in "/"; any one present is enough
    draw: Callable[[Any, Mapping[str, Any], Any], None]

    def available(self, runs: Mapping[str, Any]) -> bool:
        return any(_has(read, need) for read in runs.values() for need in self.needs)


def _has(read: Any, need: str) -> bool:
    for row in read.rows.values():
        for name, value in row.items():
            if value is not None and (name == need or (need.endswith("/") and name.startswith(need))):
                return True
    return False


def _xy(read: Any, name: str) -> tuple[list[int], list[float]]:
    pts = read.series(name)
    return [s for s, _ in pts], [v if math.isfinite(v) else math.nan for _, v in pts]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _label(run: str, what: str, many: bool) -> str:
    return f"{run}: {what}" if many else what


def _region_loss(ax: Any, runs: Mapping[str, Any], targets: Any) -> None:
    many = len(runs) > 1
    for i, (run, read) in enumerate(runs.items()):
        x, y = _xy(read, ev.head_metric(ev.HEAD_LOSS, "region"))
        if not x:
            x, y = _xy(read, "region_loss")
        ax.plot(x, y, color=_color(i), lw=1.4, label=_label(run, "region loss", many))
        cx, cy = _xy(read, ev.head_metric(ev.CHANCE, "region"))
        if not cx:
            kx, ky = _xy(read, ev.head_metric(ev.CANDIDATES, "region"))
            cx, cy = kx, [math.log(k) if k > 1 else math.nan for k in ky]
        if cx:
            ax.plot(
                cx,
                cy,
                color=_color(i),
                lw=1.0,
                ls="--",
                alpha=0.7,
                drawstyle="steps-post",
                label=_label(run, "chance ln K", many),
            )
        for e in read.events:
            if e.get("kind") == ev.EVENT_MB_ENABLED:
                ax.axvline(e["step"], color=_color(i), lw=0.8, ls=":", alpha=0.8)
    profile = targets or next((r.targets for r in runs.values() if r.targets is not None), None)
    last = max((max(r.rows) for r in runs.values() if r.rows), default=0)
    if profile is not None:  # target points beyond the data would squash it; the report's table lists them
        for cp in profile.points:
            if cp.metric == ev.head_metric(ev.HEAD_LOSS, "region") and cp.step <= last * 1.1:
                ax.plot(
                    [cp.step], [cp.threshold], marker="v" if cp.below else "^", color="black", ms=8, ls="none"
                )
                ax.annotate(
                    f"{'<' if cp.below else '>'}{cp.threshold:g}@{cp.step}",
                    (cp.step, cp.threshold),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                )
    ax.set_ylabel("nats")


def _losses(ax: Any, runs: Mapping[str, Any], targets: Any) -> None:
    many = len(runs) > 1
    for i, (run, read) in enumerate(runs.items()):
        x, y = _xy(read, ev.LOSS)
        if x:
            ax.plot(x, y, color=_color(i), lw=1.4, label=_label(run, "loss", many))
        for head in ("global", "hardneg"):
            x, y = _xy(read, ev.head_metric(ev.HEAD_LOSS, head))
            if x:
                ax.plot(
                    x,
                    y,
                    color=_color(i),
                    lw=1.0,
                    ls=HEAD_STYLES[head],
                    label=_label(run, f"{head} loss", many),
                )
    ax.set_ylabel("nats")


def _scales(ax: Any, runs: Mapping[str, Any], targets: Any) -> None:
    many = len(runs) > 1
    for i, (run, read) in enumerate(runs.items()):
        for head in ev.HEADS:
            x, y = _xy(read, ev.head_metric(ev.LOGIT_SCALE, head))
            if not x:
                x, s = _xy(read, ev.head_metric(ev.LOGIT_SCALE_EXP, head))
                y = [math.log(v) if v > 0 else math.nan for v in s]
            if x:
                ax.plot(x, y, color=_color(i), ls=HEAD_STYLES[head], lw=1.3, label=_label(run, head, many))
    ax.axhline(LN_100, color="grey", lw=0.8, ls="-.", label="clamp ln 100")
    ax.axhline(CLIP_FROM_SCRATCH_SCALE, color="grey", lw=0.6, ls=":", label="CLIP init ln(1/0.07)")
    ax.set_ylabel("raw logit scale (log space)")


def _logit_ranges(ax: Any, runs: Mapping[str, Any], targets: Any) -> None:
    many = len(runs) > 1
    twin = None
    for i, (run, read) in enumerate(runs.items()):
        for head in ev.HEADS:
            x1, lo = _xy(read, ev.head_metric(ev.LOGITS_MIN, head))
            x2, hi = _xy(read, ev.head_metric(ev.LOGITS_MAX, head))
            if x1 and x1 == x2:
                ax.fill_between(x1, lo, hi, color=_color(i), alpha=0.15 if head != "region" else 0.3, lw=0)
                ax.plot(
                    x1,
                    hi,
                    color=_color(i),
                    ls=HEAD_STYLES[head],
                    lw=0.8,
                    label=_label(run, f"{head} max", many),
                )
                ax.plot(x1, lo, color=_color(i), ls=HEAD_STYLES[head], lw=0.8)
            xc, cs = _xy(read, ev.head_metric(ev.COS_STD, head))
            if xc:
                twin = twin or ax.twinx()
                twin.plot(
                    xc,
                    cs,
                    color=_color(i),
                    lw=1.0,
                    ls="-",
                    alpha=0.6,
                    marker=".",
                    ms=2,
                    label=_label(run, f"{head} cos std", many),
                )
    ax.set_ylabel("logit (min..max)")
    if twin is not None:
        twin.set_ylabel("cosine std")
        twin.legend(loc="upper right", fontsize=7)


def _memory_bank(ax: Any, runs: Mapping[str, Any], targets: Any) -> None:
    many = len(runs) > 1
    twin = None
    for i, (run, read) in enumerate(runs.items()):
        x, y = _xy(read, ev.MB_FILL)
        if x:
            ax.plot(
                x, y, color=_color(i), lw=1.3, drawstyle="steps-post", label=_label(run, "bank fill", many)
            )
        xs, ys = _xy(read, ev.MB_SIZE)
        if xs:
            ax.plot(xs, ys, color=_color(i), lw=0.8, ls=":", label=_label(run, "bank size", many))
        xk, yk = _xy(read, ev.head_metric(ev.CANDIDATES, "region"))
        if xk:
            twin = twin or ax.twinx()
            twin.plot(
                xk,
                yk,
                color=_color(i),
                lw=1.0,
                ls="--",
                drawstyle="steps-post",
                label=_label(run, "K (region)", many),
            )
        for e in read.events:
            if e.get("kind") == ev.EVENT_MB_ENABLED:
                ax.axvline(e["step"], color=_color(i), lw=0.8, ls=":")
    ax.set_ylabel("entries")
    if twin is not None:
        twin.set_ylabel("candidates K")
        twin.legend(loc="lower right", fontsize=7)


def _grad_norms(ax: Any, runs: Mapping[str, Any], targets: Any) -> None:
    many = len(runs) > 1
    for i, (run, read) in enumerate(runs.items()):
        x, y = _xy(read, ev.GRAD_NORM)
        if x:
            ax.plot(x, y, color=_color(i), lw=1.4, label=_label(run, "total", many))
        groups = sorted(
            {n for row in read.rows.values() for n in row if n.startswith(ev.GRAD_NORM_GROUP + "/")}
        )
        for j, name in enumerate(groups):
            x, y = _xy(read, name)
            ax.plot(
                x, y, color=_color(i), lw=0.9, ls=("--", ":", "-.")[j % 3], label=_label(run, name[15:], many)
            )
    ax.set_yscale("log")
    ax.set_ylabel("gradient norm")


PANELS: tuple[Panel, ...] = (
    Panel(
        "region_loss",
        "Region loss, chance level ln K and targets",
        (ev.head_metric(ev.HEAD_LOSS, "region"), "region_loss"),
        _region_loss,
    ),
    Panel("losses", "Total and head losses", (ev.LOSS, ev.HEAD_LOSS + "/"), _losses),
    Panel(
        "logit_scales",
        "Logit scales (raw, log space)",
        (ev.LOGIT_SCALE + "/", ev.LOGIT_SCALE_EXP + "/"),
        _scales,
    ),
    Panel(
        "logit_ranges",
        "Logit ranges and cosine spread",
        (ev.LOGITS_MIN + "/", ev.COS_STD + "/"),
        _logit_ranges,
    ),
    Panel(
        "memory_bank",
        "Memory bank fill and candidates K",
        (ev.MB_FILL, ev.head_metric(ev.CANDIDATES, "region")),
        _memory_bank,
    ),
    Panel("grad_norms", "Gradient norms by group", (ev.GRAD_NORM, ev.GRAD_NORM_GROUP + "/"), _grad_norms),
)


def render_panel(panel: Panel, runs: Mapping[str, Any], path: Any, targets: Any = None) -> None:
    """Draw one panel to a PNG of FIGSIZE x DPI pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    panel.draw(ax, runs, targets)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("optimizer step")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def select(runs: Mapping[str, Any], names: Sequence[str] | None = None) -> tuple[list[Panel], list[str]]:
    """Panels that can be drawn, and a note for each one skipped."""
    drawn, skipped = [], []
    for panel in PANELS:
        if names is not None and panel.name not in names:
            continue
        if panel.available(runs):
            drawn.append(panel)
        else:
            skipped.append(f"{panel.name}: needs one of {', '.join(panel.needs)}, absent from the log")
    return drawn, skipped
