"""A local stand-in for the Openverse and Wikimedia Commons APIs: tests never go online.

`FakeImageAPI` is a threaded HTTP server on 127.0.0.1 (a free port) answering
  GET /v1/images/?q=...&page_size=n     like Openverse API v1 (results[] with url, title,
                                        creator, license, license_version, license_url,
                                        foreign_landing_url, width, height, attribution ...)
  GET /w/api.php?action=query&...       like the MediaWiki API of Wikimedia Commons
                                        (formatversion=2 pages with imageinfo and extmetadata,
                                        HTML in Artist, one hostile <script>)
  GET /files/<name>                     the image files (PNG and JPEG drawn with Pillow)
  GET /raw/<name>                       the same files, never failing (redirect target)
It records every request, and can be told to misbehave:
  api.search_mode = one of SEARCH_MODES          (how both search endpoints answer)
  api.image_modes[name] = one of IMAGE_MODES     (how /files/<name> answers)

    with FakeImageAPI() as api:
        searcher = OpenverseSearch(base_url=api.url, timeout=0.5)
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from PIL import Image, ImageDraw

from tests.support_storage import png_bomb

SEARCH_MODES = ("ok", "empty", "503", "slow", "malformed", "shape", "api-error")
IMAGE_MODES = ("ok", "404", "503", "slow", "trickle", "content-type", "huge", "huge-unsized",
               "truncated", "corrupt", "bomb", "redirect", "redirect-file", "redirect-loop")
HUGE_BYTES = 3 * 1024 * 1024  # what "huge" modes send (tests set a smaller max_bytes)


@dataclass(frozen=True)
class FakePhoto:
    """One image file the fake serves, drawn with Pillow: a disc and a darker band whose
    places come from `layout`, so the pictures differ by perceptual hash too (the store
    refuses near-duplicates), while the same layout at another size is a near-duplicate."""

    name: str
    format: str  # "PNG" | "JPEG"
    color: tuple[int, int, int]
    layout: int
    size: tuple[int, int] = (64, 48)

    @property
    def content_type(self) -> str:
        return "image/png" if self.format == "PNG" else "image/jpeg"

    def encode(self) -> bytes:
        width, height = self.size
        image = Image.new("RGB", self.size, (250, 250, 245))
        draw = ImageDraw.Draw(image)
        x, y = (self.layout % 5 + 1) / 6 * width, (self.layout // 5 % 3 + 1) / 4 * height
        radius = 0.22 * width
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=self.color)
        top = self.layout % 4 * height / 4
        draw.rectangle([0, top, width, top + height / 6],
                       fill=tuple(channel // 2 for channel in self.color))
        buffer = io.BytesIO()
        image.save(buffer, format=self.format)
        return buffer.getvalue()


PHOTOS = (
    FakePhoto("red-bicycle.png", "PNG", (200, 30, 30), 1),
    FakePhoto("harbour.jpg", "JPEG", (20, 60, 140), 7, (80, 60)),
    FakePhoto("old-map.png", "PNG", (120, 90, 40), 13),
    FakePhoto("amsterdam-bicycle.jpg", "JPEG", (30, 120, 60), 3),
    FakePhoto("lighthouse.png", "PNG", (40, 40, 90), 10),
    # The red bicycle again, smaller and as JPEG: a near-duplicate (in no search results).
    FakePhoto("red-bicycle-copy.jpg", "JPEG", (200, 30, 30), 1, (40, 30)),
)


# Openverse results, in the API's order. `None` fields are left as the API leaves them.
OPENVERSE_ITEMS: tuple[dict[str, Any], ...] = (
    {"file": "red-bicycle.png", "id": "0b0e7a1c-0001", "title": "Red bicycle &amp; a wall",
     "creator": "Jane Doe", "license": "by", "license_version": "2.0",
     "license_url": "https://creativecommons.org/licenses/by/2.0/", "provider": "flickr"},
    {"file": "harbour.jpg", "id": "0b0e7a1c-0002", "title": "Harbour at dusk", "creator": None,
     "license": "cc0", "license_version": "1.0",
     "license_url": "https://creativecommons.org/publicdomain/zero/1.0/",
     "provider": "wikimedia"},
    {"file": "old-map.png", "id": "0b0e7a1c-0003", "title": "Old map", "creator": "Unknown",
     "license": "pdm", "license_version": "1.0", "license_url": None, "provider": "smithsonian"},
    # Broken entries a real index can hold: no image URL, and a non-web URL. Both skipped.
    {"file": None, "id": "0b0e7a1c-0004", "title": "No URL", "creator": "X", "license": "by",
     "license_version": "4.0", "license_url": None, "provider": "flickr"},
    {"file": "file:///etc/passwd", "id": "0b0e7a1c-0005", "title": "Local file", "creator": "X",
     "license": "by", "license_version": "4.0", "license_url": None, "provider": "flickr"},
)

# Wikimedia Commons file pages; "index" is the search rank (pages come back unordered).
WIKIMEDIA_PAGES: tuple[dict[str, Any], ...] = (
    {"pageid": 1001, "title": "File:Red bicycle in Amsterdam.jpg", "index": 2,
     "file": "amsterdam-bicycle.jpg", "mime": "image/jpeg",
     "meta": {"ObjectName": "Red bicycle in Amsterdam",
              "Artist": '<a href="//commons.wikimedia.org/wiki/User:Jan" title="User:Jan">'
                        "Jan de Vries</a>",
              "LicenseShortName": "CC BY-SA 4.0",
              "UsageTerms": "Creative Commons Attribution-Share Alike 4.0",
              "LicenseUrl": "https://creativecommons.org/licenses/by-sa/4.0",
              "AttributionRequired": "true"}},
    {"pageid": 1002, "title": "File:Lighthouse at night.png", "index": 1,
     "file": "lighthouse.png", "mime": "image/png",
     "meta": {"Artist": "<script>alert(1)</script><bdi><span class=\"fn\">Ana &amp; Bo"
                        "</span></bdi> &lt;img src=x onerror=alert(2)&gt;",
              "LicenseShortName": "Public domain", "UsageTerms": "Public domain",
              "AttributionRequired": "false"}},
    {"pageid": 1003, "title": "File:Annual report.pdf", "index": 3, "file": "old-map.png",
     "mime": "application/pdf",
     "meta": {"LicenseShortName": "CC BY 4.0", "Artist": "Someone"}},
    {"pageid": 1004, "title": "File:Unlicensed photo.jpg", "index": 4, "file": "harbour.jpg",
     "mime": "image/jpeg", "meta": {"Artist": "Someone", "ObjectName": "Unlicensed photo"}},
)


@dataclass
class SeenRequest:
    """One request the fake received."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeImageAPI:
    """The fake server; see the module docstring. `delay` is how long "slow" modes stall."""

    delay: float = 5.0
    search_mode: str = "ok"
    image_modes: dict[str, str] = field(default_factory=dict)
    requests: list[SeenRequest] = field(default_factory=list)
    trickled: int = 0  # body bytes the "trickle" mode has sent so far

    def __post_init__(self) -> None:
        self.files = {photo.name: (photo.encode(), photo.content_type) for photo in PHOTOS}
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.api = self  # type: ignore[attr-defined]
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:54321 (no trailing slash)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def file_url(self, name: str) -> str:
        """Where /files/<name> is served."""
        return f"{self.url}/files/{quote(name)}"

    def searches(self) -> list[SeenRequest]:
        """The requests made to either search endpoint, in order."""
        return [seen for seen in self.requests
                if not seen.path.startswith(("/files/", "/raw/"))]

    def start(self) -> Self:
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving; stalled handlers wake up at once."""
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the answers ---------------------------------------------------------------------

    def openverse_answer(self, params: dict[str, str]) -> dict[str, Any]:
        """An Openverse v1 search answer with the first page_size results."""
        size = int(params.get("page_size", "20"))
        items = [] if self.search_mode == "empty" else list(OPENVERSE_ITEMS)[:size]
        return {"result_count": len(items), "page_count": 1, "page_size": size, "page": 1,
                "results": [self._openverse_result(item) for item in items], "warnings": []}

    def _openverse_result(self, item: dict[str, Any]) -> dict[str, Any]:
        name = item["file"]
        url = name if name is None or ":" in name else self.file_url(name)
        title, creator = item["title"], item["creator"]
        code, version = item["license"], item["license_version"]
        return {
            "id": item["id"], "title": title, "indexed_on": "2024-03-01T10:00:00Z",
            "foreign_landing_url": f"https://www.flickr.com/photos/example/{item['id']}",
            "url": url, "creator": creator,
            "creator_url": f"https://www.flickr.com/people/{creator}" if creator else None,
            "license": code, "license_version": version, "license_url": item["license_url"],
            "provider": item["provider"], "source": item["provider"],
            "category": "photograph", "genres": None, "filesize": None, "filetype": None,
            "tags": [{"name": "test", "accuracy": None, "unstable__provider": "flickr"}],
            "attribution": f'"{title}"' + (f" by {creator}" if creator else "")
                           + f" is licensed under CC {code.upper()} {version}. To view a copy "
                           f"of this license, visit {item['license_url']}.",
            "fields_matched": ["title"], "mature": False, "height": 48, "width": 64,
            "thumbnail": f"{self.url}/v1/images/{item['id']}/thumb/",
            "detail_url": f"{self.url}/v1/images/{item['id']}/",
            "related_url": f"{self.url}/v1/images/{item['id']}/related/",
            "unstable__sensitivity": [],
        }

    def wikimedia_answer(self, params: dict[str, str]) -> dict[str, Any]:
        """A MediaWiki query answer (formatversion=2) for generator=search + imageinfo."""
        if self.search_mode == "api-error":
            return {"error": {"code": "badvalue", "info": "Unrecognized value for parameter "
                              "<b>gsrnamespace</b>.", "*": "See the API help."}}
        if self.search_mode == "empty":
            return {"batchcomplete": True}  # MediaWiki leaves "query" out when nothing matched
        limit = int(params.get("gsrlimit", "10"))
        pages = [self._wikimedia_page(page, int(params.get("iiurlwidth", "0")))
                 for page in WIKIMEDIA_PAGES if page["index"] <= limit]
        pages.reverse()  # the API does not promise search order; "index" carries it
        return {"batchcomplete": True,
                "continue": {"gsroffset": limit, "continue": "gsroffset||"},
                "query": {"pages": pages}}

    def _wikimedia_page(self, page: dict[str, Any], width: int) -> dict[str, Any]:
        title = page["title"]
        slug = quote(title.replace(" ", "_"))
        info = {
            "size": len(self.files[page["file"]][0]), "width": 3200, "height": 2400,
            "url": f"{self.url}/originals/{slug}",
            "descriptionurl": f"{self.url}/wiki/{slug}",
            "descriptionshorturl": f"{self.url}/w/index.php?curid={page['pageid']}",
            "mime": page["mime"],
            "extmetadata": {key: {"value": value, "source": "commons-desc-page"}
                            for key, value in page["meta"].items()},
        }
        if width:
            info.update(thumburl=self.file_url(page["file"]), thumbwidth=width,
                        thumbheight=width * 3 // 4)
        return {"pageid": page["pageid"], "ns": 6, "title": title, "index": page["index"],
                "imagerepository": "local", "imageinfo": [info]}


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the FakeImageAPI held by the server."""

    server_version = "FakeImageAPI/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet tests
        pass

    @property
    def api(self) -> FakeImageAPI:
        return self.server.api  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # http.server's name for GET handlers
        parts = urlsplit(self.path)
        params = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.api.requests.append(SeenRequest(parts.path, params, dict(self.headers.items())))
        try:
            self._route(parts.path, params)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (size limit, timeout): expected in these tests

    def _route(self, path: str, params: dict[str, str]) -> None:
        if path == "/v1/images/":
            self._search(lambda: self.api.openverse_answer(params))
        elif path == "/w/api.php":
            self._search(lambda: self.api.wikimedia_answer(params))
        elif path.startswith("/files/"):
            self._file(path.removeprefix("/files/"))
        elif path.startswith("/raw/") and path.removeprefix("/raw/") in self.api.files:
            data, content_type = self.api.files[path.removeprefix("/raw/")]
            self._send(200, data, content_type)
        else:
            self._send(404, b'{"detail": "Not found."}', "application/json")

    def _search(self, answer: Any) -> None:
        mode = self.api.search_mode
        if mode == "503":
            self._send(503, b"<html><body>Service Unavailable</body></html>", "text/html")
        elif mode == "slow":
            self.api.stopping.wait(self.api.delay)
            self._send_json(answer())
        elif mode == "malformed":
            self._send(200, b'{"results": [{"url": "http://', "application/json")
        elif mode == "shape":
            self._send_json({"results": "none today", "query": "unexpected"})
        else:  # ok, empty, api-error (the answers handle those two)
            self._send_json(answer())

    def _file(self, name: str) -> None:
        if name not in self.api.files:
            self._send(404, b"no such file", "text/plain")
            return
        data, content_type = self.api.files[name]
        mode = self.api.image_modes.get(name, "ok")
        if mode in ("404", "503"):
            self._send(int(mode), b"<html>error</html>", "text/html")
        elif mode == "slow":
            self.api.stopping.wait(self.api.delay)
            self._send(200, data, content_type)
        elif mode == "trickle":
            self._trickle(data, content_type)
        elif mode == "content-type":
            self._send(200, b"<html><body>Please log in</body></html>", "text/html")
        elif mode == "huge":
            self._send(200, data + b"\0" * HUGE_BYTES, content_type)
        elif mode == "huge-unsized":
            self._send_unsized(data + b"\0" * HUGE_BYTES, content_type)
        elif mode == "truncated":
            self._send(200, data[:len(data) // 2], content_type, length=len(data))
        elif mode == "corrupt":
            self._send(200, data[:len(data) // 2], content_type)
        elif mode == "bomb":
            self._send(200, png_bomb(20_000, 20_000), "image/png")
        elif mode == "redirect":
            self._redirect(f"/raw/{quote(name)}")
        elif mode == "redirect-file":
            self._redirect("file:///etc/passwd")
        elif mode == "redirect-loop":
            self._redirect(f"/files/{quote(name)}")
        else:
            self._send(200, data, content_type)

    def _send(self, status: int, body: bytes, content_type: str,
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, data: Any) -> None:
        self._send(200, json.dumps(data).encode(), "application/json")

    def _send_unsized(self, body: bytes, content_type: str) -> None:
        """No Content-Length: the body ends when the connection closes (HTTP/1.0)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        for start in range(0, len(body), 64 * 1024):
            self.wfile.write(body[start:start + 64 * 1024])

    def _trickle(self, body: bytes, content_type: str) -> None:
        """A byte every 50 ms: each read gets data in time, the whole takes seconds."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            if self.api.stopping.wait(0.05):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            self.api.trickled += 1

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def fake_image_api() -> Iterator[FakeImageAPI]:
    """A running FakeImageAPI for one test (slow modes stall 5 s unless a test changes it)."""
    with FakeImageAPI() as api:
        yield api
