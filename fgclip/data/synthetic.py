"""The embedded synthetic data set: seeded, rendered to disk, read back through the real loaders.

Images: 2-4 big shapes (6 colours x 4 shapes, each combination at most once per image) in distinct quadrants
of a grey background; the region caption names colour and shape ("red circle"), the long one adds size and
place; 10 hard negatives per box swap colour and/or shape. Videos (MPEG-4 files, or PNG frame folders):
abnormal clips with moving shapes tracked by keyframe boxes, normal clips (`box_infos == [[]]`) with still
shapes. Both formats are written as a JSON array and as JSON Lines. `defects` plants bad boxes at known counts
and `truth.json` records them, so an audit can be checked exactly.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgclip.data.synthetic_render import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    normalised,
    render,
    write_frame_folder,
    write_video,
)

IMAGE_DEFECTS = (
    "malformed",
    "non_finite",
    "wrong_space",
    "inverted",
    "zero_area",
    "out_of_range",
    "sub_cell",
    "count_mismatch",
    "clipped",
)
VIDEO_DEFECTS = ("no_keyframe", "keyframe_beyond_video")
NUM_NEGATIVES = 10
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
# which region captions a record carries: "short" ("red circle": identical captions are masked, every other
# caption names a different colour or shape, so no negative is a true description: loss floor 0), "long"
# ("a large red circle in the top left": also no false negative, but the text tower must learn size and
# place), "both" (upstream FG-CLIP's records: the dataset draws one at random per step; a short caption then
# truly describes other regions whose long caption differs, a false negative the loss cannot train away)
REGION_CAPTIONS = ("short", "long", "both")


@dataclass(frozen=True)
class EmbeddedData:
    """Paths of a generated set; `truth` holds the counts (records, boxes, planted defects)."""

    root: Path
    images_json: Path
    images_jsonl: Path
    videos_json: Path | None
    videos_jsonl: Path | None
    test_list: Path | None
    truth: dict[str, Any] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every caption and negative: the corpus for `build_tokenizer`."""
        out: list[str] = []
        for path in (self.images_jsonl, self.videos_jsonl):
            if path is None:
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                out.extend(_strings(json.loads(line)))
        return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in ("f_path", "video") for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _a(phrase: str) -> str:
    """The phrase with its indefinite article ("an orange circle")."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _negatives(colour: str, shape: str, taken: set[str], rng: random.Random) -> dict[str, str]:
    swaps = [("colour", f"{c} {shape}") for c in COLOURS if c != colour]
    swaps += [("shape", f"{colour} {s}") for s in SHAPES if s != shape]
    both = [("both", f"{c} {s}") for c in COLOURS for s in SHAPES if c != colour and s != shape]
    rng.shuffle(both)
    picked = [(kind, text) for kind, text in swaps + both if text not in taken][:NUM_NEGATIVES]
    return {f"swap_{kind}_{k}": text for k, (kind, text) in enumerate(picked)}


def _image_record(
    i: int, size: int, rng: random.Random, images_dir: Path, region_captions: str = "both"
) -> dict[str, Any]:
    count = rng.randint(2, 4)
    combos = rng.sample([(c, s) for c in COLOURS for s in SHAPES], count)
    quadrants = rng.sample(range(4), count)
    background = rng.choice(list(BACKGROUNDS))
    shapes, regions = [], []
    for (colour, shape), q in zip(combos, quadrants, strict=True):
        fraction = rng.uniform(0.30, 0.45)
        side = round(fraction * size)
        ox = (q % 2) * size // 2 + rng.randint(0, max(0, size // 2 - side))
        oy = (q // 2) * size // 2 + rng.randint(0, max(0, size // 2 - side))
        box = (ox, oy, min(size - 1, ox + side - 1), min(size - 1, oy + side - 1))
        shapes.append((shape, colour, box))
        regions.append((colour, shape, "large" if fraction >= 0.38 else "small", QUADRANTS[q], box))
    name = f"images/img_{i:05d}.png"
    render((size, size), background, shapes).save(images_dir.parent / name)
    taken = {f"{c} {s}" for c, s, *_ in regions}
    bbox_info = []
    for r, (colour, shape, big, place, box) in enumerate(regions):
        negs = {} if i % 8 == 7 else _negatives(colour, shape, taken, rng)
        if i % 16 == 3 and r == 0:  # fewer negatives than needed: flagged, but not a hard box
            negs = dict(list(negs.items())[:4])
        entry: dict[str, Any] = {"bbox": normalised(box, (size, size))}
        if region_captions != "long":
            entry["short_expr"] = f"{colour} {shape}"
        if region_captions != "short":
            entry["long_expr"] = f"{_a(big)} {colour} {shape} in the {place}"
        if region_captions != "long":  # hard negatives swap the short caption's attributes
            entry["flag_short_neg"] = int(bool(negs))
            entry["short_expr_negs"] = negs
        bbox_info.append(entry)
    things = [_a(f"{c} {s}") for c, s, *_ in regions]
    described = " ".join(f"there is {_a(big)} {c} {s} in the {place}." for c, s, big, place, _ in regions)
    return {
        "f_path": name,
        "caption": f"a picture of {count} shapes on a {background} background. {described}",
        "short_caption": "a photo of " + _join(things),
        "bbox_info": bbox_info,
    }


def _direction(dx: int, dy: int) -> str:
    if abs(dx) >= abs(dy):
        return "right" if dx >= 0 else "left"
    return "down" if dy >= 0 else "up"


def _video(i: int, size: int, frames: int, fps: int, rng: random.Random, container: str, root: Path) -> dict:
    abnormal = i % 2 == 0
    count = 2 if i % 4 == 0 else rng.randint(1, 2)
    combos = rng.sample([(c, s) for c in COLOURS for s in SHAPES], count)
    background = rng.choice(list(BACKGROUNDS))
    side = round(0.3 * size)
    tracks = []  # per shape: pixel box on every frame
    for _ in combos:
        x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
        x1, y1 = (rng.randint(0, size - side), rng.randint(0, size - side)) if abnormal else (x0, y0)
        path = []
        for f in range(frames):
            w = f / max(1, frames - 1)
            x, y = round(x0 + w * (x1 - x0)), round(y0 + w * (y1 - y0))
            path.append((x, y, x + side - 1, y + side - 1))
        tracks.append((path, _direction(x1 - x0, y1 - y0)))
    images = [
        render((size, size), background, [(s, c, t[0][f]) for (c, s), t in zip(combos, tracks, strict=True)])
        for f in range(frames)
    ]
    stem = f"videos/clip_{i:04d}"
    if container == "mp4":
        name = stem + ".mp4"
        write_video(root / name, images, fps)
    else:
        name = stem
        write_frame_folder(root / name, images)
    if not abnormal:
        things = _join([_a(f"{c} {s}") for c, s in combos])
        stamps = [0.25, (frames - 2) / fps] if i % 4 == 1 else None
        return {
            "video": name,
            "global_caption": f"a calm scene with {things} on a {background} background",
            "region_captions": [f"a still scene with {things}"],
            "box_infos": [[]],
            "timestamps": stamps,
        }
    captions, box_infos = [], []
    for r, ((colour, shape), (path, way)) in enumerate(zip(combos, tracks, strict=True)):
        captions.append(f"{_a(colour)} {shape} moving {way}")
        if r == 1 and i % 4 == 0:  # a single keyframe: boxed on the nearest sampled frame only
            keys = [rng.randint(0, frames - 1)]
        else:
            first, last = rng.randint(0, 2), rng.randint(frames - 3, frames - 1)
            keys = sorted({*range(first, last, 3), last})
        box_infos.append([{"frame": f, "bbox": normalised(path[f], (size, size))} for f in keys])
    moving = _join([f"{_a(c)} {s} moves {t[1]}" for (c, s), t in zip(combos, tracks, strict=True)])
    return {
        "video": name,
        "global_caption": f"{moving} on a {background} background",
        "region_captions": captions,
        "box_infos": box_infos,
        "timestamps": None,
    }


def caption_claims(caption: str) -> dict[str, str]:
    """The attributes a generated region caption asserts: 'red circle' -> colour, shape; 'a large red circle
    in the top left' -> size, colour, shape, place."""
    words = caption.split(" ")
    if len(words) == 2:
        return {"colour": words[0], "shape": words[1]}
    size, colour, shape = words[1:4]
    return {"size": size, "colour": colour, "shape": shape, "place": " ".join(words[6:])}


