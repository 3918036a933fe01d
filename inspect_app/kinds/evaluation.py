"""Defect kinds measured as a user meets them (``inspect-app eval CATEGORY --kind-shots K``).

For K > 0, K images of each defect-type folder (seeded; only images whose mask marks a defect) are
taught to the fitted product with their masks and left out of scoring; the folder names are the
product's kinds, except that folders the built-in vocabulary maps to the same single kind are one
kind (bottle's broken_large and broken_small are both "broken"). For K = 0 the product keeps the
built-in kinds and a folder is right for the kinds the vocabulary maps it to.

- ``defect_type_accuracy``: parts whose explanation names a right kind / defective parts with a
  region on the defect (the failed map overlaps the mask);
- ``wrong_kind_rate``: parts whose explanation names a wrong kind / defective parts flagged (with a
  mask that marks the defect and a known kind);
- ``kind_coverage``: defective parts flagged whose explanation names a kind / defective parts flagged.

The explanation names the first region's kind. Images whose mask is empty, or whose folder maps to
no kind (K = 0), count for coverage only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspect_app.data.mvtec import TestSample
from inspect_app.inspector import Inspector
from inspect_app.kinds.learning import LabelledPart, add_kind, clean_kind_name, set_kinds
from inspect_app.results import THRESHOLD, InspectionResult, Verdict
from inspect_app.vocabulary import kinds_for_folder


def folder_kind(folder: str) -> str:
    """The kind a defect folder teaches: the vocabulary's kind when it maps to exactly one."""
    mapped = kinds_for_folder(folder)
    return next(iter(mapped)) if mapped and len(mapped) == 1 else clean_kind_name(folder)


def true_kinds(folder: str, kind_shots: int) -> set[str] | None:
    return kinds_for_folder(folder) if kind_shots == 0 else {folder_kind(folder)}


def teach_shots(inspector: Inspector, samples: Sequence[TestSample], kind_shots: int,
                seed: int) -> list[TestSample]:
    """Teach ``kind_shots`` seeded images of each defect folder (with masks) as the product's kinds;
    returns the samples left for scoring."""
    if kind_shots == 0:
        return list(samples)
    rng = np.random.default_rng(seed)
    folders = sorted({s.defect_type for s in samples if s.is_defective})
    set_kinds(inspector, sorted({folder_kind(f) for f in folders}))
    taught: dict[str, list[TestSample]] = {}
    for folder in folders:
        candidates = [s for s in samples if s.defect_type == folder and s.mask_path is not None]
        order = rng.permutation(len(candidates))
        chosen: list[TestSample] = []
        for i in order:
            if len(chosen) == kind_shots:
                break
            if _mask(candidates[i]).any():
                chosen.append(candidates[i])
        taught.setdefault(folder_kind(folder), []).extend(chosen)
    for kind, shots in taught.items():
        add_kind(inspector, kind, [LabelledPart(s.path, s.path.name, _mask(s)) for s in shots])
    left_out = {s.path for shots in taught.values() for s in shots}
    return [s for s in samples if s.path not in left_out]


def _mask(sample: TestSample) -> np.ndarray:
    import cv2

    assert sample.mask_path is not None
    mask = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
    return np.zeros((1, 1), np.uint8) if mask is None else (mask > 127).astype(np.uint8)


@dataclass
class KindQuality:
    defect_type_accuracy: float | None
    wrong_kind_rate: float | None
    kind_coverage: float | None
    n_flagged: int  # defective parts failed
    n_on_defect: int  # of those, with a region on the defect and a known kind


@dataclass(frozen=True)
class FlaggedPart:
    """What the explanation of one failed defective part said about its kind, and the truth."""

    kind: str | None  # the first region's kind, None when unnamed
    confidence: float | None  # that kind's confidence, None when unnamed
    judged: bool  # its mask marks the defect and its kind is known
    right: bool  # judged, a region on the defect, and the kind named is a true one
    wrong: bool  # judged and the kind named is not a true one
    on_defect: bool  # judged and the failed map overlaps the mask


def flagged_parts(samples: Sequence[TestSample], results: Sequence[InspectionResult],
                  kind_shots: int) -> list[FlaggedPart]:
    """One ``FlaggedPart`` per failed defective sample (``results``: one per sample, in order)."""
    parts = []
    for sample, result in zip(samples, results, strict=True):
        if not sample.is_defective or result.verdict != Verdict.FAIL:
            continue
        region = result.regions[0] if result.regions else None
        kind = region.defect_type if region else None
        truth = true_kinds(sample.defect_type, kind_shots)
        assert result.anomaly_map is not None
        height, width = result.anomaly_map.shape
        mask = sample.mask((width, height)).astype(bool)
        judged = truth is not None and bool(mask.any())
        on_defect = judged and bool((result.anomaly_map[mask] > THRESHOLD).any())
        named_right = truth is not None and kind is not None and kind in truth
        parts.append(FlaggedPart(kind, region.defect_probability if region else None, judged,
                                 on_defect and named_right, judged and kind is not None and not named_right,
                                 on_defect))
    return parts


def measure_kinds(samples: Sequence[TestSample], results: Sequence[InspectionResult],
                  kind_shots: int) -> KindQuality:
    """The three kind figures of the module docstring for ``results`` (one per sample, in order)."""
    parts = flagged_parts(samples, results, kind_shots)
    judged = sum(p.judged for p in parts)
    on_defect = sum(p.on_defect for p in parts)
    return KindQuality(defect_type_accuracy=sum(p.right for p in parts) / on_defect if on_defect else None,
                       wrong_kind_rate=sum(p.wrong for p in parts) / judged if judged else None,
                       kind_coverage=sum(p.kind is not None for p in parts) / len(parts) if parts else None,
                       n_flagged=len(parts), n_on_defect=on_defect)
