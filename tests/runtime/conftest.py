"""Runtime diagnostics tests train for real on the embedded data (shared session fixture)."""

from tests.train.conftest import embedded  # noqa: F401  (session fixture: data + tiny CLIP)
