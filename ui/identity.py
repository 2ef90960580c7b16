"""Who a request comes from: a server-issued, signed browser id, or the logged-in account.

Every browser gets a cookie `xc_owner` = `<id>.<signature>`: the id is 192 random bits, the
signature an HMAC-SHA256 of it under the server's secret (the data directory's
`browser-secret`, never sent to anyone). A client cannot choose or change its id: an
unsigned, altered or missing cookie is no identity at all, and handlers refuse the request
with a message. The cookie is HttpOnly (page scripts cannot read it) and SameSite=Lax
(other sites' pages do not send it); on a Space, where huggingface.co frames the app from
another site, it is SameSite=None, Secure and Partitioned instead.

With `--auth` or Hugging Face sign-in the account owns what the person makes
(`user:<name>`); without, the browser does (`key:<id>`). Image routes (/media and Gradio's
file route) see only the cookie, so a handler that runs for a signed-in person notes which
account the browser is signed in to (`bind`), and the image routes accept that account's
private images too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from typing import Any, Awaitable, Callable

from composer.types import InputError
from ui import handlers as h

COOKIE = "xc_owner"
ID_BYTES = 24  # 192 random bits, like share tokens
MAX_AGE = 400 * 24 * 3600  # the longest lifetime browsers keep (Chrome caps cookies at 400 days)
# Public pages (share links, health checks) need no owner: their visitors get no cookie.
PUBLIC_PREFIXES = ("/a/", "/healthz")
MAX_BINDINGS = 10_000  # browsers remembered as signed in (least recently seen forgotten)
NO_OWNER = ("this browser has no valid owner key (the xc_owner cookie is missing or was "
            "changed): reload the page with cookies allowed; API clients must send the "
            "cookie the app sets on its first response")
_VALUE = re.compile(r"^([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{43})$")


class Identities:
    """Issues and checks owner cookies, and remembers which account a browser signed in to."""

    def __init__(self, secret: str, on_spaces: bool = False) -> None:
        if len(secret) < 32:
            raise ValueError("the owner-key secret must be at least 32 characters: "
                             "delete the data directory's browser-secret file to make a new one")
        self._secret = secret.encode("utf-8")
        self.on_spaces = on_spaces
        self._logins: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    # -- the cookie ---------------------------------------------------------------------------

    def _signature(self, browser_id: str) -> str:
        digest = hmac.new(self._secret, f"{COOKIE}:{browser_id}".encode("ascii"),
                          hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def issue(self) -> str:
        """A new cookie value: a fresh random id and its signature."""
        browser_id = secrets.token_urlsafe(ID_BYTES)
        return f"{browser_id}.{self._signature(browser_id)}"

    def verify(self, value: Any) -> str | None:
        """The browser id of a cookie value this server signed; None for anything else."""
        found = _VALUE.match(value) if isinstance(value, str) else None
        if found is None or not hmac.compare_digest(found.group(2),
                                                    self._signature(found.group(1))):
            return None
        return found.group(1)

    def set_cookie_header(self, https: bool, value: str | None = None) -> bytes:
        """A Set-Cookie header value carrying `value` (a verified one, to extend its
        lifetime) or a new id."""
        value = value or self.issue()
        attributes = [f"{COOKIE}={value}", "Path=/", f"Max-Age={MAX_AGE}", "HttpOnly"]
        if self.on_spaces:  # framed by huggingface.co: a third-party context
            attributes += ["SameSite=None", "Secure", "Partitioned"]
        else:
            attributes += ["SameSite=Lax"] + (["Secure"] if https else [])
        return "; ".join(attributes).encode("latin-1")

    # -- owners -------------------------------------------------------------------------------

    def browser_id(self, request: Any) -> str | None:
        """The verified browser id of a gr.Request or a Starlette request, else None."""
        return self.verify(_cookies(request).get(COOKIE))

    def owner_of(self, request: Any) -> str:
        """Who owns what this request makes: `user:<name>` when signed in, else
        `key:<browser id>`; InputError (NO_OWNER) without a valid cookie or login."""
        browser = self.browser_id(request)
        login = _login(request)
        if browser is not None:
            self.bind(browser, login)
        if login:
            return h.owner_id(None, login)
        if browser is None:
            raise InputError(NO_OWNER)
        return h.owner_id(browser, None)

    def bind(self, browser: str, login: str | None) -> None:
        """Note the account `browser` is signed in to now (None: signed out)."""
        with self._lock:
            if login:
                self._logins[browser] = login
                self._logins.move_to_end(browser)
                while len(self._logins) > MAX_BINDINGS:
                    self._logins.popitem(last=False)
            else:
                self._logins.pop(browser, None)

    def owners(self, request: Any) -> set[str]:
        """Every owner whose private images this request may see: its browser's key and the
        account that browser is signed in to (empty without a valid cookie)."""
        browser = self.browser_id(request)
        if browser is None:
            return set()
        with self._lock:
            login = self._logins.get(browser)
        return {h.owner_id(browser, None)} | ({h.owner_id(None, login)} if login else set())


class OwnerCookie:
    """ASGI middleware: a response to a request without a valid `xc_owner` cookie sets one.

    The request itself stays without an identity (a handler it reaches refuses it), so a
    client only ever owns an id the server gave it. Loading the app page renews a valid
    cookie's lifetime (same id), so a browser in use keeps its owner; public pages set none
    (PUBLIC_PREFIXES).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], identities: Identities) -> None:
        self.app = app
        self.identities = identities

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        cookies = _ScopeCookies(scope)
        valid = self.identities.browser_id(cookies) is not None
        if valid and scope.get("path") != "/":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https" or _header(scope, b"x-forwarded-proto") == "https"
        cookie = self.identities.set_cookie_header(
            https, cookies.cookies.get(COOKIE) if valid else None)

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").split(",")[0].strip().lower()
    return ""


class _ScopeCookies:
    """The cookies of a raw ASGI scope, shaped like a request's `.cookies`."""

    def __init__(self, scope: dict[str, Any]) -> None:
        from starlette.requests import cookie_parser

        self.cookies: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            if key.lower() == b"cookie":
                self.cookies.update(cookie_parser(value.decode("latin-1")))


def _cookies(request: Any) -> dict[str, str]:
    """The cookies of a gr.Request (live, or pickled for a GPU worker) or a Starlette request."""
    if request is None:
        return {}
    inner = request.request if hasattr(request, "kwargs") else request  # gr.Request wraps one
    if inner is not None:
        cookies = getattr(inner, "cookies", None)
        return dict(cookies) if cookies else {}
    return dict(request.kwargs.get("cookies") or {})


def _login(request: Any) -> str | None:
    """The --auth user name or the Hugging Face account of a gr.Request, else None."""
    if request is None or not hasattr(request, "kwargs"):
        return None
    raw = getattr(request, "request", None)
    scope = getattr(raw, "scope", None) or {}
    return h.login_name(getattr(request, "username", None), scope.get("session"))
