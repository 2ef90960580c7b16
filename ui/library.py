"""The Library view's actions as plain functions: browse, edit, upload, delete, caption.

Who may do what: images a person uploads in the browser belong to them (`owner`); images
imported with the CLI and the default photos are the shared library (owner None). Everyone
sees the shared library and their own images, and compositions draw from both. A person may
edit or delete their own images, and the shared ones too on a personal install (no --auth,
not a Space); on a multi-user server the shared library is read-only in the browser.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from composer.captioning import CaptionStatus
from composer.library import add_images, visible_text
from composer.types import InputError, LibraryImage, NotFoundError
from ui.handlers import ANY_VALUE
from ui.i18n import say

PAGE_SIZE = 40
THUMB_SIZE = 256
MAX_UPLOAD_FILES = 50
ANY = ANY_VALUE


@dataclass
class LibraryPage:
    """One page of thumbnails and what the page picker shows."""

    items: list[tuple[str, str]]  # (thumbnail path, label) for a gr.Gallery
    ids: list[str]  # image ids in gallery order
    page: int
    pages: int
    total: int

    def summary(self, language: str = "en") -> str:
        """"12 images · page 1 of 1" (or that none match) in the UI's `language`."""
        if not self.total:
            return say(language, "library_none")
        return say(language, "library_summary", total=self.total, page=self.page,
                   pages=self.pages)


@dataclass
class ImageDetails:
    """What the editor panel shows for one image."""

    image: LibraryImage
    editable: bool
    visible_words: list[str] = field(default_factory=list)
    text_area: float = 0.0
    spelled_caption: bool = False
    near_duplicates: list[tuple[LibraryImage, int]] = field(default_factory=list)

    @property
    def notes(self) -> str:
        """Markdown notes: size, provenance, visible text, warnings."""
        image = self.image
        lines = [f"**{image.width}×{image.height}** {image.format}, {image.bytes:,} bytes · "
                 f"id `{image.id[:12]}…`"]
        if image.source:
            lines.append(f"Source: {_plain(image.source)}")
        lines.append(f"Caption by: {_caption_origin(image.caption_source)}")
        if self.visible_words:
            words = " ".join(self.visible_words[:30])
            lines.append(f"Visible text (OCR, {self.text_area:.0%} of the image): {_plain(words)}")
        if self.spelled_caption:
            lines.append("⚠ The caption only spells the text visible in the image, so retrieval "
                         "does not trust it as a description: describe what the image shows.")
        if not image.caption.strip():
            lines.append("⚠ No caption yet: articles can only find this image once it has one.")
        for other, distance in self.near_duplicates[:3]:
            lines.append(f"Looks like `{other.id[:12]}…` ({_plain(other.caption[:50])}), "
                         f"distance {distance}")
        if not self.editable:
            lines.append("This image belongs to the shared library, which is read-only here.")
        return "  \n".join(lines)


def _plain(text: str) -> str:
    """Text safe to put in Markdown: no HTML, no Markdown syntax that changes the page."""
    import html

    return html.escape(text.replace("\n", " "), quote=False).replace("*", "\\*") \
        .replace("_", "\\_").replace("[", "\\[").replace("`", "'")


def _caption_origin(source: str) -> str:
    if source.startswith("model:"):
        return f"the captioning model {source[6:]}"
    return {"user": "a person", "sidecar": "a sidecar caption file", "seed": "the default library",
            "web": "the web image search (its title)"}.get(source, "unknown")


def shared_library_editable(settings: Any) -> bool:
    """A personal install (no login, not a Space) lets people edit the shared library."""
    return not settings.auth and not settings.on_spaces


def can_edit(settings: Any, image: LibraryImage, owner: str) -> bool:
    """Whether `owner` may change or delete `image`."""
    if image.owner is None:
        return shared_library_editable(settings)
    return image.owner == owner


def visible_image(services: Any, image_id: Any, owner: str) -> LibraryImage:
    """An image the owner can see (shared or theirs); NotFoundError otherwise."""
    if not isinstance(image_id, str) or not image_id.strip():
        raise NotFoundError("no image is selected: click a thumbnail first")
    image = services.images.get(image_id.strip())
    if image.owner is not None and image.owner != owner:
        raise NotFoundError(f"no image with id {image_id!r} in your library")
    return image


def filter_choices(services: Any, owner: str) -> tuple[list[str], list[str]]:
    """The source and license values the filters offer (plus "(any)")."""
    return ([ANY] + services.images.sources(owner=owner),
            [ANY] + services.images.licenses(owner=owner))


def filter_options(values: list[str], language: str = "en") -> list[tuple[str, str]]:
    """A filter drop-down's (label, value) choices: "(any)" reads in the UI's language."""
    return [(say(language, "any") if value == ANY else value, value) for value in values]


