"""Wikimedia Commons through the MediaWiki API: free files with rich license metadata."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlencode

from composer.retrieval.web.fetch import (
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    get_json,
    int_field,
    is_web_url,
)
from composer.retrieval.web.results import WebImage, WebImageError, clean_text, make_attribution

log = logging.getLogger(__name__)

WIKIMEDIA_MAX_LIMIT = 50
# Raster formats the library accepts (Wikimedia may also answer with SVG, PDF, video ...).
RASTER_MIMES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff",
                          "image/bmp"})


class WikimediaSearch:
    """Wikimedia Commons through the MediaWiki API: free files with rich license metadata."""

    provider = "wikimedia"

    def __init__(self, base_url: str = "https://commons.wikimedia.org",
                 timeout: float = DEFAULT_TIMEOUT, user_agent: str = DEFAULT_USER_AGENT,
                 width: int = 1280) -> None:
        """`width`: the images are downloaded as renderings this wide (never upscaled)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.user_agent = user_agent
        self.width = width

    def search_url(self, query: str, k: int) -> str:
        """The api.php URL: a search in the File namespace with each file's image info."""
        params = {
            "action": "query", "format": "json", "formatversion": "2",
            "generator": "search", "gsrnamespace": "6",
            "gsrsearch": f"{query} filetype:bitmap",
            "gsrlimit": max(1, min(k, WIKIMEDIA_MAX_LIMIT)),
            "prop": "imageinfo", "iiprop": "url|size|mime|extmetadata",
            "iiurlwidth": self.width,
        }
        return f"{self.base_url}/w/api.php?{urlencode(params)}"

    def search(self, query: str, k: int) -> list[WebImage]:
        """Up to k images for `query` in search order; WebImageError when the search fails.

        Files that are not raster images or name no license are skipped.
        """
        if not query.strip() or k < 1:
            return []
        url = self.search_url(query.strip(), k)
        data = get_json(url, provider=self.provider, timeout=self.timeout,
                         user_agent=self.user_agent)
        if not isinstance(data, dict):
            raise WebImageError(f"the answer from {url} is not a JSON object", self.provider)
        if isinstance(data.get("error"), dict):
            error = data["error"]
            raise WebImageError(f"the API at {url} answered error {error.get('code')!r}: "
                                f"{clean_text(error.get('info'))}", self.provider)
        if "query" not in data:  # MediaWiki leaves "query" out when nothing matched
            return []
        pages = data["query"].get("pages") if isinstance(data["query"], dict) else None
        if not isinstance(pages, list):  # formatversion=2 answers a list of pages
            raise WebImageError(f"the answer from {url} has no 'query.pages' (the API may "
                                "have changed)", self.provider)
        pages = [page for page in pages if isinstance(page, dict)]
        pages.sort(key=lambda page: int_field(page.get("index")))
        images = []
        for page in pages:
            image = self.parse_page(page)
            if image is None:
                log.info("Wikimedia file skipped (not a raster image or no license): %s",
                         page.get("title"))
                continue
            images.append(image)
        return images[:k]

    def parse_page(self, page: dict[str, Any]) -> WebImage | None:
        """One file page as a WebImage; None for non-raster files and files with no license."""
        infos = page.get("imageinfo")
        if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
            return None
        info = infos[0]
        if str(info.get("mime", "")).lower() not in RASTER_MIMES:
            return None
        meta = info.get("extmetadata") if isinstance(info.get("extmetadata"), dict) else {}

        def field(name: str) -> str:
            entry = meta.get(name)
            return clean_text(entry.get("value") if isinstance(entry, dict) else entry)

        license = field("LicenseShortName") or field("UsageTerms")
        original = info.get("url")
        thumb = info.get("thumburl")
        image_url = thumb if is_web_url(thumb) else original
        if not license or not is_web_url(image_url):
            return None
        title = field("ObjectName") or _file_title(str(page.get("title", "")))
        creator = field("Artist")
        license_url = field("LicenseUrl")
        page_url = info.get("descriptionurl")
        use_thumb = image_url == thumb
        return WebImage(
            title=title, image_url=image_url,
            page_url=page_url if is_web_url(page_url) else image_url,
            license=license, license_url=license_url if is_web_url(license_url) else "",
            creator=creator, attribution=make_attribution(title, creator, license,
                                                          self.provider),
            provider=self.provider,
            width=int_field(info.get("thumbwidth" if use_thumb else "width")),
            height=int_field(info.get("thumbheight" if use_thumb else "height")),
            thumbnail_url=thumb if is_web_url(thumb) else "")


def _file_title(page_title: str) -> str:
    """"File:Red_bicycle.jpg" -> "Red bicycle" (namespace, extension and underscores gone)."""
    name = unquote(page_title).split(":", 1)[-1]
    name = name.rsplit(".", 1)[0] if "." in name else name
    return clean_text(name.replace("_", " "))
