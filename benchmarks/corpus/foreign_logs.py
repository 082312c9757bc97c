"""Corpus logs in third-party formats: PyTorch examples (word LM, CIFAR tutorial), MoCo's ProgressMeter,
key=value metric lines, DeepSpeed's loss scaler and step lines, open_clip.

    python benchmarks/corpus/foreign_logs.py [--out tests/corpus]

The line formats are those the programs print (format strings read in pytorch/examples
word_language_model/main.py, the CIFAR-10 tutorial, facebookresearch/moco main_moco.py, DeepSpeed's
loss_scaler/log_dist lines, open_clip_train/train.py); the numbers come from seeded generators.
"""

from __future__ import annotations

import argparse
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

from common import CORPUS, write

RULE89 = "-" * 89
START = datetime(2024, 3, 1, 10, 0, 0)


def text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def wordlm(nan: bool, seed: int) -> str:
    """pytorch/examples word_language_model on wikitext-2 (2983 batches, log interval 200). With `nan`
    the loss is NaN from the first print: validation never improves, so lr is divided by 4 each epoch."""
    rng = random.Random(seed)
    lr, best, out = 20.0, None, []
    epochs = 3 if nan else 6
    for epoch in range(1, epochs + 1):
        for batch in range(200, 2983, 200):
            progress = (epoch - 1) + batch / 2983
            loss = float("nan") if nan else 5.0 + 2.6 * math.exp(-progress * 1.7) + rng.gauss(0, 0.03)
            out.append(
                f"| epoch {epoch:3d} | {batch:5d}/{2983:5d} batches | lr {lr:02.2f} | ms/batch "
                f"{rng.uniform(11.5, 12.6):5.2f} | loss {loss:5.2f} | ppl {math.exp(loss):8.2f}"
            )
        val = float("nan") if nan else 5.05 + 0.9 * math.exp(-epoch * 0.9)
        out += [
            RULE89,
            f"| end of epoch {epoch:3d} | time: {rng.uniform(36, 38):5.2f}s | valid loss {val:5.2f} | "
            f"valid ppl {math.exp(val):8.2f}",
            RULE89,
        ]
        if best is None or val < best:
            best = val
        else:
            lr /= 4.0
    test = float("nan") if nan else best - 0.04
    return text(
        [
            *out,
            "=" * 89,
            f"| End of training | test loss {test:5.2f} | test ppl {math.exp(test):8.2f}",
            "=" * 89,
        ]
    )


def meter(name: str, val: float, avg: float, fmt: str) -> str:
    return f"{name} {val:{fmt}} ({avg:{fmt}})"


def moco(stuck: bool, seed: int) -> str:
    """MoCo's ProgressMeter: tab-separated meters. Stuck: ImageNet, K = 65536, the loss sits at
    ln(65537) = 11.09 (facebookresearch/moco issue 12); healthy: a CIFAR-10 re-implementation, K = 4096,
    loss from ln 4097 down, printed with 4 decimals."""
    rng = random.Random(seed)
    out = []
    if stuck:
        out.append("Use GPU: 0 for training")
        out.append("=> creating model 'resnet50'")
        batches, every, epochs, fmt, chance = 5004, 100, 4, ".4e", math.log(65537)
    else:
        out.append("=> creating model 'resnet18'")
        batches, every, epochs, fmt, chance = 391, 40, 20, ".4f", math.log(4097)
    digits = len(str(batches))
    for epoch in range(epochs):
        total = count = acc_sum = 0.0
        for i in range(0, batches, every):
            progress = epoch + i / batches
            if stuck:
                loss, acc1 = chance + rng.gauss(0, 0.0006), rng.choice([0.0, 0.0, 0.39])
            else:
                loss = chance - 2.6 * (1 - math.exp(-progress / 5)) + rng.gauss(0, 0.05)
                acc1 = max(0.0, min(99.0, 65 * (1 - math.exp(-progress / 4)) + rng.gauss(0, 2)))
            total, count, acc_sum = total + loss, count + 1, acc_sum + acc1
            t = rng.uniform(0.28, 0.36)
            out.append(
                "\t".join(
                    [
                        f"Epoch: [{epoch}][{i:{digits}d}/{batches}]",
                        meter("Time", t, t, "6.3f"),
                        meter("Data", t * 0.1, t * 0.1, "6.3f"),
                        meter("Loss", loss, total / count, fmt),
                        meter("Acc@1", acc1, acc_sum / count, "6.2f"),
                        meter("Acc@5", min(100.0, acc1 * 1.4), min(100.0, acc_sum / count * 1.4), "6.2f"),
                    ]
                )
            )
    return text(out)


