"""What callers of the explanations feature rely on: the ``Explanation`` it returns and the
``Explainer`` protocol of the service (``ExplainerService`` implements it; tests pass fakes).

Kept apart from the service so that callers (reports, the UI, the line station, the demo) can
name the type without starting or importing the worker machinery."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, Self

from inspect_app.results import InspectionResult


@dataclass
class Explanation:
    text: str
    source: str  # "language-model", "adapter" or "template"
    raw_text: str | None = None  # what the language model wrote, before validation
    fallback_reason: str | None = None  # why the deterministic sentence replaced model text
    seconds: float = 0.0


class Explainer(Protocol):
    """An explanation service: ``submit`` never blocks (a FAIL's future resolves when its text is
    written or its deadline passes, every other result's at once); ``close`` stops the service and
    resolves what is still queued with the deterministic sentence."""

    variant: str  # "adapter", "facts" or "template"
    timeout_s: float  # deadline of one explanation, from its submission
    max_queue: int  # explanations waiting at most; more are answered with the deterministic sentence

    def submit(self, result: InspectionResult) -> Future[Explanation]: ...

    def explain(self, result: InspectionResult) -> Explanation: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
