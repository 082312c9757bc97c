"""The locally learned CLIP tokenizer: CLIP layout, bos/eos, pad = eos, longest padding, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from fgclip.data.tokenizer import (
    BOS,
    EOS,
    build_tokenizer,
    byte_unicode_chars,
    check_tokenizer,
    encode_texts,
    load_tokenizer,
    tokenizer_ids,
)


def test_vocabulary_has_clip_layout(tokenizer, tmp_path):
    tok = build_tokenizer(tmp_path, ["a red circle", "a blue square moving left"] * 3)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    chars = byte_unicode_chars()
    assert len(chars) == len(set(chars)) == 256
    assert [vocab[c] for c in chars] == list(range(256))
    assert [vocab[c + "</w>"] for c in chars] == list(range(256, 512))
    assert vocab[BOS] == len(vocab) - 2 and vocab[EOS] == len(vocab) - 1  # eos is the largest id, as in CLIP
    merges = (tmp_path / "merges.txt").read_text().splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) > 1
    for line in merges[1:]:
        a, b = line.split(" ")
        assert a + b in vocab
    assert len(tok) == len(vocab)
    assert len(tokenizer) <= 2000
    assert tokenizer_ids(tokenizer)["vocab_size"] == len(tokenizer)


def test_specials_and_padding_to_longest(tokenizer):
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos and bos != eos
    ids = encode_texts(tokenizer, ["red circle", "a photo of a red circle and a blue square", ""], 77)
    assert ids.dtype == torch.long
    lengths = [
        len(tokenizer(t)["input_ids"]) for t in ("red circle", "a photo of a red circle and a blue square")
    ]
    assert ids.shape == (3, max(lengths))  # padded to the longest text, not to 77
    assert (ids[:, 0] == bos).all()
    first_eos = (ids == eos).int().argmax(dim=1)
    assert first_eos.tolist() == [lengths[0] - 1, lengths[1] - 1, 1]  # "" is just bos + eos
    assert (ids[0, lengths[0] :] == eos).all()
    assert tokenizer.decode(ids[1], skip_special_tokens=True) == "a photo of a red circle and a blue square"


def test_truncation_keeps_eos_last(tokenizer):
    text = " ".join(["red circle"] * 200)
    ids = encode_texts(tokenizer, [text, "red"], 77)
    assert ids.shape == (2, 77)
    assert ids[0, 0] == tokenizer.bos_token_id and ids[0, -1] == tokenizer.eos_token_id
    assert (ids[0, 1:-1] != tokenizer.eos_token_id).all()
    long_ids = encode_texts(tokenizer, [text], 248)
    assert long_ids.shape == (1, 248) and long_ids[0, -1] == tokenizer.eos_token_id


def test_unseen_words_still_encode(tokenizer):
    ids = encode_texts(tokenizer, ["zebra 123 é!"], 77)
    assert ids[0, 0] == tokenizer.bos_token_id and ids[0, -1] == tokenizer.eos_token_id
    # byte fallback: nothing is lost (CLIP splits digits and punctuation into words of their own)
    assert tokenizer.decode(ids[0], skip_special_tokens=True).replace(" ", "") == "zebra123é!"


def test_round_trip_through_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "CLIPTokenizer"
    texts = ["a large red circle in the top left", "purple diamond"]
    assert torch.equal(encode_texts(loaded, texts, 77), encode_texts(tokenizer, texts, 77))
    assert len(loaded) == len(tokenizer)
    assert load_tokenizer(tmp_path).eos_token_id == tokenizer.eos_token_id


def test_vocab_size_limits(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(tmp_path, ["a b"], vocab_size=100)
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}x" for i in range(600)]
    tok = build_tokenizer(tmp_path / "small", words, vocab_size=600)
    assert len(tok) <= 600


def test_check_tokenizer_rejects_pad_other_than_eos(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    other = AutoTokenizer.from_pretrained(tmp_path, pad_token="!")
    with pytest.raises(ValueError, match="pad_token_id"):
        check_tokenizer(other)
