"""Metric names and tolerances the logit-scale checks share."""

from __future__ import annotations

from fgdiag import events as ev

HEAD_GAP = 1.0  # B5/FGD101: heads more than 1.0 apart in log space
CLAMP_TOLERANCE = 1e-3  # 4.6052 (ln 100 to 4 decimals) must not count as "above" a clamp at 4.605170
RAW = {h: ev.head_metric(ev.LOGIT_SCALE, h) for h in ev.HEADS}
RAW_EXP = {h: ev.head_metric(ev.LOGIT_SCALE_EXP, h) for h in ev.HEADS}
SCALE_READS = (ev.LOGIT_SCALE + "/", ev.LOGIT_SCALE_EXP + "/")
