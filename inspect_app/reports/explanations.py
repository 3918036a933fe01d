"""Explanations for the failed parts of a report.

The gallery's failed parts (the ones people read) go to the explanation service in chunks no
larger than its queue, so none is turned away for a full queue; the language model (when it is
installed and loads) writes each chunk in one batched decoding pass. Every other failed part gets
the deterministic sentence directly: it states the same validated facts, and a language model on
a CPU would multiply the time of a large report. A fallback is recorded in the explanation source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inspect_app.explain import Explainer, Explanation
from inspect_app.progress import ProgressCallback
from inspect_app.results import InspectionResult, Verdict

REPORT_TIMEOUT_S = 60.0  # a report is not a line: it can wait for the model to load and write a batch


def _source(expl: Explanation) -> str:
    return f"template (fallback: {expl.fallback_reason})" if expl.fallback_reason else expl.source


def explain_failures(results: Sequence[InspectionResult], gallery: set[int], models_dir: str | Path | None = None,
                     progress: ProgressCallback | None = None, service: Explainer | None = None) -> dict[str, int]:
    """Fill ``explanation``/``explanation_source`` of FAIL results that have none; ``gallery``
    holds the indices explained by the service (``service``: a running one to reuse, else an
    ``ExplainerService`` is started and closed here). Returns how many came from each source."""
    from inspect_app.explain import ExplainerService, template_explanation

    todo = [i for i, r in enumerate(results) if r.verdict == Verdict.FAIL and not r.explanation]
    modelled = [i for i in todo if i in gallery]
    counts: dict[str, int] = {}
    done = 0
    fallback = "template"
    owned = service is None and bool(modelled)
    if owned:
        try:
            size = max(len(modelled), 1)
            service = ExplainerService(models_dir=models_dir, max_queue=size, batch_size=size,
                                       timeout_s=REPORT_TIMEOUT_S)
        except Exception as exc:  # a broken explainer must not cost the report
            service, fallback = None, f"template (fallback: explainer unavailable: {type(exc).__name__}: {exc})"
            modelled = []
    if service is not None and modelled:
        try:
            chunk = max(service.max_queue, 1)
            for start in range(0, len(modelled), chunk):
                batch = modelled[start:start + chunk]
                futures = [service.submit(results[i]) for i in batch]
                for i, future in zip(batch, futures, strict=True):
                    try:
                        expl = future.result(timeout=service.timeout_s * (len(batch) + 1))
                    except TimeoutError:  # a starved explainer costs this part its model text, not the report
                        fallback = "template (fallback: explainer timed out)"
                        continue
                    source = _source(expl)
                    results[i].explanation, results[i].explanation_source = expl.text, source
                    counts[source] = counts.get(source, 0) + 1
                done += len(batch)
                if progress:
                    progress(done, len(todo), "explaining failed parts")
        finally:
            if owned:
                service.close()
    for i in todo:
        if results[i].explanation is None:
            source = fallback if i in gallery else "template"
            results[i].explanation, results[i].explanation_source = template_explanation(results[i]), source
            counts[source] = counts.get(source, 0) + 1
    if progress and todo:
        progress(len(todo), len(todo), "explaining failed parts")
    return counts
