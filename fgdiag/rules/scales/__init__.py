"""FGD1xx, logit scales and temperatures: one module per code (`init` FGD101, `clamp` FGD102, `frozen`
FGD103, `temperature` FGD104), each with the code's docs, its static check(s) over the configuration and its
runtime check over logged scales; `names` holds what they share. Thresholds cite
shared/reference/failure-modes.md (B2 saturation, B3 frozen, B4 decay, B5 head gap).
"""

from fgdiag.rules.scales import clamp, frozen, init, temperature

__all__ = ["clamp", "frozen", "init", "temperature"]
