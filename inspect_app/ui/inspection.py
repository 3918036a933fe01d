"""The Inspect page's work, free of widgets: bytes in, results out (stored, explanations started).

Kept apart from the page so the same path serves uploads, camera snapshots and line-camera
grabs, and so tests can drive it with plain bytes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from inspect_app.explain import Explainer, Explanation
from inspect_app.results import EvidenceFor, InspectionResult, Verdict
from inspect_app.ui.uploads import Upload, check_image

if TYPE_CHECKING:
    from inspect_app.edge.inspector import EdgeInspector
    from inspect_app.inspector import Inspector
    from inspect_app.store import ResultRecorder


@dataclass
class InspectedPart:
    """One uploaded image and what became of it."""

    upload: Upload
    image: np.ndarray | None
    label: str = ""  # what the page calls it: the file name, numbered when two uploads share a name
    result: InspectionResult | None = None
    error: str | None = None  # refused before inspection (too large, not an image); its result is ERROR
    stored_id: int | None = None
    store_error: str | None = None
    explanation_future: Future[Explanation] | None = field(default=None, repr=False)
    explanation_seconds: float | None = None
    verdict_ms: float | None = None  # wall time from receiving the bytes to the verdict

    @property
    def explanation_pending(self) -> bool:
        return self.explanation_future is not None and self.result is not None and self.result.explanation is None


def inspect_uploads(inspector: Inspector | EdgeInspector, uploads: list[Upload], max_bytes: int,
                    store: ResultRecorder | None = None, station: str = "ui", lot: str | None = None,
                    explainer: Explainer | None = None, lock: threading.Lock | None = None) -> list[InspectedPart]:
    """Check, inspect (one batch, under ``lock`` when the Inspector is shared), store, and start
    explanations; never waits for an explanation. A refused file becomes an ERROR result and is
    stored like one (as the line stores an unreadable frame), so History shows it.

    Every result goes to ``explainer``: a FAIL's future resolves later, PASS and ERROR get the
    deterministic sentence at once. ``explainer=None``: explanations off.
    """
    start = time.perf_counter()
    parts = []
    names = Counter(u.name for u in uploads)
    seen: Counter[str] = Counter()
    for upload in uploads:
        checked = check_image(upload, max_bytes)
        seen[upload.name] += 1
        label = upload.name if names[upload.name] == 1 else \
            f"{upload.name} (#{seen[upload.name]} of {names[upload.name]})"
        parts.append(InspectedPart(upload, checked.image, label, error=checked.error))
    images = [(p, p.image) for p in parts if p.image is not None]
    results = []
    if images:
        with lock or contextlib.nullcontext():
            results = inspector.predict_batch([image for _, image in images], names=[p.label for p, _ in images],
                                              evidence=EvidenceFor.FAILS)
    elapsed = (time.perf_counter() - start) * 1000
    refused = [(p, InspectionResult(p.label, Verdict.ERROR, error=p.error, product=inspector.product,
                                    mode=inspector.mode, profile_version=inspector.profile_version))
               for p in parts if p.error is not None]
    inspected: list[tuple[InspectedPart, InspectionResult]] = [
        (part, result) for (part, _), result in zip(images, results, strict=True)]
    for part, result in inspected + refused:
        part.result, part.verdict_ms = result, elapsed
        if store is not None:
            try:
                part.stored_id = store.add_result(result, station=station, lot=lot or None, image=part.image)
            except Exception as exc:  # an unreachable store must not hide the verdict
                part.store_error = str(exc)
        if explainer is not None:
            part.explanation_future = explainer.submit(result)
            collect_explanation(part, store)  # PASS and ERROR resolve at once with the deterministic sentence
    return parts


def finish_explanation(part: InspectedPart, text: str, source: str, seconds: float,
                       store: ResultRecorder | None = None) -> None:
    """Attach an explanation to the inspected part's result (and its stored row)."""
    if part.result is None:
        raise ValueError(f"{part.upload.name} was not inspected: it has no result to explain")
    part.result.explanation, part.result.explanation_source = text, source
    part.explanation_seconds = seconds
    if store is not None and part.stored_id is not None:
        try:
            store.set_explanation(part.stored_id, text, source)
        except Exception as exc:
            part.store_error = str(exc)


def collect_explanation(part: InspectedPart, store: ResultRecorder | None = None) -> bool:
    """Take a finished explanation from its future; True once the part has its explanation."""
    future = part.explanation_future
    if future is None or not part.explanation_pending:
        return True
    if not future.done():
        return False
    try:
        expl = future.result()
        source = expl.source if not expl.fallback_reason else f"{expl.source} ({expl.fallback_reason})"
        finish_explanation(part, expl.text, source, expl.seconds, store)
    except Exception as exc:  # the verdict stands without a sentence
        finish_explanation(part, f"(no explanation: {type(exc).__name__}: {exc})", "error", 0.0)
    return True
