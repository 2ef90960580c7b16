"""Suite-wide settings: offline, deterministic, quiet."""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# One torch (OpenMP) thread per test process, set before torch is imported; the CLI tests'
# subprocesses inherit it. The suite's models are tiny or small, and on a busy machine
# (2 cores shared with other work) OpenMP threads that wait for each other spin: the
# embedded model decoded 4 tokens/s with 2 threads and 35 with 1 on a loaded 2-core machine
# (idle, 2 threads give 44: bench/results/model.json). OMP_NUM_THREADS=2 overrides it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The same for llama.cpp's threads (the embedded writer's engine when llama-cpp-python is
# installed): its waiting threads spin too.
os.environ.setdefault("COMPOSER_THREADS", os.environ["OMP_NUM_THREADS"])


import pytest  # noqa: E402

if "torch" in sys.modules:  # imported before this file (a plugin): the variable came too late
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def embedded_home(tmp_path_factory):
    """A data dir whose model cache holds the converted embedded model (converted once)."""
    return tmp_path_factory.mktemp("embedded-home")


@pytest.fixture(scope="session")
def embedded_lm(embedded_home):
    """The real embedded model (SmolLM2-135M-Instruct) as the app loads it by default (on
    llama.cpp when llama-cpp-python is installed), loaded once."""
    from composer.config import Settings
    from models.registry import load_language_model

    return load_language_model(Settings.from_env({}, home=embedded_home, quantize="auto",
                                                 threads=int(os.environ["COMPOSER_THREADS"])))
