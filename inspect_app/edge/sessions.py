"""Running an exported graph with OpenVINO or ONNX Runtime (torch-free).

OpenVINO runs in f32 (``INFERENCE_PRECISION_HINT``): on CPUs with bf16 support its default
precision moved raw scores by ~1 % (0.5 on a score of 48), beyond the 1e-3 relative tolerance
the exported model keeps with the torch path.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspect_app.edge.manifest import PIXELS
from inspect_app.errors import InspectAppError


class Runtime(StrEnum):
    """Which engine runs the model: torch is the reference (fitting needs it), the others run an
    exported graph."""

    TORCH = "torch"
    OPENVINO = "openvino"
    ONNX = "onnx"


RUNTIME_MODULES = {Runtime.TORCH: "torch", Runtime.OPENVINO: "openvino", Runtime.ONNX: "onnxruntime"}
FASTEST_FIRST = (Runtime.OPENVINO, Runtime.ONNX, Runtime.TORCH)  # measured: benchmarks/edge_speed.py


def installed(runtime: Runtime) -> bool:
    try:
        return importlib.util.find_spec(RUNTIME_MODULES[runtime]) is not None
    except ImportError:  # an import hook that refuses the module
        return False


def fastest_installed(graph_runtimes_only: bool = False) -> Runtime:
    """The fastest runtime this installation has (torch last; left out with ``graph_runtimes_only``)."""
    for runtime in FASTEST_FIRST:
        if (not graph_runtimes_only or runtime != Runtime.TORCH) and installed(runtime):
            return runtime
    raise InspectAppError("neither OpenVINO nor ONNX Runtime is installed: install the edge runtime (make edge)")


def threads() -> int:
    """Inference threads: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class GraphSession(Protocol):
    """A compiled graph: named float32 inputs -> named outputs."""

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OpenVinoSession:
    """OpenVINO on the CPU, latency hint, f32. One inference at a time per session.

    Batches run the graph as exported (dynamic batch and bank sizes). A single image, what a line
    station sends, runs a copy compiled for its exact shapes, which OpenVINO runs faster: bottle's
    graph 8.7 ms instead of 10.1, the same outputs (NOTEBOOK 2026-12-07). Compiling it takes about
    0.1 s, paid by the first single image and again whenever the memory bank changes size."""

    def __init__(self, path: Path):
        import openvino as ov

        self._core = ov.Core()
        self._model = self._core.read_model(str(path))
        self._request = self._compile(self._model)
        self._single: tuple[tuple[tuple[int, ...], ...], Any] | None = None  # (input shapes, request)
        self._names = [out.get_any_name() for out in self._model.outputs]
        self._lock = threading.Lock()

    def _compile(self, model: Any) -> Any:
        return self._core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                       "INFERENCE_NUM_THREADS": threads()}).create_infer_request()

    def _request_for(self, inputs: dict[str, np.ndarray]) -> Any:
        if inputs[PIXELS].shape[0] != 1:
            return self._request
        shapes = tuple(array.shape for array in inputs.values())
        if self._single is None or self._single[0] != shapes:
            model = self._model.clone()
            model.reshape({name: list(array.shape) for name, array in inputs.items()})
            self._single = (shapes, self._compile(model))
        return self._single[1]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            result = self._request_for(inputs).infer(inputs)
            return {name: np.array(result[i]) for i, name in enumerate(self._names)}


class OnnxSession:
    """ONNX Runtime on the CPU, all graph optimisations."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._names = [out.name for out in self._session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._names, self._session.run(self._names, inputs), strict=True))


def open_session(path: Path, runtime: Runtime) -> GraphSession:
    """Compile the graph at ``path`` (ONNX, or OpenVINO IR for OpenVINO) for ``runtime``."""
    if runtime == Runtime.TORCH:
        raise InspectAppError("an exported model runs with --runtime openvino or onnx; torch runs the profile")
    if not installed(runtime):
        raise InspectAppError(f"--runtime {runtime}: {RUNTIME_MODULES[runtime]} is not installed")
    if runtime == Runtime.ONNX and path.suffix != ".onnx":
        raise InspectAppError(f"{path.parent} was exported for OpenVINO: ONNX Runtime needs --format onnx")
    return OpenVinoSession(path) if runtime == Runtime.OPENVINO else OnnxSession(path)
