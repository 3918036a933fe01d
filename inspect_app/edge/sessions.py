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

from inspect_app.edge.manifest import BANK, PIXELS
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
    which also held up better with other work on the CPU. The bank is folded into each copy as a
    constant, so its search runs as a prepacked matrix product (bottle's graph 10.60 -> 10.18 ms);
    each copy is compiled when first needed (about 0.1 s) and again when the bank changes: the
    session holds the bank it folded, so a new bank is a different array (``set_bank`` replaces the
    decoder's tensor, never writes into it)."""

    def __init__(self, path: Path):
        import openvino as ov

        self._ov = ov
        self._core = ov.Core()
        self._model = self._core.read_model(str(path))
        self._names = [out.get_any_name() for out in self._model.outputs]
        self._compiled: dict[str, tuple[tuple[Any, ...], np.ndarray | None, Any]] = {}  # hint -> (key, bank, runner)
        self._lock = threading.Lock()

    def _compiled_for(self, hint: str, pixels_shape: tuple[int, ...], bank: np.ndarray | None) -> Any:
        key = (pixels_shape, None if bank is None else (bank.__array_interface__["data"][0], bank.shape))
        if hint not in self._compiled or self._compiled[hint][0] != key:
            model = self._model.clone()
            model.reshape({PIXELS: list(pixels_shape), **({} if bank is None else {BANK: list(bank.shape)})})
            if bank is not None:
                parameter = next(p for p in model.get_parameters() if BANK in p.output(0).get_names())
                parameter.output(0).replace(self._ov.op.Constant(np.ascontiguousarray(bank, np.float32)).output(0))
                model.remove_parameter(parameter)
                model.validate_nodes_and_infer_types()
            compiled = self._core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint,
                                                               "INFERENCE_PRECISION_HINT": "f32",
                                                               "INFERENCE_NUM_THREADS": threads()})
            runner = (compiled.create_infer_request() if hint == "LATENCY" else
                      self._ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._compiled[hint] = (key, bank, runner)
        return self._compiled[hint][2]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = inputs[PIXELS]
        bank = inputs.get(BANK)
        with self._lock:
            if len(pixels) == 1:  # the request reads the pixels and its outputs are copied once, here
                request = self._compiled_for("LATENCY", pixels.shape, bank)
                result = request.infer({PIXELS: pixels}, share_inputs=True, share_outputs=True)
                return {name: np.array(result[i]) for i, name in enumerate(self._names)}
            queue = self._compiled_for("THROUGHPUT", (1, *pixels.shape[1:]), bank)
            outputs: list[list[np.ndarray] | None] = [None] * len(pixels)

            def keep(request: Any, b: int) -> None:
                outputs[b] = [np.array(request.get_output_tensor(i).data) for i in range(len(self._names))]

            queue.set_callback(keep)
            for b in range(len(pixels)):  # the arrays outlive the requests: no copies
                queue.start_async({PIXELS: pixels[b:b + 1]}, b, share_inputs=True)
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
