"""Near-duplicate caption masking on the embedded data with long region captions: does the bank then help?

The embedded preset fine-tunes the pretrained tiny CLIP (built once by `prepare_embedded`) on the same 256
images, here with region captions "long" ("a large red circle in the top left") or "both" (upstream's
records: short or long drawn at random per step, so a short caption truly describes other regions whose
long caption differs). Arms (same data, seed and steps; `--arms` picks some):
- `no bank`: memory_bank_size 0 (near-duplicate masking as by default);
- `bank exact`: the bank with identical captions masked only (mask_near_duplicates and
  mask_contained_captions false);
- `bank canonical`: identical and canonical-key near-duplicates masked (mask_contained_captions false);
- `bank near`: also captions contained in each other ("red circle" / "a large red circle in the top
  left"): the default;
- `bank near+cos`: also captions whose text embeddings have cosine >= --cosine.
Per run: region loss as FGD604 judges it (mean of the last max(2 logging intervals, 10 % of the step)
steps) at 50/100/200/400, K, the duplicate shares (mean over logging steps), the step the bank joined, and
what the loss cannot show because K differs between arms: region -> caption top-1 on 64 held-out images
(seed 1), against every long caption (192) and every short one (24), at the end of training.

    python benchmarks/near_duplicates.py --captions long both --seeds 0 1 2 [--steps 400] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded_profile import CHECKPOINTS, smoothed

ARMS = {
    "no bank": ["--memory_bank_size", "0"],
    "bank exact": ["--mask_near_duplicates", "false", "--mask_contained_captions", "false"],
    "bank canonical": ["--mask_contained_captions", "false"],
    "bank near": [],
    "bank near+cos": ["--near_duplicate_cosine", "{cosine}"],
}
SHARES = (
    "exact_duplicate_share/region",
    "near_duplicate_share/region",
    "memory_bank/duplicate_share",
    "memory_bank/near_duplicate_share",
    "unmasked_duplicate_share/region",
)


def summarise(out: Path, interval: int) -> dict:
    records = [json.loads(line) for line in (out / "fgdiag" / "events.jsonl").read_text().splitlines()]
    metrics = {r["step"]: r["metrics"] for r in records if r["type"] == "metrics"}
    enabled = [r["step"] for r in records if r["type"] == "event" and r["kind"] == "memory_bank_enabled"]
    row: dict = {"bank_on_at": enabled[0] if enabled else None}
    for step in CHECKPOINTS:
        row[f"loss@{step}"] = round(smoothed(metrics, step, interval), 3)
        row[f"K@{step}"] = round(metrics.get(step, {}).get("candidates/region", math.nan), 1)
    for name in SHARES:
        values = [m[name] for m in metrics.values() if name in m and math.isfinite(m[name])]
        row[name] = round(statistics.fmean(values), 4) if values else None
    return row


def held_out_top1(model_dir: Path, eval_json: Path, image_root: Path) -> dict[str, float]:
    """Region -> caption top-1 against every caption of a kind, on held-out images (no bank, no loss)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer

    from fgclip.data import build_data_module
    from fgclip.data.synthetic import QUADRANTS
    from fgclip.data.synthetic_render import COLOURS, SHAPES
    from fgclip.data.tokenizer import encode_texts
    from fgclip.modeling import FGCLIPModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = FGCLIPModel.from_pretrained(model_dir, fgclip_overrides={"memory_bank_size": 0}).eval()
    vision = model.config.vision_config
    shorts = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    longs = [f"a {z} {t} in the {q}" for z in ("large", "small") for t in shorts for q in QUADRANTS]
    out = {}
    for kind, vocab in (("long", longs), ("short", shorts)):
        module = build_data_module(
            eval_json,
            tokenizer=tokenizer,
            image_root=image_root,
            image_size=vision.image_size,
            grid_size=vision.image_size // vision.patch_size,
            region_text=kind,
        )
        hits = total = 0
        with torch.no_grad():
            table = F.normalize(model.get_text_features(encode_texts(tokenizer, vocab, 77)).float(), dim=-1)
            data = module.train_dataset
            for start in range(0, len(data), 16):
                samples = [data[i] for i in range(start, min(start + 16, len(data)))]
                result = model(**module.collator(samples), return_loss=False)
                best = (result.region_embeds @ table.T).argmax(dim=-1)  # (B, R)
                for b, sample in enumerate(samples):
                    for r, caption in enumerate(sample["region_texts"]):
                        hits += bool(result.region_mask[b, r]) and vocab[int(best[b, r])] == caption
                        total += 1
        out[f"top1 {kind}"] = round(hits / max(total, 1), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--captions", nargs="+", default=["long", "both"], choices=["short", "long", "both"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--cosine", type=float, default=0.99, help="threshold of the 'bank near+cos' arm")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one torch thread each)")
    args = parser.parse_args()

    from fgclip.data.synthetic import generate_embedded
    from fgclip.train.embedded import IMAGE_SIZE, prepare_embedded
    from fgclip.train.presets import EMBEDDED
    from fgdiag import runs as R

    paths = prepare_embedded()
    print(json.dumps({"model": paths["model_name_or_path"], "load1": os.getloadavg()[0]}), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        held_out = generate_embedded(
            tmp / "held-out", seed=1, n_images=64, n_videos=0, image_size=IMAGE_SIZE, region_captions="both"
        )
        plan = []
        for mode in args.captions:
            data = generate_embedded(
                tmp / mode, seed=0, n_videos=0, image_size=IMAGE_SIZE, region_captions=mode
            )
            for seed in args.seeds:
                for arm in args.arms:
                    extra = [a.format(cosine=args.cosine) for a in ARMS[arm]]
                    extra += ["--seed", str(seed), "--max_steps", str(args.steps)]
                    extra += ["--data_path", str(data.images_json), "--image_root", str(data.root)]
                    plan.append((mode, seed, arm, extra))
        env = R.child_env(1)
        for start in range(0, len(plan), args.jobs):
            running = []
            for n, (mode, seed, arm, extra) in enumerate(plan[start : start + args.jobs]):
                out = tmp / f"run{start + n}"
                running.append(
                    (mode, seed, arm, R.start_training(arm, R.train_command(None, out, extra), out, env))
                )
            load = os.getloadavg()[0]
            for mode, seed, arm, run in running:
                result = R.wait_all([run])[arm]
                if result.returncode != 0:
                    raise SystemExit(f"{mode} {arm} seed {seed} failed: {result.log_path}")
                row = {"captions": mode, "arm": arm, "seed": seed, "wall_s": round(result.seconds, 1)}
                row.update(summarise(result.out_dir, int(EMBEDDED["logging_steps"])))
                row.update(held_out_top1(result.out_dir, held_out.images_json, held_out.root))
                row["load1"] = round(max(load, os.getloadavg()[0]), 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(markdown(rows, args.arms))
    return 0


def _cell(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return (
        f"{mean:.{digits}f}"
        if len(values) == 1
        else f"{mean:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def markdown(rows: list[dict], arms: list[str]) -> str:
    """Mean (min-max over seeds) per caption mode and arm."""
    cols = [f"loss@{s}" for s in CHECKPOINTS] + ["K@400", "top1 long", "top1 short"]
    shares = [
        "near_duplicate_share/region",
        "memory_bank/near_duplicate_share",
        "unmasked_duplicate_share/region",
    ]
    head = (
        "| captions | arm | " + " | ".join(cols) + " | near share batch / queue | unmasked share | bank on |"
    )
    lines = [head, "|" + "---|" * (len(cols) + 5)]
    for mode in dict.fromkeys(r["captions"] for r in rows):
        for arm in arms:
            group = [r for r in rows if r["captions"] == mode and r["arm"] == arm]
            if not group:
                continue
            cells = [_cell([r[c] for r in group], 1 if c.startswith("K") else 3) for c in cols]
            near = " / ".join(_cell([r[s] for r in group], 4) for s in shares[:2])
            bank = sorted({r["bank_on_at"] for r in group}, key=str)
            lines.append(
                f"| {mode} | {arm} | "
                + " | ".join(cells)
                + f" | {near} | {_cell([r[shares[2]] for r in group], 4)}"
                f" | {', '.join(str(b) for b in bank)} |"
            )
    lines.append(
        f"median wall per run: {statistics.median(r['wall_s'] for r in rows)} s, "
        f"load1 {max(r['load1'] for r in rows)}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
