"""Real-looking log text for the log-reader tests: HF Trainer (with tqdm), open_clip, the fgclip-vad fork
(UTF-8 and double-encoded), and our own lines. Shapes follow shared/reference/fgclip-vad.md section 5 and
the fork's committed logs."""

from __future__ import annotations

import math

from fgdiag import events as ev
from fgdiag.wire import format_logit_scale, format_memory_bank_enabled, format_step_summary


def mojibake(text: str, errors: str = "ignore") -> str:
    """UTF-8 bytes decoded as cp1252, as in the seed file (bytes cp1252 leaves undefined are lost)."""
    return text.encode("utf-8").decode("cp1252", errors=errors)


def hf_trainer_log(
    steps: int = 40,
    logging_steps: int = 10,
    *,
    loss=lambda s: 2.0 - s / 40,
    grad=lambda s: 1.5,
    bars: str = "cr",
    end: bool = True,
) -> str:
    """Trainer stdout: a tqdm bar redrawn with `\\r` (bars="cr"), or one bar per line ("lines"), or none."""
    out = ["***** Running training *****", "  Num examples = 1,559", f"  Total optimization steps = {steps}"]
    line = ""
    for s in range(1, steps + 1):
        bar = (
            f"{100 * s // steps:3d}%|{'█' * (10 * s // steps):<10}| {s}/{steps} [00:{s:02d}<00:10,  1.50it/s]"
        )
        if bars == "cr":
            line += "\r" + bar
        elif bars == "lines":
            out.append(bar)
        if s % logging_steps == 0:
            rec = (
                f"{{'loss': {loss(s):.4f}, 'grad_norm': {grad(s)}, 'learning_rate': "
                f"{5e-6 * (1 - s / steps):.3e}, 'epoch': {s / steps:.2f}}}"
            )
            if bars == "cr":  # tqdm.write clears the bar with \r and spaces, then prints on the same line
                out.append(line + "\r" + " " * 60 + "\r" + rec)
                line = ""
            else:
                out.append(rec)
    if line:
        out.append(line)
    if end:
        out.append(
            f"{{'train_runtime': 12.5, 'train_samples_per_second': 3.2, 'train_steps_per_second': 3.2, "
            f"'train_loss': {loss(steps):.4f}, 'epoch': 1.0}}"
        )
    return "\n".join(out) + "\n"


def openclip_log(steps: int = 30, per_step: int = 256, total: int = 256 * 100) -> str:
    out = []
    for s in range(1, steps + 1):
        scale = min(100.0, 14.2857 * math.exp(s / 10))
        loss = 5.5 - s * 0.1
        out.append(
            f"2024-01-01,00:00:{s:02d} | INFO | Train Epoch: 0 [{s * per_step:>6}/{total} "
            f"({100 * s * per_step // total}%)] Data (t): 0.010 Batch (t): 0.500, 512.0/s, 512.0/s/gpu LR: "
            f"0.000500 Logit Scale: {scale:.3f} Contrastive_loss: {loss:.4f} ({loss + 0.1:.4f}) Loss: "
            f"{loss:.4f} ({loss + 0.1:.4f})"
        )
    return "\n".join(out) + "\n"


def vad_group(
    step: int,
    batch: int,
    *,
    valid: int = 4,
    region: float = 1.38,
    bank: int = 0,
    scale: float = 4.593750,
    zero: int = 0,
    bar: str = "",
    variant: str = "legacy",
    std: str = "2.8438",
) -> list[str]:
    """One forward group of the fork: [DIAG] block, [LOSS] line, batch line (steps 0-based as the fork)."""
    mean = (valid - zero) / valid
    lines = [
        "[DIAG] Region batch diagnostics:",
        f"  - valid_count={valid} | bbox_batch_size={valid}",
        f"  - img_norms: min={0.0 if zero else 1.0:.4f}, max=1.0000, mean={mean:.4f}, std=0.0000, "
        "has_nan=False",
        "  - txt_norms: min=1.0000, max=1.0000, mean=1.0000, std=0.0000, has_nan=False",
        f"  - logits_i2t: min=-5.0312, max=3.7188, mean=-1.7031, std={std}, has_nan=False",
        f"  - logit_scale (finegrained): {scale:.6f} (exp={math.exp(scale):.4f})",
    ]
    if variant == "legacy":
        lines.append(f"  - memory_bank: ptr={bank % 128}, full={bank == 128}, size=128")
    else:
        lines += [
            f"  - memory_bank(normal): ptr={min(bank, 64) % 64}, full={bank >= 64}, capacity=64",
            f"  - memory_bank(abnormal): ptr={max(0, bank - 64) % 64}, full={bank >= 128}, capacity=64",
        ]
    lines.append("  - any_nan=False, any_inf=False")
    if variant != "legacy":
        lines.append("  - sample_logits_row0_first5: [1.0, 2.0, 3.0, 4.0, 5.0]")
    total = 1.5 + 0.5 * region
    lines.append(f"[LOSS] Total: {total:.4f} | Global: 1.5000 | Region: {region:.4f} | HardNeg: 0.0000")
    mb = f" | MB: {bank}/128 ✓" if bank else ""
    if variant == "legacy":
        lines.append(
            f"{bar}[Epoch 0][Step {step}][Batch {batch}] Loss: {total:.6f} | Global: 1.500000 | Region: "
            f"{region:.6f} | Hard: 0.000000{mb} | LR: 4.17e-07 | Time: 0.77s"
        )
    else:
        lines.append(
            f"{bar}[ACCUMULATED][Epoch 0][Step {step}][Batch {batch}] AvgLoss: {total:.6f} | Global: "
            f"1.500000 | Region: {region:.6f} | Hard: 0.000000{mb} | LR: 4.17e-07 | Time: 0.77s"
        )
    return lines


