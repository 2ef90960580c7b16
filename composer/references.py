"""Reference images a person gives with an instruction, for a writer that cannot see them.

XComposer2 feeds reference images to the writer as image tokens (models/plora.py,
models/vision.py). The writer models this app runs today are text-only, so each reference
image reaches the writer as words instead: its library caption, when the same file is in the
person's library, and the text visible in it (OCR). Those lines are added to the reference
material, and the compose view and the CLI say so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.config import MAX_IMAGE_BYTES, MAX_MATERIAL_CHARS, MAX_REFERENCE_IMAGES
from composer.types import InputError, NotFoundError

MAX_VISIBLE_WORDS = 60
TEXT_ONLY_NOTE = ("The writer model cannot see images: reference images reach it as their "
                  "captions (when the same file is in your library) and the text visible in "
                  "them.")
SEEING_NOTE = ("The writer model sees images (COMPOSER_VISION_MODEL): reference images reach "
               "it as image tokens.")


@dataclass
class ReferenceImage:
    """What the writer is told about one reference image."""

    name: str
    caption: str = ""
    visible_words: list[str] = field(default_factory=list)

    def line(self, number: int) -> str:
        """One line of material describing the image (or saying nothing is known of it)."""
        parts = []
        if self.caption:
            parts.append(f"shows {self.caption.rstrip('.')}")
        if self.visible_words:
            parts.append("its visible text reads \"" +
                         " ".join(self.visible_words[:MAX_VISIBLE_WORDS]) + "\"")
        described = "; ".join(parts) or "no caption or visible text is known"
        return f"Reference image {number} ({self.name}): {described}."


def describe_references(paths: list[str | Path], store: Any, spotter: Any | None
                        ) -> list[ReferenceImage]:
    """Check the reference images and describe each by caption and visible text.

    Every file must be a real image within the library's limits (InputError naming the file
    otherwise); at most MAX_REFERENCE_IMAGES. `store` (an ImageStore) supplies the caption of
    a file already in the library; `spotter` (models/ocr.py) reads visible text, if given.
    """
    paths = [Path(path) for path in paths]
    if len(paths) > MAX_REFERENCE_IMAGES:
        raise InputError(f"{len(paths)} reference images were given; the limit is "
                         f"{MAX_REFERENCE_IMAGES}: keep the ones that matter most")
    references = []
    for path in paths:
        try:
            size = path.stat().st_size
        except OSError as error:
            raise InputError(f"reference image {path.name}: cannot read it "
                             f"({error.strerror}): check the path") from None
        if size > MAX_IMAGE_BYTES:
            raise InputError(f"reference image {path.name} is {size:,} bytes, over the limit "
                             f"of {MAX_IMAGE_BYTES:,} bytes: resize or recompress it")
        data = path.read_bytes()
        store.validate_image(data, f"reference image {path.name}")
        references.append(ReferenceImage(name=path.name, caption=_library_caption(store, data),
                                         visible_words=_visible_words(spotter, path)))
    return references


def _library_caption(store: Any, data: bytes) -> str:
    """The caption of the same file in the shared library, or "" (a private copy's caption
    is its owner's: it never reaches someone else's composition)."""
    try:
        image = store.get(hashlib.sha256(data).hexdigest())
    except NotFoundError:
        return ""
    return image.caption.strip() if image.owner is None else ""


def _visible_words(spotter: Any | None, path: Path) -> list[str]:
    """The words OCR reads in the image ([] without a spotter or when it fails)."""
    if spotter is None:
        return []
    try:
        return list(spotter.read(path).words)
    except (OSError, ValueError, RuntimeError):
        return []


def material_with_references(material: str, references: list[ReferenceImage]) -> str:
    """The reference material with one line per reference image added after it."""
    if not references:
        return material
    lines = "\n".join(reference.line(number)
                      for number, reference in enumerate(references, start=1))
    combined = f"{material.rstrip()}\n\n{lines}" if material.strip() else lines
    if len(combined) > MAX_MATERIAL_CHARS:
        raise InputError(f"the material and the descriptions of the reference images come to "
                         f"{len(combined):,} characters; the limit is {MAX_MATERIAL_CHARS:,}: "
                         "shorten the material or give fewer reference images")
    return combined


def apply_references(services: Any, material: str, paths: list[Path]) -> tuple[str, list[str]]:
    """Check the reference images, then route them: (material, paths for image tokens).

    With a writer that sees images (settings.vision_model) the material is unchanged and the
    paths go to the writer; otherwise each image is described in the material instead.
    """
    if not paths:
        return material, []
    references = describe_references(paths, services.images, services.spotter)
    if services.settings.vision_model:
        return material, [str(path) for path in paths]
    return material_with_references(material, references), []


def reference_note(settings: Any) -> str:
    """What the compose view and the CLI say about how reference images reach the writer."""
    return SEEING_NOTE if settings.vision_model else TEXT_ONLY_NOTE
