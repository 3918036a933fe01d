"""The MVTec AD folder layout: ``train/good``, ``test/<type>``, ``ground_truth/<type>/<stem>_mask.png``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.images import list_images
from inspect_app.errors import NotEnoughImagesError


@dataclass
class TestSample:
    path: Path
    defect_type: str  # "good" for normal images
    mask_path: Path | None

    @property
    def is_defective(self) -> bool:
        return self.defect_type != "good"

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        """Binary mask resized (nearest) to ``size`` = (width, height); zeros for good images."""
        if self.mask_path is None:
            return np.zeros((size[1], size[0]), dtype=np.uint8)
        mask = cv2.imread(str(self.mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise NotEnoughImagesError(f"cannot read mask {self.mask_path}")
        return (cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST) > 127).astype(np.uint8)


class MVTecCategory:
    """One category folder in MVTec layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "train" / "good").is_dir() or not (self.root / "test").is_dir():
            raise NotEnoughImagesError(
                f"{self.root} is not in MVTec layout: expected train/good/ and test/<type>/ folders "
                "(see data/README.md)")
        self.name = self.root.name

    def train_images(self) -> list[Path]:
        return list_images(self.root / "train" / "good")[0]

    def test_samples(self) -> list[TestSample]:
        samples = []
        for type_dir in sorted(p for p in (self.root / "test").iterdir() if p.is_dir()):
            for path in list_images(type_dir, min_count=0)[0]:
                mask = None
                if type_dir.name != "good":
                    candidate = self.root / "ground_truth" / type_dir.name / f"{path.stem}_mask.png"
                    mask = candidate if candidate.is_file() else None
                samples.append(TestSample(path, type_dir.name, mask))
        if not samples:
            raise NotEnoughImagesError(f"{self.root / 'test'} holds no test images")
        return samples
