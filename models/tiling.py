"""High-resolution tiling geometry: which grid an image is cut into, and the views cut.

Follows SPHINX-X (docs: /work/shared/REFERENCE.md section 7): an image is resized keeping its
aspect ratio onto a rows x cols grid of tower-sized tiles, padding on the right and at the
bottom; tiles that are pure padding are never encoded (models/vision.py puts one skip token
in their place). `plan_tiles` chooses the grid, `cut_views` cuts the global view and the
content tiles out of a PIL image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TILE = 224  # XComposer2's input size
DEFAULT_MAX_TILES = 4


@dataclass(frozen=True)
class TilePlan:
    """How one image is tiled: a rows x cols grid of `tile`-pixel squares.

    The image (`width` x `height`, upright) is resized keeping its aspect ratio to
    `content_width` x `content_height`, the largest size that fits the grid, and placed at the
    top-left of the grid's canvas; the rest (right and bottom) is padding. A tile is pure
    padding when it lies wholly outside the content. rows = cols = 0 means no tiles (only the
    global view).
    """

    width: int
    height: int
    tile: int
    rows: int
    cols: int
    content_width: int
    content_height: int

    @property
    def n_tiles(self) -> int:
        """Tiles in the grid, padding ones included."""
        return self.rows * self.cols

    def is_padding(self, row: int, col: int) -> bool:
        """True when tile (row, col) holds no pixel of the image (from geometry alone)."""
        return col * self.tile >= self.content_width or row * self.tile >= self.content_height

    def tiles(self) -> list[tuple[int, int]]:
        """Every tile as (row, col), row-major: the order of the token layout."""
        return [(row, col) for row in range(self.rows) for col in range(self.cols)]

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The tile's (left, top, right, bottom) on the padded canvas, for PIL's crop()."""
        left, top = col * self.tile, row * self.tile
        return left, top, left + self.tile, top + self.tile

    @property
    def encoded_tiles(self) -> int:
        """Tiles that show part of the image (each one goes through the vision tower)."""
        return sum(not self.is_padding(row, col) for row, col in self.tiles())

    @property
    def skipped_tiles(self) -> int:
        """Pure-padding tiles (each one becomes one skip token, never encoded)."""
        return self.n_tiles - self.encoded_tiles


def candidate_grids(max_tiles: int) -> list[tuple[int, int]]:
    """Every (rows, cols) grid with rows * cols <= max_tiles."""
    return [(rows, cols) for rows in range(1, max_tiles + 1)
            for cols in range(1, max_tiles // rows + 1)]


def choose_grid(width: int, height: int, grids: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid whose aspect ratio (cols / rows) is closest to the image's (width / height).

    Closeness is the distance of the logarithms (so 2:1 and 1:2 are equally far from 1:1).
    Ties go to the grid with more tiles (more resolution: a square picks 2x2 over 1x1), then to
    the one with fewer rows. Among all grids up to a budget, the closest one never has a
    pure-padding tile (a grid one tile narrower would be closer); a restricted list such as
    SPHINX's fixed 2x2 does produce them.
    """
    image_ratio = math.log(width / height)

    def key(grid: tuple[int, int]) -> tuple[float, int, int]:
        rows, cols = grid
        return round(abs(math.log(cols / rows) - image_ratio), 12), -rows * cols, rows

    return min(grids, key=key)


def plan_tiles(width: int, height: int, *, tile: int = DEFAULT_TILE,
               max_tiles: int = DEFAULT_MAX_TILES,
               grids: Sequence[tuple[int, int]] | None = None) -> TilePlan:
    """Plan the high-resolution tiling of a `width` x `height` image (see TilePlan).

    The grid is chosen by `choose_grid` among `grids` (default: every grid of at most
    `max_tiles` tiles); `max_tiles=0` plans no tiles. The image is then scaled (up or down) to
    the largest size that fits the grid keeping its aspect ratio, so it fills the grid's width
    or its height.
    """
    check_positive(width, "width")
    check_positive(height, "height")
    check_positive(tile, "tile")
    if max_tiles < 0:
        raise ValueError(f"max_tiles={max_tiles} must be 0 (global view only) or more")
    choices = candidate_grids(max_tiles) if grids is None else checked_grids(grids, max_tiles)
    if not choices:
        return TilePlan(width, height, tile, 0, 0, 0, 0)
    rows, cols = choose_grid(width, height, choices)
    scale = min(cols * tile / width, rows * tile / height)
    content_width = min(cols * tile, max(1, round(width * scale)))
    content_height = min(rows * tile, max(1, round(height * scale)))
    return TilePlan(width, height, tile, rows, cols, content_width, content_height)


def checked_grids(grids: Sequence[tuple[int, int]], max_tiles: int) -> list[tuple[int, int]]:
    """The given candidate grids after checking each is (rows >= 1, cols >= 1) within budget."""
    checked = []
    for grid in grids:
        rows, cols = (int(value) for value in grid)
        if rows < 1 or cols < 1:
            raise ValueError(f"grid {grid!r} must have at least 1 row and 1 column")
        if rows * cols > max_tiles:
            raise ValueError(f"grid {grid!r} has {rows * cols} tiles, more than "
                             f"max_tiles={max_tiles}: raise max_tiles or drop the grid")
        checked.append((rows, cols))
    if max_tiles > 0 and not checked:
        raise ValueError("grids is empty: give at least one (rows, cols) or pass None for "
                         "every grid up to max_tiles")
    return checked


def cut_views(image: Any, plan: TilePlan, fill: tuple[int, int, int]) -> list[Any]:
    """The images the tower sees for one picture: the global view, then each tile that shows
    part of the image (row-major). Pure-padding tiles are not cut.

    The global view is the whole picture squashed to tile x tile (as XComposer2 resizes).
    Tiles come from the picture resized to the plan's content size on a canvas of `fill`
    colour (the normalisation mean, so padding pixels become about zero).
    """
    from PIL import Image

    bicubic = Image.Resampling.BICUBIC
    views = [image.resize((plan.tile, plan.tile), bicubic)]
    if plan.n_tiles == 0:
        return views
    canvas = Image.new("RGB", (plan.cols * plan.tile, plan.rows * plan.tile), fill)
    canvas.paste(image.resize((plan.content_width, plan.content_height), bicubic), (0, 0))
    views.extend(canvas.crop(plan.box(row, col)) for row, col in plan.tiles()
                 if not plan.is_padding(row, col))
    return views


def check_positive(value: int, name: str) -> None:
    """Raise ValueError unless `value` is an integer of at least 1."""
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