def library_page(services: Any, owner: str, search: str = "", source: str = ANY,
                 license: str = ANY, page: Any = 1) -> LibraryPage:
    """One page of the owner's visible library, newest first, with cached thumbnails."""
    filters = {"search": (search or "").strip() or None,
               "source": None if source in (None, "", ANY) else source,
               "license": None if license in (None, "", ANY) else license,
               "owner": owner}
    total = services.images.count(**filters)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    try:
        number = min(max(1, int(float(page or 1))), pages)
    except (TypeError, ValueError):
        raise InputError(f"page {page!r} must be a number from 1 to {pages}") from None
    images = services.images.list(limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE,
                                  newest_first=True, **filters)
    items, ids = [], []
    for image in images:
        try:
            thumb = services.images.thumbnail(image.id, THUMB_SIZE)
        except (OSError, InputError, NotFoundError):
            continue  # file gone or unreadable: the details panel says so when opened
        label = image.caption[:70] or "(no caption)"
        items.append((str(thumb), label))
        ids.append(image.id)
    return LibraryPage(items, ids, number, pages, total)


def image_details(services: Any, image_id: str, owner: str) -> ImageDetails:
    """The editor panel's content for one image."""
    image = visible_image(services, image_id, owner)
    words, area, spelled = visible_text(services.images, image)
    near = [(other, distance) for other, distance in services.images.near_duplicates(image.id)
            if other.owner is None or other.owner == owner]
    return ImageDetails(image=image, editable=can_edit(services.settings, image, owner),
                        visible_words=words, text_area=area,
                        spelled_caption=spelled,
                        near_duplicates=near)


def save_image(services: Any, image_id: str, owner: str, caption: str, license: str,
               attribution: str) -> LibraryImage:
    """Save an edited caption, license and attribution; the new caption is searchable at once."""
    image = visible_image(services, image_id, owner)
    if not can_edit(services.settings, image, owner):
        raise InputError("the shared library is read-only on this server: upload your own copy "
                         "to caption it differently")
    updated = services.images.update(image.id, caption=(caption or "").strip(),
                                     license=(license or "").strip(),
                                     attribution=(attribution or "").strip(),
                                     caption_source=None if caption.strip() == image.caption
                                     else "user")
    services.retriever.index()
    return updated


def delete_image(services: Any, image_id: str, owner: str, confirmed: bool) -> None:
    """Delete an image from the library once confirmed; articles showing it lose it."""
    image = visible_image(services, image_id, owner)
    if not can_edit(services.settings, image, owner):
        raise InputError("the shared library is read-only on this server: only your own "
                         "uploads can be deleted")
    if not confirmed:
        raise InputError("tick 'Yes, delete' to delete this image: articles that show it will "
                         "lose it, and this cannot be undone")
    services.images.delete(image.id)
    services.retriever.index()


def upload_images(services: Any, owner: str, files: list[Any] | None, caption: str = "",
                  license: str = "", attribution: str = "", keep_near_duplicates: bool = False,
                  progress: Callable[[float, str], None] | None = None) -> str:
    """Add uploaded files to the owner's library, index them, and say what happened."""
    paths = [Path(item) if isinstance(item, (str, os.PathLike)) else Path(item.name)
             for item in (files or [])]
    if not paths:
        raise InputError("choose one or more image files to upload")
    if len(paths) > MAX_UPLOAD_FILES:
        raise InputError(f"{len(paths)} files were chosen; upload at most {MAX_UPLOAD_FILES} "
                         "at a time, or import a folder with `python -m composer library add`")
    if progress:
        progress(0.1, f"Checking {len(paths)} files")
    result = add_images(services.images, paths, caption=(caption or "").strip() or None,
                        license=(license or "").strip(), attribution=(attribution or "").strip(),
                        allow_near_duplicates=bool(keep_near_duplicates), owner=owner)
    if progress:
        progress(0.5, "Reading text in the images and indexing captions")
    services.retriever.index()
    lines = []
    if result.added:
        lines.append(f"Added {len(result.added)} image(s).")
    if result.existing:
        lines.append(f"{len(result.existing)} already in the library (same file).")
    for path, existing, distance in result.near_duplicates:
        lines.append(f"Skipped {Path(path).name}: it looks like an image already in the library "
                     f"(\"{existing.caption[:50]}\", distance {distance}). Tick 'Keep near-"
                     "duplicates' to add it anyway.")
    for path, message in result.failed:  # uploads sit in temporary folders: name the file only
        lines.append(f"Not added: {Path(path).name}: {message.replace(str(path), Path(path).name)}")
    if result.uncaptioned:
        lines.append(f"{len(result.uncaptioned)} image(s) have no caption yet: "
                     + caption_hint(services))
        if services.settings.captioner:
            services.captions.start()  # idempotent: captions only what has no caption
    return "\n".join(f"- {_plain(line)}" for line in lines) or "- Nothing was added."


def caption_hint(services: Any) -> str:
    """Where captions come from with this configuration (the view shows it)."""
    if services.settings.captioner:
        return ("the captioning model writes them: press 'Caption uncaptioned images', "
                "or write your own below.")
    return ("no captioning model is configured, so captions come from you (select an image "
            "and write one) or from sidecar files (photo.jpg.txt, captions.json or captions.csv "
            "next to the images when importing a folder with `python -m composer library "
            "add`). Set COMPOSER_CAPTIONER to a captioning model to write them automatically.")


def caption_status_text(status: CaptionStatus | None) -> str:
    """One line about the background captioning job."""
    if status is None:
        return ""
    if status.running:
        return f"Captioning: {status.done} of {status.total} done. {status.message}"
    if status.total:
        failed = f", {status.failed} failed" if status.failed else ""
        return f"Captioning finished: {status.done} of {status.total} captioned{failed}."
    return status.message or ""
