"""Corpus logs of transformers' Trainer as users keep them: stdout with tqdm redraws and log dicts, behind
launcher prefixes (`worker-0: ` from the DeepSpeed/pdsh launcher, `[rank1]:` from torchrun, `(pid=123)` from
Ray), quoted in a GitHub issue, a retry after a CUDA OOM, `- loss: x, ...` clones, trainer_state.json (whole,
and cut in the middle of `log_history`).

    python benchmarks/corpus/hf_logs.py [--out tests/corpus]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

from common import CORPUS, tqdm_bar, warmup_linear, write

SITE = "/opt/conda/lib/python3.11/site-packages"
Curve = Callable[[random.Random, int], float]


def text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def running_header(batch: int, ga: int, world: int, steps: int, examples: int) -> list[str]:
    head = "[INFO|trainer.py:2128] 2024-05-12 10:31:05,991 >> "
    return [
        head + "***** Running training *****",
        head + f"  Num examples = {examples:,}",
        head + "  Num Epochs = 3",
        head + f"  Instantaneous batch size per device = {batch}",
        head + f"  Total train batch size (w. parallel, distributed & accumulation) = {batch * ga * world}",
        head + f"  Gradient Accumulation steps = {ga}",
        head + f"  Total optimization steps = {steps:,}",
        head + "  Number of trainable parameters = 151,277,313",
    ]


def hf_record(loss: float, grad: float, lr: float, epoch: float) -> str:
    return (
        f"{{'loss': {round(loss, 4)}, 'grad_norm': {grad!r}, 'learning_rate': {lr!r}, "
        f"'epoch': {round(epoch, 2)}}}"
    )


def trainer_body(
    rng: random.Random, steps: int, logging: int, loss: Curve, grad: Curve, lr: float, epochs: float = 3.0
) -> list[str]:
    """tqdm redraws joined by carriage returns on one physical line until `tqdm.write` prints a log dict."""
    out, line = [], ""
    sec = rng.uniform(0.35, 0.5)
    for s in range(1, steps + 1):
        line += "\r" + tqdm_bar(s, steps, sec * rng.uniform(0.95, 1.05))
        if s % logging == 0:
            rec = hf_record(
                loss(rng, s), grad(rng, s), warmup_linear(s, steps, lr, steps // 20), s / steps * epochs
            )
            out.append(line + "\r" + " " * 60 + "\r" + rec)
            line = ""
    if line:
        out.append(line)
    mean = sum(loss(random.Random(0), s) for s in range(logging, steps + 1, logging)) / (steps // logging)
    out.append(
        f"{{'train_runtime': {steps * sec:.4f}, 'train_samples_per_second': {128 / sec:.3f}, "
        f"'train_steps_per_second': {1 / sec:.3f}, 'train_loss': {mean!r}, 'epoch': {epochs}}}"
    )
    return out


def falling(start: float, end: float, tau: float, sd: float) -> Curve:
    return lambda rng, s: end + (start - end) * math.exp(-s / tau) + rng.gauss(0, sd)


def grads(lo: float, hi: float) -> Curve:
    return lambda rng, s: round(rng.uniform(lo, hi), 4) + rng.random() * 1e-5


def hf_trainer_healthy_tqdm() -> str:
    rng = random.Random(31)
    body = trainer_body(rng, 1170, 10, falling(0.95, 0.33, 300, 0.02), grads(1.2, 5.5), 5e-5)
    return text(running_header(32, 4, 1, 1170, 50000) + body)


OOM_FRAMES = [
    "Traceback (most recent call last):",
    '  File "/home/user/clip-finetune/train.py", line 212, in <module>',
    "    main()",
    '  File "/home/user/clip-finetune/train.py", line 205, in main',
    "    trainer.train()",
    f'  File "{SITE}/transformers/trainer.py", line 1938, in train',
    "    return inner_training_loop(",
    f'  File "{SITE}/transformers/trainer.py", line 2279, in _inner_training_loop',
    "    tr_loss_step = self.training_step(model, inputs)",
    f'  File "{SITE}/transformers/models/clip/modeling_clip.py", line 357, in forward',
    "    attn_weights = nn.functional.softmax(attn_weights, dim=-1)",
]


def oom_line(gib: float) -> str:
    return (
        f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {gib:.2f} GiB. GPU 0 has a total "
        "capacity of 39.39 GiB of which 1.12 GiB is free. Including non-PyTorch memory, this process has "
        "38.26 GiB memory in use. Of the allocated memory 36.71 GiB is allocated by PyTorch, and 1.02 GiB is "
        "reserved by PyTorch but unallocated."
    )


def hf_oom_restart_healthy() -> str:
    """A retry loop over batch sizes (`for bs in 128 64; do python train.py ... && break; done`): the first
    attempt dies of CUDA OOM at step 0, the second trains to the end."""
    rng = random.Random(32)
    first = ["+ python train.py --per_device_train_batch_size 128 --gradient_accumulation_steps 1"]
    first += [
        *running_header(128, 1, 1, 390, 50000),
        "\r" + tqdm_bar(0, 390, None),
        *OOM_FRAMES,
        oom_line(4.0),
    ]
    second = ["+ python train.py --per_device_train_batch_size 64 --gradient_accumulation_steps 2"]
    second += running_header(64, 2, 1, 390, 50000)
    second += trainer_body(rng, 390, 10, falling(1.1, 0.42, 120, 0.02), grads(0.9, 4.0), 3e-5)
    return text(first + second)


def hf_worker_prefix_nan() -> str:
    """Two nodes through the DeepSpeed launcher (pdsh prefixes `worker-N: `), bf16: the loss turns NaN at
    step 230; the Trainer filters NaN losses out of what it logs (0.0) but grad_norm shows nan."""
    rng = random.Random(33)
    lines = [
        "worker-0: [2024-05-12 10:30:41,113] [INFO] [launch.py:146:main] WORLD INFO DICT: "
        "{'worker-0': [0, 1, 2, 3], 'worker-1': [0, 1, 2, 3]}",
        "worker-1: [2024-05-12 10:30:41,120] [INFO] [launch.py:146:main] WORLD INFO DICT: "
        "{'worker-0': [0, 1, 2, 3], 'worker-1': [0, 1, 2, 3]}",
    ]
    lines += ["worker-0: " + x for x in running_header(16, 2, 8, 600, 153600)]
    for s in range(10, 601, 10):
        lr = warmup_linear(s, 600, 2e-5, 30)
        if s < 230:
            rec = hf_record(
                2.6 * math.exp(-s / 400) + 0.9 + rng.gauss(0, 0.02), rng.uniform(0.8, 2.2), lr, s / 200
            )
        elif s == 230:
            rec = hf_record(1.9112, float("nan"), lr, s / 200)
        else:
            rec = hf_record(0.0, float("nan"), lr, s / 200)
        lines.append(f"worker-0: {rec}")
        if s % 100 == 0:
            lines.append(
                f"worker-1: [2024-05-12 10:{31 + s // 50:02d}:07,118] [INFO] [logging.py:96:log_dist] "
                f"[Rank 4] step={s}, skipped=0, lr=[{lr:.6g}], mom=[(0.9, 0.999)]"
            )
    return text(lines)


def hf_rank_prefix_oom_end() -> str:
    """torchrun, two GPUs: rank 0's Trainer output behind `[rank0]:`, then rank 1 dies of CUDA OOM at step
    318 (behind `[rank1]:`) and the elastic agent reports the failure: the log ends in the crash."""
    rng = random.Random(34)
    lines = ["[rank0]: " + x for x in running_header(32, 1, 2, 1000, 64000)]
    for s in range(10, 311, 10):
        lr = warmup_linear(s, 1000, 5e-5, 50)
        rec = hf_record(
            0.4 + 1.9 * math.exp(-s / 150) + rng.gauss(0, 0.02), rng.uniform(1.0, 3.0), lr, s / 1000 * 3
        )
        lines.append("[rank0]: " + rec)
    tb = [*OOM_FRAMES, oom_line(1.53)]
    lines += ["[rank1]: " + x for x in tb]
    lines += [
        "W0512 11:02:17.403000 140231 torch/distributed/elastic/multiprocessing/api.py:897] Sending process "
        "88121 closing signal SIGTERM",
        "E0512 11:02:18.120000 140231 torch/distributed/elastic/multiprocessing/api.py:869] failed "
        "(exitcode: 1) local_rank: 1 (pid: 88122) of binary: /opt/conda/bin/python3.11",
        "Traceback (most recent call last):",
        '  File "/opt/conda/bin/torchrun", line 8, in <module>',
        "    sys.exit(main())",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
        "============================================================",
        "train.py FAILED",
        "------------------------------------------------------------",
        "Root Cause (first observed failure):",
        "[0]:",
        "  time      : 2024-05-12_11:02:17",
        "  host      : gpu-node-3",
        "  rank      : 1 (local_rank: 1)",
        "  exitcode  : 1 (pid: 88122)",
        "  error_file: <N/A>",
        "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html",
        "============================================================",
    ]
    return text(lines)


def ray_pid_prefix_healthy() -> str:
    """Ray Train (1.x) workers: every worker line behind `(pid=N)`, the driver's status lines bare."""
    rng = random.Random(35)
    lines = [
        "== Status ==",
        "Current time: 2024-05-12 10:31:05 (running for 00:00:12.41)",
        "Resources requested: 4.0/16 CPUs, 1.0/1 GPUs",
    ]
    lines += ["(pid=2231) " + x for x in running_header(64, 1, 1, 800, 51200)]
    for s in range(20, 801, 20):
        lr = warmup_linear(s, 800, 4e-5, 40)
        lines.append(
            "(pid=2231) "
            + hf_record(
                0.3 + 2.1 * math.exp(-s / 200) + rng.gauss(0, 0.02), rng.uniform(0.7, 2.4), lr, s / 800 * 3
            )
        )
        if s % 200 == 0:
            lines.append(
                f"Current time: 2024-05-12 10:{31 + s // 40:02d}:05 (running for 00:{s // 40:02d}:12.41)"
            )
    return text(lines)


