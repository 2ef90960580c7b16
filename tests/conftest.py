"""Suite-wide settings: offline, deterministic, quiet."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory):
    """A data dir whose model cache holds the converted embedded model (converted once)."""
    return tmp_path_factory.mktemp("embedded-home")


@pytest.fixture(scope="session")
def embedded_lm(embedded_home):
    """The real embedded model (SmolLM2-135M-Instruct), loaded once for the slow tests."""
    from composer.config import Settings
    from models.registry import load_language_model

    return load_language_model(Settings.from_env({}, home=embedded_home, quantize="auto"))
