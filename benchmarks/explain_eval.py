"""``inspect-app explain-eval`` on a shared category, with the run header every table's JSON
starts with (command, settings including the mode, commit, machine).

The command itself runs as a user runs it (fit on train/good, every variant explains every
test image); this script only records what was run around its figures.

    .venv/bin/python benchmarks/explain_eval.py --category bottle --mode fused --json OUT
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CATEGORIES, REPO, RESULTS, add_mode_option, category_dir, run_header, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", required=True, choices=sorted(CATEGORIES))
    add_mode_option(parser, "the mode explain-eval fits")
    parser.add_argument("--variant", default="all", help="explain-eval --variant")
    parser.add_argument("--k-shot", type=int, default=None, help="explain-eval --k-shot: fit on K good images")
    parser.add_argument("--per-folder", type=int, default=None, help="explain-eval --per-folder: N test images each")
    parser.add_argument("--json", type=Path, default=RESULTS / "explain_eval.json")
    args = parser.parse_args()
    header = run_header(args)
    command = [sys.executable, "-m", "inspect_app", "explain-eval", str(category_dir(args.category)),
               "--mode", args.mode, "--variant", args.variant]
    command += ["--k-shot", str(args.k_shot)] if args.k_shot else []
    command += ["--per-folder", str(args.per_folder)] if args.per_folder else []
    with tempfile.TemporaryDirectory() as work:
        figures_path = Path(work) / "figures.json"
        subprocess.run([*command, "--json", str(figures_path)], cwd=REPO, check=True)
        figures = json.loads(figures_path.read_text())
    write_json(args.json, header, figures)


if __name__ == "__main__":
    main()