def false_negative_pairs(records: list[dict]) -> int:
    """Pairs (a region's caption, another region's caption) that differ in text although every attribute
    the second asserts is true of the first region: a negative the loss cannot push away (the loss masks
    identical captions only). Counted over all ordered pairs of regions and all their caption options."""
    from collections import Counter

    kinds: Counter = Counter()  # regions grouped by (caption options, true attributes)
    for record in records:
        for entry in record["bbox_info"]:
            texts = tuple(sorted(entry[k] for k in ("short_expr", "long_expr") if entry.get(k)))
            truth: dict[str, str] = {}
            for text in texts:
                truth.update(caption_claims(text))
            kinds[(texts, tuple(sorted(truth.items())))] += 1
    count = 0
    for (texts, truth), n in kinds.items():
        known = dict(truth)
        for (other_texts, _), m in kinds.items():
            pairs = n * (m - 1) if other_texts == texts else n * m  # never a region with itself
            for mine in texts:
                for theirs in other_texts:
                    claims = caption_claims(theirs)
                    if theirs != mine and all(known.get(k) == v for k, v in claims.items()):
                        count += pairs
    return count


def _bad_box(reason: str, box: list[float], size: int) -> Any:
    x1, y1, x2, y2 = box
    return {
        "malformed": [x1, y1, x2],
        "non_finite": [None, y1, x2, y2],
        "wrong_space": [round(v * size, 2) for v in box],
        "inverted": [x2, y1, x1, y2],
        "zero_area": [x1, y1, x1, y2],
        "out_of_range": [x1, y1, 1.25, y2],
        "sub_cell": [x1, y1, x1 + 0.02, y1 + 0.02],
        "clipped": [-0.0005, y1, x2, y2],
    }[reason]


