"""What the fit-time input choice (``inspect_app.self_config``) picks per category, and why.

For each category: the candidates' synthetic-defect detection and AUROC on the good training
images (test images are never read), the chosen input, and the seconds the choice took. Whether
the choice is right is judged by ``benchmarks/matrix.py --input auto`` against ``--input fixed``.

    .venv/bin/python benchmarks/self_config.py --categories bottle,cookie,tile [--seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from inspect_app.config import InspectorConfig
from inspect_app.data.images import load_image
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.self_config import choose_input
from inspect_app.training import new_model

from common import (
    CATEGORIES,
    RESULTS,
    add_threads_option,
    category_dir,
    category_names,
    run_header,
    set_threads,
    write_json,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", type=category_names, default=list(CATEGORIES))
    parser.add_argument("--seed", type=int, default=0)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "self_config.json")
    args = parser.parse_args()
    config = InspectorConfig(mode="image-image", seed=args.seed)
    header = run_header(args, config)
    set_threads(args.threads)
    model = new_model(config)
    rows = []
    for name in args.categories:
        images = [load_image(p) for p in MVTecCategory(category_dir(name)).train_images()]
        start = time.perf_counter()
        choice = choose_input(model, images, config)
        row = {"category": name, "seconds": round(time.perf_counter() - start, 2), **asdict(choice)}
        rows.append(row)
        print(f"{name}: {choice.chosen} {choice.input_shape} in {row['seconds']} s; " + "; ".join(
            f"{c.name} {c.input_shape}: det {c.synthetic_detection:.3f} auroc {c.synthetic_auroc:.3f}"
            for c in choice.candidates), file=sys.stderr, flush=True)
    write_json(args.json, header, {"rows": rows})


if __name__ == "__main__":
    main()
