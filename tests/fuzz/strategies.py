"""Hypothesis strategies for the fuzz suite: bytes, lines built from our formats' own fragments (every line
of the labelled log corpus, mutated), numbers at the edges, and the budget every test shares.

The budget: `FGDIAG_FUZZ_EXAMPLES` examples per test when set (and then a fresh random seed each run);
otherwise the small derandomised CI budget below, about a minute for the whole suite on two cores.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
EXAMPLES = int(os.environ.get("FGDIAG_FUZZ_EXAMPLES", "0") or 0)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def budget(ci_examples: int) -> settings:
    """Settings of one fuzz test: `ci_examples` (derandomised) in CI, FGDIAG_FUZZ_EXAMPLES (random) when
    set."""
    return settings(
        max_examples=EXAMPLES or ci_examples,
        derandomize=not EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@cache
def corpus_lines() -> tuple[str, ...]:
    """Distinct lines of every log in the corpus (our formats, the fork's, Trainer, open_clip, foreign)."""
    lines: set[str] = set()
    for path in sorted(CORPUS.glob("*")):
        if path.suffix in {".log", ".jsonl", ".md", ".json"}:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:400]:
                if line.strip():
                    lines.add(line[:600])
    return tuple(sorted(lines))


EDGE_NUMBERS = st.sampled_from(
    ["nan", "NaN", "inf", "-inf", "1e308", "1e309", "-0", "0", "710", "1000", "-1", "1e-320", "9" * 400]
)
NUMBERS = st.one_of(
    EDGE_NUMBERS,
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)


@st.composite
def mutated_line(draw: st.DrawFn) -> str:
    """A corpus line with its numbers replaced, maybe cut, maybe with junk spliced in."""
    line = draw(st.sampled_from(corpus_lines()))
    numbers = list(NUMBER.finditer(line))
    if numbers and draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(numbers), max_size=4, unique_by=lambda m: m.start()))
        for match in sorted(chosen, key=lambda m: -m.start()):
            line = line[: match.start()] + draw(NUMBERS) + line[match.end() :]
    if draw(st.integers(0, 5)) == 0:
        line = line[: draw(st.integers(0, len(line)))]
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.text(max_size=12)) + line[at:]
    return line


LINES = st.lists(st.one_of(mutated_line(), mutated_line(), st.text(max_size=80)), max_size=60)
ENDINGS = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])


@st.composite
def log_bytes(draw: st.DrawFn) -> bytes:
    """A log file: structured lines (usually) or raw bytes, in UTF-8, latin-1 or with NULs spliced in."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2000))
    ending = draw(ENDINGS)
    text = ending.join(draw(LINES)) + (ending if draw(st.booleans()) else "")
    raw = text.encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 7)) == 0:
        raw = text.encode("latin-1", errors="replace")
    if draw(st.integers(0, 7)) == 0 and raw:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at:]
    return raw


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
