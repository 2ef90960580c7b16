"""HTTP for web image search, through the standard library (urllib), hardened.

Only http and https URLs, redirects followed (at most 5, never to another scheme), a timeout
on every socket operation plus an overall deadline, and a byte limit checked while the body
streams in.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from composer.config import MAX_IMAGE_BYTES
from composer.retrieval.web.results import WebImage, WebImageError

DEFAULT_TIMEOUT = 10.0  # seconds per connect / read
DOWNLOAD_DEADLINE = 120.0  # seconds for a whole download, however the bytes trickle in
DEFAULT_USER_AGENT = ("interleaved-composer/0.1 (illustrated article composer; "
                      "web image search; Python urllib)")
MAX_JSON_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects, and only to http or https URLs."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl!r} refused (only "
                                         "http and https are followed)", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """An opener for http(s) only: no file:, ftp: or data: URLs, proxies from the environment."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), _SafeRedirects(),
                    urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _check_url(url: str, provider: str) -> None:
    """WebImageError unless `url` is an absolute http(s) URL (an API could send file:///...)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WebImageError(f"refused the URL {url!r}: only http and https URLs are fetched",
                            provider)


def download(url: str, *, provider: str, timeout: float, user_agent: str, max_bytes: int,
              accept: str, deadline_s: float = DOWNLOAD_DEADLINE, image: bool = False) -> bytes:
    """GET `url` and return its body, read in chunks until it ends or passes `max_bytes`.

    `timeout` bounds every connect and read; the whole download must finish within
    `deadline_s`, so a server trickling bytes cannot hold a worker forever. With `image`,
    the Content-Type must be image/* (checked before the body is read).
    """
    _check_url(url, provider)
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept": accept})
    deadline = time.monotonic() + deadline_s
    try:
        with _opener().open(request, timeout=timeout) as response:
            if image:
                _check_image_type(url, response.headers.get("Content-Type", ""), provider)
            return _read_limited(response, url, provider, max_bytes, deadline)
    except WebImageError:
        raise
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:
            reason = " ".join(str(error.reason).split())
            raise WebImageError(f"{url} redirected too often or to a non-web address "
                                f"({reason})", provider) from None
        hint = " (too many requests: wait a minute before searching again)" \
            if error.code == 429 else ""
        raise WebImageError(f"HTTP {error.code} from {url}{hint}", provider) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise WebImageError(f"{url} did not answer within {timeout:g} s (timed out)",
                                provider) from None
        raise WebImageError(f"could not reach {url} ({error.reason})", provider) from None
    except TimeoutError:
        raise WebImageError(f"{url} did not answer within {timeout:g} s (timed out)",
                            provider) from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise WebImageError(f"the connection to {url} failed ({type(error).__name__}: "
                            f"{error})", provider) from None


def _check_image_type(url: str, content_type: str, provider: str) -> None:
    """WebImageError unless the server says the body is an image."""
    if not content_type.split(";")[0].strip().lower().startswith("image/"):
        raise WebImageError(f"{url} is not an image (Content-Type {content_type or 'missing'!r})",
                            provider)


def _read_limited(response: http.client.HTTPResponse, url: str, provider: str, max_bytes: int,
                  deadline: float) -> bytes:
    """The body, refused as soon as it (or its declared length) passes `max_bytes`."""
    declared = response.headers.get("Content-Length")
    length = int(declared) if declared and declared.strip().isdigit() else None
    if length is not None and length > max_bytes:
        raise WebImageError(f"{url} is {length:,} bytes, over the limit of {max_bytes:,} bytes",
                            provider)
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = response.read1(CHUNK_BYTES)  # what has arrived, so the deadline is checked
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise WebImageError(f"{url} sent more than {max_bytes:,} bytes, over the limit: "
                                "download stopped", provider)
        if time.monotonic() > deadline:
            raise WebImageError(f"{url} was too slow: {total:,} bytes arrived before the "
                                "download deadline (timed out)", provider)
        chunks.append(chunk)
    if length is not None and total < length:
        raise WebImageError(f"{url} closed the connection after {total:,} of {length:,} bytes "
                            "(truncated)", provider)
    return b"".join(chunks)


def get_json(url: str, *, provider: str, timeout: float, user_agent: str) -> Any:
    """GET `url` and parse the body as JSON; WebImageError when it is not JSON."""
    body = download(url, provider=provider, timeout=timeout, user_agent=user_agent,
                     max_bytes=MAX_JSON_BYTES, accept="application/json")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise WebImageError(f"the answer from {url} is not valid JSON ({error})",
                            provider) from None


def int_field(value: Any) -> int:
    """A width or height from JSON: 0 when missing or not a number."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def is_web_url(value: Any) -> bool:
    """Whether an API field is an http(s) URL (anything else is never fetched or linked)."""
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https")


def fetch_image(image: WebImage, *, max_bytes: int = MAX_IMAGE_BYTES,
                timeout: float = DEFAULT_TIMEOUT, user_agent: str = DEFAULT_USER_AGENT,
                deadline_s: float = DOWNLOAD_DEADLINE) -> bytes:
    """Download a result's image bytes; WebImageError when it fails.

    The body is streamed and the download stops as soon as it passes `max_bytes` (the
    library's own limit by default), so a huge file never sits in memory; the server must
    call it image/*. `timeout` bounds each connect/read, `deadline_s` the whole download.
    Whether the bytes really are a whole image is checked by the store.
    """
    return download(image.image_url, provider=image.provider, timeout=timeout,
                     user_agent=user_agent, max_bytes=max_bytes, accept="image/*",
                     deadline_s=deadline_s, image=True)
