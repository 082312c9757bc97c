"""The fgclip-vad fork's line formats, as its scripts print them (shared/reference/fgclip-vad.md sections 4-5,
checked against the fork's committed logs: training_fixed_diag.log, training_micro_batch_*.log,
training_clean.log, training_live.log, diag_training.log, batch_losses.log). Formatting only; the numbers come
from the run builders in fork_runs.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

RULE80, RULE100, RULE40 = "=" * 80, "=" * 100, "=" * 40


@dataclass
class Diag:
    """One `[DIAG] Region batch diagnostics:` block."""

    valid: int
    zero: int  # region features with zero norm (all-zero region clips)
    logits: tuple[float, float, float, float]  # min, max, mean, std of logits_i2t
    scale: float  # raw bf16 scale, e.g. 4.593750
    bank: tuple[int, bool]  # legacy: (ptr, full) of the single 128 queue; head: filled entries (0..128)
    row0: tuple[float, ...] = ()


def _norms(valid: int, zero: int) -> str:
    mean = (valid - zero) / valid
    std = math.sqrt(zero * (valid - zero) / (valid * (valid - 1))) if valid > 1 else float("nan")
    lo = 0.0 if zero else 1.0
    return f"min={lo:.4f}, max=1.0000, mean={mean:.4f}, std={std:.4f}, has_nan=False"


def diag_block(d: Diag, variant: str) -> list[str]:
    """The block in its logged (legacy) variant or the HEAD variant with two queues and a sample row."""
    lo, hi, mean, std = d.logits
    lines = [
        "[DIAG] Region batch diagnostics:",
        f"  - valid_count={d.valid} | bbox_batch_size={d.valid}",
        f"  - img_norms: {_norms(d.valid, d.zero)}",
        f"  - txt_norms: {_norms(d.valid, 0)}",
        f"  - logits_i2t: min={lo:.4f}, max={hi:.4f}, mean={mean:.4f}, std={std:.4f}, has_nan=False",
        f"  - logit_scale (finegrained): {d.scale:.6f} (exp={math.exp(d.scale):.4f})",
    ]
    if variant == "legacy":
        ptr, full = d.bank
        lines.append(f"  - memory_bank: ptr={ptr}, full={full}, size=128")
    else:
        filled = d.bank[0]
        normal, abnormal = min(filled, 64), max(0, filled - 64)
        lines.append(f"  - memory_bank(normal): ptr={normal % 64}, full={normal >= 64}, capacity=64")
        lines.append(f"  - memory_bank(abnormal): ptr={abnormal % 64}, full={abnormal >= 64}, capacity=64")
    lines.append("  - any_nan=False, any_inf=False")
    if variant != "legacy":
        lines.append("  - sample_logits_row0_first5: [" + ", ".join(f"{v:.4f}" for v in d.row0) + "]")
    return lines


def loss_line(total: float, glob: float, region: float) -> str:
    """The model's legacy per-forward line."""
    return f"[LOSS] Total: {total:.4f} | Global: {glob:.4f} | Region: {region:.4f} | HardNeg: 0.0000"


def accumulated_model_line(total: float, glob: float, region: float) -> str:
    """The model's line every 8 forwards (HEAD)."""
    return f"[ACCUMULATED] Total: {total:.4f} | Global: {glob:.4f} | Region: {region:.4f} | HardNeg: 0.0000"


def batch_line(
    variant: str, step: int, batch: int, parts: tuple[float, float, float], mb: str, lr: float, secs: float
) -> str:
    """The trainer's per-micro-batch line: legacy `[Epoch][Step][Batch] Loss:` or HEAD `[ACCUMULATED]...`."""
    total, glob, region = parts
    head = "[ACCUMULATED]" if variant == "head" else ""
    word = "AvgLoss" if variant == "head" else "Loss"
    return (
        f"{head}[Epoch 0][Step {step}][Batch {batch}] {word}: {total:.6f} | Global: {glob:.6f} | "
        f"Region: {region:.6f} | Hard: 0.000000{mb} | LR: {lr:.2e} | Time: {secs:.2f}s"
    )


