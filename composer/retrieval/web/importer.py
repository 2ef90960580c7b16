"""Importing web search results into the library, and choosing the configured adapter."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from composer.config import MAX_IMAGE_BYTES, WEB_IMAGE_CHOICES
from composer.retrieval.web.fetch import DEFAULT_TIMEOUT, DEFAULT_USER_AGENT, fetch_image
from composer.retrieval.web.openverse import OpenverseSearch
from composer.retrieval.web.results import (
    PROVIDER_NAMES,
    WebImage,
    WebImageError,
    WebImageSearch,
    web_caption,
)
from composer.retrieval.web.wikimedia import WikimediaSearch
from composer.types import InputError, LibraryImage

if TYPE_CHECKING:
    from storage.images import ImageStore

log = logging.getLogger(__name__)

WEB_SEARCH_KINDS = WEB_IMAGE_CHOICES


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
    try:
        stored, _ = store.add(data, name=image.image_url,
                              caption=caption if caption is not None else web_caption(image),
                              source=image.page_url, license=image.license,
                              attribution=image.attribution, caption_source="web")
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