def kv_metrics(rising: bool, seed: int) -> str:
    """`[epoch/epochs: batch/batches (pct%)] epoch=... step=... dt=... batch_loss=...` every 100 batches of
    an MNIST classifier (the step counter restarts every epoch)."""
    rng = random.Random(seed)
    out = ["Starting training: 10 epochs, 1875 batches per epoch, lr=0.05"]
    for epoch in range(1, 11):
        for batch in range(100, 1876, 100):
            progress = (epoch - 1) + batch / 1875
            if rising:
                loss = 0.45 + 0.22 * progress + rng.gauss(0, 0.05)
            else:
                loss = 0.04 + 2.2 * math.exp(-progress * 2.2) + abs(rng.gauss(0, 0.02))
            out.append(
                f"[{epoch}/10: {batch}/1875 ({100 * batch // 1875}%)] epoch={epoch:.4f} step={batch + 1:.4f} "
                f"dt={rng.uniform(0.31, 0.39):.2f} batch_loss={loss:.2f}"
            )
        out.append(f"epoch {epoch} done")
    return text(out)


def tutorial(stuck: bool, seed: int) -> str:
    """The PyTorch CIFAR-10 tutorial: `[epoch, batch] loss: x.xxx` every 2000 mini-batches of 4 images.
    Stuck: the loss sits at ln 10 = 2.303 (chance for 10 classes) for 5 epochs."""
    rng = random.Random(seed)
    out = ["Files already downloaded and verified", "Files already downloaded and verified"]
    epochs = 5 if stuck else 2
    for epoch in range(epochs):
        for i in range(2000, 12001, 2000):
            progress = epoch + i / 12500
            loss = (
                2.3026 + rng.gauss(0, 0.0012)
                if stuck
                else 1.25 + 1.0 * math.exp(-progress * 1.6) + rng.gauss(0, 0.01)
            )
            out.append(f"[{epoch + 1}, {i:5d}] loss: {loss:.3f}")
    return text([*out, "Finished Training"])


def ds_time(rng: random.Random, second: float) -> str:
    ms = rng.randint(0, 999)
    m, s = divmod(int(second), 60)
    return f"[2024-05-12 10:{31 + m % 28:02d}:{s:02d},{ms:03d}]"


