"""The drawing functions of the report panels (`panels.PANELS` says what each shows and how to read it).

Each takes a matplotlib Figure (constrained layout), the runs (name -> LogRead) and the target profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fgdiag import events as ev
from fgdiag.facts import CLIP_FROM_SCRATCH_SCALE, LN_100
from fgdiag.render import measures as M

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
HEAD_STYLES = {"global": "-", "region": "--", "hardneg": ":"}
HEAD_WORDS = {"global": "global", "region": "region", "hardneg": "hard-negative"}
GROUP_WORDS = {  # fgclip.train.optim's parameter groups, in words
    "towers_decay": "towers (weight decay)",
    "towers_no_decay": "towers (no decay: biases, norms, embeddings)",
    "heads_decay": "new heads (weight decay)",
    "heads_no_decay": "new heads (no decay)",
    "logit_scales": "logit scales",
}
GROUP_COLORS = ("tab:purple", "tab:pink", "tab:green", "tab:olive", "tab:cyan", "tab:brown", "tab:gray")
LABEL_GAP = 0.07  # axes fraction between two end labels


def _level_note(ax: Any, value: float, text: str, lift: int) -> None:
    """A small grey label at the left edge, `lift` points above the horizontal level `value`."""
    ax.annotate(
        text,
        xy=(0.01, value),
        xycoords=("axes fraction", "data"),
        xytext=(0, lift),
        textcoords="offset points",
        fontsize=8,
        color="dimgrey",
    )


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def cased(i: int, lw: float, many: bool = True) -> dict[str, Any]:
    """Line width and alpha of run i: with several runs the first one is drawn wider and lighter
    underneath, so a later run on top of the same values leaves both colours visible."""
    if i == 0 and many:
        return {"lw": lw * 2.0, "alpha": 0.45, "zorder": 2}
    return {"lw": lw, "alpha": 0.95, "zorder": 3}


def xy(read: Any, name: str) -> tuple[list[int], list[float]]:
    pts = read.series(name)
    return [s for s, _ in pts], [v if math.isfinite(v) else math.nan for _, v in pts]


def _name(run: str, what: str, many: bool) -> str:
    return f"{run}: {what}" if many else what


def _style(ax: Any, ylabel: str, xlabel: bool = True) -> None:
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel("optimizer step")
    ax.grid(True, alpha=0.3)


def legend_below(fig: Any, extra: list[tuple[Any, str]] | None = None, ncols: int = 4) -> None:
    """One legend for the whole figure, below the axes (never over the data), labels deduplicated."""
    seen: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
    for handle, label in extra or []:
        seen.setdefault(label, handle)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            ncols=min(ncols, len(seen)),
            fontsize=8,
            frameon=False,
        )


def end_labels(ax: Any, items: Sequence[tuple[float, float, str, str]]) -> None:
    """Text just right of the axes at each line's last point (x, y, text, colour), nudged apart."""
    if not items:
        return
    ax.autoscale_view()
    to_axes = ax.transScale + ax.transLimits
    placed = sorted((to_axes.transform((x, y))[1], x, y, text, c) for x, y, text, c in items)
    last = -math.inf
    for frac, x, y, text, c in placed:
        frac = max(frac, last + LABEL_GAP)
        last = frac
        ax.annotate(
            text,
            xy=(x, y),
            xytext=(1.01, frac),
            textcoords="axes fraction",
            va="center",
            fontsize=8,
            color=c,
            annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": c, "lw": 0.5, "alpha": 0.6},
        )


def _bank_line(ax: Any, read: Any, c: str, run: str, many: bool, text: bool = True) -> None:
    on = M.bank_on(read)
    if on is None:
        return
    ax.axvline(on, color=c, lw=1.0, ls=":")
    if text:
        ax.annotate(
            _name(run, f"bank on at step {on}", many),
            xy=(on, 0.02),
            xycoords=("data", "axes fraction"),
            xytext=(3, 0),
            textcoords="offset points",
            va="bottom",
            fontsize=8,
            color=c,
        )


