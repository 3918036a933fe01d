"""One report row per image, whether it was inspected now or read back from the results store.

Both sources become an ``InspectionResult`` (the one result type) plus what only the store
knows: acquisition time, station, lot and the paths of kept images. Every later stage (plots,
tables, files) reads rows, so folder and store reports cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inspect_app.results import THRESHOLD, InspectionResult, Region, Verdict

REGION_FIELDS = {f.name for f in dataclasses.fields(Region)}
# Columns of results.csv / keys of results.json, in order.
COLUMNS = ["file", "verdict", "score", "threshold", "raw_score", "defect_kind", "n_regions", "regions",
           "explanation", "explanation_source", "error", "time", "station", "lot", "product",
           "profile_version", "image_path", "overlay_path"]


def region_from_dict(data: dict) -> Region:
    """A ``Region`` from its ``to_dict()`` form (JSON turns tuples into lists)."""
    values = {k: v for k, v in data.items() if k in REGION_FIELDS}
    for key in ("bbox", "centroid"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return Region(**values)


def result_from_dict(data: dict) -> InspectionResult:
    """An ``InspectionResult`` from its ``to_dict()`` form (no anomaly map: it is not serialised)."""
    return InspectionResult(
        file=data.get("file"), verdict=Verdict(data["verdict"]), score=data.get("score"),
        threshold=data.get("threshold", THRESHOLD), raw_score=data.get("raw_score"),
        regions=[region_from_dict(r) for r in data.get("regions") or []],
        image_size=tuple(data["image_size"]) if data.get("image_size") else None,
        part_box=tuple(data["part_box"]) if data.get("part_box") else None,
        timings_ms=dict(data.get("timings_ms") or {}), error=data.get("error"), product=data.get("product"),
        mode=data.get("mode"), profile_version=data.get("profile_version"),
        explanation=data.get("explanation"), explanation_source=data.get("explanation_source"))


def defect_kind(result: InspectionResult) -> str | None:
    """The main defect of a failed part: the first region's (strongest on the part) defect type when the profile
    labels kinds (image-text and fused modes), else its size and shape class ("small elongated")."""
    if result.verdict != Verdict.FAIL:
        return None
    if not result.regions:
        return "unlocated"
    top = result.regions[0]
    return top.defect_type or f"{top.size} {top.shape}"


@dataclass
class ReportRow:
    """An inspected (or not inspectable) image and where it came from."""

    result: InspectionResult
    time: datetime | None = None  # acquisition time (store rows); folders carry none we trust
    station: str | None = None
    lot: str | None = None
    record_id: int | None = None
    image_path: str | None = None  # kept original (store rows), else the inspected file itself
    overlay_path: str | None = None  # kept overlay (store rows)

    @property
    def inspected(self) -> bool:
        return self.result.verdict in (Verdict.PASS, Verdict.FAIL)

    @property
    def name(self) -> str:
        return Path(self.result.file).name if self.result.file else f"record {self.record_id}"

    @classmethod
    def from_stored(cls, stored: Any) -> ReportRow:
        """A row from a ``StoredResult`` of the results store."""
        result = InspectionResult(
            file=stored.file, verdict=Verdict(stored.verdict), score=stored.score,
            threshold=stored.threshold if stored.threshold is not None else THRESHOLD,
            raw_score=stored.raw_score, regions=[region_from_dict(r) for r in stored.regions or []],
            error=stored.error, product=stored.product, mode=getattr(stored, "mode", None),
            profile_version=stored.profile_version,
            explanation=stored.explanation, explanation_source=stored.explanation_source)
        return cls(result, time=stored.time, station=stored.station, lot=stored.lot, record_id=stored.id,
                   image_path=stored.image_path, overlay_path=stored.overlay_path)

    def to_dict(self) -> dict:
        r = self.result
        return {
            "file": r.file, "verdict": r.verdict,
            "score": None if r.score is None else round(r.score, 6), "threshold": r.threshold,
            "raw_score": None if r.raw_score is None else round(r.raw_score, 6),
            "defect_kind": defect_kind(r), "n_regions": len(r.regions),
            "regions": [reg.to_dict() for reg in r.regions],
            "explanation": r.explanation, "explanation_source": r.explanation_source, "error": r.error,
            "time": self.time.isoformat() if self.time else None, "station": self.station, "lot": self.lot,
            "product": r.product, "profile_version": r.profile_version,
            "image_path": self.image_path, "overlay_path": self.overlay_path,
        }

    def to_csv_row(self) -> dict:
        row = self.to_dict()
        row["regions"] = json.dumps(row["regions"], separators=(",", ":"))
        return row
