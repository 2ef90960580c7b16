"""The image library's content: the default seed photos and importing a person's own images.

The default library is made of photos that installed packages already carry on disk
(scikit-image's `skimage/data/` and scikit-learn's `sklearn/datasets/images/`), so a fresh
install can illustrate articles offline without downloading anything. Only images whose
license allows reuse are included: public domain and CC0 from scikit-image (per the docstrings
of `skimage.data`), and the two CC BY 2.0 photos of scikit-learn (attribution from its README).
Each one has a caption written by hand from looking at the picture, since retrieval matches
captions, not pixels.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from composer.types import InputError, LibraryImage

if TYPE_CHECKING:
    from composer.retrieval.retriever import Retriever
    from storage.images import ImageStore

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
CAPTIONS_JSON = "captions.json"
CAPTIONS_CSV = "captions.csv"
PUBLIC_DOMAIN = "Public domain"
CC0 = "CC0 1.0"
CC_BY_2 = "CC BY 2.0"
ADDING_STAGE = "adding files"


@dataclass(frozen=True)
class SeedPhoto:
    """One photo of the default library: where it lies in which package, and its metadata."""

    package: str  # import name of the package that ships the file
    distribution: str  # pip name, to record the version it came from
    relative_path: str  # inside the package folder
    caption: str
    license: str
    attribution: str
    origin: str = ""  # where the package's authors got it (URL), when they say

    def locate(self) -> Path | None:
        """The file on disk inside the installed package, or None when it is not there."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative_path
        return path if path.is_file() else None

    def source(self) -> str:
        """Provenance text stored with the image: package, version, file, original URL."""
        try:
            version = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        text = f"{self.distribution} {version}: {self.package}/{self.relative_path}"
        return f"{text} (original: {self.origin})" if self.origin else text


def _skimage(name: str, caption: str, license: str, attribution: str,
             origin: str = "") -> SeedPhoto:
    return SeedPhoto("skimage", "scikit-image", f"data/{name}", caption, license,
                     attribution, origin)


def _sklearn(name: str, caption: str, attribution: str, origin: str) -> SeedPhoto:
    return SeedPhoto("sklearn", "scikit-learn", f"datasets/images/{name}", caption, CC_BY_2,
                     attribution, origin)


SEED_PHOTOS: tuple[SeedPhoto, ...] = (
    _skimage("astronaut.png",
             "Portrait of astronaut Eileen Collins smiling in an orange NASA flight suit, "
             "holding a black space helmet, with an American flag and a model of the space "
             "shuttle behind her.",
             PUBLIC_DOMAIN, "NASA (photo of Eileen Collins), via scikit-image",
             "https://flic.kr/p/r9qvLn"),
    _skimage("camera.png",
             "Black-and-white photo of a man in a dark coat looking through a video camera "
             "on a tripod, standing on a wide grass field with domed buildings and a tower "
             "in the distance.",
             CC0, "Lav Varshney, via scikit-image"),
    _skimage("chelsea.png",
             "Close-up of the face of Chelsea, a tabby cat with green eyes, striped brown "
             "fur, a pink nose and long white whiskers.",
             CC0, "Stefan van der Walt, via scikit-image"),
    _skimage("coffee.png",
             "A cup of espresso with golden crema in a red-brown cup on a matching saucer, "
             "with a small silver spoon, on a worn wooden table.",
             CC0, "Rachel Michetti, courtesy of Pikolo Espresso Bar, via scikit-image"),
    _skimage("rocket.jpg",
             "A SpaceX Falcon 9 rocket carrying the DSCOVR satellite stands ready for launch "
             "on its pad at Cape Canaveral at dusk, between tall towers, lit by bright "
             "floodlights under a deep blue sky.",
             PUBLIC_DOMAIN, "SpaceX (released into the public domain), via scikit-image",
             "https://www.flickr.com/photos/spacexphotos/16511594820/"),
    _skimage("hubble_deep_field.jpg",
             "The Hubble eXtreme Deep Field: thousands of distant galaxies, spirals and "
             "ellipticals glowing white, orange and blue against the black of deep space.",
             PUBLIC_DOMAIN, "NASA / Hubble Space Telescope (HubbleSite 2012 release 37), "
             "via scikit-image",
             "http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/"),
    _skimage("horse.png",
             "Black silhouette of a standing horse seen from the side, on a plain white "
             "background.",
             CC0, "Andreas Preuss (marauder) on openclipart, via scikit-image",
             "http://openclipart.org/detail/158377/horse-by-marauder"),
    _skimage("retina.jpg",
             "Fundus photograph of a healthy human eye: the orange-red retina with blood "
             "vessels branching out from the bright optic disc, and the darker macula at the "
             "centre, on a black background.",
             CC0, "Mikael Häggström, via Wikimedia Commons and scikit-image",
             "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg"),
    _skimage("clock_motion.png",
             "Black-and-white photo of a wall clock taken while the camera moved sideways, so "
             "the clock is a motion-blurred pale oval on a plain gray wall.",
             PUBLIC_DOMAIN, "Stefan van der Walt (released into the public domain), "
             "via scikit-image"),
    _skimage("text.png",
             "Black-and-white close-up of handwritten mathematical formulas on lined paper, "
             "photographed at a slant with a shallow depth of field.",
             PUBLIC_DOMAIN, "Wikipedia (File:Corner.png), via scikit-image",
             "https://en.wikipedia.org/wiki/File:Corner.png"),
    _skimage("cell.png",
             "Microscope image of a single round biological cell floating in saline: a bright "
             "disc on a grainy gray background, in black and white.",
             CC0, "Müller, Schürmann, Girardo, Cojoc and Guck, Optics Express 26(8) 2018, "
             "via scikit-image"),
    _skimage("brick.png",
             "A brick wall seen at an angle: rows of long rectangular bricks with pale mortar "
             "joints, in grayscale.",
             CC0, "CC0Textures (Bricks25), adapted by scikit-image",
             "https://cc0textures.com/view.php?tex=Bricks25"),
    _skimage("grass.png",
             "Close view of a lawn from above: dense blades of grass mixed with small clover "
             "leaves, in grayscale.",
             CC0, "linolafett on DeviantArt (Grass 01), adapted by scikit-image",
             "https://www.deviantart.com/linolafett/art/Grass-01-434853879"),
    _skimage("gravel.png",
             "Top-down view of a bed of small, sharp-edged gravel stones, in grayscale.",
             CC0, "CC0Textures (Gravel04), adapted by scikit-image",
             "https://cc0textures.com/view.php?tex=Gravel04"),
    _sklearn("china.jpg",
             "A tall multi-tiered Chinese tower with red columns and green and orange glazed "
             "roofs rises above trees, overlooking a wide hazy lake: the Tower of Buddhist "
             "Incense at the Summer Palace in Beijing.",
             "danielbuechele on Flickr (some rights reserved), via scikit-learn",
             "https://www.flickr.com/photos/danielbuechele/6061409035/"),
    _sklearn("flower.jpg",
             "Close-up of a round orange dahlia flower with tightly curled petals, against a "
             "blurred dark green background of leaves.",
             "vultilion on Flickr (some rights reserved), via scikit-learn",
             "https://www.flickr.com/photos/vultilion/6056698931/"),
)


