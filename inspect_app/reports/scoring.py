"""Scoring a folder for a report: the one ``Inspector``, in this process or on Ray.

Only the worst N parts keep their anomaly maps (for the gallery overlays) and the explanation
adapter's inputs; every other result drops them as soon as it is scored, so a 100,000-image
archive does not fill memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from pathlib import Path

from inspect_app.inspector import Inspector
from inspect_app.progress import ProgressCallback
from inspect_app.results import EvidenceFor, InspectionResult

CHUNK = 64  # images per predict call: bounds the anomaly maps held at once


def drop_maps(result: InspectionResult) -> None:
    """Free what only gallery parts need: the anomaly map and the explanation adapter's inputs."""
    result.anomaly_map, result.evidence = None, None


class WorstKeeper:
    """Keeps the anomaly maps of the N highest-scoring results (ties: earlier file first), in
    whatever order results arrive, so single-process and Ray runs pick the same gallery."""

    def __init__(self, n: int):
        self.n = n
        self._heap: list[tuple[float, int, InspectionResult]] = []  # min-heap of (score, -index, result)

    def offer(self, index: int, result: InspectionResult) -> None:
        if result.score is None or self.n <= 0:
            drop_maps(result)
            return
        item = (result.score, -index, result)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, item)
            return
        if item[:2] > self._heap[0][:2]:
            drop_maps(heapq.heapreplace(self._heap, item)[2])
        else:
            drop_maps(result)

    def indices(self) -> list[int]:
        """Indices of the kept results, worst first."""
        return [-neg for _, neg, _ in sorted(self._heap, key=lambda t: t[:2], reverse=True)]


def score_files(inspector: Inspector, files: Sequence[Path], keeper: WorstKeeper,
                progress: ProgressCallback | None = None) -> list[InspectionResult]:
    """``inspector.predict_batch`` over ``files`` in chunks; unreadable files become ERROR results."""
    results: list[InspectionResult] = []
    for start in range(0, len(files), CHUNK):
        chunk = [str(f) for f in files[start:start + CHUNK]]
        for offset, result in enumerate(inspector.predict_batch(chunk, evidence=EvidenceFor.FAILS)):
            keeper.offer(start + offset, result)
            results.append(result)
        if progress:
            progress(len(results), len(files), "inspecting")
    return results
