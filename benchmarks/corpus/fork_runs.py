"""The corpus logs written in the fgclip-vad fork's formats (`origin = "fork-format"`).

    python benchmarks/corpus/fork_runs.py [--out tests/corpus]

Each function returns one whole log: the launcher's banner, the model/data loading lines, the training lines
laid out by `fork_sim.ForkRun`, and the end (success banner, crash, or kill). The dynamics follow the runs the
reference note describes (shared/reference/fgclip-vad.md) and the fork's committed logs; the numbers are drawn
from seeded generators, so the files are reproducible.
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import fork_lines as fl
from common import CORPUS, bf16, mojibake, tqdm_bar, write
from fork_sim import ForkRun, Micro, Spec

from fgclip.config import CLIP_FROM_SCRATCH_SCALE

NUL_GAP = 9336  # the restart's first lines overwritten by NUL bytes, as in training_fixed_diag.log
TB_HEAD = "/data/zyy/anaconda3/lib/python3.11/site-packages"
TRAIN_PY = "/data/zyy/wsvad/2026CVPR/FG-CLIP/fgclip/train/train_fgclip.py"
OOM_TRACEBACK = [
    "Traceback (most recent call last):",
    f'  File "{TRAIN_PY}", line 1102, in <module>',
    "    train()",
    f'  File "{TRAIN_PY}", line 1093, in train',
    "    trainer.train()",
    f'  File "{TB_HEAD}/transformers/trainer.py", line 2164, in train',
    "    return inner_training_loop(",
    "           ^^^^^^^^^^^^^^^^^^^^",
    f'  File "{TB_HEAD}/transformers/trainer.py", line 2473, in _inner_training_loop',
    "    batch_samples, num_items_in_batch = self.get_batch_samples(epoch_iterator, num_batches)",
    f'  File "{TB_HEAD}/accelerate/utils/operations.py", line 153, in send_to_device',
    "    return tensor.to(device, non_blocking=non_blocking)",
    "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 588.00 MiB. GPU 0 has a total capacity "
    "of 23.69 GiB of which 504.06 MiB is free. Process 1930210 has 16.86 GiB memory in use. Including "
    "non-PyTorch memory, this process has 4.58 GiB memory in use. Of the allocated memory 4.21 GiB is "
    "allocated by PyTorch, and 107.34 MiB is reserved by PyTorch but unallocated.",
]
BANK_TRACEBACK = [
    "Traceback (most recent call last):",
    f'  File "{TRAIN_PY}", line 1302, in <module>',
    "    train()",
    f'  File "{TRAIN_PY}", line 1293, in train',
    "    trainer.train()",
    f'  File "{TB_HEAD}/transformers/trainer.py", line 2522, in _inner_training_loop',
    "    tr_loss_step = self.training_step(model, inputs, num_items_in_batch)",
    '  File "/data/zyy/wsvad/2026CVPR/FG-CLIP/fgclip/train/clean_clip_trainer.py", '
    "line 167, in training_step",
    "    loss, loss_dict = self.compute_loss(model, inputs, return_outputs=True)",
    '  File "/data/zyy/wsvad/2026CVPR/FG-CLIP/fgclip/model/clip_strc/fgclip.py", line 693, in forward',
    '    print(f"[Memory Bank] 队列大小: {self.memory_bank_size}, 当前指针: {self.queue_ptr.item()}")',
    f'  File "{TB_HEAD}/torch/nn/modules/module.py", line 1931, in __getattr__',
    "    raise AttributeError(",
    "AttributeError: 'FGCLIPModel' object has no attribute 'queue_ptr'",
]


def text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def noise(rng: random.Random, scale: float) -> float:
    return rng.gauss(0.0, scale)


def above_chance_collapse(rng: random.Random, b: int, opt: int, queued: int) -> Micro:
    """The OOM-restart run: region loss above ln K at every point, logits climbing to 65-96 at scale ~99,
    all-zero region clips now and then (zero-norm features, the 16-18 spikes)."""
    valid = rng.choice([3, 4, 4, 4, 5, 5, 6])
    zero = 1 if rng.random() < 0.1 else 0
    k = valid + queued
    glob = max(1.0, 2.0 - 0.6 * opt / 100 + noise(rng, 0.25))
    region = 15.5 + rng.uniform(0, 2.4) if zero else math.log(k) + rng.uniform(0.25, 1.6)
    center = -1.5 + 94 * (1 - math.exp(-opt / 19))
    lo, hi = center - rng.uniform(3.5, 7), min(96.0, center + rng.uniform(2.0, 4.5))
    logits = (
        (0.0, hi, 0.72 * center, rng.uniform(38, 41)) if zero else (lo, hi, center, rng.uniform(1.1, 2.6))
    )
    return Micro(glob, region, valid, zero, tuple(bf16(v) for v in logits))


def seed_at_chance(rng: random.Random, b: int, opt: int, queued: int) -> Micro:
    """The seed's run: region head at 2.65625 (exp 14.24), logits within +-14, no bank: loss at ln N."""
    valid = rng.choice([2, 2, 3, 3, 4, 5])
    lo, hi = rng.uniform(-9, -3), rng.uniform(3, 12)
    logits = (lo, hi, rng.uniform(-1, 2), rng.uniform(2, 5))
    glob = max(0.3, 0.70 - 0.2 * opt / 60 + noise(rng, 0.06))
    return Micro(glob, math.log(valid) * rng.uniform(0.97, 1.04), valid, 0, tuple(bf16(v) for v in logits))