def region_loss(fig: Any, runs: Mapping[str, Any], targets: Any) -> None:
    ax = fig.add_subplot()
    many = len(runs) > 1
    labels = []
    for i, (run, read) in enumerate(runs.items()):
        c = color(i)
        x, y = xy(read, M.REGION_LOSS)
        if not x:
            x, y = xy(read, "region_loss")
        ax.plot(x, y, color=c, lw=2.0, label=_name(run, "region loss", many))
        if x:
            labels.append((x[-1], y[-1], _name(run, f"{y[-1]:.2f}", many), c))
        cx, cy = xy(read, M.REGION_CHANCE)
        if not cx:
            kx, ky = xy(read, M.REGION_K)
            cx, cy = kx, [math.log(k) if k > 1 else math.nan for k in ky]
        if cx:
            ax.plot(
                cx,
                cy,
                color=c,
                lw=1.2,
                ls="--",
                drawstyle="steps-post",
                label=_name(run, "chance ln K", many),
            )
            labels.append((cx[-1], cy[-1], _name(run, f"ln K {cy[-1]:.2f}", many), c))
        _bank_line(ax, read, c, run, many)
    profile = targets or next((r.targets for r in runs.values() if r.targets is not None), None)
    last = max((max(r.rows) for r in runs.values() if r.rows), default=0)
    if profile is not None:  # points beyond the data would squash it; the tables list them
        for cp in profile.points:
            if cp.metric == M.REGION_LOSS and cp.step <= last * 1.05:
                ax.plot([cp.step], [cp.threshold], marker="v" if cp.below else "^", color="black", ms=9)
                ax.annotate(
                    f"target {'<' if cp.below else '>'} {cp.threshold:g}",
                    (cp.step, cp.threshold),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize=8,
                )
    ax.set_ylim(bottom=0)
    _style(ax, "nats")
    end_labels(ax, labels)
    marker = ax.plot(
        [], [], marker="v", color="black", ls="none", label="target point (smoothed loss below it)"
    )
    legend_below(fig, [(marker[0], marker[0].get_label())])


def losses(fig: Any, runs: Mapping[str, Any], targets: Any) -> None:
    ax = fig.add_subplot()
    many = len(runs) > 1
    for i, (run, read) in enumerate(runs.items()):
        x, y = xy(read, ev.LOSS)
        if x:
            ax.plot(x, y, color=color(i), **cased(i, 1.8, many), label=_name(run, "total (weighted)", many))
        for head in ("global", "hardneg"):
            x, y = xy(read, ev.head_metric(ev.HEAD_LOSS, head))
            if x:
                ax.plot(
                    x,
                    y,
                    color=color(i),
                    ls="-." if head == "global" else ":",
                    label=_name(run, f"{HEAD_WORDS[head]} head", many),
                    **cased(i, 1.2, many),
                )
    ax.set_ylim(bottom=0)
    _style(ax, "nats")
    legend_below(fig, ncols=3)