def available_seed_photos() -> list[tuple[SeedPhoto, Path]]:
    """The seed photos whose files are present in the installed packages, with their paths."""
    found = []
    for photo in SEED_PHOTOS:
        path = photo.locate()
        if path is None:
            log.warning("seed photo %s/%s is not installed; skipped (install %s to add it)",
                        photo.package, photo.relative_path, photo.distribution)
            continue
        found.append((photo, path))
    return found


def seed_default_library(store: ImageStore, retriever: Retriever | None = None) -> int:
    """Add the bundled photos to the library and index them; returns how many were new.

    Idempotent: the store is content-addressed, so running it again adds nothing. Photos
    whose package is missing are skipped with a warning. With a retriever, every image
    lacking a vector is embedded afterwards, so the library is searchable at once.
    """
    created = 0
    for photo, path in available_seed_photos():
        # The curated photos are distinct; a person's own copy of one must not stop seeding.
        _, is_new = store.add_file(path, caption=photo.caption, source=photo.source(),
                                   license=photo.license, attribution=photo.attribution,
                                   caption_source="seed", allow_near_duplicate=True)
        created += int(is_new)
    if retriever is not None:
        retriever.index()
    return created


def visible_text(store: ImageStore, image: LibraryImage) -> tuple[list[str], float, bool]:
    """(words read in the image when it was imported, the share of its area they cover,
    whether its caption spells them out): what the Library view notes about an image's text."""
    from models.ocr import caption_spells_text

    words, area = store.texts([image.id]).get(image.id, ([], 0.0))
    return words, area, caption_spells_text(image.caption, words)


@dataclass
class AddResult:
    """What `add_images` did: new images, images already in the library, and failures.

    `failed` holds (path, message) pairs; `uncaptioned` the images (new or not) that have no
    caption, which retrieval cannot find until one is set; `near_duplicates` holds
    (path, the library image it resembles, hash distance) for files skipped because they look
    like a picture already in the library (not counted as failures).
    """

    added: list[LibraryImage] = field(default_factory=list)
    existing: list[LibraryImage] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    uncaptioned: list[LibraryImage] = field(default_factory=list)
    near_duplicates: list[tuple[str, LibraryImage, int]] = field(default_factory=list)

    @property
    def images(self) -> list[tuple[LibraryImage, bool]]:
        """(image, created) for every file that went in, new ones first."""
        return [(image, True) for image in self.added] + \
            [(image, False) for image in self.existing]


