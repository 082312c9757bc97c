"""Training: HfArgumentParser arguments, param groups, the Trainer subclass, resume guard, presets."""
