"""What an inspection produces, as plain typed data (numpy, no torch).

Every layer reads these: the post-processor builds them, the store, line, API, UI and reports
keep and show them, and a torch-free station (an exported model) produces the same ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

THRESHOLD = 0.5  # calibrated scores put the pass/fail decision here


class Verdict(StrEnum):
    """A part's verdict. A ``StrEnum``: it equals, prints and serialises as its word."""

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"  # the image could not be inspected (unreadable, empty, too large, ...)


@dataclass
class Region:
    """One connected defect region, described by the facts people and later stages use."""

    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in original image pixels (x1, y1 exclusive)
    area_fraction: float  # region area / part area
    centroid: tuple[float, float]  # x, y in original image pixels
    location: str  # a location word, relative to the part, at the region's focus
    elongation: float  # major / minor axis length (1 = round)
    shape: str  # "elongated" (elongation >= 3) or "compact"
    size: str  # "small" (< 1 % of the part), "medium" (< 5 %) or "large"
    peak_score: float  # calibrated score at the region's strongest pixel (> 0.5)
    on_part: bool = True  # focus inside the part's box (always True without a part box)
    defect_type: str | None = None  # most likely defect kind (image-text decoder), if available
    defect_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExplanationEvidence:
    """What the explanation adapter reads beside the facts; returned only when asked for
    (``Inspector.predict(..., evidence=...)``), since most results are never explained."""

    kind_maps: np.ndarray | None  # defect-kind posteriors [K, h, w] on the patch grid (None without image-text)
    embedding: np.ndarray  # the encoder's features pooled over the image [C]


@dataclass
class InspectionResult:
    """What one inspected image produced. ``score`` is calibrated: FAIL when above ``threshold``."""

    file: str | None
    verdict: Verdict
    score: float | None = None
    threshold: float = THRESHOLD
    raw_score: float | None = None
    regions: list[Region] = field(default_factory=list)
    anomaly_map: np.ndarray | None = None  # calibrated map at model resolution (0.5 = threshold)
    image_size: tuple[int, int] | None = None  # original width, height
    part_box: tuple[int, int, int, int] | None = None  # the part's box on a FAIL (what regions are placed on)
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    product: str | None = None
    mode: str | None = None
    profile_version: str | None = None  # the fitted profile that produced this result
    explanation: str | None = None  # operator sentence, filled in later by the explainer
    explanation_source: str | None = None  # what wrote it (language model, template, fallback reason)
    evidence: ExplanationEvidence | None = field(default=None, repr=False)  # not serialised

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file, "product": self.product, "mode": self.mode, "verdict": str(self.verdict),
            "score": None if self.score is None else round(self.score, 6), "threshold": self.threshold,
            "raw_score": None if self.raw_score is None else round(self.raw_score, 6),
            "regions": [r.to_dict() for r in self.regions], "image_size": self.image_size,
            "part_box": self.part_box, "profile_version": self.profile_version,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()}, "error": self.error,
        }
        if self.explanation is not None:
            out["explanation"], out["explanation_source"] = self.explanation, self.explanation_source
        return out


class EvidenceFor(StrEnum):
    """Which results of a ``predict`` call carry ``ExplanationEvidence``."""

    NONE = "none"
    FAILS = "fails"  # what the explainer needs: only FAIL results are explained by the language model
    ALL = "all"
