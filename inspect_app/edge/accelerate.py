"""``--runtime openvino|onnx`` in a full install: a profile loaded with torch predicts through its
exported graph (fitting, ``learn_good`` and threshold changes stay with the torch ``Inspector``).

The graph is exported once per fitted model into a cache folder keyed by everything that is a
graph constant (encoder, decoder weights, mode, input shape, package and torch versions); the
memory bank and the post-processor are read from the live ``Inspector`` on every batch, so a
``learn_good`` or a new threshold reaches the next prediction without a new export. Before it is
used, the graph must give the torch model's raw maps on a probe image (1e-3 absolute + 1e-3
relative); one that does not is not used (the torch ``Inspector`` predicts, with a warning).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspect_app import __version__
from inspect_app.config import MODE_DECODERS
from inspect_app.edge.export import export_inspector
from inspect_app.edge.graph import GRAPH_VERSION
from inspect_app.edge.inspector import EdgeInspector
from inspect_app.edge.manifest import ANOMALY_MAP, EdgeManifest, GraphFormat
from inspect_app.edge.sessions import Runtime, open_session
from inspect_app.inspector import Inspector

log = logging.getLogger(__name__)
CACHE_ENV = "INSPECT_APP_EDGE_CACHE"
CACHE_FOLDER = ".edge-cache"  # in the models folder (profiles are its folders with a profile.json)
MAX_CACHED = 16  # exported graphs kept; the least recently used go first
RTOL = ATOL = 1e-3  # the agreement the exported path keeps with torch on raw scores


def cache_root(models: Path | None = None) -> Path:
    """``$INSPECT_APP_EDGE_CACHE``, else ``.edge-cache`` in the models folder, else the user's cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if models is not None:
        return models / CACHE_FOLDER
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("inspect_app")) / "edge"


def _cached_graph(inspector: Inspector, root: Path, graph_format: GraphFormat) -> tuple[EdgeManifest, Path]:
    """The inspector's exported graph in ``root`` (exported now if missing or damaged); a root that
    cannot be written (a read-only models folder) gives way to a temporary folder."""
    folder = root / graph_key(inspector, graph_format)
    try:
        manifest = EdgeManifest.read(folder)
        os.utime(folder)
        return manifest, folder
    except Exception:  # not exported yet, or a damaged entry: export (again)
        shutil.rmtree(folder, ignore_errors=True)
    try:
        manifest = export_inspector(inspector, folder, graph_format)
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="inspect_app-edge-"))
        return export_inspector(inspector, folder / "graph", graph_format), folder / "graph"
    entries = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_CACHED:]:
        shutil.rmtree(old, ignore_errors=True)
    return manifest, folder


def graph_key(inspector: Inspector, graph_format: GraphFormat) -> str:
    """Changes whenever a graph constant or the manifest beside it would: every fitted tensor but the
    memory bank (a graph input), the encoder, mode, input shape, whether exposure is standardised
    (a manifest setting), the graph's version and the versions that write it."""
    assert inspector.model is not None
    digest = hashlib.sha256()
    for name, tensor in sorted(inspector.model.fitted_state().items()):
        if name != "image_image.memory_bank":
            digest.update(name.encode())
            digest.update(tensor.numpy().tobytes())
    digest.update(repr((inspector.model.encoder.fingerprint, inspector.mode, inspector.model.input_shape,
                        inspector.model.standardise_exposure, inspector.model.blur_sigma, str(graph_format),
                        GRAPH_VERSION, __version__, torch.__version__)).encode())
    return digest.hexdigest()[:24]


class AcceleratedInspector(EdgeInspector):
    """A torch ``Inspector`` that predicts through its exported graph. Everything but prediction
    (``learn_good``, ``set_target_frr``, ``save``, ``meta``, ...) is the torch Inspector's."""

    def __init__(self, inspector: Inspector, manifest: EdgeManifest, runtime: Runtime, folder: Path):
        assert inspector.post_processor is not None
        super().__init__(manifest, open_session(folder / manifest.graph_file, runtime), inspector.post_processor,
                         None, runtime, inspector.batch_size)
        self.inspector = inspector

    @property
    def product(self) -> str:
        return self.inspector.product or self.manifest.product

    @property
    def profile_version(self) -> str | None:
        return self.inspector.profile_version

    def memory_bank(self) -> np.ndarray | None:
        model = self.inspector.model
        if model is None or model.image_image is None or "image-image" not in MODE_DECODERS[self.mode]:
            return None
        return model.image_image.memory_bank.numpy()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inspector, name)

    def agrees(self) -> bool:
        """Whether the graph gives the torch model's raw maps on a probe image (a noisy gradient)."""
        assert self.inspector.model is not None
        height, width = self.manifest.input_shape
        rng = np.random.default_rng(0)
        gradient = np.linspace(40, 220, width)[None, :, None] + rng.normal(0, 20, (height, width, 3))
        probe = [np.clip(gradient, 0, 255).astype(np.uint8)]
        model = self.inspector.model
        expected = model(model.prepare(probe), self.mode).anomaly_map.numpy()
        got = self.raw_outputs(probe)[ANOMALY_MAP]
        return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=RTOL, atol=ATOL))


def accelerate(inspector: Inspector, runtime: Runtime, models: Path | None = None) -> Inspector | AcceleratedInspector:
    """``inspector`` predicting on ``runtime`` (its graph exported once into ``cache_root(models)``),
    or the torch ``inspector`` itself when ``runtime`` is torch or the graph does not agree with it."""
    if runtime == Runtime.TORCH:
        return inspector
    # ONNX for both runtimes: OpenVINO reads it directly (0.8 s instead of 0.3 s to compile the
    # tiny test model), and writing it takes 0.6 s instead of 4 s for the OpenVINO IR conversion.
    manifest, folder = _cached_graph(inspector, cache_root(models), GraphFormat.ONNX)
    accelerated = AcceleratedInspector(inspector, manifest, runtime, folder)
    if not accelerated.agrees():
        log.warning("the %s graph of %s does not agree with torch: predicting with torch", runtime, inspector.product)
        return inspector
    return accelerated
