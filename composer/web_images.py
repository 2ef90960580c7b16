"""Optional web image search: find openly licensed images on a public API and import them.

Off by default (COMPOSER_WEB_IMAGES=off). When turned on, `search_web_images` asks one public
image API (Openverse or Wikimedia Commons) for images, downloads them and adds them to the
library with their license, a ready-to-print attribution line and the landing page as source,
so every imported picture can be credited. Any failure (network, timeout, HTTP status, a
malformed answer, a download that is too big or not an image) gives a clear message and the
composer goes on with the library alone; images that did import are kept.

License choice: every license the APIs report is kept and recorded exactly ("CC BY-NC 2.0",
"CC BY-SA 4.0", "CC0 1.0", "Public domain"), including non-commercial and no-derivatives
ones, so the person publishing sees the real terms next to each image instead of the app
silently deciding which uses are allowed. `OpenverseSearch(license_type="commercial")` asks
Openverse for commercially usable images only. Wikimedia Commons only hosts free files; files
whose metadata names no license are skipped.

HTTP goes through the standard library (urllib): only http and https URLs, redirects followed
(at most 5, never to another scheme), a timeout on every socket operation plus an overall
deadline, and a byte limit checked while the body streams in.
"""

from __future__ import annotations

import http.client
import inspect
import json
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlencode, urlsplit

from composer.config import MAX_IMAGE_BYTES, WEB_IMAGE_CHOICES
from composer.types import ComposerError, InputError, LibraryImage

if TYPE_CHECKING:
    from storage.images import ImageStore

log = logging.getLogger(__name__)

WEB_SEARCH_KINDS = WEB_IMAGE_CHOICES
PROVIDER_NAMES = {"openverse": "Openverse", "wikimedia": "Wikimedia Commons"}
DEFAULT_TIMEOUT = 10.0  # seconds per connect / read
DOWNLOAD_DEADLINE = 120.0  # seconds for a whole download, however the bytes trickle in
DEFAULT_USER_AGENT = ("interleaved-composer/0.1 (illustrated article composer; "
                      "web image search; Python urllib)")
MAX_JSON_BYTES = 5 * 1024 * 1024
OPENVERSE_MAX_PAGE = 20  # what Openverse grants an anonymous caller
WIKIMEDIA_MAX_LIMIT = 50
MAX_TEXT_CHARS = 300  # titles, creators and license names are cut to this length
MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
# Raster formats the library accepts (Wikimedia may also answer with SVG, PDF, video ...).
RASTER_MIMES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff",
                          "image/bmp"})


@dataclass
class WebImage:
    """One search result: where the picture is, and what its license asks of whoever uses it.

    `attribution` is the credit line to print with the image, in the TASL order of the
    Creative Commons guidance: "Title" by Creator, License, via Provider.
    """

    title: str
    image_url: str
    page_url: str
    license: str
    license_url: str
    creator: str
    attribution: str
    provider: str  # "openverse" | "wikimedia"
    width: int = 0
    height: int = 0
    thumbnail_url: str = ""


class WebImageError(ComposerError):
    """A web image search or download failed; the message says what and that the library is
    used instead."""

    def __init__(self, reason: str, provider: str = "") -> None:
        self.reason = reason
        self.provider = provider
        name = PROVIDER_NAMES.get(provider, provider or "web")
        super().__init__(f"Web image search ({name}) failed: {reason}; using your library only.")


class WebImageSearch(Protocol):
    """What `search_web_images` needs of an adapter."""

    provider: str
    timeout: float
    user_agent: str

    def search(self, query: str, k: int) -> list[WebImage]: ...


# -- text from the APIs ----------------------------------------------------------------------

