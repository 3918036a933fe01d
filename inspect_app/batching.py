"""Inspecting a list of images a batch at a time, shared by the torch ``Inspector`` and the
exported ``EdgeInspector`` (torch-free): unreadable images become ERROR results in their place,
the readable ones of each batch are scored together. Decoding runs on the caller's thread pool
(OpenCV and Pillow release the GIL), so two images of a batch decode at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast, overload

import numpy as np
from threadpoolctl import threadpool_limits

from inspect_app.config import Mode
from inspect_app.data.images import ImageInput, load_image
from inspect_app.errors import ImageLoadError
from inspect_app.progress import ProgressCallback
from inspect_app.results import EvidenceFor, InspectionResult, Verdict

Score = Callable[[list[np.ndarray], float], list[InspectionResult]]  # decoded images, load ms each -> results
ErrorResult = Callable[[str, float], InspectionResult]  # the reason, load ms -> an ERROR result


def error_result_for(product: str | None, mode: Mode, profile_version: str | None) -> ErrorResult:
    """The ERROR result of an unreadable image, named with what would have judged it."""
    def error_result(reason: str, load_ms: float) -> InspectionResult:
        return InspectionResult(None, Verdict.ERROR, error=reason, product=product, mode=mode,
                                profile_version=profile_version, timings_ms={"load": load_ms})
    return error_result


def keep_numpy_blas_on_one_thread() -> None:
    """Run numpy's BLAS (OpenBLAS) on one thread in a process that inspects.

    Post-processing makes a few tiny BLAS calls (a dot product per region); after each, OpenBLAS's
    second thread busy-waits for work and takes a core from the next image's inference on this
    2-core machine: the exported graph took 17.6 ms after post-processing a FAIL instead of 8.8 ms
    (benchmarks/NOTEBOOK.md, 2026-12-06, "OpenBLAS spin"). torch and the graph runtimes have their
    own thread pools and are not affected.
    """
    threadpool_limits(1, user_api="blas")


class PredictsOneOrMany:
    """``predict`` for an inspector that has ``predict_batch``: one image gives one result, a list
    or tuple gives a list in the same order."""

    def predict_batch(self, images: Sequence[ImageInput], names: Sequence[str | None] | None = None,
                      progress: ProgressCallback | None = None, mode: Mode | None = None,
                      evidence: EvidenceFor = EvidenceFor.NONE) -> list[InspectionResult]:
        raise NotImplementedError

    @overload
    def predict(self, images: list[ImageInput] | tuple[ImageInput, ...], names: Sequence[str | None] | None = None,
                progress: ProgressCallback | None = None, mode: Mode | None = None,
                evidence: EvidenceFor = EvidenceFor.NONE) -> list[InspectionResult]: ...

    @overload
    def predict(self, images: ImageInput, names: Sequence[str | None] | None = None,
                progress: ProgressCallback | None = None, mode: Mode | None = None,
                evidence: EvidenceFor = EvidenceFor.NONE) -> InspectionResult: ...

    def predict(self, images: ImageInput | Sequence[ImageInput], names: Sequence[str | None] | None = None,
                progress: ProgressCallback | None = None, mode: Mode | None = None,
                evidence: EvidenceFor = EvidenceFor.NONE) -> InspectionResult | list[InspectionResult]:
        """Inspect one image (returns one result) or a list (returns a list, same order).
        ``evidence`` says which results also carry the explanation adapter's inputs."""
        if isinstance(images, (list, tuple)):
            return self.predict_batch(images, names, progress, mode, evidence)
        return self.predict_batch([cast(ImageInput, images)], names, progress, mode, evidence)[0]


def load_or_error(image: ImageInput, name: str | None) -> np.ndarray | str:
    """The decoded image, or why it could not be read (a station never crashes on one bad frame)."""
    try:
        return load_image(image, name=name)
    except ImageLoadError as exc:
        return str(exc)
    except Exception as exc:
        return f"{name or 'image'}: unexpected error while reading ({type(exc).__name__}: {exc})"


def result_names(images: Sequence[ImageInput], names: Sequence[str | None] | None) -> list[str | None]:
    """The ``file`` of each result: the given names, else the paths (arrays and bytes have none)."""
    return list(names) if names is not None else [str(im) if isinstance(im, (str, Path)) else None for im in images]


def inspect_in_batches(images: Sequence[ImageInput], names: list[str | None], batch_size: int, pool: ThreadPoolExecutor,
                       score: Score, error_result: ErrorResult,
                       progress: ProgressCallback | None = None) -> list[InspectionResult]:
    """One result per image, in order."""
    results: list[InspectionResult] = []
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        t0 = time.perf_counter()
        loaded = list(pool.map(load_or_error, images[start:stop], names[start:stop])) if stop - start > 1 \
            else [load_or_error(images[start], names[start])]
        load_ms = (time.perf_counter() - t0) * 1000 / len(loaded)
        arrays = [a for a in loaded if isinstance(a, np.ndarray)]
        scored = iter(score(arrays, load_ms) if arrays else [])
        for offset, item in enumerate(loaded):
            result = next(scored) if isinstance(item, np.ndarray) else error_result(item, load_ms)
            result.file = names[start + offset]
            results.append(result)
        if progress:
            progress(len(results), len(images), "inspecting")
    return results