def logit_scales(fig: Any, runs: Mapping[str, Any], targets: Any) -> None:
    from matplotlib.lines import Line2D

    ax = fig.add_subplot()
    many = len(runs) > 1
    labels, values = [], [math.exp(LN_100), math.exp(CLIP_FROM_SCRATCH_SCALE)]
    for i, (run, read) in enumerate(runs.items()):
        ends: list[tuple[str, int, float]] = []
        for head in ev.HEADS:
            x, y = xy(read, ev.head_metric(ev.LOGIT_SCALE_EXP, head))
            if not x:
                x, raw = xy(read, ev.head_metric(ev.LOGIT_SCALE, head))
                y = [math.exp(min(v, 700.0)) for v in raw]
            if not x:
                continue
            ax.plot(x, y, color=color(i), ls=HEAD_STYLES[head], **cased(i, 1.6, many))
            values += [v for v in y if math.isfinite(v) and v > 0]
            ends.append((head, x[-1], y[-1]))
        while ends:  # heads ending at the same value share one label
            head, x_end, v = ends.pop(0)
            same = [h for h, _x, w in ends if abs(w - v) <= 0.01 * abs(v)]
            ends = [e for e in ends if e[0] not in same]
            heads = ", ".join(HEAD_WORDS[h] for h in [head, *same])
            labels.append((x_end, v, _name(run, f"{heads} {v:.1f}", many), color(i)))
    for value, text in (
        (math.exp(LN_100), "100 = exp(ln 100): CLIP fine-tunes here; the clamp"),
        (math.exp(CLIP_FROM_SCRATCH_SCALE), "14.3 = 1/0.07: CLIP's init when trained from scratch"),
    ):
        ax.axhline(value, color="grey", lw=0.8, ls=(0, (4, 3)))
        _level_note(ax, value, text, 3)
    positive = [v for v in values if v > 0]
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_yscale("log")
    low, high = min(positive) / 2, max(positive) * 2.5
    ax.set_ylim(low, high)
    ticks = [t for t in (0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000) if low <= t <= high]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_locator(NullLocator())
    _style(ax, "exp(logit scale) = 1/temperature")
    end_labels(ax, labels)
    keys: list[tuple[Any, str]] = [
        (Line2D([], [], color="black", ls=HEAD_STYLES[h]), f"{HEAD_WORDS[h]} head") for h in ev.HEADS
    ]
    if many:
        keys += [(Line2D([], [], color=color(i), lw=3), run) for i, run in enumerate(runs)]
    legend_below(fig, keys, ncols=5)


def logit_ranges(fig: Any, runs: Mapping[str, Any], targets: Any) -> None:
    from matplotlib.patches import Patch

    heads = [
        h
        for h in ev.HEADS
        if any(
            xy(r, ev.head_metric(ev.LOGITS_MIN, h))[0] or xy(r, ev.head_metric(ev.POS_MEAN, h))[0]
            for r in runs.values()
        )
    ]
    heads = heads or [
        h for h in ev.HEADS if any(xy(r, ev.head_metric(ev.COS_STD, h))[0] for r in runs.values())
    ]
    grid = fig.add_gridspec(2, len(heads), height_ratios=(3, 1.2))
    many = len(runs) > 1
    top0 = bottom0 = None
    cos_max = 0.0
    for j, head in enumerate(heads):
        top = fig.add_subplot(grid[0, j], sharey=top0)
        bottom = fig.add_subplot(grid[1, j], sharex=top, sharey=bottom0)
        top0, bottom0 = top0 or top, bottom0 or bottom
        for i, (run, read) in enumerate(runs.items()):
            c = color(i)
            x1, lo = xy(read, ev.head_metric(ev.LOGITS_MIN, head))
            x2, hi = xy(read, ev.head_metric(ev.LOGITS_MAX, head))
            if x1 and x1 == x2:
                top.fill_between(x1, lo, hi, color=c, alpha=0.12, lw=0)
                top.plot(x1, lo, color=c, lw=0.6, alpha=0.6)
                top.plot(x1, hi, color=c, lw=0.6, alpha=0.6)
            for metric, ls, what in (
                (ev.POS_MEAN, "-", "positives (mean)"),
                (ev.NEG_MEAN, "--", "negatives (mean)"),
            ):
                x, y = xy(read, ev.head_metric(metric, head))
                if x:
                    top.plot(x, y, color=c, ls=ls, label=_name(run, what, many), **cased(i, 1.5, many))
            x, y = xy(read, ev.head_metric(ev.COS_STD, head))
            if x:
                bottom.plot(x, y, color=c, label=_name(run, "cosine std", many), **cased(i, 1.3, many))
                cos_max = max([cos_max, *(v for v in y if math.isfinite(v))])
        top.set_title(f"{HEAD_WORDS[head]} head", fontsize=10)
        top.axhline(0, color="grey", lw=0.6)
        _style(top, "logit" if j == 0 else "", xlabel=False)
        _style(bottom, "cosine std" if j == 0 else "")
    if bottom0 is not None:  # shared: set once, after every head's data is in
        bottom0.set_ylim(0, cos_max * 1.15 or 1.0)
    bands: list[tuple[Any, str]] = [
        (Patch(color=color(i), alpha=0.25), _name(run, "min .. max", many)) for i, run in enumerate(runs)
    ]
    legend_below(fig, bands, ncols=3 if many else 4)


