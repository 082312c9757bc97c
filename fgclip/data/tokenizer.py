"""A small CLIP tokenizer learned locally, and batch encoding to the batch contract.

`build_tokenizer` learns BPE merges from the given texts with the `tokenizers` trainer (CLIP's normaliser and
pre-tokeniser, `</w>` word ends) and writes them in CLIP's own layout, so transformers' `CLIPTokenizer` loads
them like any OpenAI vocabulary: vocab.json = the 256 byte-unicode characters, the same with `</w>`, one
entry per learned merge, then `<|startoftext|>` and `<|endoftext|>` (eos is the largest id, as 49407 is in
CLIP); merges.txt starts with `#version: 0.2`. pad = eos; the model pools at the first eos.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
SHORT_TEXT_MAX_LENGTH = 77
DEFAULT_VOCAB_SIZE = 1000


def byte_unicode_chars() -> list[str]:
    """The 256 characters that stand for bytes, in CLIP's vocabulary order (printable ones first)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]  # '!'..'~', '¡'..'¬', '®'..'ÿ'
    chars = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in chars]
    chars.update({b: chr(256 + n) for n, b in enumerate(others)})
    return [chars[b] for b in printable + others]


def learn_merges(texts: Iterable[str], max_merges: int) -> list[tuple[str, str]]:
    """BPE merges learned over `texts` with CLIP's text pipeline, highest priority first."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    reference = CLIPTokenizer().backend_tokenizer  # an empty CLIP tokenizer: its normaliser and pre-tokeniser
    model = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    model.normalizer = reference.normalizer
    model.pre_tokenizer = reference.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=512 + max_merges + 2,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    model.train_from_iterator(list(texts), trainer)
    merges = json.loads(model.to_str())["model"]["merges"]
    pairs = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    return pairs[:max_merges]  # a prefix of a merge list is itself a valid merge list


def write_clip_vocab(out_dir: str | Path, merges: list[tuple[str, str]]) -> int:
    """Write vocab.json and merges.txt in CLIP's layout; returns the vocabulary size."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = byte_unicode_chars()
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars), *(a + b for a, b in merges), BOS, EOS]:
        vocab.setdefault(token, len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(vocab)


def build_tokenizer(
    out_dir: str | Path, corpus_texts: Iterable[str], *, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> Any:
    """Learn a CLIP BPE vocabulary of at most `vocab_size` tokens from `corpus_texts`, save it, return it.

    The saved folder loads with `AutoTokenizer.from_pretrained(out_dir)`; `len(tokenizer)` is the vocabulary
    size to put in the text config (`vocab_size`), with `bos_token_id`/`eos_token_id`/`pad_token_id` from it.
    """
    if vocab_size < 514 + 1:
        raise ValueError(
            f"vocab_size={vocab_size}: needs at least 515 (512 byte tokens, 2 specials, 1 merge)"
        )
    merges = learn_merges(corpus_texts, vocab_size - 514)
    write_clip_vocab(out_dir, merges)
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(out_dir), model_max_length=SHORT_TEXT_MAX_LENGTH)
    tokenizer.save_pretrained(str(out_dir))  # adds tokenizer_config.json (class name) and tokenizer.json
    return tokenizer


def load_tokenizer(path: str | Path) -> Any:
    """A saved tokenizer (ours or any CLIP one); checks the conventions the model relies on."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    check_tokenizer(tokenizer)
    return tokenizer


def check_tokenizer(tokenizer: Any) -> None:
    """bos and eos must exist and pad must equal eos (the text tower pools at the first eos)."""
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"{type(tokenizer).__name__}: needs bos and eos tokens (CLIP's {BOS} / {EOS})")
    if tokenizer.pad_token_id != tokenizer.eos_token_id:
        raise ValueError(
            f"{type(tokenizer).__name__}: pad_token_id={tokenizer.pad_token_id} but eos_token_id="
            f"{tokenizer.eos_token_id}; CLIP pads with eos (pooling reads the first eos)"
        )


def tokenizer_ids(tokenizer: Any) -> dict[str, int]:
    """Sizes and ids to copy into a CLIPTextConfig so that config and tokenizer agree."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def encode_texts(tokenizer: Any, texts: list[str], max_length: int) -> Any:
    """Token ids (n, L) with bos/eos, padded with eos to the longest text, truncated with eos kept last."""
    import torch

    if not texts:
        return torch.zeros((0, 2), dtype=torch.long)
    encoded = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    return encoded["input_ids"].to(torch.long)


__all__ = [
    "BOS",
    "EOS",
    "SHORT_TEXT_MAX_LENGTH",
    "build_tokenizer",
    "byte_unicode_chars",
    "check_tokenizer",
    "encode_texts",
    "learn_merges",
    "load_tokenizer",
    "tokenizer_ids",
    "write_clip_vocab",
]
