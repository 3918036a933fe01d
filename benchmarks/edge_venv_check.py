"""The real torch-free ``.venv-edge`` (``make edge``): torch is absent, its size is within the
1.2 GB target, and ``predict --model`` there answers as the torch path does (``make edge-check``).

Fits a small generated product with torch (this interpreter), exports it, runs ``inspect-app
predict --model DIR --json`` with ``--edge-python`` and compares verdicts, raw scores and regions.
The test suite checks the same without building a venv (tests/test_edge_torch_free.py).

    .venv/bin/python benchmarks/edge_venv_check.py --mode image-image --edge-python .venv-edge/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.edge.export import export_inspector
from inspect_app.edge.manifest import GraphFormat
from inspect_app.inspector import Inspector

from common import RESULTS, add_mode_option, run_header, write_json

SIZE_TARGET_MB = 1200


def generated_part(rng: np.random.Generator, defect: bool) -> np.ndarray:
    """A textured gradient (a good part), with a dark disc when ``defect``."""
    y, x = np.mgrid[0:128, 0:128].astype(np.float32)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (128, 128)).astype(np.float32), (0, 0), 2)
    image = (60 + x + 0.3 * y)[..., None] * np.array([1.0, 0.9, 0.8]) + 25 * (texture / texture.std())[..., None]
    if defect:
        cv2.circle(image, (int(rng.integers(20, 108)), int(rng.integers(20, 108))), 9, (10, 10, 10), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the mode the generated product is fitted and exported in")
    parser.add_argument("--edge-python", type=Path, default=Path(".venv-edge/bin/python"))
    parser.add_argument("--json", type=Path, default=RESULTS / "edge_venv_check.json")
    args = parser.parse_args()
    config = InspectorConfig(mode=args.mode, backbone=BackboneConfig(image_size=128))
    header = run_header(args, config)
    edge_python = args.edge_python.absolute()
    venv = edge_python.parent.parent
    torch_absent = subprocess.run([str(edge_python), "-c", "import torch"], capture_output=True).returncode != 0
    size_mb = int(subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True,
                                 check=True).stdout.split()[0])
    rng = np.random.default_rng(0)
    inspector = Inspector(config, product="generated")
    inspector.fit([generated_part(rng, False) for _ in range(16)])
    work = Path(tempfile.mkdtemp(prefix="edge-venv-"))
    export_inspector(inspector, work / "model", GraphFormat.OPENVINO)
    (work / "images").mkdir()
    for i in range(12):
        cv2.imwrite(str(work / "images" / f"part_{i:02d}.png"), generated_part(rng, i % 2 == 1)[..., ::-1])
    files = sorted((work / "images").glob("*.png"))
    done = subprocess.run([str(edge_python), "-m", "inspect_app", "predict", str(work / "images"), "--model",
                           str(work / "model"), "--json", str(work / "edge.json")], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    if done.returncode:
        sys.exit(f"predict --model failed in {venv}:\n{done.stderr[-3000:]}")
    edge = {Path(r["file"]).name: r for r in json.loads((work / "edge.json").read_text())}
    reference = {Path(r.file or "").name: r for r in inspector.predict(files)}
    same = [edge[n]["verdict"] == r.verdict and math.isclose(edge[n]["raw_score"], r.raw_score or 0, rel_tol=1e-3,
                                                               abs_tol=1e-3)
            and [tuple(g["bbox"]) for g in edge[n]["regions"]] == [g.bbox for g in r.regions]
            for n, r in reference.items()]
    figures = {"venv": str(venv), "torch_absent": torch_absent, "size_mb": size_mb,
               "size_within_target": size_mb <= SIZE_TARGET_MB, "images": len(same),
               "same_answers": sum(same), "fails": sum(r.verdict == "FAIL" for r in reference.values())}
    print(json.dumps(figures, indent=2))
    write_json(args.json, header, figures)
    if not (torch_absent and all(same) and figures["size_within_target"]):
        sys.exit("the edge venv check failed")


if __name__ == "__main__":
    main()