def vad_log(
    steps: int = 30,
    ga: int = 4,
    *,
    region=lambda s: 1.38,
    bank_at: int | None = None,
    total_steps=None,
    zero_every: int = 0,
    variant: str = "legacy",
    scale: float = 4.593750,
    crash_at: int | None = None,
    hf_every: int = 10,
) -> str:
    """A fork run: forward groups per micro-batch, a tqdm bar before each step's last batch line, HF dicts."""
    total_steps = total_steps or steps
    out = ["[RUNTIME DIAG] Enabled. Interval=1", f"  0%|          | 0/{total_steps} [00:00<?, ?it/s]"]
    batch = 0
    for s in range(steps):
        if bank_at is not None and s == bank_at:
            out += [
                "=" * 80,
                f"[Memory Bank] ✅ 已启用 @ training_step {s * ga}",
                "[Memory Bank] 队列大小: 128, 当前指针: 0",
                "[Memory Bank] ⚠️  训练前200步的旧特征已被丢弃",
                "=" * 80,
            ]
        for g in range(ga):
            batch += 1
            bank = 128 if bank_at is not None and s > bank_at else 0
            bar = (
                f"\r {100 * (s + 1) // total_steps:2d}%|▏         | {s + 1}/{total_steps} [01:00<1:15:07, "
                "19.02s/it]"
                if g == ga - 1
                else ""
            )
            out += vad_group(
                s,
                batch,
                region=region(s),
                bank=bank,
                bar=bar,
                variant=variant,
                scale=scale,
                zero=1 if zero_every and batch % zero_every == 0 else 0,
            )
            if batch % 10 == 0:
                out += [
                    "",
                    "=" * 100,
                    f"[统计] 最近10个batch平均Loss: {1.5 + 0.5 * region(s):.6f}",
                    "=" * 100,
                    "",
                ]
        if (s + 1) % hf_every == 0:
            out.append(
                f"{{'loss': {1.5 + 0.5 * region(s):.4f}, 'grad_norm': 908.0, 'learning_rate': 4.17e-07, "
                f"'epoch': {s / total_steps:.2f}}}"
            )
        if crash_at is not None and s == crash_at:
            out += [
                "Traceback (most recent call last):",
                '  File "/data/zyy/FG-CLIP/fgclip/train/train_fgclip.py", line 1102, in <module>',
                "    train()",
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 588.00 MiB. GPU 0 has a "
                "total capacity of 23.69 GiB",
            ]
            return "\n".join(out) + "\n"
    return "\n".join(out) + "\n"


def our_log(
    steps: int = 40,
    every: int = 5,
    *,
    region=lambda s: 4.0 * math.exp(-s / 30) + 0.2,
    k_before: int = 4,
    k_after: int = 132,
    bank_at: int = 7,
    scale: float = 4.6052,
) -> str:
    """What the live callback prints: scale lines, the bank line, one summary per logging step."""
    out = [format_logit_scale(h, scale) for h in ev.HEADS]
    announced = False
    for s in range(every, steps + 1, every):
        k = k_after if s >= bank_at else k_before
        if s >= bank_at and not announced:
            out.append(format_memory_bank_enabled(bank_at, k_before, k_after))
            announced = True
        metrics = {
            ev.LOSS: 1.0 + region(s),
            ev.head_metric(ev.HEAD_LOSS, "region"): region(s),
            ev.head_metric(ev.CANDIDATES, "region"): float(k),
            ev.head_metric(ev.LOGIT_SCALE, "global"): scale,
            ev.head_metric(ev.LOGIT_SCALE, "region"): scale,
            ev.head_metric(ev.LOGITS_MIN, "region"): -20.0,
            ev.head_metric(ev.LOGITS_MAX, "region"): 60.0,
            ev.MB_ACTIVE: 1.0 if s >= bank_at else 0.0,
            ev.MB_FILL: 128.0 if s >= bank_at else 0.0,
            ev.MB_SIZE: 128.0,
            ev.GRAD_NORM: 1.2,
            ev.LEARNING_RATE: 5e-6,
        }
        out.append(format_step_summary(s, metrics))
    return "\n".join(out) + "\n"
