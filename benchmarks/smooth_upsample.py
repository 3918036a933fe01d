"""Map upsampling and blur as one matrix product per axis (shipped) against interpolating,
reflect-padding and convolving the 256 x 256 maps (before), in whole fused predictions, side by
side in one process.

Fits a category (bottle by default) once in ``--mode``, then the two versions of the
Inspector's upsampling alternate: ``--rounds`` rounds of the test images at ``--batch-size`` and
single images; prints images/s, single-image p50, the largest relative difference between the two
versions' raw image scores and how many verdicts differ.

    .venv/bin/python benchmarks/smooth_upsample.py --mode fused [--rounds 5] [--batch-size 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector

from common import (
    CATEGORIES,
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    run_header,
    set_threads,
    with_input,
    write_json,
)


def _upsample_then_blur(inspector: Inspector, maps: torch.Tensor) -> torch.Tensor:
    """The previous map smoothing: bilinear upsampling, reflect padding, two 1-D convolutions."""
    shape, sigma = inspector.input_shape, inspector.config.image_image.blur_sigma
    maps = F.interpolate(maps.unsqueeze(1), size=shape, mode="bilinear", align_corners=False)
    radius = int(math.ceil(4 * sigma))
    xs = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    kernel = torch.exp(-(xs**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    maps = F.pad(maps, (radius,) * 4, mode="reflect")
    maps = F.conv2d(maps, kernel.view(1, 1, 1, -1))
    return F.conv2d(maps, kernel.view(1, 1, -1, 1)).squeeze(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser)
    add_input_option(parser)
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "smooth_upsample.json")
    args = parser.parse_args()
    config = with_input(InspectorConfig(mode=args.mode), args)
    header = run_header(args, config)
    set_threads(args.threads)
    category = MVTecCategory(category_dir(args.category))
    tests = [str(s.path) for s in category.test_samples()]
    inspector = Inspector(config, batch_size=args.batch_size)
    t0 = time.perf_counter()
    inspector.fit(category.train_images(), product=args.category)
    print(f"fit {time.perf_counter() - t0:.1f} s; {len(tests)} test images, batch {args.batch_size}", flush=True)
    model = inspector.model
    assert model is not None
    shipped = model.smooth
    versions = {"upsample_then_blur": lambda maps: _upsample_then_blur(inspector, maps), "matrix": shipped}
    rates: dict[str, list[float]] = {name: [] for name in versions}
    single: dict[str, list[float]] = {name: [] for name in versions}
    scores: dict[str, list[float]] = {}
    verdicts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, upsample in versions.items():
            model.smooth = upsample  # type: ignore[method-assign]  # the version under test, per round
            start = time.perf_counter()
            results = inspector.predict(tests)
            rates[name].append(len(tests) / (time.perf_counter() - start))
            scores[name] = [r.raw_score for r in results]
            verdicts[name] = [r.verdict for r in results]
            for path in tests[:20]:
                start = time.perf_counter()
                inspector.predict(path)
                single[name].append((time.perf_counter() - start) * 1000)
    model.smooth = shipped  # type: ignore[method-assign]
    # Fused raw scores are exponentials of the maps (up to ~1e9 on bottle), so compare relatively.
    diff = max(abs(a - b) / max(abs(a), 1e-12)
               for a, b in zip(scores["upsample_then_blur"], scores["matrix"], strict=True))
    flipped = sum(a != b for a, b in zip(verdicts["upsample_then_blur"], verdicts["matrix"], strict=True))
    out: dict = {"max_relative_raw_score_difference": diff, "verdicts_differing": flipped, "versions": {}}
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
    write_json(args.json, header, out)


if __name__ == "__main__":
    main()
