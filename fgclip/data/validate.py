"""Record validation: applies the box policy to every box of a record and counts everything it drops.

Counting units ("boxes"): an image `bbox_info` entry, a video keyframe, and a video region that has no
keyframe (a normal region's virtual full box, or an abnormal record's region missing its boxes); a region
that cannot be paired with a caption counts once. `invalid` counts problems found (by reason), `dropped`
what the policy removed, `repaired` out-of-range boxes the "clip" policy clipped, `clipped` boxes within the
1e-3 tolerance outside [0, 1] (clipped silently under every policy). `regions_dropped` counts regions lost
whole. Nothing leaves a record without a count. Torch-free.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fgclip.data.boxes import TOLERANCE, Box, BoxDecision, GridSize, check_policy, decide_box, region_failure
from fgclip.data.errors import Location
from fgclip.data.schema import MISSING, ImageRecord, Keyframe, VideoRecord

MAX_ISSUES = 50  # issue examples kept in a report


@dataclass(frozen=True)
class CleanImageRegion:
    box: Box
    short_expr: str | None
    long_expr: str | None
    negatives: tuple[str, ...]


@dataclass(frozen=True)
class CleanImage:
    record: ImageRecord
    regions: tuple[CleanImageRegion, ...]
    dropped: int  # box units the policy dropped from this record


@dataclass(frozen=True)
class CleanVideoRegion:
    """`keyframes` sorted by frame; empty for a normal region (virtual full box on every frame)."""

    caption: str
    keyframes: tuple[tuple[int, Box], ...]
    abnormal: bool


@dataclass(frozen=True)
class CleanVideo:
    record: VideoRecord
    regions: tuple[CleanVideoRegion, ...]
    dropped: int
    frame_range: tuple[int, int] | None  # [start, end) frames of the clip, None when not probed


@dataclass
class ValidationReport:
    """Counts over every record validated so far (see the module docstring for the units)."""

    policy: str = "drop"
    records: int = 0
    boxes: int = 0
    regions: int = 0
    invalid: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    regions_dropped: Counter = field(default_factory=Counter)
    clipped: int = 0
    repaired: int = 0
    truncated_regions: int = 0  # valid regions beyond max_boxes_per_sample (upstream keeps the first ones)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def note(self, reason: str, location: Location, detail: str = "", action: str = "dropped") -> None:
        self.invalid[reason] += 1
        if action == "dropped":
            self.dropped[reason] += 1
        else:
            self.repaired += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(
                {
                    "file": location.source,
                    "line": location.line,
                    "index": location.index,
                    "field": location.field,
                    "reason": reason,
                    "detail": detail,
                    "action": action,
                }
            )

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values())

    @property
    def invalid_ratio(self) -> float:
        return self.invalid_total / self.boxes if self.boxes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "records": self.records,
            "boxes": self.boxes,
            "regions": self.regions,
            "invalid": dict(sorted(self.invalid.items())),
            "invalid_total": self.invalid_total,
            "invalid_ratio": self.invalid_ratio,
            "dropped": dict(sorted(self.dropped.items())),
            "regions_dropped": dict(sorted(self.regions_dropped.items())),
            "clipped": self.clipped,
            "repaired": self.repaired,
            "truncated_regions": self.truncated_regions,
            "issues": list(self.issues),
        }

    def summary(self) -> str:
        """One line for a training log."""
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        return (
            f"data: {self.records} records, {self.boxes} boxes, dropped {sum(self.dropped.values())} "
            f"({parts}), repaired {self.repaired}, clipped {self.clipped}, "
            f"truncated regions {self.truncated_regions} [box_policy={self.policy}]"
        )


class RecordValidator:
    """Validates records one by one under one policy, accumulating a `ValidationReport`."""

    def __init__(
        self,
        policy: str = "drop",
        *,
        grid_size: GridSize = None,
        tolerance: float = TOLERANCE,
        report: ValidationReport | None = None,
    ) -> None:
        self.policy = check_policy(policy)
        self.grid_size = grid_size
        self.tolerance = tolerance
        self.report = report if report is not None else ValidationReport(policy=policy)

    def _box(self, values: Any, location: Location) -> BoxDecision:
        decision = decide_box(
            values, self.policy, grid_size=self.grid_size, location=location, tolerance=self.tolerance
        )
        self.report.clipped += decision.clipped
        if decision.reason is not None:
            action = "repaired" if decision.repaired else "dropped"
            self.report.note(decision.reason, location, repr(values)[:80], action)
        return decision

    def _fail(self, reason: str, location: Location, detail: str, whole_region: bool = True) -> None:
        """Raise under "error"; otherwise count the dropped box (and the region, when it goes whole)."""
        region_failure(reason, self.policy, location, detail)
        self.report.note(reason, location, detail)
        if whole_region:
            self.report.regions_dropped[reason] += 1

    def image(self, record: ImageRecord) -> CleanImage:
        """Keep the boxes the policy accepts; count the rest."""
        report, loc = self.report, record.location
        report.records += 1
        regions, dropped = [], 0
        for region in record.regions:
            report.boxes += 1
            report.regions += 1
            if region.bbox is MISSING or not (region.short_expr or region.long_expr):
                missing = "bbox" if region.bbox is MISSING else "short_expr/long_expr"
                self._fail("count_mismatch", loc.at(region.field), f"entry has no {missing}")
                dropped += 1
                continue
            decision = self._box(region.bbox, loc.at(f"{region.field}.bbox"))
            if decision.box is None:
                report.regions_dropped[decision.reason] += 1
                dropped += 1
                continue
            regions.append(
                CleanImageRegion(decision.box, region.short_expr, region.long_expr, region.negatives)
            )
        return CleanImage(record, tuple(regions), dropped)

    def video(self, record: VideoRecord, frame_range: tuple[int, int] | None = None) -> CleanVideo:
        """Keep valid keyframes; `frame_range` ([start, end) of the decodable clip) enables the range
        check."""
        report, loc = self.report, record.location
        report.records += 1
        regions, dropped = [], 0
        for region in record.regions:
            report.regions += 1
            r = region.index
            if region.caption is None or region.keyframes is None:
                report.boxes += 1
                field = f"region_captions[{r}]" if region.caption is None else f"box_infos[{r}]"
                self._fail(
                    "count_mismatch",
                    loc.at(field),
                    f"{field} is missing: region_captions and box_infos differ in length",
                )
                dropped += 1
            elif not region.keyframes:
                report.boxes += 1
                if record.abnormal:
                    self._fail(
                        "no_keyframe",
                        loc.at(f"box_infos[{r}]"),
                        "region of an abnormal record has no keyframe",
                    )
                    dropped += 1
                else:  # a normal region: the virtual full box on every frame
                    regions.append(CleanVideoRegion(region.caption, (), abnormal=False))
            else:
                kept, lost = self._keyframes(region.keyframes, loc, frame_range)
                dropped += lost
                if kept:
                    regions.append(
                        CleanVideoRegion(region.caption, tuple(sorted(kept.items())), abnormal=True)
                    )
                else:
                    report.regions_dropped["no_valid_keyframe"] += 1
        return CleanVideo(record, tuple(regions), dropped, frame_range)

    def _keyframes(
        self, keyframes: tuple[Keyframe, ...], loc: Location, frame_range: tuple[int, int] | None
    ) -> tuple[dict[int, Box], int]:
        """(frame -> box of the keyframes kept, number dropped)."""
        kept: dict[int, Box] = {}
        lost = 0
        for kf in keyframes:
            self.report.boxes += 1
            frame, where = kf.frame, loc.at(f"{kf.field}.frame")
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                self._fail("malformed", where, f"frame={frame!r} is not a frame number", whole_region=False)
            elif (box := self._box(kf.bbox, loc.at(f"{kf.field}.bbox")).box) is None:
                pass  # counted by _box
            elif frame_range is not None and not frame_range[0] <= frame < frame_range[1]:
                detail = f"frame {frame} outside the decodable frames [{frame_range[0]}, {frame_range[1]})"
                self._fail("keyframe_beyond_video", where, detail, whole_region=False)
            elif frame in kept:
                detail = f"a second keyframe on frame {frame}; the first one is kept"
                self._fail("duplicate_keyframe", where, detail, whole_region=False)
            else:
                kept[frame] = box
                continue
            lost += 1
        return kept, lost


__all__ = [
    "CleanImage",
    "CleanImageRegion",
    "CleanVideo",
    "CleanVideoRegion",
    "RecordValidator",
    "ValidationReport",
]
