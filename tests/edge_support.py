"""What the edge tests share: the agreement an exported model keeps with the torch path."""

from __future__ import annotations

import math

from inspect_app.results import InspectionResult

RTOL = ATOL = 1e-3  # raw scores: 1e-3 absolute + 1e-3 relative (issue 29)


def assert_same_answers(reference: list[InspectionResult], edge: list[InspectionResult]) -> None:
    """Same verdicts, raw scores within tolerance, same regions (boxes, locations and the defect
    kinds they are named with)."""
    assert len(reference) == len(edge)
    for ref, got in zip(reference, edge, strict=True):
        assert got.verdict == ref.verdict, (ref.file, ref.raw_score, got.raw_score)
        assert ref.raw_score is not None and got.raw_score is not None
        assert math.isclose(got.raw_score, ref.raw_score, rel_tol=RTOL, abs_tol=ATOL), (ref.file, ref.raw_score,
                                                                                       got.raw_score)
        assert [(r.bbox, r.location, r.defect_type) for r in got.regions] == \
            [(r.bbox, r.location, r.defect_type) for r in ref.regions], ref.file
