"""``EdgeInspector``: inspect with an exported model, without torch.

The same numpy stages as ``inspector.Inspector`` around a compiled graph: ``pre_processing``
resizes and normalises, the graph (OpenVINO or ONNX Runtime) computes the raw anomaly map, the
kind posteriors, the embedding and the aggregated patches, and ``post_processing.PostProcessor``
turns them into the result, so verdicts, scores, regions and the defect kinds they are named with
follow the same rules as the torch path. Bad images become ``ERROR`` results and never stop a batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np

from inspect_app.batching import (
    PredictsOneOrMany,
    error_result_for,
    inspect_in_batches,
    keep_numpy_blas_on_one_thread,
    result_names,
)
from inspect_app.config import Mode
from inspect_app.data.images import ImageInput
from inspect_app.edge.manifest import (
    ANOMALY_MAP,
    BANK,
    BANK_FILE,
    EMBEDDING,
    KIND_BOOK,
    KINDS,
    PATCHES,
    PIXELS,
    POST_PROCESSING_FILE,
    EdgeManifest,
)
from inspect_app.edge.sessions import GraphSession, Runtime, fastest_installed, open_session
from inspect_app.errors import ProfileError
from inspect_app.post_processing.calibration import Calibration
from inspect_app.post_processing.kinds import BankStatistics, KindBook
from inspect_app.post_processing.post_processor import PostProcessor
from inspect_app.pre_processing import prepare_pixels
from inspect_app.progress import ProgressCallback
from inspect_app.results import EvidenceFor, ExplanationEvidence, InspectionResult, Verdict


class EdgeInspector(PredictsOneOrMany):
    """Predict-only inspector over an exported graph; see the module docstring."""

    def __init__(self, manifest: EdgeManifest, session: GraphSession, post_processor: PostProcessor,
                 memory_bank: np.ndarray | None, runtime: Runtime, batch_size: int = 8):
        self.manifest, self.session, self.post_processor = manifest, session, post_processor
        self.runtime, self.batch_size = runtime, batch_size
        self._memory_bank = memory_bank
        self._bank_statistics = BankStatistics()  # for naming kinds
        keep_numpy_blas_on_one_thread()

    @classmethod
    def load(cls, folder: str | Path, runtime: Runtime | None = None, batch_size: int = 8) -> EdgeInspector:
        """An exported model folder (``inspect-app export``); ``runtime`` defaults to the fastest installed."""
        folder = Path(folder)
        manifest = EdgeManifest.read(folder)
        try:
            settings = json.loads((folder / POST_PROCESSING_FILE).read_text())
            post_processor = PostProcessor.from_dict(settings)
            if KIND_BOOK in settings:
                post_processor.kind_book = KindBook.from_dict(settings[KIND_BOOK])
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{folder / POST_PROCESSING_FILE} is missing or corrupt ({exc}); "
                               "export the product again") from None
        if manifest.mode not in post_processor.calibrations:
            raise ProfileError(f"{folder}: no calibration for the graph's mode {manifest.mode!r}; export again")
        bank = np.load(folder / BANK_FILE) if BANK in manifest.inputs else None
        runtime = runtime or fastest_installed(graph_runtimes_only=True)
        session = open_session(folder / manifest.graph_file, runtime)
        return cls(manifest, session, post_processor, bank, runtime, batch_size)

    @property
    def product(self) -> str:
        return self.manifest.product

    @property
    def profile_version(self) -> str | None:
        return self.manifest.profile_version

    @property
    def mode(self) -> Mode:
        return cast(Mode, self.manifest.mode)

    @property
    def is_fitted(self) -> bool:
        return True

    @property
    def calibrations(self) -> dict[Mode, Calibration]:
        return self.post_processor.calibrations

    @property
    def calibration(self) -> Calibration | None:
        return self.calibrations.get(self.mode)

    @property
    def supported_modes(self) -> list[Mode]:
        return [self.mode]

    @property
    def kinds(self) -> list[str]:
        return list(self.post_processor.kinds)

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.manifest.input_shape

    def memory_bank(self) -> np.ndarray | None:
        """The memory bank fed to the graph with every batch."""
        return self._memory_bank

    def predict_batch(self, images: Sequence[ImageInput], names: Sequence[str | None] | None = None,
                      progress: ProgressCallback | None = None, mode: Mode | None = None,
                      evidence: EvidenceFor = EvidenceFor.NONE) -> list[InspectionResult]:
        if mode is not None and mode != self.mode:
            raise ProfileError(f"the exported model of {self.product!r} runs mode {self.mode!r}: export it "
                               f"again with --mode {mode} to use {mode!r}")

        # Post-processing is numpy/OpenCV too: the same two threads overlap it across a batch.
        with ThreadPoolExecutor(max_workers=2) as pool:
            return inspect_in_batches(images, result_names(images, names), self.batch_size, pool,
                                      lambda arrays, load_ms: self._score(arrays, load_ms, evidence, pool),
                                      error_result_for(self.product, self.mode, self.profile_version), progress)

    def raw_outputs(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs for decoded images: raw anomaly maps, kind posteriors, embeddings."""
        height, width = self.manifest.input_shape
        inputs = {PIXELS: prepare_pixels(arrays, (height, width), self.manifest.mean, self.manifest.std,
                                         self.manifest.standardise_exposure)}
        bank = self.memory_bank()
        if bank is not None:
            inputs[BANK] = bank
        return self.session.run(inputs)

    def _score(self, arrays: list[np.ndarray], load_ms: float, evidence: EvidenceFor,
               pool: ThreadPoolExecutor) -> list[InspectionResult]:
        t0 = time.perf_counter()
        outputs = self.raw_outputs(arrays)
        infer_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        raw_maps, kinds = outputs[ANOMALY_MAP], outputs.get(KINDS)

        def post_process(b: int) -> InspectionResult:
            t1 = time.perf_counter()
            kind_maps = kinds[b] if kinds is not None else None
            result = self.post_processor.process(arrays[b], raw_maps[b], self.mode)
            post_ms = (time.perf_counter() - t1) * 1000
            result.product, result.profile_version = self.product, self.profile_version
            result.timings_ms = {"load": load_ms, "inference": infer_ms, "post": post_ms,
                                 "total": load_ms + infer_ms + post_ms}
            if evidence == EvidenceFor.ALL or (evidence == EvidenceFor.FAILS and result.verdict == Verdict.FAIL):
                result.evidence = ExplanationEvidence(kind_maps, outputs[EMBEDDING][b])
            return result

        results = list(pool.map(post_process, range(len(arrays)))) if len(arrays) > 1 else [post_process(0)]
        self._name_kinds(results, outputs.get(PATCHES))
        return results

    def _name_kinds(self, results: list[InspectionResult], patches: np.ndarray | None) -> None:
        """Name the failed parts' regions as the torch path does (``PostProcessor.name_kinds``). A
        graph exported before it returned its patches (graph version 1) names none."""
        bank = self.memory_bank()
        if patches is not None and bank is not None and self.post_processor.names_kinds:
            self.post_processor.name_kinds(results, patches, bank, self._bank_statistics)