def mb_status(filled: int) -> str:
    return f" | MB: {filled}/128 ✓" if filled >= 128 else f" | MB: {filled}/128 ..."


def stats_block(avg: float) -> list[str]:
    return ["", RULE100, f"[统计] 最近10个batch平均Loss: {avg:.6f}", RULE100, ""]


def bank_enabled(forward: int, head: bool) -> list[str]:
    lines = [
        "",
        RULE80,
        f"[Memory Bank] ✅ 已启用 @ training_step {forward}",
        "[Memory Bank] 队列大小: 128, 当前指针: 0",
    ]
    if head:
        lines.append(f"[Memory Bank] ⚠️  训练前{forward}步的旧特征已被丢弃")
    return [*lines, RULE80, ""]


def bank_accumulating(ptr: int) -> str:
    return f"[MEMORY BANK] 📊 积累中... Ptr: {ptr}/128 ({100 * ptr / 128:.1f}%), 当前负样本: {ptr}"


def bank_first_full(before: int, after: int, negatives: int) -> str:
    return f"[MEMORY BANK] 🎉 队列首次填满！Ptr: {before}→{after}, 负样本数量: {negatives}→128"


def mb_forward(queued: int, batch: int) -> str:
    return f"[MB-FORWARD] 使用{queued}个历史负样本 | Batch内: {batch} | 总负样本: {batch + queued}"


def queue_full(kind: str) -> str:
    return f"[MEMORY BANK][{kind}] 队列已填满，容量=64"


def hf_dict(loss: float, grad_norm: float, lr: float, epoch: float) -> str:
    """transformers 4.4x prints the log dict with Python reprs (loss rounded to 4 digits, epoch to 2)."""
    return (
        f"{{'loss': {round(loss, 4)}, 'grad_norm': {grad_norm!r}, 'learning_rate': {lr!r}, "
        f"'epoch': {round(epoch, 2)}}}"
    )


def hf_end(runtime: float, samples: float, steps: float, train_loss: float, epoch: float) -> str:
    return (
        f"{{'train_runtime': {runtime!r}, 'train_samples_per_second': {samples}, "
        f"'train_steps_per_second': {steps}, 'train_loss': {train_loss!r}, 'epoch': {round(epoch, 2)}}}"
    )


USER_WARNINGS = [
    "/data/zyy/wsvad/2026CVPR/FG-CLIP/fgclip/train/train_fgclip.py:{}: UserWarning: To copy construct from a "
    "tensor, it is recommended to use sourceTensor.detach().clone() or "
    "sourceTensor.detach().clone().requires_grad_(True), rather than torch.tensor(sourceTensor).",
]
WARN_TARGETS = (
    (678, "  text = torch.tensor("),
    (683, "  short_text = torch.tensor("),
    (830, "  box_text = torch.tensor("),
)


def user_warnings() -> list[str]:
    out = []
    for line, target in WARN_TARGETS:
        out += [USER_WARNINGS[0].format(line), target]
    return out


