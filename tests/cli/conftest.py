from tests.train.conftest import embedded  # noqa: F401  (session fixture: data + tiny CLIP)
