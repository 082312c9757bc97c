"""FGD6xx, loss trends, chance level and targets: one module per concern (`chance` FGD601/602, `collapse`
FGD603, `targets` FGD604, `progress` FGD605/606), each with its codes' docs and runtime check; `candidates`
holds what the chance rules share (the candidates K of a row and where K came from).
"""

from fgdiag.rules.convergence import chance, collapse, progress, targets

__all__ = ["chance", "collapse", "progress", "targets"]
