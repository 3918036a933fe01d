"""What every benchmark shares: the shared real data sets, their category folders, the machine."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from inspect_app.data.datasets import shared_datasets

CATEGORIES = {"bottle": "mvtec_ad/bottle", "cookie": "lookout_cookies/cookie", "tile": "magnetic_tile/tile"}


def datasets_root() -> Path:
    """The shared data sets folder; exits with a clear message when it is absent."""
    root = shared_datasets()
    if root is None:
        sys.exit("shared datasets not found: set INSPECT_APP_DATASETS or place them in ../shared/datasets")
    return root


def machine() -> dict:
    """The CPU a run was timed on: timings from different machines are not comparable."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": model, "simd": simd, "cores": os.cpu_count()}
