"""Where the real image data sets are: the shared folder of MVTec-layout categories (demo,
benchmarks, tests, adapter training) and the solar cells of the ``elpv-dataset`` wheel.

One function finds the shared folder, so the demo, the benchmarks and the tests never disagree
about it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from inspect_app.errors import NotEnoughImagesError

DATASETS_ENV = "INSPECT_APP_DATASETS"
# A folder counts as the shared data sets when it holds this category (the demo's product).
MARKER_CATEGORY = Path("mvtec_ad") / "bottle" / "train" / "good"


def shared_datasets() -> Path | None:
    """``$INSPECT_APP_DATASETS`` when set; otherwise a ``shared/datasets`` folder beside the working
    folder or beside the project checkout. None when the folder does not hold the MVTec bottle set.

    An explicit ``$INSPECT_APP_DATASETS`` is never second-guessed: when it points elsewhere the
    answer is None, not some other folder."""
    explicit = os.environ.get(DATASETS_ENV)
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = [Path.cwd().parent / "shared" / "datasets",
                      Path(__file__).resolve().parents[3] / "shared" / "datasets"]
    for folder in candidates:
        if (folder / MARKER_CATEGORY).is_dir():
            return folder
    return None


def elpv_cells() -> tuple[list[Path], list[Path]]:
    """Good and defective monocrystalline cells of the elpv-dataset wheel (defect probability 0 and
    1; sorted as the wheel's label file lists them)."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or spec.origin is None:
        raise NotEnoughImagesError("the elpv-dataset package is not installed: pip install elpv-dataset")
    root = Path(spec.origin).parent / "data"
    good, bad = [], []
    for line in (root / "labels.csv").read_text().splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[2] != "mono":
            continue
        probability = float(parts[1])
        if probability == 0.0:
            good.append(root / parts[0])
        elif probability == 1.0:
            bad.append(root / parts[0])
    return good, bad
