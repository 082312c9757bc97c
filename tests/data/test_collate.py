"""The collator's de-duplicated text list and index maps, and the host-made frame list of video batches."""

from __future__ import annotations

import torch

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
