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
    """OpenVINO on the CPU, f32. One call at a time per session.

    Every image runs on a copy of the graph compiled for one image and the current memory bank
    (static shapes), which OpenVINO runs faster than the exported dynamic graph: bottle's 9.4 ms per
    image against 11.8 in a dynamic batch of 8 (NOTEBOOK 2026-12-07). A single image, what a line
    station sends, runs on a copy with the latency hint (every thread on the one image); a batch
    runs its images on a copy with the throughput hint, one stream per CPU, several images at once,
    which also held up better with other work on the CPU. Each copy is compiled when first needed
    (about 0.1 s) and again when the memory bank changes size."""

    def __init__(self, path: Path):
        import openvino as ov

        self._ov = ov
        self._core = ov.Core()
        self._model = self._core.read_model(str(path))
        self._names = [out.get_any_name() for out in self._model.outputs]
        self._compiled: dict[str, tuple[dict[str, tuple[int, ...]], Any]] = {}  # hint -> (one image's shapes, runner)
        self._lock = threading.Lock()

    def _compiled_for(self, hint: str, shapes: dict[str, tuple[int, ...]]) -> Any:
        if hint not in self._compiled or self._compiled[hint][0] != shapes:
            model = self._model.clone()
            model.reshape({name: list(shape) for name, shape in shapes.items()})
            compiled = self._core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint,
                                                               "INFERENCE_PRECISION_HINT": "f32",
                                                               "INFERENCE_NUM_THREADS": threads()})
            runner = (compiled.create_infer_request() if hint == "LATENCY" else
                      self._ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._compiled[hint] = (shapes, runner)
        return self._compiled[hint][1]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = inputs[PIXELS]
        shapes = {name: (1, *pixels.shape[1:]) if name == PIXELS else array.shape for name, array in inputs.items()}
        with self._lock:
            if len(pixels) == 1:  # the request reads the arrays and its outputs are copied once, here
                result = self._compiled_for("LATENCY", shapes).infer(inputs, share_inputs=True, share_outputs=True)
                return {name: np.array(result[i]) for i, name in enumerate(self._names)}
            queue = self._compiled_for("THROUGHPUT", shapes)
            outputs: list[list[np.ndarray] | None] = [None] * len(pixels)

            def keep(request: Any, b: int) -> None:
                outputs[b] = [np.array(request.get_output_tensor(i).data) for i in range(len(self._names))]

            queue.set_callback(keep)
            for b in range(len(pixels)):  # the arrays outlive the requests: no copies
                queue.start_async({**inputs, PIXELS: pixels[b:b + 1]}, b, share_inputs=True)
            queue.wait_all()
        if any(out is None for out in outputs):
            raise RuntimeError("OpenVINO finished a batch without the outputs of every image")
        return {name: np.concatenate([out[i] for out in outputs if out is not None])
                for i, name in enumerate(self._names)}


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
