"""Web image search: both adapters against a local fake of their APIs, over real HTTP.

Every request goes to tests/fake_image_api.py on 127.0.0.1; nothing here reaches the internet.
Imports go into a real ImageStore on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.retrieval.web.fetch import DEFAULT_USER_AGENT, MAX_REDIRECTS, fetch_image
from composer.retrieval.web.importer import import_web_image, make_web_search, search_web_images
from composer.retrieval.web.openverse import OpenverseSearch, openverse_license
from composer.retrieval.web.results import (
    WebImage,
    WebImageError,
    clean_text,
    make_attribution,
    web_caption,
)
from composer.retrieval.web.wikimedia import WikimediaSearch
from composer.types import ComposerError
from storage.db import Database
from storage.images import ImageStore
from tests.fake_image_api import FakeImageAPI

TIMEOUT = 0.5  # seconds: the fake answers at once unless told to stall (5 s)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests never go through a proxy configured on the test machine."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def api() -> Iterator[FakeImageAPI]:
    with FakeImageAPI() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    """A real library: SQLite database and image files under tmp_path."""
    db = Database(f"sqlite:///{tmp_path / 'composer.db'}")
    db.migrate()
    yield ImageStore(db, tmp_path / "images")
    db.dispose()


def openverse(api: FakeImageAPI) -> OpenverseSearch:
    return OpenverseSearch(base_url=api.url, timeout=TIMEOUT)


def wikimedia(api: FakeImageAPI) -> WikimediaSearch:
    return WikimediaSearch(base_url=api.url, timeout=TIMEOUT)


def stored_files(store: ImageStore) -> list[Path]:
    """The library's image files (images_dir/ab/<sha>.<ext>; thumbnails are elsewhere)."""
    return sorted(path for path in store.images_dir.glob("??/*") if path.is_file())


# -- parsing -------------------------------------------------------------------------------

def test_openverse_results_carry_license_creator_and_attribution(api: FakeImageAPI) -> None:
    images = openverse(api).search("bicycle", 10)

    assert [image.title for image in images] == ["Red bicycle & a wall", "Harbour at dusk",
                                                  "Old map"]  # URL-less and file: ones skipped
    bicycle, harbour, old_map = images
    assert bicycle == WebImage(
        title="Red bicycle & a wall", image_url=api.file_url("red-bicycle.png"),
        page_url="https://www.flickr.com/photos/example/0b0e7a1c-0001",
        license="CC BY 2.0", license_url="https://creativecommons.org/licenses/by/2.0/",
        creator="Jane Doe",
        attribution='"Red bicycle & a wall" by Jane Doe, CC BY 2.0, via Openverse',
        provider="openverse", width=64, height=48,
        thumbnail_url=f"{api.url}/v1/images/0b0e7a1c-0001/thumb/")
    assert (harbour.license, harbour.creator) == ("CC0 1.0", "")
    assert harbour.attribution == '"Harbour at dusk", CC0 1.0, via Openverse'
    assert old_map.license == "Public domain"
    assert old_map.license_url == "https://creativecommons.org/publicdomain/mark/1.0/"
    assert old_map.attribution == '"Old map" by Unknown, Public domain, via Openverse'

    (seen,) = api.searches()
    assert seen.path == "/v1/images/"
    assert seen.params == {"q": "bicycle", "page_size": "10"}
    assert seen.headers["User-Agent"] == DEFAULT_USER_AGENT


def test_openverse_asks_at_most_20_and_can_narrow_licenses(api: FakeImageAPI) -> None:
    searcher = OpenverseSearch(base_url=api.url, timeout=TIMEOUT, license_type="commercial")
    assert len(searcher.search("map", 2)) == 2
    assert searcher.search("map", 500)  # clamped, not refused
    first, second = api.searches()
    assert first.params == {"q": "map", "page_size": "2", "license_type": "commercial"}
    assert second.params["page_size"] == "20"