def converging(steps: int):
    def micro(rng: random.Random, b: int, opt: int, queued: int) -> Micro:
        """The fixed run: region loss falls well below ln K once the bank is on, logits spread out."""
        valid = rng.choice([2, 2, 2, 3, 3, 4])
        p = opt / steps
        k = valid + queued
        base = math.log(valid) * (0.85 - 0.3 * p) if queued == 0 else math.log(k) * (0.95 - 0.55 * p)
        region = max(0.05, base + noise(rng, 0.15))
        glob = max(0.05, 0.69 * (1 - 0.5 * p) + noise(rng, 0.06))
        lo, hi = rng.uniform(-25, -15), rng.uniform(30, 55) * (0.5 + p)
        row0 = tuple(round(rng.uniform(lo, hi), 4) for _ in range(5))
        logits = (lo, hi, rng.uniform(2, 8), rng.uniform(8, 14))
        return Micro(glob, region, valid, 0, tuple(bf16(v) for v in logits), row0)

    return micro


def ln2_flat(rng: random.Random, b: int, opt: int, queued: int) -> Micro:
    """training_clean.log: batch 2, both heads at ln 2 for 140 steps (three or four regions now and then)."""
    valid = rng.choice([2] * 7 + [3, 4])
    region = math.log(valid) + abs(noise(rng, 0.004 if valid == 2 else 0.05))
    glob = 0.705 - 0.03 * opt / 140 + abs(noise(rng, 0.06)) - 0.03
    return Micro(glob, region, valid)


def rising_at_chance(rng: random.Random, b: int, opt: int, queued: int) -> Micro:
    """training_micro_batch_20251020_162603.log: region at ~ln K before and after the bank fills (K 2-4 ->
    130-132), so the total rises while nothing is learnt."""
    valid = 0 if rng.random() < 0.08 else rng.choice([2, 2, 2, 3, 3, 4])
    k = valid + queued
    region = math.log(max(k, 1)) + (rng.uniform(-0.02, 0.35) if queued == 0 else rng.uniform(-0.35, 0.3))
    glob = max(0.35, 0.95 - 0.2 * opt / 80 + noise(rng, 0.2))
    return Micro(glob, region, valid)


def collapsed(rng: random.Random, b: int, opt: int, queued: int) -> Micro:
    """Every region cosine between ~0.5 and 0.97: logits 50-96 at scale 98.86, rows nearly constant, so the
    region loss sits at ln K."""
    valid = rng.choice([2, 2, 3, 3, 4])
    center = 40 + 52 * (1 - math.exp(-opt / 6))
    lo, hi = center - rng.uniform(4, 9), min(96.0, center + rng.uniform(2, 5))
    row0 = tuple(round(rng.uniform(lo, hi), 4) for _ in range(5))
    logits = (lo, hi, center, rng.uniform(1.2, 2.5))
    region = math.log(valid + queued) + rng.uniform(-0.05, 0.08)
    glob = max(0.2, 0.69 - 0.25 * opt / 40 + noise(rng, 0.05))
    return Micro(glob, region, valid, 0, tuple(bf16(v) for v in logits), row0)


