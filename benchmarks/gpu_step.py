"""GPU step figures for the README (run on one CUDA device; ViT-B/16-sized towers, random init, bf16
autocast).

Measures in one run, on the same device:
  - a plain transformers CLIPModel contrastive step (fwd+bwd) at batch 32 and 128;
  - the fgclip step at batch 32 with the full loss (long + short global, 4 regions and 4x11 hard texts per
    image, memory bank), fused/de-duplicated text path vs upstream's four fixed-padded calls (same losses);
  - the text side alone for both layouts, and the time added by the region and hard-negative parts;
  - runtime diagnostics on vs off (probes attached, read every 10 steps) and host syncs on a non-logging step.

    python benchmarks/gpu_step.py --out results.json

Superseded by benchmarks/gpu_suite.py (issue 16's figures); kept so the README's earlier runs can be
repeated. Since issue 16 the fused batch is the collator's indexed layout (benchmarks/fg_batches.py).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from benchmarks.fg_batches import step_batch
from fgclip.config import FGCLIPConfig
from fgclip.modeling import FGCLIPModel
from fgclip.modeling.text_index import from_batch
from fgdiag.probes.model_stats import GradNormProbe, ModelStatsProbe, read_scalars

BOS, EOS, VOCAB = 49406, 49407, 49408
T0 = time.perf_counter()


VIT = dict(
    text_config=dict(eos_token_id=EOS, bos_token_id=BOS, pad_token_id=EOS),
    vision_config=dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=16,
    ),
    projection_dim=512,
)


def vit_b16() -> dict:
    return dict(VIT, logit_scale_init_value=math.log(100))


def texts(n: int, length: int, pad_to: int | None, g: torch.Generator, pool: torch.Tensor | None = None):
    """n token rows with an EOS at ~`length`; drawn from `pool` rows when given (realistic repeats)."""
    if pool is not None:
        rows = pool[torch.randint(0, pool.shape[0], (n,), generator=g)]
    else:
        rows = torch.randint(1, BOS, (n, length), generator=g)
        rows[:, 0] = BOS
        ends = torch.randint(max(2, length // 2), length, (n,), generator=g)
        for i, e in enumerate(ends.tolist()):
            rows[i, e:] = EOS
    if pad_to is not None and rows.shape[1] < pad_to:
        rows = torch.cat([rows, torch.full((rows.shape[0], pad_to - rows.shape[1]), EOS)], dim=1)
    return rows


def fg_batch(b: int, fixed: bool, device, seed: int = 0) -> dict:
    """Upstream's layout padded to 77/248 (`fixed`), or the collator's de-duplicated indexed layout."""
    batch = step_batch(b, "upstream" if fixed else "indexed", seed=seed)
    return {k: v.to(device) for k, v in batch.items()}


DEV = "cuda"


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters * 1000.0


def step_fn(model, batch, opt=None):
    def run():
        with torch.autocast(DEV, dtype=torch.bfloat16):
            out = model(**batch)
        loss = out.loss if hasattr(out, "loss") and out.loss is not None else out[0]
        loss.backward()
        if opt is not None:
            opt.step()
        model.zero_grad(set_to_none=True)
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_step.json")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny towers on the CPU: checks the script runs"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    args = parser.parse_args()
    global DEV
    if args.cpu_smoke:
        DEV = "cpu"
        VIT.update(
            text_config=dict(
                eos_token_id=EOS,
                bos_token_id=BOS,
                pad_token_id=EOS,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
            ),
            vision_config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=224,
                patch_size=32,
            ),
            projection_dim=16,
        )
    device = torch.device(DEV)
    torch.backends.cuda.matmul.allow_tf32 = True
    res: dict = {
        "device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu (smoke)",
        "torch": torch.__version__,
    }
    it, wu = (2, 1) if args.cpu_smoke else (args.iters, args.warmup)

    # plain CLIPModel
    clip = CLIPModel(CLIPConfig(**vit_b16())).to(device)
    for b in (32, 128):
        g = torch.Generator().manual_seed(1)
        batch = {
            "pixel_values": torch.randn(b, 3, 224, 224, generator=g).to(device),
            "input_ids": texts(b, 24, 77, g).to(device),
            "return_loss": True,
        }
        res[f"clipmodel_step_ms_b{b}"] = timed(step_fn(clip, batch), it, wu)
    del clip
    torch.cuda.empty_cache()

    cfg = FGCLIPConfig(
        **vit_b16(), region_head="roi_projection", memory_bank_size=128, memory_bank_warmup_steps=0
    )
    model = FGCLIPModel(cfg).to(device).train()
    model.optimizer_step_completed()
    fused, fixed = fg_batch(32, fixed=False, device=device), fg_batch(32, fixed=True, device=device)

    # identical loss values: same weights, same texts, fused+dynamic vs separate+fixed (bank not yet filled);
    # in fp32 the two layouts are the same computation, under bf16 only rounding differs
    model.eval()
    with torch.no_grad():
        model.text_path = "fused"
        a32 = {k: v.item() for k, v in model(**fused).losses.items()}
        model.text_path = "separate"
        b32 = {k: v.item() for k, v in model(**fixed).losses.items()}
    res["max_abs_loss_diff_fp32"] = max(abs(a32[k] - b32[k]) for k in a32)
    with torch.no_grad(), torch.autocast(DEV, dtype=torch.bfloat16):
        model.text_path = "fused"
        a = {k: v.item() for k, v in model(**fused).losses.items()}
        model.text_path = "separate"
        b_ = {k: v.item() for k, v in model(**fixed).losses.items()}
    model.train()
    res["losses_fused"], res["losses_upstream_layout"] = a, b_
    res["max_abs_loss_diff_bf16"] = max(abs(a[k] - b_[k]) for k in a)
    total = sum(a.values())
    res["loss_share"] = {k: v / total for k, v in a.items()}

    model.text_path = "fused"
    res["fgclip_step_ms_b32_fused"] = timed(step_fn(model, fused), it, wu)
    model.text_path = "separate"
    res["fgclip_step_ms_b32_upstream_layout"] = timed(step_fn(model, fixed), it, wu)
    model.text_path = "fused"
    res["speedup_vs_upstream_layout"] = (
        res["fgclip_step_ms_b32_upstream_layout"] / res["fgclip_step_ms_b32_fused"]
    )
    res["fgclip_samples_per_s_b32"] = 32 / res["fgclip_step_ms_b32_fused"] * 1000
    res["clipmodel_samples_per_s_b32"] = 32 / res["clipmodel_step_ms_b32"] * 1000

    # what each part costs: global only, + regions, + hard negatives
    no_hard = {k: v for k, v in fused.items() if not k.startswith("hard")}
    global_only = {k: v for k, v in no_hard.items() if k not in ("boxes", "box_mask", "region_text_index")}
    res["fgclip_step_ms_b32_global_only"] = timed(step_fn(model, global_only), it, wu)
    res["fgclip_step_ms_b32_global_region"] = timed(step_fn(model, no_hard), it, wu)

    # text side alone (fwd+bwd of the text tower calls)
    def text_side(batch, layout):
        def run():
            model.text_path = layout
            with torch.autocast(DEV, dtype=torch.bfloat16):
                long = model.get_text_features(batch["long_input_ids"], long=True)
                index_keys = ("short_text_index", "region_text_index", "hard_text_index")
                legacy_keys = ("short_input_ids", "region_input_ids", "hard_input_ids")
                rows = from_batch(
                    batch.get("text_input_ids"),
                    {k: batch.get(k) for k in index_keys},
                    {k: batch.get(k) for k in legacy_keys},
                    EOS,
                )
                outs = list(model._encode_short_texts(rows).values())
            (long.float().sum() + sum(o.sum() for o in outs)).backward()
            model.zero_grad(set_to_none=True)

        return run

    res["text_side_ms_fused"] = timed(text_side(fused, "fused"), it, wu)
    res["text_side_ms_upstream_layout"] = timed(text_side(fixed, "separate"), it, wu)
    model.text_path = "fused"
    res["unique_short_texts"] = int(fused["text_input_ids"].shape[0])
    res["all_short_texts"] = 32 + 32 * 4 + 32 * 4 * 11

    # diagnostics on vs off: probes attached, scalars read every 10th step
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    off_ms = timed(step_fn(model, fused, opt), it, wu)
    probe, grads = ModelStatsProbe(), GradNormProbe()
    counter = {"n": 0}

    def with_diag():
        # the callback's placement: grad norms in on_pre_optimizer_step, the one read in on_log (after the
        # optimizer step), both only on logging steps (every 10th here)
        counter["n"] += 1
        logging = counter["n"] % 10 == 0
        with torch.autocast(DEV, dtype=torch.bfloat16):
            out = model(**fused)
        out.loss.backward()
        if logging:
            grads.measure(opt)
        opt.step()
        model.zero_grad(set_to_none=True)
        if logging:
            read_scalars({**probe.latest, **{f"grad/{k}": v for k, v in grads.latest.items()}})

    def without_diag():
        with torch.autocast(DEV, dtype=torch.bfloat16):
            out = model(**fused)
        out.loss.backward()
        opt.step()
        model.zero_grad(set_to_none=True)

    offs, ons = [], []
    for _ in range(3):  # alternate, 40 steps each (4 of them logging steps)
        offs.append(timed(without_diag, 2 * it, wu))
        probe.attach(model)
        ons.append(timed(with_diag, 2 * it, wu))
        probe.detach()
    base, on = sorted(offs)[1], sorted(ons)[1]
    res["diag_off_ms"], res["diag_on_ms"], res["diag_ratio"] = base, on, on / base
    res["diag_off_ms_all"], res["diag_on_ms_all"] = offs, ons
    res["opt_step_ms"] = off_ms

    # host syncs on a non-logging step: count CUDA sync warnings with and without the probe
    def count_syncs(fn):
        if DEV != "cuda":
            return None
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
            torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    res["syncs_per_step_diag_off"] = count_syncs(step_fn(model, fused, opt))
    probe.attach(model)
    res["syncs_per_step_diag_on_nonlogging"] = count_syncs(step_fn(model, fused, opt))
    probe.detach()

    # optional: torch.compile of the text tower (per-call overhead), if it compiles in time
    try:
        if DEV != "cuda" or args.no_compile:
            raise RuntimeError("skipped (CPU smoke run or --no-compile)")
        if time.perf_counter() - T0 > 240:
            raise RuntimeError("skipped: not enough time left in this run")
        start = time.perf_counter()
        compiled = torch.compile(model.text_model, dynamic=True)
        original = model.text_model
        model.text_model = compiled
        res["fgclip_step_ms_b32_fused_compiled_text"] = timed(step_fn(model, fused), it, 3)
        res["compile_seconds"] = time.perf_counter() - start
        model.text_model = original
    except Exception as exc:  # report, do not fail the other figures
        res["compile_error"] = f"{type(exc).__name__}: {exc}"[:500]

    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