def memory_bank(fig: Any, runs: Mapping[str, Any], targets: Any) -> None:
    grid = fig.add_gridspec(2, 1, height_ratios=(1.3, 1))
    top = fig.add_subplot(grid[0])
    bottom = fig.add_subplot(grid[1], sharex=top)
    many = len(runs) > 1
    size = 0.0
    labels = []
    for i, (run, read) in enumerate(runs.items()):
        c = color(i)
        xk, yk = xy(read, M.REGION_K)
        if xk:
            top.plot(
                xk,
                yk,
                color=c,
                drawstyle="steps-post",
                label=_name(run, "candidates K", many),
                **cased(i, 1.6, many),
            )
            labels.append((xk[-1], yk[-1], _name(run, f"K {yk[-1]:.0f}", many), c))
        _bank_line(top, read, c, run, many)
        _bank_line(bottom, read, c, run, many, text=False)
        _xs, ys = xy(read, ev.MB_SIZE)
        size = max([size, *ys, float(read.run_info.get("memory_bank_size") or 0)])
        x, fill = xy(read, ev.MB_FILL)
        if not x:
            continue
        on = M.bank_on(read)
        active = dict(zip(*xy(read, ev.MB_ACTIVE), strict=True))
        used = [
            f if (active.get(s, 1.0 if on is not None and s >= on else 0.0) or 0.0) >= 0.5 else 0.0
            for s, f in zip(x, fill, strict=True)
        ]
        # equal queues of several runs interleave their dashes: every colour stays visible on one line
        dashes = (6 * i, (6, 6 * max(1, len(runs) - 1)))
        stored = {"ls": dashes, "lw": 2.2, "drawstyle": "steps-post"}
        bottom.plot(x, fill, color=c, label=_name(run, "stored", many), **stored)
        used_style = {"drawstyle": "steps-post", "label": _name(run, "used by the loss", many)}
        bottom.plot(x, used, color=c, **used_style, **cased(i, 3.0, many))
    if size:
        bottom.set_ylim(-0.06 * size, size * 1.3)
        _level_note(bottom, size, f"bank size {size:.0f}", 6)
    top.set_ylim(bottom=0)
    _style(top, "candidates K", xlabel=False)
    _style(bottom, "queue entries")
    end_labels(top, labels)
    legend_below(fig, ncols=3)


def grad_norms(fig: Any, runs: Mapping[str, Any], targets: Any) -> None:
    groups = sorted(
        {
            n
            for r in runs.values()
            for row in r.rows.values()
            for n in row
            if n.startswith(ev.GRAD_NORM_GROUP + "/")
        }
    )
    colors = {g: GROUP_COLORS[j % len(GROUP_COLORS)] for j, g in enumerate(groups)}
    first = None
    for i, (run, read) in enumerate(runs.items()):
        ax = fig.add_subplot(1, len(runs), i + 1, sharey=first)
        first = first or ax
        x, y = xy(read, ev.GRAD_NORM)
        if x:
            ax.plot(x, y, color="black", lw=2.0, label="total, before clipping")
        for name in groups:
            x, y = xy(read, name)
            if x:
                group = name.split("/", 1)[1]
                ax.plot(
                    x, y, color=colors[name], lw=1.3, label=GROUP_WORDS.get(group, group) + ", after clipping"
                )
        ax.set_yscale("log")
        if len(runs) > 1:
            ax.set_title(run, fontsize=10, color=color(i))
        _style(ax, "gradient norm" if i == 0 else "")
    legend_below(fig, ncols=3)