def zero_norm_learning(rng: random.Random, b: int, opt: int, queued: int) -> Micro:
    """Learning run in which a normal video's all-zero region clip shows up as img_norms min=0."""
    valid = rng.choice([2, 3, 3, 4])
    zero = 1 if rng.random() < 0.3 else 0
    p = opt / 30
    k = valid + queued
    region = max(0.05, math.log(k) * (0.7 - 0.35 * p) + 0.3 * zero + noise(rng, 0.1))
    lo, hi = min(0.0, rng.uniform(-20, -8)) if zero else rng.uniform(-20, -8), rng.uniform(20, 45)
    logits = (lo, hi, rng.uniform(0, 6), rng.uniform(7, 13))
    return Micro(
        max(0.1, 0.66 - 0.3 * p + noise(rng, 0.05)), region, valid, zero, tuple(bf16(v) for v in logits)
    )


def gn(level: float, decay: float, floor: float, spread: float = 0.1):
    return lambda rng, step: (level * math.exp(-step / decay) + floor) * rng.uniform(1 - spread, 1 + spread)


def build(spec: Spec, seed: int, head: list[str], tail_ok: bool = True, runtime: float = 3600.0) -> list[str]:
    run = ForkRun(spec, seed)
    body = run.run()
    end = run.train_end(runtime) + (
        fl.end_banner(True, "2025-10-20 16:26:05", "2025-10-20 19:27:09") if tail_ok else []
    )
    return head + body + end


def start_lines(total: int, interval: int | None) -> list[str]:
    diag = [f"[RUNTIME DIAG] Enabled. Interval={interval}"] if interval else []
    return [*diag, "\r" + tqdm_bar(0, total, None) + fl.user_warnings()[0], *fl.user_warnings()[1:]]


def vad_oom_restart_above_chance_collapse() -> bytes:
    spec = Spec(
        4,
        8,
        100,
        above_chance_collapse,
        gn(6800, 40, 850),
        "legacy",
        5,
        1.0,
        diag_every=8,
        bank_at=50,
        sec_per_it=17.0,
        start=19,
    )
    first = ["nohup: ignoring input", *fl.launcher_header("formal", 4, 8, "2025-10-19 15:12:04")]
    first += start_lines(100, 8) + OOM_TRACEBACK + ["\r" + tqdm_bar(0, 100, None).replace("00:00", "00:15")]
    first += fl.end_banner(False, "2025-10-19 15:12:04", "2025-10-19 15:12:31")
    second = build(spec, 1, [], runtime=1712.3)
    return text(first).encode() + b"\x00" * NUL_GAP + text(second).encode()


def vad_seed_scale_bank_never_mojibake() -> str:
    spec = Spec(
        2,
        16,
        60,
        seed_at_chance,
        gn(500, 40, 420),
        "legacy",
        5,
        0.1,
        diag_every=16,
        bank_at=None,
        scale=bf16(CLIP_FROM_SCRATCH_SCALE),
        sec_per_it=41.0,
    )
    head = fl.launcher_header("formal", 2, 16, "2025-10-18 14:31:01") + start_lines(60, 16)
    return mojibake(text(build(spec, 2, head)))


def vad_fixed_converges() -> str:
    spec = Spec(
        2,
        16,
        60,
        converging(60),
        gn(10, 25, 4, 0.25),
        "head",
        5,
        0.5,
        diag_every=16,
        bank_at=200,
        sec_per_it=43.0,
    )
    head = fl.launcher_header("memory", 2, 16, "2025-10-21 09:02:11") + start_lines(60, 16)
    return text(build(spec, 3, head))


def vad_ln2_b2_ga8() -> str:
    spec = Spec(
        2,
        8,
        140,
        ln2_flat,
        gn(25, 40, 30, 0.15),
        "loss-only",
        10,
        0.1,
        bank_at=None,
        sec_per_it=25.0,
        stats_every=None,
        epochs=9.34,
    )
    head = fl.launcher_header("formal", 2, 8, "2025-10-12 23:06:22", epochs=10) + start_lines(140, None)
    return text(build(spec, 4, head, runtime=3710.4395))


def vad_rising_undivided_b2_ga16() -> str:
    spec = Spec(
        2,
        16,
        80,
        rising_at_chance,
        lambda rng, step: rng.uniform(1600, 1700),
        "head",
        5,
        0.5,
        bank_at=200,
        sec_per_it=44.0,
    )
    head = fl.launcher_header("memory", 2, 16, "2025-10-20 16:26:05") + start_lines(80, None)
    return text(build(spec, 5, head, runtime=3561.2))


