"""Scoring a folder on Ray Data: read the files, map batches through the one ``Inspector``
(a callable class, so each worker loads the profile once), collect.

Workers must see the images and the models folder at the same paths as the driver (a shared
file system on a cluster). Results come back as ``to_dict()`` JSON plus the arrays the report
and the explanation adapter use (anomaly map, defect-kind maps, image embedding), and are rebuilt
into ``InspectionResult``s, so the report code after scoring is the same as in a single process.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.errors import InspectAppError
from inspect_app.progress import ProgressCallback
from inspect_app.reports.rows import result_from_dict
from inspect_app.reports.scoring import WorstKeeper
from inspect_app.results import EvidenceFor, ExplanationEvidence, InspectionResult

BATCH = 8  # the Inspector's own batch size: same batches as a single process
LOCAL_CPUS = 2
READ_CPUS = 0.2
ARRAYS = ("anomaly_map", "kind_maps", "embedding")  # float32 arrays shipped back beside the JSON (FAILs: evidence)


def _pack(array: np.ndarray | None) -> tuple[bytes, str]:
    if array is None:
        return b"", "null"
    return np.ascontiguousarray(array, np.float32).tobytes(), json.dumps(list(array.shape))


def _array(result: InspectionResult, name: str) -> np.ndarray | None:
    if name == "anomaly_map":
        return result.anomaly_map
    return None if result.evidence is None else getattr(result.evidence, name)


def _unpack(raw: bytes, shape: str) -> np.ndarray | None:
    dims = json.loads(shape)
    return None if dims is None else np.frombuffer(raw, np.float32).reshape(dims).copy()


class RayInspector:
    """Ray Data callable class: loads the product profile once per worker."""

    def __init__(self, product: str, models_dir: str | None):
        import torch

        from inspect_app.inspector import Inspector

        torch.set_num_threads(1)  # one core per worker; the workers share the machine
        self.inspector = Inspector.load(product, models_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [str(p) for p in batch["path"]]
        results = self.inspector.predict_batch([bytes(b) for b in batch["bytes"]], names=names,
                                               evidence=EvidenceFor.FAILS)
        out = {"path": np.array(names, dtype=object),
               "result": np.array([json.dumps(r.to_dict()) for r in results], dtype=object)}
        for name in ARRAYS:
            packed = [_pack(_array(r, name)) for r in results]
            out[name] = np.array([raw for raw, _ in packed], dtype=object)
            out[name + "_shape"] = np.array([shape for _, shape in packed], dtype=object)
        return out


def _init_ray(address: str):
    import ray
    import ray.data

    for name in ("ray", "ray.data"):  # after importing ray.data, which sets up its own logging
        logging.getLogger(name).setLevel(logging.WARNING)
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
              "configure_logging": True}
    try:
        if address == "local":
            ray.init(num_cpus=LOCAL_CPUS, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # no cluster there, wrong version, ...: one clear line, not a traceback
        raise InspectAppError(f"cannot start or join Ray at {address!r}: {type(exc).__name__}: {exc}") from None
    return ray, True


def score_files_on_ray(product: str, models_dir: str | Path | None, files: Sequence[Path], address: str,
                       keeper: WorstKeeper, progress: ProgressCallback | None = None) -> list[InspectionResult]:
    """Score ``files`` on Ray (``address`` or ``"local"``: a local instance with 2 CPUs), in
    the files' order. Ray is shut down afterwards only if this call started it."""
    from inspect_app.profile import models_dir as resolve_models_dir

    if progress:
        progress(0, len(files), "inspecting on Ray")
    ray, started = _init_ray(address)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        paths = [os.path.abspath(f) for f in files]  # not resolve(): repeated symlinks stay distinct
        order = {p: i for i, p in enumerate(paths)}
        n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Logical CPUs: one worker per core, each booking a core less the readers' share, so the
        # light read tasks always fit beside them (booking whole cores deadlocks the reads).
        ds = ray.data.read_binary_files(paths, include_paths=True, num_cpus=READ_CPUS,
                                        override_num_blocks=min(len(paths), 4 * n_workers))
        ds = ds.map_batches(RayInspector, batch_size=BATCH, num_cpus=1 - READ_CPUS,
                            compute=ray.data.ActorPoolStrategy(size=n_workers),
                            fn_constructor_kwargs={"product": product,
                                                   "models_dir": str(resolve_models_dir(models_dir))})
        results: list[InspectionResult | None] = [None] * len(paths)
        done = 0
        for batch in ds.iter_batches(batch_size=BATCH, batch_format="numpy", prefetch_batches=2):
            for row, (path, text) in enumerate(zip(batch["path"], batch["result"], strict=True)):
                index = order[_local_path(str(path), order)]
                result = result_from_dict(json.loads(text))
                result.file = str(files[index])
                arrays = {name: _unpack(batch[name][row], batch[name + "_shape"][row]) for name in ARRAYS}
                result.anomaly_map = arrays["anomaly_map"]
                if arrays["embedding"] is not None:
                    result.evidence = ExplanationEvidence(arrays["kind_maps"], arrays["embedding"])
                keeper.offer(index, result)
                results[index] = result
                done += 1
            if progress:
                progress(done, len(paths), "inspecting on Ray")
    finally:
        if started:
            ray.shutdown()
    missing = [str(files[i]) for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"Ray returned no result for {len(missing)} file(s), e.g. {missing[0]}")
    return results  # type: ignore[return-value]


def _local_path(path: str, order: dict[str, int]) -> str:
    """Ray's file reader may prefix paths with a scheme; map them back to the paths we sent."""
    if path in order:
        return path
    for prefix in ("local://", "file://"):
        if path.startswith(prefix) and path[len(prefix):] in order:
            return path[len(prefix):]
    return path if path.startswith("/") else "/" + path