def deepspeed(overflowing: bool, seed: int) -> str:
    """DeepSpeed fp16 with a dynamic loss scale under the HF Trainer: OVERFLOW lines when a step is skipped,
    `[Rank 0] step=N, skipped=S` every 10 steps, the Trainer's dicts every 10 steps. Healthy: the usual
    six skips while the scale calibrates (65536 -> 1024), then none. Overflowing: ~22 % of the steps, the
    scale pinned at its floor (min_loss_scale 256): the gradients overflow whatever the scale."""
    rng = random.Random(seed)
    scale, skipped, clock, out = 65536, 0, 0.0, []
    out.append("[2024-05-12 10:30:58,101] [INFO] [config.py:996:print]   fp16_enabled ................. True")
    out.append("[2024-05-12 10:30:58,102] [INFO] [config.py:996:print]   loss_scale ................... 0")
    out.append(
        "[2024-05-12 10:30:58,102] [INFO] [config.py:996:print]   dynamic_loss_scale_args ...... "
        "{'init_scale': 65536, 'scale_window': 1000, 'delayed_shift': 2, 'consecutive_hysteresis': False, "
        "'min_scale': 256}"
    )
    for step in range(1, 501):
        clock += 0.9
        calibrating = step <= 6
        overflow = calibrating or (overflowing and rng.random() < 0.22)
        if overflow:
            new = max(256, scale // 2)
            out.append(
                f"{ds_time(rng, clock)} [INFO] [loss_scaler.py:183:update_scale] [deepspeed] OVERFLOW! "
                f"Rank 0 Skipping step. Attempted loss scale: {scale}, reducing to {new}"
            )
            scale, skipped = new, skipped + 1
        if step % 10 == 0:
            lr = 1e-4 * min(1.0, step / 50) * (1 - step / 500 * 0.9)
            out.append(
                f"{ds_time(rng, clock)} [INFO] [logging.py:96:log_dist] [Rank 0] step={step}, "
                f"skipped={skipped}, lr=[{lr:.6g}], mom=[(0.9, 0.999)]"
            )
            out.append(
                f"{ds_time(rng, clock)} [INFO] [timer.py:260:stop] epoch=0/micro_step={step * 4}/global_step="
                f"{step}, RunningAvgSamplesPerSec={rng.uniform(84, 87):.2f}, CurrSamplesPerSec="
                f"{rng.uniform(80, 90):.2f}, MemAllocated=6.31GB, MaxMemAllocated=13.9GB"
            )
            slow = 0.6 if overflowing else 1.0
            loss = 0.9 + 1.6 * math.exp(-step * slow / 120) + rng.gauss(0, 0.03)
            out.append(
                f"{{'loss': {loss:.4f}, 'grad_norm': {rng.uniform(0.8, 2.5):.4f}, "
                f"'learning_rate': {lr:.4g}, 'epoch': {step / 500:.2f}}}"
            )
    return text(out)


def openclip(stuck: bool, seed: int) -> str:
    """open_clip_train: the params dump (batch_size 512, one GPU) then a line every 100 steps; at step 0 the
    contrastive loss is ln 512 = 6.2383 (healthy); stuck: it stays there for three epochs."""
    rng = random.Random(seed)
    head = "2024-03-01,10:00:{:02d} | INFO | "
    out = [
        head.format(1) + "Running with a single process. Device cuda:0.",
        head.format(2) + "Loaded ViT-B-32 model config.",
        head.format(5) + "Params:",
        head.format(5) + "  batch_size: 512",
        head.format(5) + "  epochs: 3",
        head.format(5) + "  lr: 0.0005",
        head.format(5) + "  model: ViT-B-32",
        head.format(5) + "  warmup: 2000",
        head.format(6) + "Start epoch 0",
    ]
    samples, steps = 2905954, 5676
    digits = len(str(samples))
    for epoch in range(3):
        total = count = 0.0
        for i in range(0, steps + 1, 100):
            step = epoch * steps + i
            if stuck:
                loss, scale = math.log(512) + rng.gauss(0, 0.0004), 14.286 - 0.0002 * step / 100
            else:
                loss = 2.2 + (math.log(512) - 2.2) * math.exp(-step / 3000) + rng.gauss(0, 0.04)
                scale = 14.286 + 20 * (1 - math.exp(-step / 6000))
            total, count = total + loss, count + 1
            n = min(samples, (i + 1) * 512) if i else 512
            lr = 0.0005 * min(1.0, step / 2000)
            stamp = (START + timedelta(seconds=8 + step * 0.45)).strftime("%Y-%m-%d,%H:%M:%S")
            out.append(
                f"{stamp} | INFO | Train Epoch: {epoch} [{n:>{digits}}/{samples} ({100 * n / samples:.0f}%)] "
                f"Data (t): {rng.uniform(0.01, 0.2):.3f} Batch (t): {rng.uniform(0.4, 0.5):.3f}, "
                f"{rng.uniform(1050, 1200):#g}/s, {rng.uniform(1050, 1200):#g}/s/gpu LR: {lr:5f} "
                f"Logit Scale: {scale:.3f} Contrastive_loss: {loss:#.5g} ({total / count:#.5g}) "
                f"Loss: {loss:#.5g} ({total / count:#.5g})"
            )
        end = (START + timedelta(seconds=9 + (epoch + 1) * steps * 0.45)).strftime("%Y-%m-%d,%H:%M:%S")
        out.append(f"{end} | INFO | Start epoch {epoch + 1}")
    return text(out)


WRITERS = {
    "wordlm_nan.log": lambda: wordlm(True, 11),
    "wordlm_healthy.log": lambda: wordlm(False, 12),
    "moco_imagenet_stuck_ln65537.log": lambda: moco(True, 13),
    "moco_cifar_healthy.log": lambda: moco(False, 14),
    "kv_metrics_rising.log": lambda: kv_metrics(True, 15),
    "kv_metrics_healthy.log": lambda: kv_metrics(False, 16),
    "cifar_tutorial_healthy.log": lambda: tutorial(False, 17),
    "cifar_tutorial_stuck_ln10.log": lambda: tutorial(True, 18),
    "deepspeed_fp16_overflow_many.log": lambda: deepspeed(True, 19),
    "deepspeed_fp16_healthy.log": lambda: deepspeed(False, 20),
    "openclip_healthy.log": lambda: openclip(False, 21),
    "openclip_stuck_lnk.log": lambda: openclip(True, 22),
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
