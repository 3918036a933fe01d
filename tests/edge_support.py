"""What the edge tests share: the agreement an exported model keeps with the torch path."""

from __future__ import annotations

import math

from inspect_app.results import InspectionResult

RTOL = ATOL = 1e-3  # raw scores: 1e-3 absolute + 1e-3 relative (issue 29)


def assert_same_answers(reference: list[InspectionResult], edge: list[InspectionResult]) -> None:
    """Same verdicts, raw scores within tolerance, same regions (boxes and locations; the edge
    runtime names no defect kinds yet, so its regions read "a defect")."""
    assert len(reference) == len(edge)
    for ref, got in zip(reference, edge, strict=True):
        assert got.verdict == ref.verdict, (ref.file, ref.raw_score, got.raw_score)
        assert ref.raw_score is not None and got.raw_score is not None
        assert math.isclose(got.raw_score, ref.raw_score, rel_tol=RTOL, abs_tol=ATOL), (ref.file, ref.raw_score,
                                                                                       got.raw_score)
        assert [(r.bbox, r.location) for r in got.regions] == [(r.bbox, r.location) for r in ref.regions], ref.file
        assert all(r.defect_type is None for r in got.regions)
