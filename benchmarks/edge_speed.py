"""The exported model (edge runtime) against the torch path, timed side by side in one run.

Fits ``--mode`` on a category's good images (bottle by default), exports it (``inspect-app
export``) and times both paths on the category's test images: single-image predict from file
(p50/p95, ABBA order so the VM's drift hits both alike) with each stage's median (load, inference,
post-processing), batched throughput (the median of ``--throughput-rounds`` passes over every
test image, the two paths alternated ABBA as well), and, in fresh processes, startup (import +
load + first prediction) and peak RSS. The answers are compared on every test image too (verdicts, raw
scores, regions), batched and, for the latency sample, one image at a time (OpenVINO runs a single
image on a graph compiled for its shapes). Run it on a quiet machine.

    .venv/bin/python benchmarks/edge_speed.py --mode image-image --category bottle --json OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from edge_agreement import agreement

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.edge.export import export_inspector
from inspect_app.edge.inspector import EdgeInspector
from inspect_app.edge.manifest import GraphFormat
from inspect_app.edge.sessions import Runtime
from inspect_app.inspector import Inspector
from inspect_app.results import InspectionResult

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

# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child started by this (large)
# process reported the parent's peak.
STARTUP = """
import sys, time
t0 = time.perf_counter()
from pathlib import Path
if sys.argv[1] == "torch":
    from inspect_app.inspector import Inspector
    inspector = Inspector.load(sys.argv[2], sys.argv[3])
else:
    from inspect_app.edge.inspector import EdgeInspector
    from inspect_app.edge.sessions import Runtime
    inspector = EdgeInspector.load(sys.argv[3], Runtime(sys.argv[1]))
inspector.predict(Path(sys.argv[4]))
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(time.perf_counter() - t0, int(hwm) / 1024)
"""


def stage_medians(results: list[InspectionResult]) -> dict[str, float]:
    return {stage: round(statistics.median(r.timings_ms[stage] for r in results), 2)
            for stage in ("load", "inference", "post")}


def startup(runtime: str, product: str, models: Path, model_dir: Path, image: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", STARTUP, runtime, product, str(models if runtime == "torch"
                                                                                 else model_dir), str(image)],
                          capture_output=True, text=True, check=True)
    seconds, rss = (float(v) for v in done.stdout.split()[-2:])
    return {"startup_s": round(seconds, 2), "peak_rss_mb": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the mode the inspector is fitted and exported in")
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--k-shot", type=int, default=None, help="fit on K good images (default: all)")
    parser.add_argument("--runtime", default="openvino", choices=["openvino", "onnx"], help="the edge runtime")
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--throughput-rounds", type=int, default=4,
                        help="alternated passes per path; the median counts")
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "edge_speed.json")
    args = parser.parse_args()
    config = InspectorConfig(mode=args.mode, backbone=BackboneConfig(image_size=args.image_size), k_shot=args.k_shot)
    header = run_header(args, config)
    set_threads(args.threads)
    category = MVTecCategory(category_dir(args.category))
    tests = [s.path for s in category.test_samples()]
    inspector = Inspector(config, batch_size=args.batch_size)
    inspector.fit(category.train_images(), product=args.category)
    work = Path(tempfile.mkdtemp(prefix="edge_speed-"))
    inspector.save(work / "models")
    runtime = Runtime(args.runtime)
    t0 = time.perf_counter()
    graph_format = GraphFormat.OPENVINO if runtime == Runtime.OPENVINO else GraphFormat.ONNX
    export_inspector(inspector, work / "edge", graph_format)
    export_s = time.perf_counter() - t0
    edge = EdgeInspector.load(work / "edge", runtime, batch_size=args.batch_size)
    paths = {"torch": inspector, "edge": edge}
    for predictor in paths.values():
        predictor.predict(tests[:4])
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    singles: dict[str, list[InspectionResult]] = {name: [] for name in paths}
    for i, path in enumerate(tests[:args.latency_samples]):
        for name in (list(paths) if i % 2 == 0 else list(paths)[::-1]):
            t1 = time.perf_counter()
            singles[name].append(paths[name].predict(path))
            latencies[name].append((time.perf_counter() - t1) * 1000)
    passes: dict[str, list[float]] = {name: [] for name in paths}
    batched: dict[str, list[InspectionResult]] = {}
    for r in range(max(args.throughput_rounds, 1)):
        for name in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
            t1 = time.perf_counter()
            batched[name] = paths[name].predict(tests)
            passes[name].append(round(len(tests) / (time.perf_counter() - t1), 2))
    rates = {name: round(statistics.median(values), 2) for name, values in passes.items()}
    starts = {name: startup("torch" if name == "torch" else args.runtime, args.category, work / "models",
                            work / "edge", tests[0]) for name in paths}
    figures = {
        "category": args.category, "mode": args.mode, "runtime_edge": args.runtime, "n_test": len(tests),
        "input_shape": list(inspector.input_shape), "export_s": round(export_s, 2),
        "p50_ms_torch": round(statistics.median(latencies["torch"]), 2),
        "p50_ms_edge": round(statistics.median(latencies["edge"]), 2),
        "p95_ms_torch": round(float(np.percentile(latencies["torch"], 95)), 2),
        "p95_ms_edge": round(float(np.percentile(latencies["edge"], 95)), 2),
        "stages_ms_torch": stage_medians(singles["torch"]), "stages_ms_edge": stage_medians(singles["edge"]),
        "throughput_torch": rates["torch"], "throughput_edge": rates["edge"], "throughput_passes": passes,
        "startup": {name: starts[name]["startup_s"] for name in paths},
        "memory": {name: starts[name]["peak_rss_mb"] for name in paths},
        "agreement": agreement(batched["torch"], batched["edge"]),
        "agreement_single_images": agreement(singles["torch"], singles["edge"]),
    }
    figures["p50_ratio_edge_to_torch"] = round(figures["p50_ms_edge"] / figures["p50_ms_torch"], 3)
    figures["throughput_ratio_edge_to_torch"] = round(rates["edge"] / rates["torch"], 2)
    print(json.dumps(figures, indent=2), flush=True)
    write_json(args.json, header, figures)


if __name__ == "__main__":
    main()
