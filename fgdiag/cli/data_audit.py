"""`fgdiag data-audit DATA`: box validity, boxes per sample, caption repetition and test overlap of a data
set.

Exit codes: 0 clean, 1 invalid-box ratio above --max-invalid-ratio (or an invalid box under --policy error),
2 unreadable input (malformed or hostile JSON, a FIFO or device instead of a file: the message names the
file, line and field). Records are streamed, so memory follows the largest record and the distinct
captions, not the file; a large file shows progress on stderr (a bar on a terminal, plain lines otherwise).
The library function is `fgclip.data.audit.audit`; heavy imports happen inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

PROGRESS_MIN_BYTES = 20 << 20  # smaller sets finish before progress is worth showing
PLAIN_STEP = 10  # without a terminal: one line per 10 % read


def _progress_callback(stack: Any, path: Path):
    """Progress of a large audit on stderr: a rich bar on a terminal, a plain line per 10 % otherwise."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        shown = [0]

        def plain(done: int, total: int) -> None:
            percent = 100 * done // total if total else 100
            if total >= PROGRESS_MIN_BYTES and percent >= shown[0] + PLAIN_STEP:
                shown[0] = percent - percent % PLAIN_STEP
                typer.echo(f"data-audit: {path}: {shown[0]}% of {total / 1e6:.1f} MB read", err=True)

        return plain
    bar = stack.enter_context(
        Progress(
            TextColumn("auditing"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
    )
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if total < PROGRESS_MIN_BYTES:
            return
        if task is None:
            task = bar.add_task("audit", total=total)
        bar.update(task, completed=done)

    return update


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"


def render_text(result: dict[str, Any], max_invalid_ratio: float) -> str:
    """The human summary of an audit result."""
    lines = [
        f"{result['path']}: {result['records']} {result['format']} records, {result['boxes']} boxes, "
        f"{result['regions']} regions (box_policy={result['policy']}, grid={result['grid_size']})",
        f"  invalid: {result['invalid_total']} ({result['invalid_ratio']:.2%}) {_counts(result['invalid'])}",
        f"  dropped: {_counts(result['dropped'])}; regions lost: {_counts(result['regions_dropped'])}",
        f"  clipped within tolerance: {result['clipped']}; repaired by clip: {result['repaired']}",
        f"  boxes per sample: {_counts(result['boxes_per_sample'])}",
    ]
    if "abnormal_records" in result:
        lines.append(f"  abnormal records: {result['abnormal_records']}, normal: {result['normal_records']}")
    if "hard_boxes" in result:
        lines.append(f"  boxes with enough hard negatives: {result['hard_boxes']}")
    if "missing_media" in result:
        lines.append(f"  missing media files: {result['missing_media']}")
    for group, rep in result["caption_repetition"].items():
        top = "; ".join(f"{t['caption'][:50]!r} x{t['count']}" for t in rep["top"][:3]) or "none repeated"
        lines.append(f"  {group} captions: {rep['distinct']} distinct of {rep['total']}; top: {top}")
    if "test_overlap" in result:
        o = result["test_overlap"]
        lines.append(
            f"  test overlap: {o['overlapping_records']} records ({o['overlapping_media']} media) appear in "
            f"{o['test_list']}"
        )
    for issue in result["issues"][:5]:
        where = issue["file"] + (f":{issue['line']}" if issue["line"] else "")
        lines.append(
            f"  e.g. {where} (record {issue['index']}) {issue['field']}: {issue['reason']} {issue['detail']}"
        )
    verdict = "ok" if result["invalid_ratio"] <= max_invalid_ratio else "FAIL"
    lines.append(f"{verdict}: invalid ratio {result['invalid_ratio']:.4f} (limit {max_invalid_ratio})")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("data-audit")
    def data_audit(
        data: Annotated[Path, typer.Argument(help="Annotation file (.json/.jsonl/.txt list) or folder")],
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        test_list: Annotated[
            Path | None,
            typer.Option("--test-list", help="Test split: media paths, one a line, or annotations"),
        ] = None,
        policy: Annotated[str, typer.Option("--policy", help="Box policy: drop | clip | error")] = "drop",
        data_format: Annotated[str, typer.Option("--format", help="image | video | auto")] = "auto",
        grid_size: Annotated[
            int,
            typer.Option("--grid-size", help="Feature grid (image_size // patch; 14 = ViT-B/16@224); 0: off"),
        ] = 14,
        image_root: Annotated[
            Path | None, typer.Option("--image-root", help="Media folder (default: the annotation folder)")
        ] = None,
        check_media: Annotated[
            bool, typer.Option("--media/--no-media", help="Check media files exist; probe video lengths")
        ] = True,
        max_invalid_ratio: Annotated[
            float, typer.Option("--max-invalid-ratio", help="Exit 1 above this invalid-box ratio")
        ] = 0.05,
        max_boxes: Annotated[
            int | None, typer.Option("--max-boxes", help="Count regions beyond this per sample")
        ] = None,
    ) -> None:
        """Audit boxes and captions of a data set: what training would drop, and why."""
        from contextlib import ExitStack

        from fgclip.data.audit import audit
        from fgclip.data.boxes import POLICIES
        from fgclip.data.errors import BoxValidationError, DataFormatError

        if policy not in POLICIES:
            typer.echo(
                f"fgdiag data-audit: --policy {policy!r}: choose one of {', '.join(POLICIES)}", err=True
            )
            raise typer.Exit(2)
        if test_list is not None and not test_list.exists():
            typer.echo(f"fgdiag data-audit: {test_list}: test list does not exist", err=True)
            raise typer.Exit(2)
        try:
            with ExitStack() as stack:
                result = audit(
                    data,
                    data_format=data_format,
                    policy=policy,
                    grid_size=grid_size or None,
                    image_root=image_root,
                    check_media=check_media,
                    test_list=test_list,
                    max_boxes_per_sample=max_boxes,
                    progress=_progress_callback(stack, data),
                )
        except BoxValidationError as exc:
            typer.echo(f"fgdiag data-audit: {exc}", err=True)
            raise typer.Exit(1) from None
        except (DataFormatError, ValueError) as exc:
            typer.echo(f"fgdiag data-audit: {exc}", err=True)
            raise typer.Exit(2) from None
        failed = result["invalid_ratio"] > max_invalid_ratio
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            typer.echo(render_text(result, max_invalid_ratio))
        if failed:
            typer.echo(
                f"fgdiag data-audit: invalid-box ratio {result['invalid_ratio']:.4f} is above "
                f"--max-invalid-ratio {max_invalid_ratio}",
                err=True,
            )
            raise typer.Exit(1)