def _plant(
    images: list[dict],
    videos: list[dict],
    defects: dict[str, int],
    size: int,
    frames: int,
    rng: random.Random,
) -> None:
    unknown = set(defects) - set(IMAGE_DEFECTS) - set(VIDEO_DEFECTS)
    if unknown:
        raise ValueError(f"unknown defects {sorted(unknown)}: choose from {IMAGE_DEFECTS + VIDEO_DEFECTS}")
    slots = [(i, j) for i, rec in enumerate(images) for j in range(len(rec["bbox_info"]))]
    wanted = [r for r in IMAGE_DEFECTS for _ in range(defects.get(r, 0))]
    if len(wanted) > len(slots):
        raise ValueError(f"{len(wanted)} image defects but only {len(slots)} boxes: generate more images")
    for reason, (i, j) in zip(wanted, rng.sample(slots, len(wanted)), strict=True):
        entry = images[i]["bbox_info"][j]
        if reason == "count_mismatch":
            entry.pop("short_expr", None), entry.pop("long_expr", None)
        else:
            entry["bbox"] = _bad_box(reason, entry["bbox"], size)
    abnormal = [v for v in videos if any(v["box_infos"][0])]
    for reason in VIDEO_DEFECTS:
        if defects.get(reason) and not abnormal:
            raise ValueError(f"defect {reason!r} needs abnormal videos: generate n_videos >= 1")
        for d in range(defects.get(reason, 0)):
            video = abnormal[d % len(abnormal)]
            if reason == "no_keyframe":
                video["region_captions"].append("an unlabelled shape")
                video["box_infos"].append([])
            else:
                video["box_infos"][0].append({"frame": frames + 10 + d, "bbox": [0.1, 0.1, 0.5, 0.5]})


def _write(records: list[dict], stem: Path) -> tuple[Path, Path]:
    array, lines = stem.with_suffix(".json"), stem.with_suffix(".jsonl")
    array.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return array, lines


def generate_embedded(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_images: int = 256,
    n_videos: int = 8,
    image_size: int = 64,
    video_frames: int = 16,
    video_fps: int = 8,
    video_container: str = "mp4",
    defects: dict[str, int] | None = None,
    test_overlap: int = 0,
    region_captions: str = "both",
) -> EmbeddedData:
    """Render the data set into `out_dir` (created; existing files of the same names are overwritten).

    video_container: "mp4" (PyAV, falls back to "frames" when PyAV cannot write) or "frames" (PNG folders).
    defects: reason -> count, reasons from IMAGE_DEFECTS (planted on image boxes) and VIDEO_DEFECTS.
    test_overlap: write test_list.txt holding that many training image paths (plus unseen ones).
    region_captions: "short", "long" or "both" (see REGION_CAPTIONS above; the embedded preset uses "short").
    """
    if region_captions not in REGION_CAPTIONS:
        raise ValueError(f"region_captions={region_captions!r}: one of {REGION_CAPTIONS}")
    if video_container not in ("mp4", "frames"):
        raise ValueError(f"video_container={video_container!r}: 'mp4' or 'frames'")
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    images = [_image_record(i, image_size, rng, root / "images", region_captions) for i in range(n_images)]
    videos: list[dict] = []
    if n_videos:
        (root / "videos").mkdir(exist_ok=True)
        if video_container == "mp4":
            try:
                import av  # noqa: F401
            except ImportError:
                video_container = "frames"
        for i in range(n_videos):
            videos.append(_video(i, image_size, video_frames, video_fps, rng, video_container, root))
    _plant(images, videos, dict(defects or {}), image_size, video_frames, rng)
    images_json, images_jsonl = _write(images, root / "images")
    videos_json = videos_jsonl = None
    if videos:
        videos_json, videos_jsonl = _write(videos, root / "videos")
    test_list = None
    if test_overlap:
        names = [rec["f_path"] for rec in rng.sample(images, test_overlap)] + ["test/unseen_0000.png"]
        test_list = root / "test_list.txt"
        test_list.write_text("\n".join(names) + "\n", encoding="utf-8")
    truth = {
        "seed": seed,
        "images": n_images,
        "videos": n_videos,
        "abnormal_videos": sum(1 for v in videos if any(v["box_infos"][0])),
        "image_boxes": sum(len(r["bbox_info"]) for r in images),
        "video_boxes": sum(max(1, len(k)) for v in videos for k in v["box_infos"]),
        "video_container": video_container,
        "planted": {k: v for k, v in sorted((defects or {}).items()) if v},
        "test_overlap": test_overlap,
        "region_captions": region_captions,
    }
    (root / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return EmbeddedData(root, images_json, images_jsonl, videos_json, videos_jsonl, test_list, truth)


__all__ = [
    "IMAGE_DEFECTS",
    "REGION_CAPTIONS",
    "VIDEO_DEFECTS",
    "EmbeddedData",
    "caption_claims",
    "false_negative_pairs",
    "generate_embedded",
]