def test_wikimedia_pages_in_rank_order_without_html_or_unlicensed_files(
        api: FakeImageAPI) -> None:
    images = wikimedia(api).search("red bicycle", 10)

    assert [image.title for image in images] == ["Lighthouse at night",  # from the file title
                                                 "Red bicycle in Amsterdam"]  # ObjectName
    lighthouse, bicycle = images
    assert bicycle.creator == "Jan de Vries"
    assert bicycle.license == "CC BY-SA 4.0"
    assert bicycle.license_url == "https://creativecommons.org/licenses/by-sa/4.0"
    assert bicycle.attribution == ('"Red bicycle in Amsterdam" by Jan de Vries, CC BY-SA 4.0, '
                                   "via Wikimedia Commons")
    assert bicycle.image_url == api.file_url("amsterdam-bicycle.jpg")  # the 1280 px rendering
    assert bicycle.page_url == f"{api.url}/wiki/File%3ARed_bicycle_in_Amsterdam.jpg"
    assert (bicycle.width, bicycle.height) == (1280, 960)
    assert lighthouse.license == "Public domain" and lighthouse.license_url == ""
    for text in (lighthouse.creator, lighthouse.attribution):
        assert "<" not in text and ">" not in text and "alert(1)" not in text
    assert lighthouse.creator.startswith("Ana & Bo")

    (seen,) = api.searches()
    assert seen.path == "/w/api.php"
    assert seen.params == {
        "action": "query", "format": "json", "formatversion": "2", "generator": "search",
        "gsrnamespace": "6", "gsrsearch": "red bicycle filetype:bitmap", "gsrlimit": "10",
        "prop": "imageinfo", "iiprop": "url|size|mime|extmetadata", "iiurlwidth": "1280"}
    assert seen.headers["User-Agent"] == DEFAULT_USER_AGENT


def test_no_results_is_an_empty_list(api: FakeImageAPI) -> None:
    api.search_mode = "empty"
    assert openverse(api).search("nothing", 5) == []
    assert wikimedia(api).search("nothing", 5) == []
    assert openverse(api).search("   ", 5) == [] and len(api.searches()) == 2  # not even asked


@pytest.mark.parametrize(("raw", "expected"), [
    ('<a href="//x" title="User:Jan">Jan</a> <b>de</b> Vries', "Jan de Vries"),
    ("<script>alert(1)</script>Ann", "Ann"),
    ("<style>a{}</style><span onclick='x()'>Bo</span>", "Bo"),
    ("&lt;script&gt;alert(2)&lt;/script&gt; Cy", "script alert(2) /script Cy"),
    ("Fish &amp; chips &copy; 2020", "Fish & chips © 2020"),
    ("Line<br>break\n\tand\x00 tabs", "Line break and tabs"),
    ("<unclosed attr='", ""),
    (None, ""),
])
def test_clean_text_keeps_only_plain_text(raw: str | None, expected: str) -> None:
    assert clean_text(raw) == expected


def test_clean_text_cuts_long_values() -> None:
    assert clean_text("word " * 200, limit=20) == "word word word word…"


@pytest.mark.parametrize(("code", "version", "expected"), [
    ("by", "2.0", "CC BY 2.0"), ("by-nc-sa", "4.0", "CC BY-NC-SA 4.0"),
    ("cc0", "1.0", "CC0 1.0"), ("pdm", "1.0", "Public domain"),
    ("sampling+", "1.0", "CC Sampling+ 1.0"), ("", "", ""),
])
def test_openverse_license_names(code: str, version: str, expected: str) -> None:
    assert openverse_license(code, version) == expected


def test_attribution_leaves_out_missing_parts() -> None:
    assert make_attribution("", "Jo", "CC BY 4.0", "wikimedia") == \
        "Image by Jo, CC BY 4.0, via Wikimedia Commons"
    assert make_attribution("Sea", "", "CC0 1.0", "openverse") == '"Sea", CC0 1.0, via Openverse'


def test_caption_is_the_title_or_else_the_query() -> None:
    image = WebImage("Harbour at dusk", "http://x/a.png", "http://x/a", "CC0 1.0", "", "", "",
                     "openverse")
    assert web_caption(image, "boats") == "Harbour at dusk"
    image.title = "20190311_1423"
    assert web_caption(image, "boats in a harbour") == "boats in a harbour"
    assert web_caption(image) == "Image from Openverse"


# -- import into the library --------------------------------------------------------------

@pytest.mark.parametrize("adapter", [openverse, wikimedia], ids=["openverse", "wikimedia"])
def test_search_imports_images_with_license_attribution_and_source(
        api: FakeImageAPI, store: ImageStore, adapter) -> None:
    found = adapter(api).search("bicycle", 10)
    images, message = search_web_images(adapter(api), store, "bicycle", 10)

    assert message is None
    assert len(images) == len(found) == store.count()
    for image, result in zip(images, found, strict=True):
        kept = store.get(image.id)
        assert (kept.license, kept.attribution, kept.source, kept.caption) == \
            (result.license, result.attribution, result.page_url, result.title)
        assert getattr(kept, "caption_source", "web") == "web"  # where the store records it
        assert store.path(image.id).read_bytes() == api.files[result.image_url.rsplit("/")[-1]][0]


def test_importing_the_same_image_again_keeps_one_copy(api: FakeImageAPI,
                                                       store: ImageStore) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    first = import_web_image(store, image, timeout=TIMEOUT)
    again = import_web_image(store, image, timeout=TIMEOUT)

    assert again == first
    assert store.count() == 1 and len(stored_files(store)) == 1
    images, message = search_web_images(openverse(api), store, "bicycle", 1)
    assert images == [first] and message is None and store.count() == 1


