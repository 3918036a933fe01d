"""On how many images of each shared category the part is found against a plain background.

Location words, part-relative sizes and the on/off-part order of regions depend on it: a
product's words follow the part when it is found on at least 80 % of its good images. Counts
every train and test image (not the masks) and the median time per image. No inspector is
fitted, so there is no mode.

    .venv/bin/python benchmarks/part_finder.py [--categories bottle,cookie,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from inspect_app.data.images import load_image
from inspect_app.imaging.foreground import estimate_part_box

from common import CATEGORIES, RESULTS, category_dir, category_names, run_header, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", type=category_names, default=list(CATEGORIES))
    parser.add_argument("--json", type=Path, default=RESULTS / "part_finder.json")
    args = parser.parse_args()
    header = run_header(args)
    rows = []
    for name in args.categories:
        folder = category_dir(name)
        files = sorted(f for split in ("train", "test") for f in (folder / split).glob("*/*")
                       if f.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
        found, times = 0, []
        for f in files:
            image = load_image(f)
            t0 = time.perf_counter()
            found += estimate_part_box(image) is not None
            times.append((time.perf_counter() - t0) * 1000)
        rows.append({"category": name, "images": len(files), "part_found": found,
                     "share": round(found / max(len(files), 1), 4), "ms_p50": round(statistics.median(times), 2)})
        print(f"{name}: part found on {found} of {len(files)} images ({found / max(len(files), 1):.1%}), "
              f"p50 {statistics.median(times):.2f} ms", flush=True)
    write_json(args.json, header, {"rows": rows})


if __name__ == "__main__":
    main()
