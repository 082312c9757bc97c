"""FGD6xx, loss trends, chance level and targets: one module per concern (`chance` FGD601/602, `collapse`
FGD603, `targets` FGD604, `progress` FGD605/606), each with its codes' docs and runtime check; `candidates`
holds what the chance rules share (the candidates K of a row and where K came from).
"""

from fgdiag.rules.convergence import chance, collapse, progress, targets
from fgdiag.rules.convergence.targets import Targets  # the render layer reads its smoothing fraction

__all__ = ["Targets", "chance", "collapse", "progress", "targets"]
