"""Fixtures for UI and web tests: Services over temp SQLite with the fake article writer."""

from __future__ import annotations

import pytest

from composer.config import Settings
from composer.services import Services
from tests.fakes import ArticleWriter, WordOverlapRetriever
from tests.support_pipeline import LIBRARY, png_bytes


def make_services(home, lm=None) -> Services:
    """Services on a fresh data dir with a small real image library and the article writer
    (tests/fakes.py) unless `lm` is given."""
    # The word-overlap retriever's scores are not calibrated: the best image is placed at any
    # score (tests/test_image_fit.py tests the threshold).
    services = Services(Settings.from_env({}, home=home, image_threshold=0.0),
                        lm=lm or ArticleWriter())
    for caption, color in LIBRARY:
        services.images.add(png_bytes(color), caption=caption, source="test", license="CC0",
                            allow_near_duplicate=True,  # one drawing in several colours
                            attribution="Test Suite")
    services.provide("retriever", WordOverlapRetriever(services.images))
    return services


@pytest.fixture
def services(tmp_path):
    made = make_services(tmp_path / "home")
    yield made
    made.db.dispose()


class LiveServer:
    """The real app (FastAPI + Gradio) served by uvicorn on a loopback port, in a thread."""

    def __init__(self, services: Services):
        import socket
        import threading

        import uvicorn

        from app import create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # An open event stream (a gradio_client's) would hold a graceful exit until the
        # join below gives up (10 s, the server left running): close connections after 2 s.
        config = uvicorn.Config(create_app(services), host="127.0.0.1", port=self.port,
                                log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        import time
        import urllib.request

        self.thread.start()
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1)
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the app did not start within 10 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    """One running app per test module, on the article writer (20 ms a word, so it streams)."""
    services = make_services(tmp_path_factory.mktemp("live") / "home",
                             lm=ArticleWriter(delay=0.002))
    with LiveServer(services) as server:
        server.services = services
        yield server
