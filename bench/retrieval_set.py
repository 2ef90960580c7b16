"""A labelled retrieval set: 44 images, 48 queries with the one image each wants, and 20
queries that no image of the set answers (NONE_QUERIES, for the placement threshold).

The images are the 16 photos of the default library, 7 more photos and figures that
scikit-image ships (pictures of text among them), 7 scenes drawn here with Pillow, and 8
pictures of words drawn here: the "parrot" images of REFERENCE section 4, whose captions
name the same things as a scene's query because they *show* those words. Three of the word
pictures are what their query wants (a shop sign, a for-sale sign, a page of text), so a
penalty that is too strong shows up as lost precision too. Six more are decoys (decoys()):
a plain card reading COFFEE captioned "a cup of coffee", and the like.

Captions were written by hand from looking at each picture; queries paraphrase what an
article's image slot would ask for, not the caption's words.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 480, 320


@dataclass(frozen=True)
class LabelledImage:
    """One image of the set: a key, how to get its bytes, and its caption."""

    key: str
    caption: str
    load: Callable[[], bytes]
    shows_text: bool = False


@dataclass(frozen=True)
class LabelledQuery:
    """A query and the key of the image that answers it; `kind` groups the report."""

    text: str
    relevant: str
    kind: str = "scene"  # "scene": a depiction; "text": a picture of words; "name": a name


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _package_file(package: str, relative: str) -> Callable[[], bytes]:
    def load() -> bytes:
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{package} is not installed: pip install it to run this set")
        return (Path(list(spec.submodule_search_locations)[0]) / relative).read_bytes()
    return load


# -- scenes drawn with Pillow ----------------------------------------------------------------

def _sky(draw: ImageDraw.ImageDraw, top: tuple[int, int, int], bottom: tuple[int, int, int],
         height: int) -> None:
    for y in range(height):
        t = y / max(1, height - 1)
        colour = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom))
        draw.line([(0, y), (WIDTH, y)], fill=colour)


def draw_mountains() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    _sky(draw, (120, 170, 230), (215, 230, 245), HEIGHT)
    for left, peak, right, top in ((-40, 130, 300, 60), (150, 330, 520, 90), (60, 230, 380, 120)):
        draw.polygon([(left, 250), (peak, top), (right, 250)], fill=(110, 110, 120))
        draw.polygon([(peak - 30, top + 40), (peak, top), (peak + 30, top + 40)],
                     fill=(250, 250, 250))
    draw.rectangle([0, 240, WIDTH, HEIGHT], fill=(70, 140, 60))
    return _png(image)


def draw_sunset() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    _sky(draw, (250, 120, 40), (250, 200, 120), 200)
    draw.ellipse([180, 140, 300, 260], fill=(255, 90, 20))
    draw.rectangle([0, 200, WIDTH, HEIGHT], fill=(20, 40, 110))
    for y in range(215, HEIGHT, 18):
        draw.line([(60, y), (420, y)], fill=(240, 130, 60), width=2)
    return _png(image)


def draw_house() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), (190, 225, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 250, WIDTH, HEIGHT], fill=(80, 170, 70))
    draw.rectangle([140, 150, 300, 260], fill=(240, 220, 180))
    draw.polygon([(125, 150), (220, 80), (315, 150)], fill=(190, 40, 40))
    draw.rectangle([205, 200, 240, 260], fill=(110, 70, 40))
    for x in (155, 255):
        draw.rectangle([x, 170, x + 30, 195], fill=(140, 200, 240))
    draw.rectangle([370, 170, 385, 260], fill=(100, 70, 40))
    draw.ellipse([335, 100, 420, 190], fill=(40, 130, 50))
    return _png(image)


def draw_bar_chart() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    for y in range(40, 281, 40):
        draw.line([(40, y), (450, y)], fill=(220, 220, 220))
    draw.line([(40, 20), (40, 280), (450, 280)], fill="black", width=2)
    for i, value in enumerate((60, 110, 150, 200, 240)):
        x = 70 + i * 75
        draw.rectangle([x, 280 - value, x + 45, 280], fill=(50, 100, 200))
    return _png(image)


def draw_night_sky() -> bytes:
    import random

    rng = random.Random(7)
    image = Image.new("RGB", (WIDTH, HEIGHT), (10, 15, 40))
    draw = ImageDraw.Draw(image)
    for _ in range(160):
        x, y, r = rng.randrange(WIDTH), rng.randrange(HEIGHT), rng.choice((1, 1, 1, 2))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 230))
    draw.ellipse([330, 40, 410, 120], fill=(250, 240, 190))
    draw.ellipse([350, 30, 430, 110], fill=(10, 15, 40))
    return _png(image)


def draw_traffic_light() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), (170, 175, 185))
    draw = ImageDraw.Draw(image)
    draw.rectangle([232, 200, 248, HEIGHT], fill=(40, 40, 40))
    draw.rounded_rectangle([195, 20, 285, 210], radius=14, fill=(25, 25, 25))
    for y, colour in ((35, (230, 30, 30)), (90, (240, 170, 20)), (145, (40, 200, 70))):
        draw.ellipse([215, y, 265, y + 50], fill=colour)
    return _png(image)


def draw_forest() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), (200, 225, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 260, WIDTH, HEIGHT], fill=(90, 120, 60))
    for row, (base, shade) in enumerate(((200, (30, 90, 50)), (260, (20, 70, 35)))):
        for i in range(9):
            x = i * 58 + row * 29
            draw.polygon([(x - 28, base), (x, base - 120), (x + 28, base)], fill=shade)
            draw.rectangle([x - 4, base, x + 4, base + 14], fill=(90, 60, 30))
    return _png(image)


# -- pictures of words ---------------------------------------------------------------------

def draw_words(lines: list[str], *, background=(255, 255, 255), ink=(0, 0, 0),
               size: int = 64, frame: tuple[int, int, int] | None = None) -> Callable[[], bytes]:
    """A picture whose only content is `lines` of text (a sign, a poster, a word)."""
    def load() -> bytes:
        image = Image.new("RGB", (WIDTH, HEIGHT), background)
        draw = ImageDraw.Draw(image)
        if frame is not None:
            draw.rectangle([12, 12, WIDTH - 12, HEIGHT - 12], outline=frame, width=10)
        font = _font(size)
        heights = [draw.textbbox((0, 0), line, font=font)[3] for line in lines]
        y = (HEIGHT - sum(heights) - 16 * (len(lines) - 1)) // 2
        for line, height in zip(lines, heights):
            width = draw.textlength(line, font=font)
            draw.text(((WIDTH - width) / 2, y), line, font=font, fill=ink)
            y += height + 16
        return _png(image)
    return load


def _skimage(name: str) -> Callable[[], bytes]:
    return _package_file("skimage", f"data/{name}")


def images() -> list[LabelledImage]:
    """Every image of the set; the seed photos take their captions from the default library."""
    from composer.library import SEED_PHOTOS

    seeds = [LabelledImage(photo.relative_path.rsplit("/", 1)[-1].split(".")[0], photo.caption,
                           _package_file(photo.package, photo.relative_path))
             for photo in SEED_PHOTOS]
    extra = [
        LabelledImage("coins", "Black-and-white photo of two dozen ancient silver and bronze "
                      "coins laid out in rows on a dark background, with worn portraits and "
                      "figures stamped on them.", _skimage("coins.png")),
        LabelledImage("colorwheel", "A colour wheel: a disc whose hue turns through red, "
                      "magenta, blue, cyan, green and yellow around the edge, fading to white "
                      "at the centre, on black.", _skimage("color.png")),
        LabelledImage("ihc", "Microscope slide of human colon tissue stained for "
                      "immunohistochemistry: brown-stained glands among blue-purple nuclei on "
                      "a pale background.", _skimage("ihc.png")),
        LabelledImage("logo", "An abstract logo: a green and orange disc split by a white "
                      "S-shaped curve, with the outline of a snake's head and scales drawn "
                      "over it.", _skimage("logo.png")),
        LabelledImage("moon", "Grey close-up of the cratered surface of the Moon, with small "
                      "round craters and dark patches.", _skimage("moon.png")),
        LabelledImage("motorcycle", "A red motorcycle with a black seat and chrome exhaust "
                      "parked in a cluttered garage, with shelves and boxes behind it.",
                      _skimage("motorcycle_left.png")),
        LabelledImage("page", "A photographed page of a programming tutorial titled "
                      "Region-based segmentation, with paragraphs of printed text and a line "
                      "of Python code.", _skimage("page.png"), shows_text=True),
    ]
    drawn = [
        LabelledImage("mountains", "A drawing of a mountain range with snow-capped grey peaks "
                      "under a pale blue sky, above green foothills.", draw_mountains),
        LabelledImage("sunset", "An illustration of the sun going down over the ocean: an "
                      "orange disc on the horizon, an orange sky and dark blue water with "
                      "glints of light.", draw_sunset),
        LabelledImage("house", "A simple drawing of a small house with a red roof, a brown "
                      "door and two windows, beside a round green tree on a lawn.", draw_house),
        LabelledImage("bar_chart", "A bar chart of five blue bars rising from left to right "
                      "over light grey grid lines on white.", draw_bar_chart),
        LabelledImage("night_sky", "A dark blue night sky full of small white stars, with a "
                      "pale yellow crescent moon at the top right.", draw_night_sky),
        LabelledImage("traffic_light", "A traffic light with red, amber and green lamps in a "
                      "black housing on a pole, against a grey sky.", draw_traffic_light),
        LabelledImage("forest", "Two rows of dark green conifer trees with brown trunks, like "
                      "a pine forest, under a pale sky.", draw_forest),
    ]
    words = [
        LabelledImage("word_mountain", "A poster with the words MOUNTAIN PEAKS in large "
                      "black letters.", draw_words(["MOUNTAIN", "PEAKS"]), shows_text=True),
        LabelledImage("word_sunset", "SUNSET OVER THE OCEAN",
                      draw_words(["SUNSET OVER", "THE OCEAN"], size=56), shows_text=True),
        LabelledImage("word_coffee", "A sign that says ESPRESSO COFFEE in brown letters on "
                      "cream.", draw_words(["ESPRESSO", "COFFEE"], background=(245, 235, 210),
                                           ink=(90, 50, 20)), shows_text=True),
        LabelledImage("word_cat", "The word CAT written in big letters.",
                      draw_words(["CAT"], size=120), shows_text=True),
        LabelledImage("word_rocket", "Banner: ROCKET LAUNCH", draw_words(
            ["ROCKET", "LAUNCH"], background=(20, 30, 80), ink=(255, 255, 255)),
            shows_text=True),
        LabelledImage("word_galaxies", "Text reading DISTANT GALAXIES", draw_words(
            ["DISTANT", "GALAXIES"], background=(0, 0, 0), ink=(230, 230, 255)),
            shows_text=True),
        LabelledImage("bakery_sign", "A shop sign reading BAKERY in gold letters on a dark "
                      "green board with a gold frame.", draw_words(
                          ["BAKERY"], background=(20, 80, 50), ink=(230, 190, 70), size=96,
                          frame=(230, 190, 70)), shows_text=True),
        LabelledImage("for_sale_sign", "A red and white estate agent's sign: HOUSE FOR SALE.",
                      draw_words(["HOUSE", "FOR SALE"], background=(200, 30, 30),
                                 ink=(255, 255, 255), frame=(255, 255, 255)), shows_text=True),
    ]
    return seeds + extra + drawn + words + decoys()


def decoys() -> list[LabelledImage]:
    """Visual-text decoys (issue 13): a plain card with one word drawn large, captioned as if
    it were a photo of the thing, with more words than the card shows, so a check on the
    caption spelling the visible text does not catch them."""
    cards = (("decoy_coffee", "COFFEE", "a cup of coffee", (250, 250, 250), (40, 30, 20)),
             ("decoy_cat", "CAT", "a cat with green eyes", (255, 255, 255), (0, 0, 0)),
             ("decoy_rocket", "ROCKET", "a rocket on the launch pad", (230, 240, 255),
              (20, 40, 120)),
             ("decoy_galaxies", "GALAXIES", "distant galaxies in deep space", (0, 0, 0),
              (240, 240, 240)),
             ("decoy_flower", "DAHLIA", "an orange dahlia flower", (255, 250, 235),
              (200, 90, 20)),
             ("decoy_moon", "MOON", "craters on the surface of the moon", (20, 20, 40),
              (250, 250, 210)))
    return [LabelledImage(key, caption, draw_words([word], background=background, ink=ink,
                                                   size=96), shows_text=True)
            for key, word, caption, background, ink in cards]


QUERIES: tuple[LabelledQuery, ...] = (
    LabelledQuery("an astronaut posing for an official portrait", "astronaut"),
    LabelledQuery("a cameraman filming on a field", "camera"),
    LabelledQuery("the face of a striped cat with green eyes", "chelsea"),
    LabelledQuery("a small cup of espresso coffee on a saucer", "coffee"),
    LabelledQuery("a rocket launch pad lit up at night", "rocket"),
    LabelledQuery("distant galaxies in deep space seen by a telescope", "hubble_deep_field"),
    LabelledQuery("the outline of a horse", "horse"),
    LabelledQuery("a medical image of the back of the eye", "retina"),
    LabelledQuery("a blurry clock on a wall", "clock_motion"),
    LabelledQuery("handwritten maths equations on paper", "text"),
    LabelledQuery("a single cell seen under a microscope", "cell"),
    LabelledQuery("an old brick wall texture", "brick"),
    LabelledQuery("green grass and clover seen from above", "grass"),
    LabelledQuery("a pile of small stones", "gravel"),
    LabelledQuery("a Chinese pagoda above a lake at the Summer Palace", "china"),
    LabelledQuery("an orange dahlia in bloom", "flower"),
    LabelledQuery("a collection of ancient Greek coins", "coins"),
    LabelledQuery("the spectrum of hues arranged in a circle", "colorwheel"),
    LabelledQuery("stained tissue under a microscope for cancer diagnosis", "ihc"),
    LabelledQuery("craters on the lunar surface", "moon"),
    LabelledQuery("a red motorbike in a garage", "motorcycle"),
    LabelledQuery("snow-capped mountain peaks", "mountains"),
    LabelledQuery("the sun setting over the ocean", "sunset"),
    LabelledQuery("a little house with a red roof", "house"),
    LabelledQuery("a chart showing growth over five years", "bar_chart"),
    LabelledQuery("a starry night with a crescent moon", "night_sky"),
    LabelledQuery("a traffic signal at a crossing", "traffic_light"),
    LabelledQuery("a dark pine forest", "forest"),
    LabelledQuery("a cat", "chelsea"),
    LabelledQuery("coffee", "coffee"),
    LabelledQuery("rocket launch", "rocket"),
    LabelledQuery("mountain peaks", "mountains"),
    LabelledQuery("distant galaxies", "hubble_deep_field"),
    LabelledQuery("sunset over the ocean", "sunset"),
    LabelledQuery("the Falcon 9 rocket", "rocket"),
    LabelledQuery("Eileen Collins", "astronaut"),
    LabelledQuery("a bakery shop sign", "bakery_sign", kind="text"),
    LabelledQuery("a house for sale sign outside a home", "for_sale_sign", kind="text"),
    LabelledQuery("a page of a tutorial about image segmentation", "page", kind="text"),
    LabelledQuery("a snake logo in green and orange", "logo"),
    # names and rare words: where a keyword match can help an embedding
    LabelledQuery("DSCOVR", "rocket", kind="name"),
    LabelledQuery("the Tower of Buddhist Incense", "china", kind="name"),
    LabelledQuery("Cape Canaveral", "rocket", kind="name"),
    LabelledQuery("Region-based segmentation", "page", kind="name"),
    LabelledQuery("Chelsea", "chelsea", kind="name"),
    LabelledQuery("the eXtreme Deep Field", "hubble_deep_field", kind="name"),
    LabelledQuery("a fundus photograph", "retina", kind="name"),
    LabelledQuery("immunohistochemistry", "ihc", kind="name"),
)

# Queries an article could ask for that no image of the set depicts: the right answer is no
# image. The placement threshold is calibrated on these against the queries above.
NONE_QUERIES: tuple[str, ...] = (
    "birds in a city park",
    "a rooftop vegetable garden in summer",
    "a bowl of ramen noodles",
    "a child riding a bicycle",
    "a birdwatcher looking through binoculars",
    "a football stadium full of fans",
    "a laptop on a wooden desk",
    "a violinist playing on a stage",
    "a beach with palm trees",
    "people shopping at a farmers market",
    "a tractor ploughing a field",
    "a wedding cake with white icing",
    "a dog playing fetch in the snow",
    "a crowded subway train",
    "a herd of elephants on the savanna",
    "a lighthouse on a rocky cliff",
    "a nurse in a hospital corridor",
    "a pizza fresh from the oven",
    "a kayaker paddling through rapids",
    "a woman knitting a scarf",
)
