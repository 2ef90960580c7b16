"""Server-issued owner identities (ui/identity.py) without a server: signing, checking,
owners of gr.Requests, sign-in bindings, cookie attributes."""

from __future__ import annotations

import gradio as gr
import pytest
from starlette.requests import Request

from composer.types import InputError
from ui.identity import COOKIE, NO_OWNER, Identities

SECRET = "s" * 43


def http_request(cookie: str | None = None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers,
                    "query_string": b""})


def test_issued_ids_are_random_signed_and_verified():
    identities = Identities(SECRET)
    value = identities.issue()
    browser, signature = value.split(".")
    assert len(browser) == 32 and identities.verify(value) == browser  # 192 random bits
    assert identities.issue() != value
    assert Identities("t" * 43).verify(value) is None  # another server's secret
    tampered = ("A" if browser[0] != "A" else "B") + browser[1:] + "." + signature
    assert identities.verify(tampered) is None


@pytest.mark.parametrize("value", [None, "", "a", {"id": "x"}, ["a"], "a" * 32,
                                   "a" * 32 + "." + "b" * 43, "key:" + "a" * 32])
def test_unsigned_or_malformed_keys_are_no_identity(value):
    assert Identities(SECRET).verify(value) is None


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="browser-secret"):
        Identities("short")


def test_owners_come_from_the_cookie_or_the_login():
    identities = Identities(SECRET)
    value = identities.issue()
    browser = identities.verify(value)
    raw = http_request(value)
    assert identities.owner_of(gr.Request(raw)) == f"key:{browser}"
    assert identities.owners(raw) == {f"key:{browser}"}
    assert identities.owner_of(gr.Request(raw, username="ann")) == "user:ann"
    assert identities.owners(raw) == {f"key:{browser}", "user:ann"}  # the image routes' view
    identities.owner_of(gr.Request(raw))  # signed out: the binding goes
    assert identities.owners(raw) == {f"key:{browser}"}
    assert identities.owner_of(gr.Request(http_request(), username="ann")) == "user:ann"
    for request in (gr.Request(http_request()), gr.Request(http_request(value + "x")), None):
        with pytest.raises(InputError) as caught:
            identities.owner_of(request)
        assert str(caught.value) == NO_OWNER and "reload the page" in NO_OWNER
    assert identities.owners(http_request("forged")) == set()


def test_a_pickled_request_keeps_its_cookie():
    """On ZeroGPU the handler runs in another process with a gr.Request rebuilt from kwargs."""
    import pickle

    identities = Identities(SECRET)
    value = identities.issue()
    copy = pickle.loads(pickle.dumps(gr.Request(http_request(value))))
    assert identities.owner_of(copy) == f"key:{identities.verify(value)}"


def test_cookie_attributes():
    local = Identities(SECRET).set_cookie_header(https=False).decode()
    assert local.startswith(f"{COOKIE}=") and "HttpOnly" in local and "SameSite=Lax" in local
    assert "Secure" not in local and "Path=/" in local
    assert "; Secure" in Identities(SECRET).set_cookie_header(https=True).decode()
    spaces = Identities(SECRET, on_spaces=True).set_cookie_header(https=True).decode()
    assert "SameSite=None" in spaces and "Secure" in spaces and "Partitioned" in spaces


def test_replicas_starting_together_agree_on_one_private_browser_secret(tmp_path):
    import stat
    import threading

    from app import browser_secret
    from composer.config import Settings

    settings = Settings.from_env({}, home=tmp_path / "shared")
    start = threading.Barrier(8)
    keys: list[str] = []

    def replica():
        start.wait()
        keys.append(browser_secret(settings))

    threads = [threading.Thread(target=replica) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    secret_file = tmp_path / "shared" / "browser-secret"
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    assert keys[0] == secret_file.read_text().strip() == browser_secret(settings)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert [p.name for p in secret_file.parent.iterdir() if "secret" in p.name] == \
        ["browser-secret"]  # no drafts left behind
