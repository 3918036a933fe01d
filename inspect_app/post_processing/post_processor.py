"""Raw anomaly maps -> calibrated scores, verdicts, regions and their kinds (numpy only).

Kept apart from the torch model, as anomalib keeps its ``PostProcessor``: an exported model runs
the same post-processing without torch, and changing a threshold never touches the model. Its
state (a calibration per mode, the part frame, the defect kinds and the product's kind prior) is
plain data saved in the profile's settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from inspect_app.config import Mode
from inspect_app.imaging.foreground import estimate_part_box
from inspect_app.post_processing.calibration import Calibration
from inspect_app.post_processing.image_score import apply_ignore_mask, decode_mask, encode_mask
from inspect_app.post_processing.kinds import BankStatistics, KindBook, kind_features, region_patches
from inspect_app.post_processing.regions import extract_regions
from inspect_app.results import THRESHOLD, InspectionResult, Verdict


class PartFrame(StrEnum):
    """What location words and sizes are relative to."""

    OBJECT = "object"  # the part's box: the product's parts stand out from a plain background
    IMAGE = "image"  # the whole image (textures, close-ups, parts that fill the frame)


@dataclass
class PostProcessor:
    calibrations: dict[Mode, Calibration]
    part_frame: PartFrame = PartFrame.IMAGE
    kinds: list[str] = field(default_factory=list)
    kind_prior: np.ndarray | None = None  # [K], the kinds good patches lean towards
    ignore_mask: np.ndarray | None = None  # [H, W] bool at map resolution: pixels that never count
    kind_book: KindBook | None = None  # the product's kinds that regions are named with (profile's "kinds")

    def process(self, image: np.ndarray, raw_map: np.ndarray, mode: Mode) -> InspectionResult:
        """One image's result from its raw map [H, W] (model resolution); regions are unnamed
        until ``name_kinds``. ``file`` and timings are the caller's."""
        cal = self.calibrations[mode]
        raw_map = apply_ignore_mask(raw_map, self.ignore_mask)
        raw_score = float(raw_map.max())
        score = float(cal.normalize(raw_score))
        cal_map = np.asarray(cal.normalize(raw_map), dtype=np.float32)
        h, w = image.shape[:2]
        verdict = Verdict.FAIL if score > THRESHOLD else Verdict.PASS
        part_box, regions = None, []
        if verdict == Verdict.FAIL:  # the part box places regions; a PASS has none (it cost 2 ms a part)
            part_box = estimate_part_box(image) if self.part_frame == PartFrame.OBJECT else None
            regions = extract_regions(cal_map, (w, h), part_box, THRESHOLD)
        return InspectionResult(file=None, verdict=verdict, score=score, raw_score=raw_score, regions=regions,
                                anomaly_map=cal_map, image_size=(w, h), part_box=part_box, mode=mode)

    @property
    def names_kinds(self) -> bool:
        """Whether any region can be named (else describing regions is wasted work)."""
        return self.kind_book is not None and self.kind_book.can_name

    def name_kinds(self, results: list[InspectionResult], patches: np.ndarray, bank: np.ndarray,
                   statistics: BankStatistics) -> None:
        """Name the regions of the failed parts among ``results`` where a kind clears the book's bar
        (``post_processing.kinds``), from the image-image decoder's aggregated patches [B, C, h, w]
        of the same images and its memory bank [N, C]; the nearest-patch search runs only on the
        regions' patches above the threshold. The time it takes is shared among the named parts'
        "post" and "total" timings. The torch path and an exported model both name kinds here."""
        named = [b for b, result in enumerate(results) if result.regions]
        if self.kind_book is None or not named:
            return
        t0 = time.perf_counter()
        grid = (int(patches.shape[-2]), int(patches.shape[-1]))
        needed = []
        for b in named:
            result = results[b]
            assert result.anomaly_map is not None and result.image_size is not None
            needed.append(region_patches(result.regions, result.anomaly_map, result.image_size, grid))
        spaces = kind_features(patches[named], bank, statistics, np.stack(needed))
        for b, space in zip(named, spaces, strict=True):
            result = results[b]
            assert result.anomaly_map is not None and result.image_size is not None
            self.kind_book.name_regions(result.regions, result.anomaly_map, space, result.image_size)
        per_part = (time.perf_counter() - t0) * 1000 / len(named)
        for b in named:
            timings = results[b].timings_ms
            if timings:  # results processed outside an inspector carry no timings to add to
                timings["post"] += per_part
                timings["total"] += per_part

    def to_dict(self) -> dict[str, Any]:
        return {"calibrations": {mode: cal.to_dict() for mode, cal in self.calibrations.items()},
                "part_frame": str(self.part_frame), "kinds": list(self.kinds),
                "kind_prior": None if self.kind_prior is None else [float(p) for p in self.kind_prior],
                "ignore_mask": None if self.ignore_mask is None else encode_mask(self.ignore_mask)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PostProcessor:
        prior, mask = data.get("kind_prior"), data.get("ignore_mask")
        return cls(calibrations={mode: Calibration.from_dict(cal) for mode, cal in data["calibrations"].items()},
                   part_frame=PartFrame(data["part_frame"]), kinds=list(data.get("kinds", [])),
                   kind_prior=None if prior is None else np.asarray(prior, dtype=np.float32),
                   ignore_mask=None if mask is None else decode_mask(mask))

