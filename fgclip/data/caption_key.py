"""Canonical caption keys: captions that differ only in wording noise get the same key (near-duplicates).

Users' region captions repeat with small changes ("a person walking" / "a person is walking" / "A person,
walking."), and a near-duplicate of the positive's caption among the negatives is a false negative the loss
cannot train away. The collator (on the CPU) turns each region caption into a key with these rules, in order:

1. Unicode NFKC, then case-folded (lower case).
2. Apostrophes (' and the typographic one) are deleted ("person's" -> "persons"); every other character that
   is not a letter or digit becomes a space (punctuation, hyphens, underscores); whitespace runs are one.
3. Stop words are dropped: STOP_WORDS (articles, forms of "to be", a few prepositions and fillers).
4. Each remaining word is folded (`fold_word`): a few irregular plurals (people -> person); the plural
   endings -ies -> y, -sses/-ches/-shes/-xes/-zes -> drop "es", and a final "s" (not after s, u or i);
   then "-ing" (words of 6+ letters) with a doubled final consonant undoubled except l, s, z
   ("running" -> "run", "falling" -> "fall"); then a final silent "e" of words of 4+ letters
   ("moving" -> "mov" <- "move"). Word order is kept: "a dog chasing a cat" and "a cat chasing a dog" differ.
5. The words joined by one space; a caption with no word left keeps its step-1 text (so "..." and "the"
   are not near-duplicates of each other).

The key is the first 8 bytes of BLAKE2b of that string as a signed 64-bit integer: the same on every
process, machine and run (Python's `hash` is salted), so queued entries from earlier steps compare too.
Deterministic, no dependency; deliberately simple: "-ed" forms and synonyms are not folded (the embedding
cosine criterion of the model, `FGCLIPConfig.near_duplicate_cosine`, covers what wording rules cannot).

`caption_words` gives the same words as a fixed-width row of word hashes, for the containment test
(`FGCLIPConfig.mask_contained_captions`): a caption whose words all appear in another's ("red circle" in
"a large red circle in the top left", "a person walking" in "a person walking on the street") says less
than it, so it may well describe the other's region too. Words count as a set there (order ignored). A
caption with no word left, or more than CAPTION_WORDS words, gets a hash of its whole canonical text in
its last slot instead: it is then contained only in captions with the same canonical text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

STOP_WORDS_TEXT = "a an the is are was were be been being am of in on at with and there this that its"
STOP_WORDS = frozenset(STOP_WORDS_TEXT.split())
IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child", "persons": "person"}
_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_NOT_WORD = re.compile(r"[\W_]+")
_KEEP_DOUBLE = set("lsz")
_VOWELS = set("aeiou")


def fold_word(word: str) -> str:
    """Plural and -ing folding of one lower-case word (see the module docstring, rule 4)."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("sses", "ches", "shes", "xes", "zes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and word[-2] not in "sui":
        word = word[:-1]
    if len(word) >= 6 and word.endswith("ing"):
        word = word[:-3]
        if len(word) >= 3 and word[-1] == word[-2] and word[-1] not in _VOWELS | _KEEP_DOUBLE:
            word = word[:-1]
    if len(word) >= 4 and word.endswith("e") and word[-2] != "e":
        word = word[:-1]
    return word


def _folded(caption: str) -> str:
    return unicodedata.normalize("NFKC", caption).casefold()


def _words(caption: str) -> list[str]:
    """Rules 1-4: the folded words that are not stop words, in order."""
    spaced = _NOT_WORD.sub(" ", _APOSTROPHES.sub("", _folded(caption))).split()
    return [fold_word(w) for w in spaced if w not in STOP_WORDS]


def canonical_caption(caption: str) -> str:
    """The caption reduced by the rules of the module docstring: equal results = near-duplicates."""
    words = _words(caption)
    return " ".join(words) if words else " ".join(_folded(caption).split())


def _hash(text: str) -> int:
    """Signed 64-bit BLAKE2b of `text`, never 0 (0 pads word rows)."""
    value = int.from_bytes(
        hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )
    return value or 1


@lru_cache(maxsize=1 << 16)  # captions repeat across batches; the collator asks for each one per use
def caption_key(caption: str) -> int:
    """Signed 64-bit key of the canonical caption (stable across processes and runs)."""
    return _hash(canonical_caption(caption))


CAPTION_WORDS = 16  # width of a word row; the memory bank stores rows of this width


@lru_cache(maxsize=1 << 16)
def caption_words(caption: str) -> tuple[int, ...]:
    """CAPTION_WORDS hashes: the canonical caption's distinct words, then 0 padding (see the docstring)."""
    words = list(dict.fromkeys(_words(caption)))  # distinct, in first-seen order
    hashes = [_hash("w " + w) for w in words]
    if not words or len(words) > CAPTION_WORDS:
        hashes = [*hashes[: CAPTION_WORDS - 1], _hash("c " + canonical_caption(caption))]
    return tuple(hashes + [0] * (CAPTION_WORDS - len(hashes)))


__all__ = ["CAPTION_WORDS", "STOP_WORDS", "canonical_caption", "caption_key", "caption_words", "fold_word"]
