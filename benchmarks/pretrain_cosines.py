"""Matched vs unmatched cosines of a pretrained tiny CLIP: the band a fine-tune starts from.

For every image of the embedded data: cosine of the image to its own short caption (matched) and to the
other images' captions that differ in text (unmatched); for every region: cosine of its RoI feature (through
the fine-tune's roi_projection, a copy of visual_projection) to its own caption and to every other distinct
region caption; region top-1 = own caption ranked first among all distinct region captions.

    python benchmarks/pretrain_cosines.py                       # the embedded default's pretrained model
    python benchmarks/pretrain_cosines.py --model DIR           # any saved CLIP folder
    python benchmarks/pretrain_cosines.py --recipe scale=4.6052 region_weight=0 --recipe scale=6.0
                                                                # pretrain variants (same data), then measure
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path


def _stats(values) -> dict[str, float]:
    return {"mean": round(float(values.mean()), 3), "std": round(float(values.std()), 3)}


def measure(model_dir: str, data_path: str, image_root: str, batch_size: int = 64) -> dict:
    """Cosine distributions of `model_dir` loaded as the fine-tune loads it."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    from fgclip.data.module import build_data_module, data_kwargs_from_config
    from fgclip.modeling import FGCLIPModel
    from fgclip.modeling.text import caption_keys

    model = FGCLIPModel.from_pretrained(model_dir, fgclip_overrides={"region_head": "roi_projection"}).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = build_data_module(
        data_path,
        tokenizer=tokenizer,
        image_root=image_root,
        region_text="short",
        **data_kwargs_from_config(model.config),
    )
    loader = DataLoader(data.train_dataset, batch_size=batch_size, collate_fn=data.collator)
    images, captions, cap_ids, regions, region_texts, region_keys = [], [], [], [], [], []
    eos = model.config.text_config.eos_token_id
    with torch.no_grad():
        for batch in loader:
            batch.pop("hard_text_index", None), batch.pop("hard_mask", None)
            out = model(**batch, return_loss=False)
            texts, valid = batch["text_input_ids"], batch["box_mask"]  # unique texts + index maps
            images.append(out.image_embeds)
            captions.append(out.short_text_embeds)
            cap_ids.append(caption_keys(texts[batch["short_text_index"]], eos))
            regions.append(out.region_embeds[valid])
            region_texts.append(out.region_text_embeds[valid])
            region_keys.append(caption_keys(texts[batch["region_text_index"][valid]], eos))
    image, caption, cap_key = torch.cat(images), torch.cat(captions), torch.cat(cap_ids)
    region, region_text, region_key = torch.cat(regions), torch.cat(region_texts), torch.cat(region_keys)
    sim = image @ caption.T  # (I, I)
    differs = cap_key.unsqueeze(0) != cap_key.unsqueeze(1)  # (I, I): unmatched pairs
    distinct, first = torch.unique(region_key, return_inverse=True)
    table = torch.zeros(len(distinct), region_text.shape[1])
    table[first] = region_text  # one embedding per distinct caption (identical texts embed identically)
    rsim = region @ table.T  # (R, C)
    own = torch.nn.functional.one_hot(first, len(distinct)).bool()  # (R, C)
    return {
        "images": int(image.shape[0]),
        "regions": int(region.shape[0]),
        "distinct_region_captions": len(distinct),
        "image_matched": _stats(sim.diagonal()),
        "image_unmatched": _stats(sim[differs]),
        "image_top1": round(float((sim.argmax(dim=1) == torch.arange(len(sim))).float().mean()), 3),
        "region_matched": _stats(rsim[own]),
        "region_unmatched": _stats(rsim[~own]),
        "region_top1": round(float((rsim.argmax(dim=1) == first).float().mean()), 3),
    }


def _recipe(spec: list[str]):
    from fgclip.train.pretrain import PretrainRecipe

    fields = {f.name: f.type for f in dataclasses.fields(PretrainRecipe)}
    values = {}
    for item in spec:
        key, _, raw = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--recipe {item!r}: unknown field; known: {', '.join(fields)}")
        values[key] = int(raw) if fields[key] in ("int", int) else float(raw)
    return PretrainRecipe(**values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="a saved CLIP folder (default: the embedded default)")
    parser.add_argument("--recipe", nargs="*", action="append", default=None, help="field=value ...")
    args = parser.parse_args()
    from fgclip.train.embedded import prepare_embedded
    from fgclip.train.threads import configure_torch_threads

    configure_torch_threads()
    paths = prepare_embedded()
    if not args.recipe:
        model = args.model or paths["model_name_or_path"]
        print(json.dumps({"model": model, **measure(model, paths["data_path"], paths["image_root"])}))
        return
    from fgclip.train.pretrain import pretrain

    for spec in args.recipe:
        recipe = _recipe(spec)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.monotonic()
            out = pretrain(
                Path(paths["init_model"]), Path(tmp) / "clip", paths["data_path"], paths["image_root"], recipe
            )
            seconds = time.monotonic() - start
            row = measure(str(out), paths["data_path"], paths["image_root"])
        print(json.dumps({"recipe": spec, "pretrain_s": round(seconds, 1), **row}), flush=True)


if __name__ == "__main__":
    main()