def add_images(store: ImageStore, paths: Iterable[str | Path], caption: str | None = None, *,
               source: str = "", license: str = "", attribution: str = "",
               allow_near_duplicates: bool = False, owner: str | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> AddResult:
    """Add image files, and the image files of folders (recursively), to the library.

    Each file's caption is `caption` when given (caption source "user"), else its sidecar
    text file (`photo.jpg.txt` or `photo.txt`), else its entry in `captions.json`
    ({file name: caption}) or `captions.csv` (file name, caption) in its folder (caption
    source "sidecar"). A file that fails (not an image, too big, unreadable ...) is reported
    in `failed`, one that looks like a library image in `near_duplicates` (kept anyway with
    `allow_near_duplicates`), and the others still go in. `owner` None adds to the shared
    library; else the images are that person's own (uploads in the browser).
    `progress(done, total, "adding files")` is called after each file; each file is stored
    on its own, so an interruption keeps the files done and adding them again is quick.
    """
    from storage.near_duplicates import NearDuplicateError

    if isinstance(paths, (str, Path)):
        paths = [paths]
    result = AddResult()
    captions = _FolderCaptions()
    files = _expand(paths, result)
    for done, path in enumerate(files, start=1):
        if caption and caption.strip():
            text, caption_source = caption.strip(), "user"
        else:
            text = captions.lookup(path, result)
            caption_source = "sidecar" if text else ""
        try:
            image, created = store.add_file(path, caption=text, source=source or path.name,
                                            license=license, attribution=attribution,
                                            caption_source=caption_source,
                                            allow_near_duplicate=allow_near_duplicates,
                                            owner=owner)
        except NearDuplicateError as error:
            result.near_duplicates.append((str(path), error.existing, error.distance))
        except (InputError, OSError) as error:
            result.failed.append((str(path), str(error)))
        else:
            (result.added if created else result.existing).append(image)
            if not image.caption.strip():
                result.uncaptioned.append(image)
        if progress is not None:
            progress(done, len(files), ADDING_STAGE)
    return result


def _expand(paths: Iterable[str | Path], result: AddResult) -> list[Path]:
    """Files as given, plus the image files under folders (sorted, hidden ones skipped)."""
    files: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            files.extend(sorted(
                child for child in path.rglob("*")
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in child.relative_to(path).parts)))
        elif path.exists():
            files.append(path)
        else:
            result.failed.append((str(path), f"no such file or folder: {path}: check the path"))
    return files


class _FolderCaptions:
    """Caption lookup from sidecar files and per-folder captions.json / captions.csv."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, str]] = {}

    def lookup(self, path: Path, result: AddResult) -> str:
        """The caption for one image file, or "" when none is found."""
        for sidecar in (path.with_name(path.name + ".txt"), path.with_suffix(".txt")):
            if sidecar.is_file():
                try:
                    return sidecar.read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as error:
                    result.failed.append((str(sidecar), f"caption file unreadable ({error}): "
                                                        "save it as UTF-8 text"))
        return self._folder(path.parent, result).get(path.name, "")

    def _folder(self, folder: Path, result: AddResult) -> dict[str, str]:
        if folder not in self._folders:
            table: dict[str, str] = {}
            for name, reader in ((CAPTIONS_CSV, _read_captions_csv),
                                 (CAPTIONS_JSON, _read_captions_json)):
                file = folder / name
                if not file.is_file():
                    continue
                try:
                    table.update(reader(file))
                except (OSError, UnicodeDecodeError, ValueError) as error:
                    result.failed.append((str(file), str(error)))
            self._folders[folder] = table
        return self._folders[folder]


def _read_captions_json(file: Path) -> dict[str, str]:
    """{file name: caption} from a JSON object; ValueError saying what shape is expected."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{file} is not valid JSON ({error}): write an object "
                         '{"photo.jpg": "caption", ...}') from None
    if not isinstance(data, dict) or not all(isinstance(value, str) for value in data.values()):
        raise ValueError(f"{file} must be a JSON object of file name -> caption text, "
                         'like {"photo.jpg": "A red bicycle"}')
    return {Path(str(name)).name: value.strip() for name, value in data.items()}


def _read_captions_csv(file: Path) -> dict[str, str]:
    """{file name: caption} from rows `filename,caption` (an optional header row is skipped)."""
    table: dict[str, str] = {}
    with file.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise ValueError(f"{file} line {number} has {len(row)} column: each row must "
                                 "be filename,caption (quote captions that contain commas)")
            name, text = row[0].strip(), ",".join(row[1:]).strip()
            if number == 1 and name.lower() in ("filename", "file", "name", "image"):
                continue
            table[Path(name).name] = text
    return table
