"""The inspect thread: takes whatever is queued (up to ``batch_size`` frames) and runs the one
Inspector on it; a batch that fails becomes ERROR results, never a stopped station."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from inspect_app.line.health import VerdictRate
from inspect_app.line.metrics import StationMetrics
from inspect_app.line.output import LineResult, OutputStage
from inspect_app.line.queues import InspectQueue, Job
from inspect_app.results import EvidenceFor, InspectionResult, Verdict

log = logging.getLogger(__name__)


class LineInspector(Protocol):
    """What a station needs of an ``inspect_app.inspector.Inspector`` (loaded from the product's
    profile when the station starts, or handed in)."""

    @property
    def mode(self) -> str: ...

    @property
    def profile_version(self) -> str | None: ...

    def predict_batch(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None, *,
                      evidence: EvidenceFor = ...) -> list[InspectionResult]: ...


def frame_name(station: str, job: Job) -> str:
    """A frame's file name, or ``<station>#<part number>`` for camera frames."""
    return job.frame.name or f"{station}#{job.seq}"


def run_inspection(station: str, product: str, inspector: LineInspector, jobs: InspectQueue, batch_size: int,
                   output: OutputStage, metrics: StationMetrics, rate: VerdictRate) -> None:
    """Until the queue is closed and empty; then tells the output stage that inspection ended."""
    try:
        while True:
            batch = jobs.get_batch(batch_size, timeout=0.2)
            metrics.queue_depth.labels("inspect").set(len(jobs))
            if not batch:
                if jobs.closed and not len(jobs):
                    return
                continue
            names = [frame_name(station, j) for j in batch]
            images = [j.frame.image for j in batch if j.frame.image is not None]
            t0 = time.perf_counter()
            try:
                if len(images) != len(batch):  # the capture thread never queues a corrupt frame
                    raise ValueError("a queued frame has no image")
                results = inspector.predict_batch(images, names, evidence=EvidenceFor.FAILS)
                if len(results) != len(batch):
                    raise ValueError(f"{len(results)} results for {len(batch)} frames")
            except Exception as exc:  # one bad batch never stops the station
                log.exception("inspection of %d frame(s) failed", len(batch))
                results = [InspectionResult(n, Verdict.ERROR, error=f"inspection failed: {type(exc).__name__}: {exc}",
                                            product=product) for n in names]
            per_frame = (time.perf_counter() - t0) / len(batch)
            verdict_at = time.time()
            for job, result in zip(batch, results, strict=True):
                metrics.inspection_latency.observe(per_frame)
                metrics.trigger_to_verdict.observe(max(0.0, verdict_at - job.triggered_at))
                metrics.inspections.labels(result.verdict).inc()
                output.put(LineResult(job.seq, result, job.frame.image, job.trigger, job.triggered_at, verdict_at,
                                      job.key, job.frame))
            rate.add(verdict_at, len(batch))
    finally:
        output.end()
