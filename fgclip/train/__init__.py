"""Training: HfArgumentParser arguments, param groups, the Trainer subclass and its callback, resume guard.

Exports are lazy: `python -m fgclip.train --help` must not pay for importing torch and transformers.
`FGCLIPCallback` is what any transformers Trainer needs to train an fgclip model (scale clamp, memory-bank
clock, loss parts in the logs); `FGCLIPTrainer` adds our parameter groups and uses the same callback.
"""

__all__ = ["FGCLIPCallback", "FGCLIPTrainer"]


def __getattr__(name: str):
    if name == "FGCLIPCallback":
        from fgclip.train.callback import FGCLIPCallback

        return FGCLIPCallback
    if name == "FGCLIPTrainer":
        from fgclip.train.trainer import FGCLIPTrainer

        return FGCLIPTrainer
    raise AttributeError(name)
