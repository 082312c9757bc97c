"""Report panels: each declares the metrics it needs, says how to read it, and draws one matplotlib Figure
for one or more runs (`panel_draw` holds the drawing functions).

Conventions that keep every panel readable at a glance: colour is the run (the same in every panel), line
style the head or the quantity; legends sit outside the data (below the axes); reference lines are labelled
where they are drawn; a panel whose lines would pile up is split into small multiples with a shared axis.
A panel whose metrics are absent from every run is skipped with a note instead of drawing an empty plot.
matplotlib is used through `Figure` + the Agg canvas only (no pyplot, no global backend switch), so a report
can be written from inside a training process or a notebook without side effects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fgdiag import events as ev
from fgdiag.render import panel_draw as D

DPI = 100


@dataclass(frozen=True)
class Panel:
    name: str  # file stem of the PNG
    title: str
    caption: str  # how to read it, one or two sentences under the image
    needs: tuple[str, ...]  # metric names or prefixes ending in "/"; any one present is enough
    draw: Callable[[Any, Mapping[str, Any], Any], None]  # (Figure, runs, targets)
    size: tuple[float, float] = (10.0, 5.0)  # inches; the PNG is size x DPI pixels

    def available(self, runs: Mapping[str, Any]) -> bool:
        return any(_has(read, need) for read in runs.values() for need in self.needs)

    @property
    def pixels(self) -> tuple[int, int]:
        return round(self.size[0] * DPI), round(self.size[1] * DPI)


def _has(read: Any, need: str) -> bool:
    for row in read.rows.values():
        for name, value in row.items():
            if value is not None and (name == need or (need.endswith("/") and name.startswith(need))):
                return True
    return False


PANELS: tuple[Panel, ...] = (
    Panel(
        "region_loss",
        "Region loss against chance level ln K and the targets",
        "Solid: the region loss each run logged; dashed, same colour: its chance level ln K (a model that "
        "guesses among K candidates); black triangles: the target profile's points (judged on the loss "
        "smoothed over the steps before them); dotted verticals: the memory bank joining the loss.",
        (ev.head_metric(ev.HEAD_LOSS, "region"), "region_loss"),
        D.region_loss,
        (10.0, 5.2),
    ),
    Panel(
        "losses",
        "Total loss and each head's loss",
        "Colour: the run; line style: the total (weighted sum the optimizer sees) or one head's unweighted "
        "loss.",
        (ev.LOSS, ev.HEAD_LOSS + "/"),
        D.losses,
        (10.0, 4.8),
    ),
    Panel(
        "logit_scales",
        "Logit scale exp(s) = 1/temperature of each head",
        "The factor every cosine is multiplied by before the softmax (log axis). Fine-tuning a CLIP keeps "
        "it at 100; CLIP's from-scratch init ln(1/0.07) gives 14.3. Labels at the right end group the heads "
        "whose lines coincide.",
        (ev.LOGIT_SCALE + "/", ev.LOGIT_SCALE_EXP + "/"),
        D.logit_scales,
        (10.0, 4.6),
    ),
    Panel(
        "logit_ranges",
        "Logits per head: positives against negatives",
        "Top, one plot per head: the mean logit of the matching pairs (solid) and of the non-matching ones "
        "(dashed), in the band from the smallest to the largest logit. The softmax separates them only if "
        "the gap is wide. Bottom: the spread (std) of the cosines; near 0 means collapsed embeddings.",
        (ev.LOGITS_MIN + "/", ev.POS_MEAN + "/", ev.COS_STD + "/"),
        D.logit_ranges,
        (11.0, 6.4),
    ),
    Panel(
        "memory_bank",
        "Memory bank: candidates per region query, and the queue",
        "Top: candidates K per region query (in-batch regions plus queued ones once the bank is on). "
        "Bottom: entries stored in the queue (thin) and entries the loss uses (thick; 0 until the bank "
        "switches on), on an axis from 0 to the bank size.",
        (ev.MB_FILL, ev.head_metric(ev.CANDIDATES, "region")),
        D.memory_bank,
        (10.0, 6.0),
    ),
    Panel(
        "grad_norms",
        "Gradient norms by parameter group",
        "One plot per run (log axis). Black: the total norm the Trainer logs, before clipping to "
        "max_grad_norm; colours: each parameter group's norm as the optimizer sees it, after clipping.",
        (ev.GRAD_NORM, ev.GRAD_NORM_GROUP + "/"),
        D.grad_norms,
        (11.0, 4.8),
    ),
)


def render_panel(panel: Panel, runs: Mapping[str, Any], path: Any, targets: Any = None) -> None:
    """Draw one panel to a PNG of panel.size x DPI pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=panel.size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    panel.draw(fig, runs, targets)
    fig.suptitle(panel.title, fontsize=11)
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
