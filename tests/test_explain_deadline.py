"""The explainer's deadline holds for its callers whatever the worker does: ``explain`` never
raises (a slow or starved worker resolves to the deterministic sentence) and ``close`` cuts
queued and running explanations at once. Run with the cores saturated by other processes, the
load under which ``inspect-app demo`` once crashed with ``TimeoutError``."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from inspect_app.explain import ExplainerService
from inspect_app.explain.service import CUT_AT_SHUTDOWN
from inspect_app.results import InspectionResult, Region


def fail_result() -> InspectionResult:
    return InspectionResult(file="a.png", verdict="FAIL", score=0.83, raw_score=3.2, product="bottle",
                            regions=[Region(bbox=(0, 0, 10, 10), area_fraction=0.004, centroid=(5.0, 5.0),
                                                   location="top-left", elongation=4.0, shape="elongated",
                                                   size="small", peak_score=0.9)])


@pytest.fixture
def saturated_cores() -> Iterator[None]:
    """One busy process per core and one more, for the test's duration."""
    import os

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 1) + 1)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


class SpinningGenerator:
    """Pure-Python work that ignores ``max_seconds``: holds the GIL whenever it runs."""

    source = "language-model"

    def __init__(self, seconds: float):
        self.seconds = seconds

    def generate_batch(self, results: list, max_seconds: float | None = None) -> list[str]:
        end = time.perf_counter() + self.seconds
        spins = 0
        while time.perf_counter() < end:
            spins += 1
        return ["A dark spot on the left." for _ in results]


class GilHoldingGenerator:
    """A C call that keeps the GIL for ``seconds``: neither the watchdog nor the caller can run meanwhile."""

    source = "language-model"

    def __init__(self, seconds: int):
        self.seconds = seconds

    def generate_batch(self, results: list, max_seconds: float | None = None) -> list[str]:
        ctypes.PyDLL(None).sleep(self.seconds)  # PyDLL: the GIL stays held during the call
        return ["A dark spot on the left." for _ in results]


def test_explain_resolves_to_the_template_under_saturated_cores(saturated_cores):
    with ExplainerService(variant="facts", timeout_s=0.3, generator_factory=lambda: SpinningGenerator(10)) as svc:
        for _ in range(3):
            start = time.perf_counter()
            expl = svc.explain(fail_result())
            assert expl.source == "template" and expl.fallback_reason.startswith("timeout")
            assert time.perf_counter() - start < 4.0
        start = time.perf_counter()
    assert time.perf_counter() - start < 3.0  # close() cut the running generation instead of waiting


@pytest.mark.skipif(sys.platform != "linux", reason="ctypes.PyDLL(None) needs the C library of the process")
def test_explain_never_raises_when_the_worker_holds_the_gil_past_the_deadline(saturated_cores):
    # The worker holds the GIL past timeout_s + 5 s, the margin the old blocking wait allowed.
    with ExplainerService(variant="facts", timeout_s=0.2, generator_factory=lambda: GilHoldingGenerator(6)) as svc:
        expl = svc.explain(fail_result())
    assert expl.source == "template" and expl.fallback_reason is not None
    assert expl.text.startswith("FAIL")


def test_close_cuts_queued_and_running_explanations():
    svc = ExplainerService(variant="facts", timeout_s=30, max_queue=8, generator_factory=lambda: SpinningGenerator(20))
    futures = [svc.submit(fail_result()) for _ in range(4)]
    time.sleep(0.3)  # the first batch is running
    start = time.perf_counter()
    svc.close()
    assert time.perf_counter() - start < 3.0
    explanations = [f.result(timeout=0) for f in futures]
    assert all(e.source == "template" and e.fallback_reason == CUT_AT_SHUTDOWN for e in explanations)
    assert svc.counts["cut"] == 4
