"""One way for every command to get its inspector: a fitted profile (``--product``) on the
fastest runtime that agrees with torch, or an exported model folder (``--model``) without torch.
Importing this module does not import torch; only a profile does when it is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from inspect_app.config import Mode
from inspect_app.edge.inspector import EdgeInspector
from inspect_app.edge.sessions import Runtime, fastest_installed
from inspect_app.errors import InspectAppError

if TYPE_CHECKING:
    from inspect_app.edge.accelerate import AcceleratedInspector
    from inspect_app.inspector import Inspector

RUNTIME_HELP = ("torch (the reference), openvino or onnx; default the fastest installed that agrees with torch "
                "(an exported --model runs on openvino or onnx)")


def parse_runtime(value: str | None) -> Runtime | None:
    """A ``--runtime`` word (None: the default); ``InspectAppError`` names the choices."""
    if value is None:
        return None
    try:
        return Runtime(value)
    except ValueError:
        raise InspectAppError(f"unknown runtime {value!r}: use {', '.join(Runtime)}") from None


def open_inspector(product: str | None, models_dir: str | Path | None = None, *, model_dir: Path | None = None,
                   runtime: Runtime | None = None,
                   mode: Mode | None = None) -> Inspector | AcceleratedInspector | EdgeInspector:
    """``model_dir``: the exported model there (its manifest names the product); else the saved
    ``product``'s profile, predicting on ``runtime`` (default: the fastest that agrees)."""
    if model_dir is not None:
        if runtime == Runtime.TORCH:
            raise InspectAppError("--model runs an exported model (openvino or onnx); --runtime torch runs a "
                                  "profile: give --product NAME instead")
        inspector = EdgeInspector.load(model_dir, runtime)
        if product is not None and product != inspector.product:
            raise InspectAppError(f"{model_dir} is an exported model of {inspector.product!r}, not {product!r}")
        if mode is not None and mode != inspector.mode:
            raise InspectAppError(f"{model_dir} runs mode {inspector.mode!r}: export it again with --mode {mode}")
        return inspector
    if product is None:
        raise InspectAppError("give --product NAME (a fitted profile) or --model DIR (an exported model)")
    from inspect_app.edge.accelerate import accelerate
    from inspect_app.inspector import Inspector
    from inspect_app.profile import models_dir as resolve_models_dir

    return accelerate(Inspector.load(product, models_dir, mode=mode), runtime or fastest_installed(),
                      resolve_models_dir(models_dir))
