"""The region loss floor built into the embedded data: label-only simulation of the training batches.

A negative that is a true description of the query cannot be trained away: with the positive it shares
the best possible score, so the query's best loss is ln(number of candidates that are true of it). This
script replays the preset's batches (16 images per forward, identical captions masked as the loss does, a
128-entry FIFO bank that fills from the start and joins after the warm-up) on the labels alone and prints
that floor, for each caption mode of the generator and two idealised readers: one that reads every word
(colour, shape, size, place) and one that reads colour and shape only; and for two maskings: identical
captions only ("exact"), or also near-duplicates and contained captions as the loss masks them by default
("near": equal canonical keys, or one caption's words inside the other's, fgclip/data/caption_key.py).

    python benchmarks/region_floor.py [--forwards 800] [--batch 16] [--bank 128] [--warmup_forwards 40]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
from collections import deque
from pathlib import Path

from fgclip.data.synthetic import caption_claims as claims


def masked_as(masking: str):
    """(candidate caption, query caption) -> whether the loss masks the pair."""
    from fgclip.data.caption_key import caption_key, caption_words

    def near(a: str, b: str) -> bool:
        wa, wb = set(caption_words(a)) - {0}, set(caption_words(b)) - {0}
        return a == b or caption_key(a) == caption_key(b) or wa <= wb or wb <= wa

    return near if masking == "near" else (lambda a, b: a == b)


def true_of(caption: str, region: dict[str, str], reads: tuple[str, ...]) -> bool:
    """Whether a reader that sees only `reads` attributes cannot tell `caption` from a true description."""
    return all(region[k] == v for k, v in claims(caption).items() if k in reads)


def simulate(
    mode: str,
    reads: tuple[str, ...],
    forwards: int,
    batch: int,
    bank: int,
    warmup: int,
    seed: int = 0,
    masking: str = "exact",
) -> dict[str, float]:
    """Mean best-possible region loss without the bank, and with it once active."""
    from fgclip.data.datasets import ImageRegionDataset
    from fgclip.data.synthetic import generate_embedded

    with tempfile.TemporaryDirectory() as tmp:
        data = generate_embedded(Path(tmp), seed=0, n_videos=0, region_captions="both")
        dataset = ImageRegionDataset(data.images_json)
        return _replay(dataset, mode, reads, forwards, batch, bank, warmup, seed, masked_as(masking))


def _replay(
    both,
    mode: str,
    reads: tuple[str, ...],
    forwards: int,
    batch: int,
    bank: int,
    warmup: int,
    seed: int,
    masked=lambda a, b: a == b,
):
    regions = [[{**claims(r.short_expr), **claims(r.long_expr)} for r in item.regions] for item in both.items]
    queue: deque[tuple[dict, str]] = deque(maxlen=bank)
    rng = random.Random(seed)
    order: list[int] = []
    epoch, off, on = 0, [], []
    for step in range(forwards):
        if not order:
            order = list(range(len(regions)))
            rng.shuffle(order)
            epoch += 1
            both.set_epoch(epoch)
        picked, order = order[:batch], order[batch:]
        rows = []
        for index in picked:
            drawn = both[index]["region_texts"] if mode == "both" else None  # the dataset's own draw
            for slot, region in enumerate(regions[index]):
                r = both.items[index].regions[slot]
                text = {"short": r.short_expr, "long": r.long_expr}.get(mode) or drawn[slot]
                rows.append((region, text))
        losses_off, losses_on = [], []
        for region, text in rows:
            # masked captions are no candidates, so only unmasked texts can be false negatives
            i2t = 1 + sum(1 for _, t in rows if not masked(t, text) and true_of(t, region, reads))
            t2i = 1 + sum(1 for g, t in rows if not masked(t, text) and true_of(text, g, reads))
            q_i2t = sum(1 for _, t in queue if not masked(t, text) and true_of(t, region, reads))
            q_t2i = sum(1 for g, t in queue if not masked(t, text) and true_of(text, g, reads))
            losses_off.append((math.log(i2t) + math.log(t2i)) / 2)
            losses_on.append((math.log(i2t + q_i2t) + math.log(t2i + q_t2i)) / 2)
        off.append(sum(losses_off) / len(losses_off))
        if step >= warmup:
            on.append(sum(losses_on) / len(losses_on))
        queue.extend(rows)
    return {
        "no_bank": round(sum(off) / len(off), 3),
        "with_bank": round(sum(on) / len(on), 3) if on else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--forwards", type=int, default=800, help="forward passes (400 steps x GA 2)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--bank", type=int, default=128)
    parser.add_argument("--warmup_forwards", type=int, default=40, help="20 optimizer steps x GA 2")
    parser.add_argument("--masking", nargs="+", choices=["exact", "near"], help="default: both")
    args = parser.parse_args()
    readers = {"every word": ("colour", "shape", "size", "place"), "colour+shape": ("colour", "shape")}
    parser_masks = args.masking or ["exact", "near"]
    for mode in ("both", "short", "long"):
        for reader, reads in readers.items():
            for masking in parser_masks:
                row = simulate(
                    mode, reads, args.forwards, args.batch, args.bank, args.warmup_forwards, masking=masking
                )
                print(json.dumps({"captions": mode, "reader": reader, "masking": masking, **row}), flush=True)


if __name__ == "__main__":
    main()
