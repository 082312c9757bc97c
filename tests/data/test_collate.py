"""The collator's de-duplicated text list and index maps, the region captions' canonical (near-duplicate)
keys, and the host-made frame list of video batches."""

from __future__ import annotations

import torch

from fgclip.data.caption_key import CAPTION_WORDS, canonical_caption, caption_key, caption_words
from fgclip.data.collate import RegionCollator
from fgclip.data.datasets import ImageRegionDataset, VideoRegionDataset
from fgclip.data.sample import Sample
from fgclip.data.tokenizer import encode_texts

from .data_helpers import GRID, assert_batch_contract, texts_of


def trimmed(row: torch.Tensor, eos: int) -> list[int]:
    tokens = row.tolist()
    return tokens[: tokens.index(eos) + 1]


def test_every_use_maps_to_its_own_text_and_repeats_share_a_row(embedded, tokenizer):
    dataset = ImageRegionDataset(embedded.images_json, image_size=32, grid_size=GRID, region_text="short")
    samples = [dataset[i] for i in range(8)]
    samples[1] = Sample(**{**samples[1], "short_caption": samples[0]["short_caption"]})  # a repeat
    samples[2]["region_texts"][0] = samples[0]["hard_texts"][0][3]  # a region caption that is a negative
    batch = RegionCollator(tokenizer, max_boxes_per_sample=4, num_hard_negatives=10)(samples)
    assert_batch_contract(batch, video=False, size=8, slots=4, negatives=10)
    eos = tokenizer.eos_token_id

    def same_tokens(row: torch.Tensor, text: str) -> bool:
        return trimmed(row, eos) == trimmed(encode_texts(tokenizer, [text], 77)[0], eos)

    uses = []  # (index into text_input_ids, the string it stands for)
    for b, s in enumerate(samples):
        uses.append((batch["short_text_index"][b], s["short_caption"]))
        for r, caption in enumerate(s["region_texts"]):
            uses.append((batch["region_text_index"][b, r], caption))
            if batch["hard_mask"][b, r]:
                group = s["hard_texts"][r][:11]
                uses += list(zip(batch["hard_text_index"][b, r], group, strict=True))
    for index, text in uses:
        assert same_tokens(batch["text_input_ids"][index], text), text
    distinct = {text for _, text in uses}
    assert batch["text_input_ids"].shape[0] == len(distinct) < len(uses)  # one row per distinct text
    assert batch["short_text_index"][0] == batch["short_text_index"][1]
    assert batch["region_text_index"][2, 0] == batch["hard_text_index"][0, 0, 3]
    longest = max(len(trimmed(encode_texts(tokenizer, [t], 77)[0], eos)) for t in distinct)
    assert batch["text_input_ids"].shape[1] == longest  # padded to the batch's longest text, not 77


def test_texts_the_tokenizer_maps_alike_share_a_row(embedded, tokenizer):
    dataset = ImageRegionDataset(embedded.images_json, image_size=32, grid_size=GRID)
    a = Sample(**{**dataset[0], "short_caption": "a Red  circle"})  # CLIP lower-cases, joins spaces
    b = Sample(**{**dataset[1], "short_caption": "A red circle"})
    batch = RegionCollator(tokenizer, max_boxes_per_sample=4)([a, b])
    assert batch["short_text_index"][0] == batch["short_text_index"][1]
    assert torch.equal(texts_of(batch, "short_text_index")[0], texts_of(batch, "short_text_index")[1])


def test_video_batches_list_the_decoded_frames(embedded, tokenizer):
    dataset = VideoRegionDataset(embedded.videos_json, image_size=32, num_frames=20, grid_size=GRID)
    batch = RegionCollator(tokenizer, max_boxes_per_sample=3)([dataset[0], dataset[1]])
    assert_batch_contract(batch, video=True, size=2, slots=3, frames=20)
    real = batch["frame_mask"].sum(dim=1).tolist()  # at most 16 decoded frames in 20 slots
    assert max(real) <= 16
    assert batch["frame_rows"].tolist() == [b * 20 + t for b in range(2) for t in range(real[b])]
    assert (batch["region_text_index"][~batch["box_mask"]] == 0).all()  # padding slots point at row 0


