"""Map upsampling and blur as one matrix product per axis (shipped) against interpolating,
reflect-padding and convolving the 256 x 256 maps (before), in whole fused predictions, side by
side in one process.

Fits bottle once in fused mode, then the two versions of the Inspector's upsampling alternate:
five rounds of the 83 test images at batch 8 and single images; prints images/s, single-image
p50, the largest relative difference between the two versions' raw image scores and how many
verdicts differ.

    .venv/bin/python benchmarks/smooth_upsample.py [--rounds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector

from common import CATEGORIES, datasets_root, machine


def _upsample_then_blur(inspector: Inspector, maps: torch.Tensor) -> torch.Tensor:
    """The previous ``Inspector._upsample``: bilinear upsampling, reflect padding, two 1-D convolutions."""
    size, sigma = inspector.backbone.image_size, inspector.config.image_image.blur_sigma
    maps = F.interpolate(maps.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    radius = int(math.ceil(4 * sigma))
    xs = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    kernel = torch.exp(-(xs**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    maps = F.pad(maps, (radius,) * 4, mode="reflect")
    maps = F.conv2d(maps, kernel.view(1, 1, 1, -1))
    return F.conv2d(maps, kernel.view(1, 1, -1, 1)).squeeze(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    category = MVTecCategory(datasets_root() / CATEGORIES["bottle"])
    tests = [str(s.path) for s in category.test_samples()]
    inspector = Inspector(InspectorConfig(mode="fused"))
    t0 = time.perf_counter()
    inspector.fit(category.train_images(), product="bottle")
    print(f"fit {time.perf_counter() - t0:.1f} s; {len(tests)} test images, batch 8", flush=True)
    shipped = inspector._upsample
    versions = {"upsample_then_blur": lambda maps: _upsample_then_blur(inspector, maps), "matrix": shipped}
    rates: dict[str, list[float]] = {name: [] for name in versions}
    single: dict[str, list[float]] = {name: [] for name in versions}
    scores: dict[str, list[float]] = {}
    verdicts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, upsample in versions.items():
            inspector._upsample = upsample
            start = time.perf_counter()
            results = inspector.predict(tests)
            rates[name].append(len(tests) / (time.perf_counter() - start))
            scores[name] = [r.raw_score for r in results]
            verdicts[name] = [r.verdict for r in results]
            for path in tests[:20]:
                start = time.perf_counter()
                inspector.predict(path)
                single[name].append((time.perf_counter() - start) * 1000)
    inspector._upsample = shipped
    # Fused raw scores are exponentials of the maps (up to ~1e9 on bottle), so compare relatively.
    diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(scores["upsample_then_blur"], scores["matrix"]))
    flipped = sum(a != b for a, b in zip(verdicts["upsample_then_blur"], verdicts["matrix"]))
    out = {"date": date.today().isoformat(), "machine": machine(), "command": " ".join(sys.argv),
           "mode": "fused", "batch_size": inspector.batch_size, "rounds": args.rounds,
           "max_relative_raw_score_difference": diff, "verdicts_differing": flipped, "versions": {}}
    for name in versions:
        row = {"images_per_second_median": round(statistics.median(rates[name]), 2),
               "images_per_second_rounds": [round(r, 2) for r in rates[name]],
               "single_image_ms_p50": round(statistics.median(single[name]), 2)}
        out["versions"][name] = row
        print(f"{name:>18}: {row['images_per_second_median']} images/s (rounds {row['images_per_second_rounds']}), "
              f"single image p50 {row['single_image_ms_p50']} ms", flush=True)
    base, new = out["versions"]["upsample_then_blur"], out["versions"]["matrix"]
    out["throughput_ratio"] = round(new["images_per_second_median"] / base["images_per_second_median"], 3)
    print(f"throughput matrix / before: {out['throughput_ratio']}; largest relative raw score difference {diff:.1e}; "
          f"verdicts differing {flipped} of {len(tests)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
