"""Openverse (api.openverse.org): openly licensed images gathered from many sites."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from composer.retrieval.web.fetch import (
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    get_json,
    int_field,
    is_web_url,
)
from composer.retrieval.web.results import WebImage, WebImageError, clean_text, make_attribution

log = logging.getLogger(__name__)

OPENVERSE_MAX_PAGE = 20  # what Openverse grants an anonymous caller
OPENVERSE_SPECIAL_LICENSES = {"pdm": "Public domain", "cc0": "CC0", "sampling+": "CC Sampling+",
                              "nc-sampling+": "CC NC-Sampling+"}


def openverse_license(code: str, version: str) -> str:
    """A readable license name from Openverse's code and version: ("by-sa", "2.0") ->
    "CC BY-SA 2.0", ("cc0", "1.0") -> "CC0 1.0", ("pdm", "1.0") -> "Public domain"."""
    code = (code or "").strip().lower()
    version = (version or "").strip()
    if not code:
        return ""
    if code == "pdm":
        return OPENVERSE_SPECIAL_LICENSES[code]
    name = OPENVERSE_SPECIAL_LICENSES.get(code, f"CC {code.upper()}")
    return f"{name} {version}".strip()


def openverse_license_url(code: str, version: str) -> str:
    """The Creative Commons deed of an Openverse license (used when the result has none)."""
    code = (code or "").strip().lower()
    version = (version or "").strip() or "1.0"
    if code == "pdm":
        return "https://creativecommons.org/publicdomain/mark/1.0/"
    if code == "cc0":
        return "https://creativecommons.org/publicdomain/zero/1.0/"
    return f"https://creativecommons.org/licenses/{code}/{version}/" if code else ""


class OpenverseSearch:
    """Openverse (api.openverse.org): openly licensed images gathered from many sites."""

    provider = "openverse"

    def __init__(self, base_url: str = "https://api.openverse.org",
                 timeout: float = DEFAULT_TIMEOUT, user_agent: str = DEFAULT_USER_AGENT,
                 license_type: str = "") -> None:
        """`license_type` ("commercial", "modification" or both, comma-separated) narrows the
        results on the server; empty keeps every license (recorded exactly)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.user_agent = user_agent
        self.license_type = license_type

    def search_url(self, query: str, k: int) -> str:
        """The GET URL of a search: /v1/images/?q=...&page_size=k (k at most 20)."""
        params = {"q": query, "page_size": max(1, min(k, OPENVERSE_MAX_PAGE))}
        if self.license_type:
            params["license_type"] = self.license_type
        return f"{self.base_url}/v1/images/?{urlencode(params)}"

    def search(self, query: str, k: int) -> list[WebImage]:
        """Up to k images for `query`, best first; WebImageError when the search fails."""
        if not query.strip() or k < 1:
            return []
        url = self.search_url(query.strip(), k)
        data = get_json(url, provider=self.provider, timeout=self.timeout,
                         user_agent=self.user_agent)
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise WebImageError(f"the answer from {url} has no 'results' list (the API may "
                                "have changed)", self.provider)
        images = []
        for item in results:
            image = self.parse_result(item)
            if image is None:
                log.info("Openverse result skipped (no usable image URL or license): %.200r",
                         item)
                continue
            images.append(image)
        return images[:k]

    def parse_result(self, item: Any) -> WebImage | None:
        """One Openverse result as a WebImage; None when it lacks an image URL or a license."""
        if not isinstance(item, dict) or not is_web_url(item.get("url")):
            return None
        license = openverse_license(str(item.get("license") or ""),
                                    str(item.get("license_version") or ""))
        if not license:
            return None
        title = clean_text(item.get("title"))
        creator = clean_text(item.get("creator"))
        license_url = item.get("license_url")
        if not is_web_url(license_url):
            license_url = openverse_license_url(str(item.get("license") or ""),
                                                str(item.get("license_version") or ""))
        landing = item.get("foreign_landing_url")
        thumbnail = item.get("thumbnail")
        return WebImage(
            title=title, image_url=item["url"],
            page_url=landing if is_web_url(landing) else item["url"],
            license=license, license_url=license_url, creator=creator,
            attribution=make_attribution(title, creator, license, self.provider),
            provider=self.provider, width=int_field(item.get("width")),
            height=int_field(item.get("height")),
            thumbnail_url=thumbnail if is_web_url(thumbnail) else "")