def vad_collapse_head_mojibake() -> str:
    spec = Spec(
        2, 16, 40, collapsed, gn(8, 20, 4, 0.2), "head", 5, 0.5, diag_every=16, bank_at=200, sec_per_it=42.0
    )
    head = fl.launcher_header("memory", 2, 16, "2025-10-21 13:40:52") + start_lines(40, 16)
    return mojibake(text(build(spec, 6, head, runtime=1690.0)))


def vad_zero_norm_regions() -> str:
    spec = Spec(
        2,
        4,
        30,
        zero_norm_learning,
        gn(5, 20, 3, 0.2),
        "legacy",
        5,
        0.5,
        diag_every=1,
        bank_at=40,
        sec_per_it=9.0,
    )
    head = fl.launcher_header("formal", 2, 4, "2025-10-16 10:11:45") + start_lines(30, 1)
    return text(build(spec, 7, head, runtime=271.9))


def vad_bank_activation_crash() -> str:
    spec = Spec(
        2, 16, 240, converging(240), gn(10, 25, 4, 0.25), "head", 10, 0.5, bank_at=None, sec_per_it=43.0
    )
    run = ForkRun(spec, 8)
    for b in range(1, 200):
        run.forward(b)
        if b % 16 == 0:
            run.step_end(b // 16)
    head = fl.launcher_header("memory", 2, 16, "2025-10-26 11:05:40") + start_lines(240, None)
    crash = ["", fl.RULE80, "[Memory Bank] ✅ 已启用 @ training_step 200", *BANK_TRACEBACK]
    crash.append("\r" + tqdm_bar(12, 240, 43.1))
    return text(head + run.out + crash + fl.end_banner(False, "2025-10-26 11:05:40", "2025-10-26 11:14:22"))


def vad_nan_then_killed() -> str:
    """training_live.log: the loss explodes to 9e4 with a NaN gradient norm, then 0.0 with NaN on every
    logging step; the process is killed at 61/140 (`已终止`) and the launcher reports exit code 127."""
    rng = random.Random(9)
    lines = fl.launcher_header("formal", 2, 8, "2025-10-12 22:12:47", epochs=10) + start_lines(140, None)
    for step in range(1, 62):
        for _ in range(8):
            n = rng.choice([2, 2, 2, 3, 4])
            lines += [
                f"[DEBUG] bbox_image_embeds shape: torch.Size([{n}, 512])",
                f"[DEBUG] bbox_text_embeds shape: torch.Size([{n}, 512])",
            ]
        bar = "\r" + tqdm_bar(step, 140, rng.uniform(20, 32))
        if step % 10 == 0:
            loss = 92518.2437 if step == 10 else 0.0
            lr = (
                1e-5 * min(1.0, step / 14)
                if step < 14
                else 1e-5 * 0.5 * (1 + math.cos(math.pi * (step - 14) / 126))
            )
            lines.append(bar + fl.hf_dict(loss, float("nan"), lr, step / 140 * 9.34))
        else:
            lines.append(bar)
    lines[-1] += "已终止"
    lines += ["scripts/train_ucf_full.sh: 行 122: --tf32：未找到命令"]
    return text(lines + fl.end_banner(False, "2025-10-12 22:12:47", "2025-10-12 22:43:36", 127))


def vad_batch_losses_fixed() -> str:
    spec = Spec(2, 16, 60, converging(60), gn(10, 25, 4), "table", 5, 0.5, bank_at=200)
    run = ForkRun(spec, 10)
    run.run()
    rows = [line for line in run.out if not line.startswith("{")]  # the table has no HF dicts
    return text(fl.table_header(2, 16, "2025-10-21 09:02:19") + rows)


WRITERS = {
    "vad_oom_restart_above_chance_collapse.log": vad_oom_restart_above_chance_collapse,
    "vad_seed_scale_bank_never_mojibake.log": vad_seed_scale_bank_never_mojibake,
    "vad_fixed_converges.log": vad_fixed_converges,
    "vad_ln2_b2_ga8.log": vad_ln2_b2_ga8,
    "vad_rising_undivided_b2_ga16.log": vad_rising_undivided_b2_ga16,
    "vad_collapse_head_mojibake.log": vad_collapse_head_mojibake,
    "vad_zero_norm_regions.log": vad_zero_norm_regions,
    "vad_bank_activation_crash.log": vad_bank_activation_crash,
    "vad_nan_then_killed.log": vad_nan_then_killed,
    "vad_batch_losses_fixed.log": vad_batch_losses_fixed,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=CORPUS)
    args = parser.parse_args()
    for name, writer in WRITERS.items():
        path = write(name, writer(), args.out)
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