def launcher_header(kind: str, batch: int, ga: int, started: str, epochs: int = 5) -> list[str]:
    """The shell launcher's banner: `memory` (train_ucf_memory_optimized.sh, 10-20 runs) or `formal`
    (train_ucf_full.sh, 10-12..10-19 runs, Chinese field names)."""
    if kind == "memory":
        head = [
            RULE40,
            "🚀 FG-CLIP UCF 内存优化训练",
            RULE40,
            "💾 内存优化策略:",
            f"  - Batch Size: {batch} ✅ 提升到 {batch}（对比学习需要 >1）",
            f"  - Gradient Accumulation: {ga}",
            "  - Global 帧数: 256 (完整时序)",
            "  - Region 帧数: 96 (3/8 Global，平衡语义+显存)",
            f"  - 有效 Batch: {batch * ga}",
            "  - Workers: 1",
            "  - PyTorch 内存碎片优化: ✅",
            RULE40,
            "",
            "✅ GPU 缓存已清理",
        ]
    else:
        head = [
            RULE40,
            "🚀 FG-CLIP UCF 正式训练启动",
            RULE40,
            "📊 数据统计:",
            "  - 训练样本: 约1812个regions（253异常视频 + 1306正常片段）",
            "  - 数据文件: ucf_fgclip_train_with_timestamps_en.json",
            "  - 数据大小: 2.0M",
            "",
            "🎯 训练配置:",
            "  - 帧数: 256",
            f"  - 批次大小: {batch}",
            f"  - 梯度累积: {ga}",
            f"  - 有效批次: {batch * ga}",
            f"  - 训练轮数: {epochs}",
            "",
            "\ufffd 模型配置:",
            "  - CLIP模型: ViT-B/32 (本地加载)",
            "  - 网络需求: ❌ 无需联网",
            "",
            "\ufffd💾 输出目录: ./checkpoints/fgclip_ucf_full",
            "🖥️  GPU设备: 0",
            RULE40,
            "",
        ]
    return [
        *head,
        f"⏰ 训练开始时间: {started}",
        "/data/zyy/anaconda3/lib/python3.11/site-packages/transformers/training_args.py:1575: FutureWarning: "
        "`evaluation_strategy` is deprecated and will be removed in version 4.46 of 🤗 Transformers. Use "
        "`eval_strategy` instead",
        "  warnings.warn(",
        "=" * 60,
        "Loading CLIP components (LOCAL MODE - No Internet Required)",
        "=" * 60,
        "Loading tokenizer for: ViT-B/32",
        "  ✓ Tokenizer loaded (local CLIP)",
        "Initializing FG-CLIP model: ViT-B/32",
        "[INFO] Initialized roi_projection: 768 -> 512 (ViT-B/32)",
        "  ✓ Model initialized (random weights)",
        "[FG-CLIP] 🔄 Loading OpenAI CLIP weights: ViT-B/32",
        "[FG-CLIP]   Copied 127 vision weights",
        "[FG-CLIP]   Copied 122 text weights",
        "[FG-CLIP]   ✅ Loaded logit_scale = 4.6052 (exp=100.0)",
        "[FG-CLIP] ✅ Copied visual_projection weights to roi_projection",
        "Loading data from: /data/zyy/dataset/UCF_Crimes_Videos/ucf_fgclip_train_with_timestamps_en.json",
        "  → Detected list format (new)",
        "Total videos loaded: 1559",
        "  - Normal videos: 1327",
        "  - Abnormal videos: 232",
        "",
    ]


def end_banner(ok: bool, started: str, ended: str, code: int = 1) -> list[str]:
    status = "✅ 训练成功完成！" if ok else f"❌ 训练异常退出 (Exit Code: {code})"
    return [
        "",
        RULE40,
        status,
        RULE40,
        f"⏰ 开始时间: {started}",
        f"⏰ 结束时间: {ended}",
        "",
        "📂 输出目录: ./checkpoints/fgclip_ucf_full",
        "📊 TensorBoard: tensorboard --logdir ./checkpoints/fgclip_ucf_full --port 6006",
        RULE40,
    ]


def table_header(batch: int, ga: int, started: str) -> list[str]:
    """batch_losses.log: the trainer's own per-micro-batch table."""
    return [
        RULE100,
        "FG-CLIP Training - Detailed Batch Loss Log",
        RULE100,
        f"Started at: {started}",
        f"Batch Size: {batch}",
        f"Gradient Accumulation Steps: {ga}",
        f"Effective Batch Size: {batch * ga}",
        RULE100,
        "",
        f"{'Epoch':<7}{'Global_Step':<13}{'Batch':<9}{'Loss':<13}{'Loss_Global':<13}{'Loss_Region':<13}"
        f"{'Loss_Hard':<13}{'LR':<13}{'Time':<10}",
        "-" * 100,
    ]


def table_row(step: int, batch: int, parts: tuple[float, float, float], lr: float, secs: float) -> str:
    total, glob, region = parts
    return (
        f"{0:<7}{step:<13}{batch:<9}{total:<13.6f}{glob:<13.6f}{region:<13.6f}{0.0:<13.6f}"
        f"{lr:<13.2e}{secs:<10.2f}"
    )