def test_a_near_duplicate_of_a_library_image_is_that_image(api: FakeImageAPI,
                                                           store: ImageStore) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    first = import_web_image(store, image, timeout=TIMEOUT)
    copy = WebImage("Red bicycle (small)", api.file_url("red-bicycle-copy.jpg"),
                    "https://example.org/copy", "CC BY 4.0", "", "Someone Else",
                    '"Red bicycle (small)" by Someone Else, CC BY 4.0, via Openverse', "openverse")

    assert import_web_image(store, copy, timeout=TIMEOUT) == first
    assert store.count() == 1 and len(stored_files(store)) == 1


def test_redirects_are_followed(api: FakeImageAPI, store: ImageStore) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    api.image_modes["red-bicycle.png"] = "redirect"
    stored = import_web_image(store, image, timeout=TIMEOUT)
    assert stored.source == image.page_url
    assert [seen.path for seen in api.requests[-2:]] == ["/files/red-bicycle.png",
                                                         "/raw/red-bicycle.png"]


class RecordingStore:
    """A store that records what add() was given."""

    def __init__(self, inner: ImageStore) -> None:
        self.inner = inner
        self.calls: list[dict] = []

    def add(self, data: bytes, *, caption_source: str = "", **fields):
        self.calls.append({"caption_source": caption_source, **fields})
        return self.inner.add(data, **fields)


def test_an_import_records_caption_source_web(api: FakeImageAPI, store: ImageStore) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    recording = RecordingStore(store)
    import_web_image(recording, image, timeout=TIMEOUT)  # type: ignore[arg-type]
    assert recording.calls[0]["caption_source"] == "web"
    assert recording.calls[0]["name"] == image.image_url


# -- failures fall back to the library ------------------------------------------------------

@pytest.mark.parametrize(("adapter", "mode", "expected"), [
    (openverse, "503", "failed: HTTP 503 from http://127.0.0.1:"),
    (wikimedia, "503", "failed: HTTP 503 from http://127.0.0.1:"),
    (openverse, "malformed", "is not valid JSON"),
    (wikimedia, "malformed", "is not valid JSON"),
    (openverse, "shape", "has no 'results' list"),
    (wikimedia, "shape", "has no 'query.pages'"),
    (wikimedia, "api-error", ("answered error 'badvalue': Unrecognized value for parameter "
                              "gsrnamespace.")),
    (openverse, "slow", "did not answer within 0.5 s (timed out)"),
    (wikimedia, "slow", "did not answer within 0.5 s (timed out)"),
])
def test_failed_search_gives_a_clear_message_and_no_images(
        api: FakeImageAPI, store: ImageStore, adapter, mode: str, expected: str) -> None:
    api.search_mode = mode
    images, message = search_web_images(adapter(api), store, "bicycle", 3)

    # One request, no retry; "slow" stalls 5 s then answers, so its timed-out message shows
    # the client gave up at its 0.5 s timeout rather than waiting (no wall-clock assert: a
    # loaded machine stretches seconds; bench/ measures time).
    assert len(api.searches()) == 1
    assert images == [] and store.count() == 0
    assert message is not None and expected in message
    name = "Openverse" if adapter is openverse else "Wikimedia Commons"
    assert message.startswith(f"Web image search ({name}) failed: ")
    assert message.endswith("; using your library only.")


def test_unreachable_server_gives_a_clear_message(store: ImageStore) -> None:
    with FakeImageAPI() as closed:
        url = closed.url  # the port is free again once the server is closed
    images, message = search_web_images(OpenverseSearch(base_url=url, timeout=TIMEOUT), store,
                                        "bicycle", 3)
    assert images == []
    assert message is not None and f"could not reach {url}/v1/images/" in message


def test_no_results_says_so(api: FakeImageAPI, store: ImageStore) -> None:
    api.search_mode = "empty"
    assert search_web_images(wikimedia(api), store, "zzz", 3) == (
        [], ("Web image search (Wikimedia Commons) found no images for 'zzz'; using your "
             "library only."))