def md_quote_hf_rising() -> str:
    """A GitHub issue body: the user's Trainer log pasted inside a quote, loss rising from 0.68 to ~2.9."""
    rng = random.Random(36)
    recs = []
    for s in range(25, 1001, 25):
        lr = warmup_linear(s, 1000, 1e-4, 50)
        recs.append(
            hf_record(
                0.68 + 2.2 * (s / 1000) ** 1.3 + rng.gauss(0, 0.04), rng.uniform(3, 9), lr, s / 1000 * 2
            )
        )
    body = [
        "### Loss goes up when fine-tuning with a larger learning rate",
        "",
        "> I am fine-tuning `openai/clip-vit-base-patch32` with the Trainer (lr 1e-4, bf16) "
        "and the loss keeps",
        "> going up instead of down:",
        ">",
        "> ```",
        *["> " + r for r in recs],
        "> ```",
        "",
        "Is this expected? Lowering the lr to 1e-5 fixes it.",
    ]
    return text(body)


def kv_clone(flat: bool) -> str:
    """A Trainer clone printing `- loss: x, learning_rate: y, global_step: n, epoch: e`."""
    rng = random.Random(37 if flat else 38)
    out = ["Training started", "  model: llama-3-8b-lora", "  per_device_train_batch_size: 4"]
    for step in range(10, 601, 10):
        loss = (
            1.912 + rng.gauss(0, 0.006) if flat else 0.48 + 1.95 * math.exp(-step / 120) + rng.gauss(0, 0.02)
        )
        lr = warmup_linear(step, 600, 2e-5, 30)
        out.append(
            f"- loss: {loss:.3f}, learning_rate: {lr:.3g}, global_step: {step}, epoch: {step / 500:.1f}"
        )
    return text([*out, "Training finished"])


