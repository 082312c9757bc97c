"""The rule families, imported in code order: each registers its codes' docs and checks on import.

Adding a rule to a family needs no edit here; a new family module is added to this list.
"""

from __future__ import annotations

from fgdiag.rules import (
    bank,
    configuration,
    convergence,
    data,
    distributed,
    numerics,
    optimisation,
    scales,
    weights,
)

FAMILIES = (configuration, scales, bank, data, weights, optimisation, convergence, numerics, distributed)