class _TextOnly(HTMLParser):
    """Collects the visible text of an HTML fragment; script and style content is dropped."""

    SKIPPED = frozenset({"script", "style", "noscript", "template"})
    BREAKS = frozenset({"br", "p", "div", "li", "tr", "td"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BREAKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def clean_text(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """Plain text from an API field that may hold HTML (Wikimedia's Artist, titles ...).

    Tags are removed and entities decoded by a real HTML parser; script/style content is
    dropped; angle brackets that remain (from escaped markup) and control characters are
    removed too, so no markup can reach a page that forgets to escape. Whitespace is
    collapsed and the text cut to `limit` characters.
    """
    if value is None:
        return ""
    parser = _TextOnly()
    parser.feed(re.sub(r"<[a-zA-Z/!?][^>]*\Z", "", str(value)))  # a tag cut off at the end
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[<>\x00-\x1f\x7f]", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def make_attribution(title: str, creator: str, license: str, provider: str) -> str:
    """The credit line: '"Title" by Creator, CC BY 2.0, via Openverse' (TASL order).

    Missing parts are left out: no title gives 'Image by Creator', no creator drops 'by ...'.
    """
    work = f'"{title}"' if title else "Image"
    if creator:
        work += f" by {creator}"
    parts = [work]
    if license:
        parts.append(license)
    parts.append(f"via {PROVIDER_NAMES.get(provider, provider)}")
    return ", ".join(parts)


def web_caption(image: WebImage, query: str = "") -> str:
    """The library caption of an imported image: its title, else the search query.

    Retrieval matches captions, so a title without any letter ("12345", "") falls back to
    the query that found the image.
    """
    title = image.title.strip()
    if any(char.isalpha() for char in title):
        return title
    if query.strip():
        return clean_text(query)
    return f"Image from {PROVIDER_NAMES.get(image.provider, image.provider)}"


# -- HTTP --------------------------------------------------------------------------------------

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


def _download(url: str, *, provider: str, timeout: float, user_agent: str, max_bytes: int,
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


def _get_json(url: str, *, provider: str, timeout: float, user_agent: str) -> Any:
    """GET `url` and parse the body as JSON; WebImageError when it is not JSON."""
    body = _download(url, provider=provider, timeout=timeout, user_agent=user_agent,
                     max_bytes=MAX_JSON_BYTES, accept="application/json")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise WebImageError(f"the answer from {url} is not valid JSON ({error})",
                            provider) from None


def _int(value: Any) -> int:
    """A width or height from JSON: 0 when missing or not a number."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _is_web_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https")


# -- Openverse ---------------------------------------------------------------------------------

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
        data = _get_json(url, provider=self.provider, timeout=self.timeout,
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
        if not isinstance(item, dict) or not _is_web_url(item.get("url")):
            return None
        license = openverse_license(str(item.get("license") or ""),
                                    str(item.get("license_version") or ""))
        if not license:
            return None
        title = clean_text(item.get("title"))
        creator = clean_text(item.get("creator"))
        license_url = item.get("license_url")
        if not _is_web_url(license_url):
            license_url = openverse_license_url(str(item.get("license") or ""),
                                                str(item.get("license_version") or ""))
        landing = item.get("foreign_landing_url")
        thumbnail = item.get("thumbnail")
        return WebImage(
            title=title, image_url=item["url"],
            page_url=landing if _is_web_url(landing) else item["url"],
            license=license, license_url=license_url, creator=creator,
            attribution=make_attribution(title, creator, license, self.provider),
            provider=self.provider, width=_int(item.get("width")), height=_int(item.get("height")),
            thumbnail_url=thumbnail if _is_web_url(thumbnail) else "")


# -- Wikimedia Commons -------------------------------------------------------------------------

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
        data = _get_json(url, provider=self.provider, timeout=self.timeout,
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
        pages.sort(key=lambda page: _int(page.get("index")))
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
        image_url = thumb if _is_web_url(thumb) else original
        if not license or not _is_web_url(image_url):
            return None
        title = field("ObjectName") or _file_title(str(page.get("title", "")))
        creator = field("Artist")
        license_url = field("LicenseUrl")
        page_url = info.get("descriptionurl")
        use_thumb = image_url == thumb
        return WebImage(
            title=title, image_url=image_url,
            page_url=page_url if _is_web_url(page_url) else image_url,
            license=license, license_url=license_url if _is_web_url(license_url) else "",
            creator=creator, attribution=make_attribution(title, creator, license,
                                                          self.provider),
            provider=self.provider,
            width=_int(info.get("thumbwidth" if use_thumb else "width")),
            height=_int(info.get("thumbheight" if use_thumb else "height")),
            thumbnail_url=thumb if _is_web_url(thumb) else "")


def _file_title(page_title: str) -> str:
    """"File:Red_bicycle.jpg" -> "Red bicycle" (namespace, extension and underscores gone)."""
    name = unquote(page_title).split(":", 1)[-1]
    name = name.rsplit(".", 1)[0] if "." in name else name
    return clean_text(name.replace("_", " "))


# -- download and import -----------------------------------------------------------------------

def fetch_image(image: WebImage, *, max_bytes: int = MAX_IMAGE_BYTES,
                timeout: float = DEFAULT_TIMEOUT, user_agent: str = DEFAULT_USER_AGENT,
                deadline_s: float = DOWNLOAD_DEADLINE) -> bytes:
    """Download a result's image bytes; WebImageError when it fails.

    The body is streamed and the download stops as soon as it passes `max_bytes` (the
    library's own limit by default), so a huge file never sits in memory; the server must
    call it image/*. `timeout` bounds each connect/read, `deadline_s` the whole download.
    Whether the bytes really are a whole image is checked by the store.
    """
    return _download(image.image_url, provider=image.provider, timeout=timeout,
                     user_agent=user_agent, max_bytes=max_bytes, accept="image/*",
                     deadline_s=deadline_s, image=True)


def _accepts_keyword(function: Any, name: str) -> bool:
    """Whether `function` takes a keyword argument `name` (ImageStore.add grows over time)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(parameter.kind is inspect.Parameter.VAR_KEYWORD
                                     for parameter in parameters.values())


def import_web_image(store: ImageStore, image: WebImage, *, caption: str | None = None,
                     max_bytes: int = MAX_IMAGE_BYTES, timeout: float = DEFAULT_TIMEOUT,
                     user_agent: str = DEFAULT_USER_AGENT) -> LibraryImage:
    """Download a result and add it to the library with its license, attribution and page.

    The caption is `caption` when given, else `web_caption(image)`. The store validates the
    bytes (format, size, pixel count, full decode); a rejected image raises WebImageError
    naming its URL and nothing is stored. The same picture imported again is the same
    library image (content-addressed), not a second copy; a near-duplicate of a library
    image (the store's perceptual-hash check) returns that library image, unchanged.
    """
    data = fetch_image(image, max_bytes=max_bytes, timeout=timeout, user_agent=user_agent)
    extra = {"caption_source": "web"} if _accepts_keyword(store.add, "caption_source") else {}
    try:
        stored, _ = store.add(data, name=image.image_url,
                              caption=caption if caption is not None else web_caption(image),
                              source=image.page_url, license=image.license,
                              attribution=image.attribution, **extra)
    except InputError as error:
        existing = getattr(error, "existing", None)  # NearDuplicateError names the look-alike
        if isinstance(existing, LibraryImage):
            log.info("%s looks like library image %s: using that one", image.image_url,
                     existing.id)
            return existing
        raise WebImageError(f"the library refused the download: {error}",
                            image.provider) from None
    return stored


def search_web_images(searcher: WebImageSearch, store: ImageStore, query: str,
                      k: int) -> tuple[list[LibraryImage], str | None]:
    """Search the web API and import up to k images; returns (images, message or None).

    Never raises for web failures: a failed search gives ([], message), and images that fail
    to download or validate are skipped while the others are kept (the message then says how
    many failed). The message is meant for the person composing and is also logged.
    """
    name = PROVIDER_NAMES.get(searcher.provider, searcher.provider)
    try:
        found = searcher.search(query, k)
    except WebImageError as error:
        log.warning("%s", error)
        return [], str(error)
    if not found:
        message = f"Web image search ({name}) found no images for {query!r}; using your " \
                  "library only."
        log.info("%s", message)
        return [], message
    imported: list[LibraryImage] = []
    failures: list[WebImageError] = []
    for image in found:
        try:
            stored = import_web_image(store, image, caption=web_caption(image, query),
                                      timeout=searcher.timeout, user_agent=searcher.user_agent)
        except WebImageError as error:
            log.warning("%s", error)
            failures.append(error)
            continue
        if all(stored.id != kept.id for kept in imported):
            imported.append(stored)
    return imported, _failure_message(name, failures, len(found), len(imported))


def _failure_message(name: str, failures: list[WebImageError], found: int,
                     imported: int) -> str | None:
    """None when every image imported; else what failed and what is used instead."""
    if not failures:
        return None
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    if not imported:
        return f"Web image search ({name}) failed: none of the {found} images found could be " \
               f"imported: {failures[0].reason}{more}; using your library only."
    return f"Web image search ({name}): {len(failures)} of {found} images could not be " \
           f"imported: {failures[0].reason}{more}; using the {imported} that worked."


def make_web_search(kind: str, base_url: str = "", *, timeout: float = DEFAULT_TIMEOUT,
                    user_agent: str = DEFAULT_USER_AGENT,
                    ) -> OpenverseSearch | WikimediaSearch | None:
    """The adapter named by COMPOSER_WEB_IMAGES: None for "off" (or empty), else Openverse or
    Wikimedia Commons at `base_url` (their public API when empty)."""
    choice = (kind or "").strip().lower()
    if choice in ("", "off"):
        return None
    options: dict[str, Any] = {"timeout": timeout, "user_agent": user_agent}
    if base_url.strip():
        options["base_url"] = base_url.strip()
    if choice == "openverse":
        return OpenverseSearch(**options)
    if choice == "wikimedia":
        return WikimediaSearch(**options)
    raise ValueError(f"unknown web image search {kind!r}: choose one of "
                     f"{', '.join(WEB_SEARCH_KINDS)} (COMPOSER_WEB_IMAGES)")