def trainer_state(losses: list[tuple[int, float, float, float]], batch: int, max_steps: int) -> str:
    history = [
        {"epoch": round(s / max_steps * 3, 4), "grad_norm": g, "learning_rate": lr, "loss": loss, "step": s}
        for s, loss, g, lr in losses
    ]
    state = {
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": history[-1]["epoch"],
        "eval_steps": 500,
        "global_step": losses[-1][0],
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": history,
        "logging_steps": 10,
        "max_steps": max_steps,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 3,
        "save_steps": 500,
        "total_flos": 1.51e15,
        "train_batch_size": batch,
        "trial_name": None,
        "trial_params": None,
    }
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def hf_trainer_state_truncated_ln4() -> str:
    """A contrastive fine-tune with 4 candidates per query whose loss sits at ln 4 = 1.3863 for 600 steps;
    the file was cut while being written (disk full), mid-way through log_history."""
    rng = random.Random(39)
    rows = [
        (
            s,
            round(math.log(4) + rng.gauss(0, 0.0008), 4),
            rng.uniform(0.01, 0.04),
            warmup_linear(s, 1500, 5e-5, 75),
        )
        for s in range(10, 1001, 10)
    ]
    full = trainer_state(rows, 4, 1500)
    after = full.index('"step": 640')
    cut = full.index('"grad_norm": ', after) + len('"grad_norm": 0.01')  # inside the next entry's first value
    return full[:cut]


def hf_trainer_state_healthy() -> str:
    rng = random.Random(40)
    rows = [
        (
            s,
            round(0.42 + 1.7 * math.exp(-s / 250) + rng.gauss(0, 0.01), 4),
            rng.uniform(0.8, 3.0),
            warmup_linear(s, 1500, 5e-5, 75),
        )
        for s in range(10, 1501, 10)
    ]
    return trainer_state(rows, 32, 1500)


WRITERS = {
    "hf_trainer_healthy_tqdm.log": hf_trainer_healthy_tqdm,
    "hf_oom_restart_healthy.log": hf_oom_restart_healthy,
    "hf_worker_prefix_nan.log": hf_worker_prefix_nan,
    "hf_rank_prefix_oom_end.log": hf_rank_prefix_oom_end,
    "ray_pid_prefix_healthy.log": ray_pid_prefix_healthy,
    "md_quote_hf_rising.md": md_quote_hf_rising,
    "kv_clone_flat.log": lambda: kv_clone(True),
    "kv_clone_healthy.log": lambda: kv_clone(False),
    "hf_trainer_state_truncated_ln4.json": hf_trainer_state_truncated_ln4,
    "hf_trainer_state_healthy.json": hf_trainer_state_healthy,
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
