"""``inspect-app export``: a fitted product as a self-contained folder the edge runtime reads.

The folder holds the graph (``graph.InspectionGraph``: OpenVINO IR, or ONNX), the memory bank
the graph is fed (``memory_bank.npy``), the post-processing settings (``post_processing.json``:
``PostProcessor.to_dict()``, with thresholds, part frame, kind names and prior, and the labelled
kinds under ``KIND_BOOK``) and the manifest
(product, profile version, mode, input shape, normalisation, checksums). It is written to a
temporary sibling and renamed into place, so a station never reads a half-written model.
A profile changed without a refit (``learn_good``, a new threshold, a labelled kind) reaches a
station by exporting it again: the graph's weights do not change, only the bank and the settings
beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from inspect_app import __version__
from inspect_app.config import Mode
from inspect_app.edge.graph import export_onnx
from inspect_app.edge.manifest import (
    BANK,
    BANK_FILE,
    GRAPH_FILES,
    KIND_BOOK,
    POST_PROCESSING_FILE,
    EdgeManifest,
    GraphFormat,
)
from inspect_app.errors import ProfileError
from inspect_app.inspector import Inspector


def export_inspector(inspector: Inspector, out: str | Path, graph_format: GraphFormat = GraphFormat.OPENVINO,
                     mode: Mode | None = None) -> EdgeManifest:
    """Write a fitted inspector's model for ``mode`` (default its own) to the folder ``out``."""
    if inspector.model is None or inspector.post_processor is None:
        raise ProfileError("the inspector is not fitted: nothing to export")
    mode = mode or inspector.mode
    if mode not in inspector.calibrations:
        raise ProfileError(f"product {inspector.product!r} supports {', '.join(inspector.supported_modes)}, "
                           f"not {mode!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        onnx_path = tmp / GRAPH_FILES[GraphFormat.ONNX][0]
        inputs, outputs = export_onnx(inspector.model, mode, onnx_path)
        if graph_format == GraphFormat.OPENVINO:
            import openvino as ov

            ov.save_model(ov.convert_model(onnx_path), tmp / GRAPH_FILES[GraphFormat.OPENVINO][0],
                          compress_to_fp16=False)  # f32 weights: the scores must match torch's
            onnx_path.unlink()
        if BANK in inputs:
            assert inspector.model.image_image is not None
            np.save(tmp / BANK_FILE, inspector.model.image_image.memory_bank.numpy())
        settings = inspector.post_processor.to_dict()
        if inspector.post_processor.kind_book is not None:
            settings[KIND_BOOK] = inspector.post_processor.kind_book.to_dict()
        (tmp / POST_PROCESSING_FILE).write_text(json.dumps(settings, indent=2))
        encoder = inspector.model.encoder
        manifest = EdgeManifest(
            product=inspector.product or "product", profile_version=inspector.profile_version, mode=mode,
            graph_format=graph_format, input_shape=inspector.model.input_shape,
            mean=tuple(float(m) for m in encoder.mean), std=tuple(float(s) for s in encoder.std),  # type: ignore[arg-type]
            inputs=inputs, outputs=outputs, backbone_fingerprint=encoder.fingerprint, package_version=__version__,
            standardise_exposure=inspector.model.standardise_exposure)
        manifest.write(tmp)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace(new: Path, folder: Path) -> None:
    """Move ``new`` to ``folder``, replacing an earlier export there (an exported model only)."""
    old = None
    if folder.exists():
        if any(folder.iterdir()) and not (folder / "manifest.json").is_file():
            raise ProfileError(f"{folder} exists and is not an exported model: choose an empty or new --out")
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(folder, old)
    os.replace(new, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_product(product: str, models_dir: str | Path | None, out: str | Path,
                   graph_format: GraphFormat = GraphFormat.OPENVINO, mode: Mode | None = None) -> EdgeManifest:
    """Load a saved product and export it (see ``export_inspector``)."""
    return export_inspector(Inspector.load(product, models_dir, mode=mode), out, graph_format, mode)
