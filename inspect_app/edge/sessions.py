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
from typing import Protocol

import numpy as np

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
    """OpenVINO on the CPU, latency hint, f32. One inference at a time per session."""

    def __init__(self, path: Path):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        self._compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                           "INFERENCE_PRECISION_HINT": "f32",
                                                           "INFERENCE_NUM_THREADS": threads()})
        self._request = self._compiled.create_infer_request()
        self._names = [out.get_any_name() for out in self._compiled.outputs]
        self._lock = threading.Lock()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            result = self._request.infer(inputs)
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
