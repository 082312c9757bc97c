"""Issue 16's GPU figures in one run (one H100/H200, about 8 minutes), saved to JSON after every section.

  a  eager step at 32 images with the full loss (long + short global, 4 regions and 4 x 11 hard texts per
     image, memory bank): this step (indexed batch, one text call) vs upstream's layout (four text calls,
     77/248 padding, `text_path="separate"`); their losses in fp32 and bf16
  b  host syncs per non-logging training step (forward, backward, grad clip, fused AdamW, clamp, bank),
     diagnostics off and on: `torch.cuda.set_sync_debug_mode` and HostSyncCounter's op count
  c  diagnostics overhead at batch 128, bf16, logging every 10 steps: >= 5 alternations off/on of >= 40
     steps in this process; median on/off ratio and its spread
  d  the largest batch (4 regions, 4 x 11 hard negatives, 77-token texts, all distinct) that trains in
     80 GB (`set_per_process_memory_fraction` on a bigger card), without and with gradient checkpointing
  e  UCF-style video step (8 frames, box tracks) from the real DataLoader with PyAV decoding in workers:
     the share of the step spent waiting for data per worker count
  x  (time permitting) the step of (a) with the text tower compiled, dynamic and with CUDA graphs

ViT-B/16-sized towers, random init, bf16 autocast, fp32 weights. Each section records its error and the run
goes on; the JSON is rewritten after each one. `--smoke` runs every section at tiny sizes on the CPU.

    python benchmarks/gpu_suite.py [--out DIR] [--sections abcedx] [--smoke]   # writes DIR/gpu_suite.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

from benchmarks.fg_batches import model_config, step_batch, to_device
from benchmarks.video_data import endless, loader, video_set
from fgclip.modeling import FGCLIPModel
from fgclip.modeling.host_sync import HostSyncCounter
from fgdiag.probes.model_stats import GradNormProbe, ModelStatsProbe, read_scalars

LIMIT_BYTES = 80 * 10**9  # "80 GB": below an 80 GB card's usable memory


class Suite:
    def __init__(self, out: Path, smoke: bool, budget: float) -> None:
        self.smoke, self.budget, self.t0 = smoke, budget, time.perf_counter()
        self.dev = torch.device("cpu" if smoke or not torch.cuda.is_available() else "cuda")
        self.path = out / "gpu_suite.json"
        self.res: dict = {
            "device": torch.cuda.get_device_name(0) if self.dev.type == "cuda" else "cpu (smoke)",
            "torch": torch.__version__,
            "smoke": smoke,
            "sections": {},
            "errors": {},
        }
        self.model: FGCLIPModel | None = None

    # ------------------------------------------------------------------ plumbing
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def save(self) -> None:
        self.res["elapsed_s"] = round(self.elapsed(), 1)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.res, indent=2))
        tmp.replace(self.path)

    def run(self, name: str, fn) -> None:
        print(f"[{self.elapsed():6.1f}s] section {name}", flush=True)
        try:
            self.res["sections"][name] = fn()
        except Exception as exc:  # a failing section must not lose the others
            self.res["errors"][name] = (
                f"{type(exc).__name__}: {exc}"[:800] + "\n" + traceback.format_exc()[-1500:]
            )
            print(self.res["errors"][name], flush=True)
        self.save()

    def sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(self, fn, iters: int, warmup: int) -> float:
        """ms per call."""
        for _ in range(warmup):
            fn()
        self.sync()
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        self.sync()
        return (time.perf_counter() - start) / iters * 1000

    def fg_model(self, **fields) -> FGCLIPModel:
        model = FGCLIPModel(model_config(tiny=self.smoke, **fields)).to(self.dev).train()
        model.optimizer_step_completed()  # warm-up 0: the bank serves negatives from the next step
        return model

    def batch(self, size: int, layout: str = "indexed", **kw) -> dict:
        return to_device(step_batch(size, layout, **kw), self.dev)

    def optimizer(self, model):
        return torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)  # the Trainer's default

    def step(self, model, batch, opt=None, read_loss: bool = False, diag=None):
        """One training step as the Trainer runs it; `diag` = (grad probe, stats probe) on logging steps."""
        with torch.autocast(self.dev.type, dtype=torch.bfloat16):
            out = model(**batch)
        out.loss.backward()
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if diag is not None:
                diag[0].measure(opt)
            opt.step()
            model.clamp_logit_scales()
            model.optimizer_step_completed()
        model.zero_grad(set_to_none=True)
        if read_loss:  # the Trainer reads the loss on logging steps
            float(out.loss.detach())
        if diag is not None:
            read_scalars({**diag[1].latest, **{f"grad/{k}": v for k, v in diag[0].latest.items()}})

    # ------------------------------------------------------------------ sections
    def a_eager(self) -> dict:
        size = 4 if self.smoke else 32
        model = self.model = self.fg_model(memory_bank_size=128)
        fused, upstream = self.batch(size), self.batch(size, "upstream")
        with torch.no_grad():
            model(**fused)  # fills the bank: both layouts then see the same queued negatives
        model.eval()
        out: dict = {"batch": size, "unique_texts": fused["text_input_ids"].shape[0], "text_uses": size * 49}
        for precision in ("fp32", "bf16"):
            tf32 = precision != "fp32"  # TF32 matmuls/convolutions would round fp32 to 10 mantissa bits
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            with torch.no_grad(), torch.autocast(self.dev.type, torch.bfloat16, enabled=precision == "bf16"):
                model.text_path = "fused"
                a = {k: v.item() for k, v in model(**fused).losses.items()}
                model.text_path = "separate"
                b = {k: v.item() for k, v in model(**upstream).losses.items()}
            out[f"losses_{precision}"] = {"fused": a, "upstream_layout": b}
            out[f"max_abs_loss_diff_{precision}"] = max(abs(a[k] - b[k]) for k in a)
        model.train()
        it, wu = (2, 1) if self.smoke else (20, 5)
        model.text_path = "fused"
        out["step_ms_fused"] = self.timed(lambda: self.step(model, fused), it, wu)
        model.text_path = "separate"
        out["step_ms_upstream_layout"] = self.timed(lambda: self.step(model, upstream), it, wu)
        model.text_path = "fused"
        out["speedup"] = out["step_ms_upstream_layout"] / out["step_ms_fused"]
        return out

    def b_syncs(self) -> dict:
        model = self.model or self.fg_model()
        batches = [self.batch(4 if self.smoke else 32, seed=s) for s in range(3)]
        opt, probe = self.optimizer(model), ModelStatsProbe()
        out = {}
        for diag in (False, True):
            if diag:
                probe.attach(model)
            self.step(model, batches[0], opt)  # warm-up (optimizer state, per-device caches)
            self.sync()
            with HostSyncCounter() as ops:
                for b in batches:
                    self.step(model, b, opt)
            key = "diag_on" if diag else "diag_off"
            out[f"dispatch_sync_ops_per_step_{key}"] = len(ops.events) / len(batches)
            out[f"dispatch_sync_ops_{key}"] = {f"{op} @ {o}": n for (op, o), n in ops.by_origin().items()}
            if self.dev.type == "cuda":
                self.sync()
                torch.cuda.set_sync_debug_mode("warn")
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    for b in batches:
                        self.step(model, b, opt)
                    torch.cuda.set_sync_debug_mode("default")
                syncs = [w for w in caught if "synchroniz" in str(w.message)]
                out[f"cuda_syncs_per_step_{key}"] = len(syncs) / len(batches)
                out[f"cuda_sync_sites_{key}"] = sorted({f"{w.filename}:{w.lineno}" for w in syncs})
            probe.detach()
        return out

    def c_overhead(self) -> dict:
        size, steps, rounds = (4, 4, 2) if self.smoke else (128, 40, 5)
        model = self.model or self.fg_model()
        batch, opt = self.batch(size), self.optimizer(model)
        stats, grads = ModelStatsProbe(), GradNormProbe()

        def block(diag: bool) -> float:
            if diag:
                stats.attach(model)
            self.sync()
            start = time.perf_counter()
            for i in range(1, steps + 1):
                logging = i % 10 == 0
                self.step(
                    model, batch, opt, read_loss=logging, diag=(grads, stats) if diag and logging else None
                )
            self.sync()
            stats.detach()
            return (time.perf_counter() - start) / steps * 1000

        off, on = [], []
        for _ in range(3 if not self.smoke else 1):  # warm-up
            self.step(model, batch, opt)
        for _ in range(rounds):
            off.append(block(False))
            on.append(block(True))
        ratios = [b / a for a, b in zip(off, on, strict=True)]
        return {
            "batch": size,
            "steps_per_block": steps,
            "alternations": rounds,
            "ms_off": off,
            "ms_on": on,
            "ratios": ratios,
            "median_ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "median_ms_off": statistics.median(off),
            "median_ms_on": statistics.median(on),
        }

    def d_memory(self) -> dict:
        model = self.model or self.fg_model()
        out: dict = {"limit_bytes": LIMIT_BYTES}
        if self.dev.type == "cuda":
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, LIMIT_BYTES / total))
            out["card_bytes"] = total

        def fits(size: int) -> tuple[bool, float]:
            gc.collect()
            if self.dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            opt = self.optimizer(model)
            try:
                batch = self.batch(size, phrases=None, text_length=77, image_size=224)
                for _ in range(2):  # the second step holds the optimizer state too
                    self.step(model, batch, opt)
                self.sync()
                peak = torch.cuda.max_memory_allocated() / 2**30 if self.dev.type == "cuda" else 0.0
                return True, peak
            except torch.cuda.OutOfMemoryError:
                return False, float("nan")
            finally:
                model.zero_grad(set_to_none=True)
                del opt

        for checkpointing in (False, True):
            if checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            tries: dict[int, float | None] = {}
            good, bad, size, cap = 0, None, 8 if self.smoke else 64, 8 if self.smoke else 2048
            # double until a batch fails, then bisect to a multiple of 8; stop when the time is spent
            while self.elapsed() < self.budget - 30 and (bad is None or bad - good > 8):
                if bad is None and size > cap:
                    break
                ok, peak = fits(size)
                tries[size] = peak if ok else None
                good, bad = (size, bad) if ok else (good, size)
                size = size * 2 if bad is None else (good + bad) // 16 * 8
            key = "with_checkpointing" if checkpointing else "without_checkpointing"
            finished = bad - good <= 8 if bad is not None else size > cap
            out[key] = {
                "largest": good,
                "smallest_failing": bad,
                "peak_gib": tries,
                "search_finished": finished,
            }
            if checkpointing:
                model.gradient_checkpointing_disable()
        if self.dev.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
        return out

    def e_video(self) -> dict:
        self.model = None
        gc.collect()
        model = self.fg_model(temporal_pooling="attention")
        opt = self.optimizer(model)
        size, steps = (2, 3) if self.smoke else (8, 15)
        workers_list = (0, 1) if self.smoke else (0, 2, 4, 8)
        out: dict = {"batch": size, "frames": 8, "steps": steps}
        with tempfile.TemporaryDirectory() as tmp:
            dataset, collator = video_set(Path(tmp), 8 if self.smoke else 64, tiny=self.smoke)
            for workers in workers_list:
                it = endless(loader(dataset, collator, workers, size, pin=self.dev.type == "cuda"))
                for _ in range(2):  # worker start-up and the first steps
                    self.step(model, to_device(next(it), self.dev), opt)
                self.sync()
                wait = compute = 0.0
                for _ in range(steps):
                    tick = time.perf_counter()
                    batch = to_device(next(it), self.dev)
                    tock = time.perf_counter()
                    self.step(model, batch, opt)
                    self.sync()
                    wait, compute = wait + tock - tick, compute + time.perf_counter() - tock
                out[f"workers_{workers}"] = {
                    "step_ms": (wait + compute) / steps * 1000,
                    "wait_ms": wait / steps * 1000,
                    "wait_share": wait / (wait + compute),
                }
                del it
        return out

    def x_compiled(self) -> dict:
        if self.dev.type != "cuda":
            return {"skipped": "CPU smoke run"}
        model = self.model or self.fg_model()
        fused, out = self.batch(32), {}
        original = model.text_model
        for mode, kwargs in (("dynamic", {"dynamic": True}), ("cudagraphs", {"mode": "reduce-overhead"})):
            if self.elapsed() > self.budget - 60:
                out[mode] = "skipped: no time left"
                continue
            start = time.perf_counter()
            model.text_model = torch.compile(original, **kwargs)
            try:
                out[f"step_ms_fused_text_compiled_{mode}"] = self.timed(
                    lambda: self.step(model, fused), 20, 3
                )
                out[f"compile_and_run_s_{mode}"] = time.perf_counter() - start
            finally:
                model.text_model = original
            self.save()
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--sections", default="abcedx", help="letters, run in this order")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the script runs")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds; optional parts stop before it")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    suite = Suite(out, args.smoke, args.budget)
    names = {
        "a": "a_eager",
        "b": "b_syncs",
        "c": "c_overhead",
        "d": "d_memory",
        "e": "e_video",
        "x": "x_compiled",
    }
    for key in args.sections:
        suite.run(names[key], getattr(suite, names[key]))
    print(json.dumps(suite.res, indent=2, default=str)[:6000])
    print(f"written {suite.path} in {suite.elapsed():.0f} s")


if __name__ == "__main__":
    main()
