"""What every benchmark shares: the shared real data sets and their category folders."""

from __future__ import annotations

import sys
from pathlib import Path

from inspect_app.demo import shared_datasets

CATEGORIES = {"bottle": "mvtec_ad/bottle", "cookie": "lookout_cookies/cookie", "tile": "magnetic_tile/tile"}


def datasets_root() -> Path:
    """The shared data sets folder; exits with a clear message when it is absent."""
    root = shared_datasets()
    if root is None:
        sys.exit("shared datasets not found: set INSPECT_APP_DATASETS or place them in ../shared/datasets")
    return root
