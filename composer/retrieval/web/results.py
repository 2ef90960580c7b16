"""What a web image search returns (WebImage), how it fails (WebImageError), what an adapter
must offer (WebImageSearch), and the text helpers both adapters share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Protocol

from composer.types import ComposerError

PROVIDER_NAMES = {"openverse": "Openverse", "wikimedia": "Wikimedia Commons"}
MAX_TEXT_CHARS = 300  # titles, creators and license names are cut to this length


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
