"""Fixtures for UI and web tests: Services over temp SQLite with the scripted model."""

from __future__ import annotations

import pytest

from composer.config import Settings
from composer.services import Services
from tests.fakes import ScriptedLM, WordOverlapRetriever
from tests.support_pipeline import LIBRARY, png_bytes


def make_services(home, lm=None) -> Services:
    """Services on a fresh data dir with a small real image library and the scripted model."""
    services = Services(Settings.from_env({}, home=home), lm=lm or ScriptedLM())
    for caption, color in LIBRARY:
        services.images.add(png_bytes(color), caption=caption, source="test", license="CC0",
                            attribution="Test Suite")
    services.provide("retriever", WordOverlapRetriever(services.images))
    return services


@pytest.fixture
def services(tmp_path):
    made = make_services(tmp_path / "home")
    yield made
    made.db.dispose()