NEAR_DUPLICATES = [  # one caption with wording noise: stop words, plural, -ing, case, punctuation, spaces
    "a person walking",
    "A person is walking.",
    "the persons,  walking",
    "people walking!",
    "a person's walking",
]
DIFFERENT = ["a person running", "a person walking a dog", "a dog walking", "walking", "a car"]


def test_canonical_keys_fold_wording_noise_and_keep_meaning():
    keys = {caption_key(text) for text in NEAR_DUPLICATES}
    assert len(keys) == 1, [canonical_caption(t) for t in NEAR_DUPLICATES]
    others = {caption_key(text) for text in DIFFERENT}
    assert len(others) == len(DIFFERENT) and not keys & others
    assert canonical_caption("a dog chasing a cat") != canonical_caption("a cat chasing a dog")  # order kept
    assert canonical_caption("Boxes") == canonical_caption("box") == "box"
    assert canonical_caption("a red circle moving left") == canonical_caption("red circles move left")
    assert caption_key("...") != caption_key("the")  # nothing left: the text itself, not one shared key
    assert caption_key("a person walking") == 5393590222777015227  # stable across processes and runs


def test_collator_gives_each_region_its_canonical_key(embedded, tokenizer):
    dataset = ImageRegionDataset(embedded.images_json, image_size=32, grid_size=GRID, region_text="short")
    samples = [dataset[i] for i in range(4)]
    samples[0]["region_texts"][0], samples[1]["region_texts"][1] = NEAR_DUPLICATES[0], NEAR_DUPLICATES[1]
    samples[2]["region_texts"][0] = DIFFERENT[0]
    batch = RegionCollator(tokenizer, max_boxes_per_sample=4)(samples)
    assert_batch_contract(batch, video=False, size=4, slots=4, negatives=10)
    keys = batch["region_caption_key"]
    assert keys.dtype == torch.long and keys.shape == (4, 4)
    for b, s in enumerate(samples):
        assert keys[b, : len(s["region_texts"])].tolist() == [caption_key(t) for t in s["region_texts"]]
        assert (keys[b, len(s["region_texts"]) :] == 0).all()  # padding slots
    assert keys[0, 0] == keys[1, 1] != keys[2, 0]
    # two different strings, two token rows: the exact keys differ, the canonical keys agree
    assert batch["region_text_index"][0, 0] != batch["region_text_index"][1, 1]
    again = RegionCollator(tokenizer, max_boxes_per_sample=4)(samples[1:])  # another batch, same keys
    assert torch.equal(again["region_caption_key"], keys[1:])


def test_caption_words_support_the_containment_test(embedded, tokenizer):
    def words(text: str) -> set[int]:
        row = caption_words(text)
        n = len(set(row) - {0})
        assert len(row) == CAPTION_WORDS and all(row[:n]) and not any(row[n:])  # hashes first, then 0
        return set(row) - {0}

    assert words("red circle") < words("a large red circle in the top left")  # fewer, all inside
    assert words("A person walking.") < words("a person is walking on the street")
    assert not words("red square") <= words("a large red circle in the top left")
    assert words("a dog chasing a cat") == words("a cat chasing a dog")  # a set: order is not kept here
    assert len(words("the")) == 1 and not words("the") <= words("the red circle")  # nothing left: its own
    many = " ".join(f"word{i}" for i in range(20))  # more than CAPTION_WORDS words: contained in nothing
    assert not words(many) <= words(many + " more") and words(many) == words(many + " ")
    dataset = ImageRegionDataset(embedded.images_json, image_size=32, grid_size=GRID, region_text="long")
    samples = [dataset[i] for i in range(3)]
    batch = RegionCollator(tokenizer, max_boxes_per_sample=4)(samples)
    rows = batch["region_caption_words"]
    longest = max(len(set(caption_words(t)) - {0}) for s in samples for t in s["region_texts"])
    assert rows.shape == (3, 4, longest) and rows.dtype == torch.long  # trimmed to the longest row
    for b, s in enumerate(samples):
        for r, text in enumerate(s["region_texts"]):
            assert rows[b, r].tolist() == list(caption_words(text))[:longest]
        assert (rows[b, len(s["region_texts"]) :] == 0).all()
