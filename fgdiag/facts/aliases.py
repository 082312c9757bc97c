"""Foreign spellings, each mapped to our one name. Used only where fgdiag reads files it does not write.

Our code, events and docs say `global`, `region` and `hardneg` for the heads and `logit_scale_finegrained` for
the region head's parameter. Upstream FG-CLIP and the fgclip-vad fork spell them otherwise (the fork's
`logit_scale_finegraind`, log labels `finegrained`, `hard_neg`, `hard` ...); readers translate through these
tables and nothing downstream sees the foreign names.
"""

from __future__ import annotations

from fgclip.vocab import GLOBAL, HARDNEG, REGION

# a head as logs label it -> our head name
HEAD_ALIASES = {
    "global": GLOBAL,
    "region": REGION,
    "finegrained": REGION,
    "finegraind": REGION,
    "fine_grained": REGION,
    "hardneg": HARDNEG,
    "hard_neg": HARDNEG,
    "hard_negative": HARDNEG,
    "hard": HARDNEG,
}
# saved tensor names of upstream FG-CLIP / fgclip-vad -> ours (docs/CONTRACTS.md)
TENSOR_ALIASES = {
    "logit_scale_finegraind": "logit_scale_finegrained",
    "text_filip_projection.weight": "text_long_projection.weight",
    "text_model.embeddings.position_embedding_res.weight": "long_position_embedding.weight",  # with `_ori`
}  # (`clip_keys.normalise_keys` maps `_res` only when `_ori` is saved too: upstream's table is both halves)
# configuration keys that set a head's initial raw scale, by the parameter they initialise (first one wins)
HEAD_INIT_KEYS = {
    "logit_scale_finegrained": (
        "finegrained_logit_scale_init",
        "logit_scale_finegrained_init",
        "logit_scale_finegraind_init",
        "region_logit_scale_init",
    ),
    "logit_scale_hardneg": ("hardneg_logit_scale_init", "logit_scale_hardneg_init"),
}


def head_of(label: str) -> str | None:
    """Our head name for a label as a log prints it (case-insensitive), None when unknown."""
    return HEAD_ALIASES.get(label.lower())
