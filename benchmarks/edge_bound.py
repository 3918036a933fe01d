"""How much faster the exported graph can make a prediction: its parts timed against torch's.

``edge_speed.py`` times whole predictions; this script times what the graph is made of, so the
ratio it can reach is a measurement rather than a guess. It fits ``--mode image-image`` on a
category's good images and, in one process, alternating the order every round, times on the
first ``--samples`` test images:

- the encoder alone, the nearest-neighbour search alone (the fitted bank, each image's own
  aggregated patches) and the whole graph (``edge.graph.InspectionGraph``), each in torch (the
  reference path's code) and in OpenVINO compiled for one image's static shapes with the latency
  hint, in f32 (what the product runs) and at the CPU's own default precision (bf16 where the CPU
  has it);
- the stages every prediction shares whatever runs the graph (decoding the file, resizing,
  post-processing: the same numpy code on both paths), from the torch path's own timings.

From these it writes the lowest whole-prediction ratio each precision allows,
``(shared + graph_edge) / (shared + graph_torch)``, and, over every test image, how far the raw
image score (the map's maximum) of each precision moves from torch's (the exported model must keep
1e-3 absolute + 1e-3 relative).

    .venv/bin/python benchmarks/edge_bound.py --mode image-image --category bottle --json OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from torch import nn

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.data.images import load_image
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.decoders.image_image import aggregate_patches, nearest_distances
from inspect_app.edge.graph import OPSET, InspectionGraph
from inspect_app.inspector import Inspector

from common import (
    CATEGORIES,
    RESULTS,
    add_mode_option,
    add_threads_option,
    category_dir,
    run_header,
    set_threads,
    write_json,
)

TOLERANCE = (1e-3, 1e-3)  # absolute, relative: the exported model's agreement with torch


class Encoder(nn.Module):
    """The graph's first part: pixels -> the encoder's levels."""

    def __init__(self, inspector: Inspector):
        super().__init__()
        assert inspector.model is not None
        self.model = inspector.model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode(pixels).levels)


class Search(nn.Module):
    """The graph's nearest-neighbour search: aggregated patches [M, C], bank [N, C] -> distances [M]."""

    def forward(self, queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        return nearest_distances(queries, bank)


def compiled(core: ov.Core, module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], folder: Path,
             precision: str | None, threads: int) -> Any:
    """``module`` exported and compiled for ``args``' static shapes (latency hint); ``precision``
    None leaves the CPU's default."""
    path = folder / f"{type(module).__name__}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, opset_version=OPSET, dynamo=False)
    model = core.read_model(path)
    model.reshape({name: list(a.shape) for name, a in zip(names, args, strict=True)})
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return core.compile_model(model, "CPU", config).create_infer_request()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the mode fitted (image-image: the graph with the search)")
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=16, help="test images timed (the first ones)")
    parser.add_argument("--rounds", type=int, default=10, help="alternated rounds over the samples")
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "edge_bound.json")
    args = parser.parse_args()
    if args.mode != "image-image":
        parser.error("the bound is measured on the image-image graph (encoder + search)")
    config = InspectorConfig(mode=args.mode, backbone=BackboneConfig(image_size=args.image_size, choose_input=False))
    header = run_header(args, config)
    set_threads(args.threads)
    category = MVTecCategory(category_dir(args.category))
    inspector = Inspector(config, product=args.category)
    inspector.fit(category.train_images())
    model = inspector.model
    assert model is not None and model.image_image is not None
    bank = model.image_image.memory_bank.clone()
    tests = [s.path for s in category.test_samples()]
    pixels = [model.prepare([load_image(p)]) for p in tests]
    with torch.inference_mode():
        queries = [aggregate_patches(model.encode(x).levels, model.image_image.kernel)
                   for x in pixels[:args.samples]]
    queries = [q.permute(0, 2, 3, 1).reshape(-1, q.shape[1]).contiguous() for q in queries]

    core = ov.Core()
    default_precision = str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
    precisions = {"f32": "f32", "default": None}
    graph = InspectionGraph(model, args.mode).eval()
    encoder = Encoder(inspector)
    # part -> (module exported, what the torch path runs for it, its inputs for image i, their names)
    parts: dict[str, tuple[nn.Module, Callable[[int], Any], Callable[[int], tuple[torch.Tensor, ...]], list[str]]] = {
        "encoder": (encoder, lambda i: encoder(pixels[i]), lambda i: (pixels[i],), ["pixels"]),
        "search": (Search(), lambda i: nearest_distances(queries[i], bank), lambda i: (queries[i], bank),
                   ["queries", "bank"]),
        "graph": (graph, lambda i: model(pixels[i], args.mode, keep_patches=True).anomaly_map,
                  lambda i: (pixels[i], bank), ["pixels", "memory_bank"]),
    }
    runners: dict[str, Callable[[int], Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for part, (module, torch_part, inputs, names) in parts.items():
            def torch_run(i: int, torch_part: Callable[[int], Any] = torch_part) -> Any:
                with torch.inference_mode():
                    return torch_part(i)
            runners[f"{part}/torch"] = torch_run
            for label, precision in precisions.items():
                request = compiled(core, module, inputs(0), names, Path(folder), precision, args.threads)

                def ov_run(i: int, request: Any = request, inputs: Callable = inputs, names: list[str] = names) -> Any:
                    return request.infer({n: a.numpy() for n, a in zip(names, inputs(i), strict=True)},
                                         share_inputs=True, share_outputs=True)
                runners[f"{part}/openvino_{label}"] = ov_run
        graph_runs = {name: runners[f"graph/{name}"] for name in ("torch", "openvino_f32", "openvino_default")}
        maxima = {name: [] for name in graph_runs}
        for i in range(len(tests)):
            for name, run in graph_runs.items():
                out = run(i)
                anomaly_map = out if name == "torch" else next(iter(out.values()))
                maxima[name].append(float(np.asarray(anomaly_map).max()))
        times: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(args.rounds):
            for name in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
                for i in range(args.samples):
                    t0 = time.perf_counter()
                    runners[name](i)
                    times[name].append((time.perf_counter() - t0) * 1000)
    ms = {name: round(statistics.median(values[args.samples:]), 3) for name, values in times.items()}

    shared_timings = []
    for path in tests[:args.samples] * 2:
        shared_timings.append(inspector.predict(path).timings_ms)
    shared = {stage: round(statistics.median(t[stage] for t in shared_timings[args.samples:]), 3)
              for stage in ("load", "post")}
    shared_ms = shared["load"] + shared["post"]
    reference = np.array(maxima["torch"])
    assert inspector.calibration is not None
    threshold = inspector.calibration.raw_threshold
    scores, bounds = {}, {}
    for name in ("openvino_f32", "openvino_default"):
        got = np.array(maxima[name])
        diff = np.abs(got - reference)
        relative = diff / np.abs(reference)
        scores[name] = {"within_tolerance": round(float(np.mean(diff <= TOLERANCE[0] + TOLERANCE[1] * reference)), 4),
                        "relative_change_median": float(np.median(relative)),
                        "relative_change_max": float(relative.max()),
                        "raw_threshold_side_changed": int(np.sum((got > threshold) != (reference > threshold)))}
        bounds[name] = {
            "graph_ratio": round(ms[f"graph/{name}"] / ms["graph/torch"], 3),
            "encoder_ratio": round(ms[f"encoder/{name}"] / ms["encoder/torch"], 3),
            "search_ratio": round(ms[f"search/{name}"] / ms["search/torch"], 3),
            "whole_prediction_ratio_bound": round((shared_ms + ms[f"graph/{name}"])
                                                  / (shared_ms + ms["graph/torch"]), 3),
        }
    figures = {"category": args.category, "n_test": len(tests), "bank_rows": int(bank.shape[0]),
               "patch_channels": int(bank.shape[1]), "queries_per_image": int(queries[0].shape[0]),
               "openvino_default_precision": default_precision, "ms": ms, "shared_stages_ms": shared,
               "bounds": bounds, "raw_image_scores_vs_torch": scores, "tolerance_abs_rel": list(TOLERANCE)}
    print(json.dumps(figures, indent=2), flush=True)
    write_json(args.json, header, figures)


if __name__ == "__main__":
    main()
