"""The embedded encoder with in-place activations and residual sums (shipped) against the same
weights allocating a fresh buffer at every step, side by side in one process.

Both encoders run interleaved, five rounds per batch size, on random images of ``--image-size``;
prints the median milliseconds per image and checks that both give the same features. No
inspector is fitted, so there is no mode.

    .venv/bin/python benchmarks/encoder_buffers.py [--batch-sizes 1,2,4,8] [--rounds 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from inspect_app.backbones.efficientnet_lite import EfficientNetLiteEncoder, _MBConv

from common import RESULTS, add_threads_option, int_list, run_header, set_threads, write_json


def _fresh_buffers(encoder: EfficientNetLiteEncoder) -> EfficientNetLiteEncoder:
    """The pre-change encoder: out-of-place ReLU6 and ``out + x``."""
    for module in encoder.modules():
        if isinstance(module, nn.ReLU6):
            module.inplace = False
        elif isinstance(module, _MBConv):
            module.forward = lambda x, b=module: b.body(x) + x if b.residual else b.body(x)
    return encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=256)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "encoder_buffers.json")
    args = parser.parse_args()
    header = run_header(args)
    set_threads(args.threads)
    encoders = {"fresh": _fresh_buffers(EfficientNetLiteEncoder()), "in_place": EfficientNetLiteEncoder()}
    size = args.image_size
    images = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(0))
    fresh, in_place = (encoders[name].encode(images[:2]).levels for name in ("fresh", "in_place"))
    same = all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fresh, in_place, strict=True))
    print(f"same features: {same}; torch threads {torch.get_num_threads()}")
    rows = []
    for batch in args.batch_sizes:
        x, repeats = images[:batch], max(2, 16 // batch)
        ms: dict[str, list[float]] = {name: [] for name in encoders}
        for _ in range(args.rounds):
            for name, encoder in encoders.items():
                encoder.encode(x)
                start = time.perf_counter()
                for _ in range(repeats):
                    encoder.encode(x)
                ms[name].append((time.perf_counter() - start) / (repeats * batch) * 1000)
        row = {"batch": batch, **{f"{n}_ms_per_image": round(statistics.median(v), 2) for n, v in ms.items()}}
        row["speedup"] = round(row["fresh_ms_per_image"] / row["in_place_ms_per_image"], 2)
        rows.append(row)
        print(f"batch {batch}: fresh {row['fresh_ms_per_image']} ms/image, in place "
              f"{row['in_place_ms_per_image']} ms/image, {row['speedup']}x", flush=True)
    write_json(args.json, header, {"same_features": same, "rows": rows})


if __name__ == "__main__":
    main()
