"""Does the exported model answer as the torch path does, on every shared category?

For each category: fit ``--mode`` on its good images, teach ``--kind-shots`` labelled images per
defect folder as kinds (``kinds.evaluation.teach_shots``, seed 0; those images are not compared),
export it (``inspect-app export``), inspect every other test image with both paths and compare:
verdict agreement (target >= 99 %), raw scores within 1e-3 absolute + 1e-3 relative, identical
regions (boxes) and identical kind names on them.

    .venv/bin/python benchmarks/edge_agreement.py --mode image-image --categories bottle,cookie
        [--kind-shots 3] --json OUT
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.edge.export import export_inspector
from inspect_app.edge.inspector import EdgeInspector
from inspect_app.edge.manifest import GraphFormat
from inspect_app.edge.sessions import Runtime
from inspect_app.inspector import Inspector
from inspect_app.kinds.evaluation import teach_shots
from inspect_app.results import InspectionResult

from common import (
    RESULTS,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    run_header,
    set_threads,
    write_json,
)


def agreement(reference: list[InspectionResult], edge: list[InspectionResult]) -> dict[str, float | int]:
    """Verdict agreement, raw-score differences and identical regions over the same images."""
    pairs = list(zip(reference, edge, strict=True))
    abs_diff = [abs((e.raw_score or 0) - (r.raw_score or 0)) for r, e in pairs]
    within = [math.isclose(e.raw_score or 0, r.raw_score or 0, rel_tol=1e-3, abs_tol=1e-3) for r, e in pairs]
    same_regions = [[g.bbox for g in r.regions] == [g.bbox for g in e.regions] for r, e in pairs]
    same_kinds = [[g.defect_type for g in r.regions] == [g.defect_type for g in e.regions] for r, e in pairs]
    named = sum(any(g.defect_type for g in r.regions) for r in reference)
    return {"n": len(pairs), "verdict_agreement": round(sum(r.verdict == e.verdict for r, e in pairs) / len(pairs), 4),
            "raw_scores_within_tolerance": round(sum(within) / len(pairs), 4),
            "max_abs_raw_diff": float(max(abs_diff)), "regions_identical": round(sum(same_regions) / len(pairs), 4),
            "kinds_identical": round(sum(same_kinds) / len(pairs), 4), "named_by_torch": named}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the mode fitted and exported")
    parser.add_argument("--categories", type=category_names, default=["bottle", "cookie", "tile", "metal_plate",
                                                                      "ball_screw"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--k-shot", type=int, default=None, help="fit on K good images (default: all)")
    parser.add_argument("--kind-shots", type=int, default=0,
                        help="labelled images per defect folder taught as kinds before the export (0: none)")
    parser.add_argument("--runtime", default="openvino", choices=["openvino", "onnx"])
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "edge_agreement.json")
    args = parser.parse_args()
    config = InspectorConfig(mode=args.mode, backbone=BackboneConfig(image_size=args.image_size), k_shot=args.k_shot)
    header = run_header(args, config)
    set_threads(args.threads)
    runtime = Runtime(args.runtime)
    rows = {}
    for name in args.categories:
        category = MVTecCategory(category_dir(name))
        inspector = Inspector(config)
        inspector.fit(category.train_images(), product=name)
        tests = [s.path for s in teach_shots(inspector, category.test_samples(), args.kind_shots, seed=0)]
        folder = Path(tempfile.mkdtemp(prefix=f"edge-{name}-"))
        export_inspector(inspector, folder, GraphFormat.OPENVINO if runtime == Runtime.OPENVINO else GraphFormat.ONNX)
        rows[name] = agreement(inspector.predict(tests), EdgeInspector.load(folder, runtime).predict(tests))
        print(name, json.dumps(rows[name]), flush=True)
    write_json(args.json, header, {"mode": args.mode, "runtime_edge": args.runtime, "kind_shots": args.kind_shots,
                                   "categories": rows,
                                   "min_verdict_agreement": min(r["verdict_agreement"] for r in rows.values())})


if __name__ == "__main__":
    main()