@pytest.mark.parametrize(("mode", "expected"), [
    ("404", "HTTP 404 from http://127.0.0.1:"),
    ("503", "HTTP 503 from http://127.0.0.1:"),
    ("slow", "(timed out)"),
    ("content-type", "is not an image (Content-Type 'text/html')"),
    ("huge", "over the limit of 1,000,000 bytes"),
    ("huge-unsized", "sent more than 1,000,000 bytes, over the limit: download stopped"),
    ("truncated", "(truncated)"),
    ("corrupt", "is truncated or corrupt"),
    ("bomb", "decompression bomb"),
    ("redirect-file", "redirected too often or to a non-web address"),
    ("redirect-loop", "redirected too often or to a non-web address"),
])
def test_failed_download_stores_nothing(api: FakeImageAPI, store: ImageStore, mode: str,
                                        expected: str) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    api.image_modes["red-bicycle.png"] = mode
    with pytest.raises(WebImageError) as caught:
        import_web_image(store, image, timeout=TIMEOUT, max_bytes=1_000_000)

    # one request (a redirect loop: at most the first plus MAX_REDIRECTS), never a retry;
    # "slow" stalls 5 s then sends the file, so "(timed out)" shows the client did not wait
    downloads = [seen for seen in api.requests if seen.path.startswith(("/files/", "/raw/"))]
    assert 1 <= len(downloads) <= (1 + MAX_REDIRECTS if mode == "redirect-loop" else 1)
    assert expected in str(caught.value)
    assert isinstance(caught.value, ComposerError)
    assert str(caught.value).endswith("; using your library only.")
    assert store.count() == 0 and stored_files(store) == []


def test_download_errors_name_the_url(api: FakeImageAPI, store: ImageStore) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    api.image_modes["red-bicycle.png"] = "corrupt"
    with pytest.raises(WebImageError, match="the library refused the download: "
                                            + image.image_url):
        import_web_image(store, image, timeout=TIMEOUT)


def test_size_limit_names_the_size_and_the_limit(api: FakeImageAPI) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    size = len(api.files["red-bicycle.png"][0])
    assert len(fetch_image(image, max_bytes=size, timeout=TIMEOUT)) == size
    with pytest.raises(WebImageError, match=f"{image.image_url} is {size:,} bytes, over the "
                                            f"limit of {size - 1:,} bytes"):
        fetch_image(image, max_bytes=size - 1, timeout=TIMEOUT)


def test_a_trickling_download_stops_at_the_deadline(api: FakeImageAPI) -> None:
    (image, *_) = openverse(api).search("bicycle", 1)
    api.image_modes["red-bicycle.png"] = "trickle"  # a byte every 50 ms: no read times out
    size = len(api.files["red-bicycle.png"][0])
    with pytest.raises(WebImageError, match="was too slow.*before the download deadline"):
        fetch_image(image, timeout=TIMEOUT, deadline_s=0.3)
    # stopped mid-body: the client gave up at the deadline instead of reading to the end
    # (the whole file takes size * 50 ms to trickle); not a wall-clock assert, which a loaded
    # machine would stretch
    assert api.trickled < size


def test_only_http_urls_are_fetched() -> None:
    image = WebImage("x", "file:///etc/passwd", "", "CC0 1.0", "", "", "", "openverse")
    with pytest.raises(WebImageError, match="refused the URL 'file:///etc/passwd': only http "
                                            "and https"):
        fetch_image(image)


def test_partial_failure_keeps_the_images_that_worked(api: FakeImageAPI,
                                                      store: ImageStore) -> None:
    api.image_modes["harbour.jpg"] = "content-type"
    images, message = search_web_images(openverse(api), store, "bicycle", 3)

    assert [image.caption for image in images] == ["Red bicycle & a wall", "Old map"]
    assert store.count() == 2
    assert message is not None
    assert message.startswith("Web image search (Openverse): 1 of 3 images could not be "
                              f"imported: {api.file_url('harbour.jpg')} is not an image")
    assert message.endswith("; using the 2 that worked.")


def test_all_downloads_failing_falls_back_to_the_library(api: FakeImageAPI,
                                                         store: ImageStore) -> None:
    for name in ("amsterdam-bicycle.jpg", "lighthouse.png"):
        api.image_modes[name] = "503"
    images, message = search_web_images(wikimedia(api), store, "bicycle", 3)

    assert images == [] and store.count() == 0
    assert message == (
        "Web image search (Wikimedia Commons) failed: none of the 2 images found could be "
        f"imported: HTTP 503 from {api.file_url('lighthouse.png')} (and 1 more); using your "
        "library only.")


# -- configuration ------------------------------------------------------------------------

def test_make_web_search_builds_the_named_adapter() -> None:
    assert make_web_search("off") is None
    assert make_web_search("") is None
    default = make_web_search("openverse")
    assert isinstance(default, OpenverseSearch)
    assert default.base_url == "https://api.openverse.org"
    mirror = make_web_search(" Wikimedia ", "http://127.0.0.1:9/", timeout=2)
    assert isinstance(mirror, WikimediaSearch)
    assert (mirror.base_url, mirror.timeout) == ("http://127.0.0.1:9", 2)
    assert make_web_search("wikimedia").base_url == "https://commons.wikimedia.org"
    with pytest.raises(ValueError, match="unknown web image search 'flickr': choose one of "
                                         "off, openverse, wikimedia"):
        make_web_search("flickr")
