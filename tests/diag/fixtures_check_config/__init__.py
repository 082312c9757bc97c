"""Fixtures of the check-config tests: static configs and scripts, plus builders of tiny checkpoints."""
