"""The words a region is described with: where on the part (a 3x3 grid) and how big.

One definition for inspection regions, synthesised defects and the explanation facts, so that a
"small defect at the top-left" means the same everywhere.
"""

from __future__ import annotations

LOCATION_WORDS = [["top-left", "top", "top-right"], ["left", "centre", "right"],
                  ["bottom-left", "bottom", "bottom-right"]]
SMALL_AREA = 0.01  # below 1 % of the part: small
MEDIUM_AREA = 0.05  # below 5 %: medium; else large


def location_word(x: float, y: float, box: tuple[int, int, int, int]) -> str:
    """The 3x3 cell of ``box`` (x0, y0, x1, y1) that the point (x, y) falls in."""
    x0, y0, x1, y1 = box
    col = min(2, max(0, int(3 * (x - x0) / max(x1 - x0, 1))))
    row = min(2, max(0, int(3 * (y - y0) / max(y1 - y0, 1))))
    return LOCATION_WORDS[row][col]


def size_word(area_fraction: float) -> str:
    """Size band of a region covering ``area_fraction`` of the part."""
    return "small" if area_fraction < SMALL_AREA else "medium" if area_fraction < MEDIUM_AREA else "large"
