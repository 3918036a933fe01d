"""The embedded encoder with in-place activations and residual sums (shipped) against the same
weights allocating a fresh buffer at every step, side by side in one process.

Both encoders run interleaved, five rounds per batch size; prints the median milliseconds per
image and checks that both give the same features.

    .venv/bin/python benchmarks/encoder_buffers.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch import nn

from inspect_app.backbones.efficientnet_lite import EfficientNetLiteEncoder, _MBConv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402


def _fresh_buffers(encoder: EfficientNetLiteEncoder) -> EfficientNetLiteEncoder:
    """The pre-change encoder: out-of-place ReLU6 and ``out + x``."""
    for module in encoder.modules():
        if isinstance(module, nn.ReLU6):
            module.inplace = False
        elif isinstance(module, _MBConv):
            module.forward = lambda x, b=module: b.body(x) + x if b.residual else b.body(x)
    return encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    encoders = {"fresh": _fresh_buffers(EfficientNetLiteEncoder()), "in_place": EfficientNetLiteEncoder()}
    images = torch.randn(16, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    same = all(torch.allclose(a, b, atol=1e-5) for a, b in
               zip(encoders["fresh"].encode(images[:2]).levels, encoders["in_place"].encode(images[:2]).levels))
    print(f"same features: {same}; torch threads {torch.get_num_threads()}")
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
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
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"date": date.today().isoformat(), "machine": machine(),
                                         "command": " ".join(sys.argv), "same_features": same,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
