"""What `read_log` reads from logs no specific parser owns, and from the lines around training: generic metric
lines (name: value, name=value, | columns |, meters, positions, prefixes), header facts with the line they
came from, the loss scaler's skipped steps, a cut trainer_state.json, kill and exit-status crashes, and our
memory-bank line filed under the step it states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from logs_fixtures import mojibake

from fgdiag import events as ev
from fgdiag import read_log

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def write(tmp_path: Path, text: str, name: str = "train.log") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def losses(read) -> list[tuple[int, float]]:
    return read.series(ev.LOSS)


def test_generic_pytorch_tutorial_positions_laid_end_to_end(tmp_path):
    text = "".join(f"[{e}, {n:5d}] loss: {2.3 - 0.01 * e:.3f}\n" for e in (1, 2) for n in (2000, 4000, 6000))
    read = read_log(write(tmp_path, "Files already downloaded and verified\n" + text + "Finished Training\n"))
    assert [s for s, _ in losses(read)] == [2000, 4000, 6000, 8000, 10000, 12000]
    assert losses(read)[3][1] == pytest.approx(2.28) and "generic" in read.formats


def test_generic_word_lm_columns_and_validation_left_out(tmp_path):
    text = (
        "| epoch   1 |   200/ 2983 batches | lr 20.00 | ms/batch 12.00 | loss  7.28 | ppl  1446.01\n"
        "| epoch   1 |   400/ 2983 batches | lr 20.00 | ms/batch 12.12 | loss   nan | ppl      nan\n"
        "| end of epoch   1 | time: 37.39s | valid loss  5.42 | valid ppl   224.96\n"
        "| epoch   2 |   200/ 2983 batches | lr 5.00 | ms/batch 12.00 | loss  6.00 | ppl  403.43\n"
    )
    read = read_log(write(tmp_path, text))
    steps = [s for s, _ in losses(read)]
    assert steps == [200, 400, 3183]  # epoch 2 starts after epoch 1's 2983 batches; the valid loss is no row
    assert read.rows[3183][ev.LEARNING_RATE] == 5.0
    assert [f.code for f in read.findings] == ["FGD701"]  # loss nan on step 400


def test_generic_moco_meters_take_the_value_not_the_running_average(tmp_path):
    text = "".join(
        f"Epoch: [{e}][{n:4d}/5004]\tTime  0.332 ( 0.332)\tLoss {11.09 - n / 1e4:.4e} ({11.0:.4e})\t"
        "Acc@1   0.39 (  0.39)\n"
        for e in (0, 1)
        for n in (0, 100, 200)
    )
    read = read_log(write(tmp_path, text))
    assert [s for s, _ in losses(read)] == [0, 100, 200, 5004, 5104, 5204]
    assert losses(read)[1][1] == pytest.approx(11.08)


def test_generic_key_value_with_a_per_epoch_step_counter(tmp_path):
    text = "".join(
        f"[{e}/10: {n}/1875 ({n * 100 // 1875}%)] epoch={e}.0000 step={n + 1}.0000 dt=0.35 "
        f"batch_loss=0.{e}{n}\n"
        for e in (1, 2)
        for n in (100, 200)
    )
    read = read_log(write(tmp_path, "Starting training: 10 epochs\n" + text))
    assert [s for s, _ in losses(read)] == [100, 200, 1975, 2075]
    text = "".join(f"epoch={e} step={n} loss={0.5 + n / 1000}\n" for e in (1, 2) for n in (10, 20))
    assert [s for s, _ in losses(read_log(write(tmp_path, text)))] == [10, 20, 30, 40]  # restarts laid on


def test_generic_trainer_clone_and_prefixes(tmp_path):
    lines = [
        f"- loss: {2.0 - s / 100:.3f}, learning_rate: 2e-05, global_step: {s}, epoch: 0.1" for s in (10, 20)
    ]
    for prefix in ("", "worker-0: ", "> ", "(pid=2231) "):
        read = read_log(write(tmp_path, "\n".join(prefix + line for line in lines) + "\n"))
        assert losses(read) == [(10, pytest.approx(1.9)), (20, pytest.approx(1.8))], prefix


def test_generic_lines_stay_out_of_a_trainer_log(tmp_path):
    text = (
        "{'loss': 2.0, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.1}\n"
        "eval step 3: loss: 9.5, accuracy: 0.1\n"  # a stray key: value line with a loss
        "{'loss': 1.8, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.2}\n"
    )
    read = read_log(write(tmp_path, text))
    assert [v for _, v in losses(read)] == [2.0, 1.8] and "generic" not in read.formats


def test_header_facts_with_the_line_they_came_from(tmp_path):
    head = "[INFO|trainer.py:2128] 2024-05-12 10:31:05,991 >>   "
    trainer = (
        f"{head}Instantaneous batch size per device = 32\n"
        f"{head}Total train batch size (w. parallel, distributed & accumulation) = 256\n"
        f"{head}Gradient Accumulation steps = 4\n"
        f"{head}Total optimization steps = 1,170\n"
        "{'loss': 2.0, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.1}\n"
    )
    info = read_log(write(tmp_path, trainer)).run_info
    assert (info["per_device_train_batch_size"], info["total_train_batch_size"]) == (32, 256)
    assert (info["gradient_accumulation_steps"], info["planned_steps"]) == (4, 1170)
    assert info["facts_from"]["per_device_train_batch_size"] == (
        "log line 1: 'Instantaneous batch size per device = 32'"
    )
    fork = "  - 批次大小: 2\n  - 梯度累积: 16\n  - 有效批次: 32\n"
    fork += "[LOSS] Total: 1.0 | Global: 0.7 | Region: 0.7 | HardNeg: 0.0\n"
    for text in (fork, mojibake(fork)):  # also double-encoded, where 小 loses a byte
        info = read_log(write(tmp_path, text)).run_info
        assert (info["per_device_train_batch_size"], info["gradient_accumulation_steps"]) == (2, 16)
        assert info["total_train_batch_size"] == 32
    cli = "+ python train.py --per_device_train_batch_size 128 --max_grad_norm 0.5 --nproc_per_node 8\n"
    info = read_log(write(tmp_path, cli + "{'loss': 1.0}\n")).run_info
    assert (info["per_device_train_batch_size"], info["max_grad_norm"], info["world_size"]) == (128, 0.5, 8)


def test_loss_scaler_skipped_steps_deepspeed_and_counted(tmp_path):
    over = (
        "[2024-05-12 10:31:00,693] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] OVERFLOW! Rank 0 "
        "Skipping step. Attempted loss scale: {a}, reducing to {b}\n"
    )
    text = (
        over.format(a=65536, b=32768)
        + over.format(a=32768, b=16384)
        + "[2024-05-12 10:31:09,151] [INFO] [logging.py:96:log_dist] [Rank 0] step=10, skipped=2, "
        "lr=[1e-05]\n"
        "{'loss': 2.41, 'grad_norm': 0.98, 'learning_rate': 1e-05, 'epoch': 0.02}\n"
    )
    read = read_log(write(tmp_path, text))
    assert read.rows[10][ev.SKIPPED_STEPS] == 2 and read.rows[10][ev.LOSS] == 2.41  # the dict line is step 10
    apex = "".join(
        f"Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to {2**k}\n{{'loss': 1.0}}\n"
        for k in (15, 14)
    )
    read = read_log(write(tmp_path, apex))
    assert [v for _, v in read.series(ev.SKIPPED_STEPS)] == [1, 2]  # counted where they happened
    assert read.series(ev.LOSS_SCALE)[-1][1] == 2**14


def test_cut_trainer_state_read_up_to_the_cut(tmp_path):
    whole = {
        "global_step": 30,
        "log_history": [{"epoch": s / 100, "loss": 1.3863, "step": s} for s in (10, 20, 30)],
        "logging_steps": 10,
        "max_steps": 100,
    }
    text = json.dumps(whole, indent=2)
    cut = text[: text.index('"step": 30')]  # mid-way through the third entry
    read = read_log(write(tmp_path, cut, "trainer_state.json"))
    assert read.steps == [10, 20] and "trainer_state" in read.formats
    assert any("cut short" in note for note in read.notes)


@pytest.mark.parametrize(
    "tail",
    [
        "Killed\n",
        " 44%|████▎     | 61/140 [23:56<31:00, 23.54s/it]已终止\n",
        "❌ 训练异常退出 (Exit Code: 127)\n",
        "Segmentation fault (core dumped)\n",
    ],
)
def test_kill_and_exit_status_are_crashes(tmp_path, tail):
    text = "".join(f"{{'loss': {2 - s / 10}, 'grad_norm': 1.0}}\n" for s in range(5)) + tail
    read = read_log(write(tmp_path, text))
    assert [e["kind"] for e in read.events] == [ev.EVENT_CRASH]
    assert [f.code for f in read.findings] == ["FGD702"]
    ok = read_log(write(tmp_path, text.replace(tail, "Process exited with code 0\n")))
    assert ok.events == [] and ok.findings == []


def test_our_bank_line_is_filed_under_the_step_it_states():
    """A real healthy run's training.log: the bank switched on at optimizer step 20 and the line is read at
    logging step 25; with the embedded profile's deadline (step 22) that used to be a false FGD201."""
    read = read_log(CORPUS / "ours_healthy_s0.log", targets="embedded")
    (enabled,) = [e for e in read.events if e["kind"] == ev.EVENT_MB_ENABLED]
    assert enabled["step"] == 20 and "FGD201" not in {f.code for f in read.findings}
    fork = read_log(CORPUS / "vad_fixed_converges.log")  # the fork's N counts forward passes: step read
    (enabled,) = [e for e in fork.events if e["kind"] == ev.EVENT_MB_ENABLED]
    assert enabled["step"] == 13 and "training_step 200" in enabled["message"]
