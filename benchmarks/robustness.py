"""The property tests of ``tests/test_robustness.py`` at a benchmark's number of examples.

CI runs them with a few examples per test (derandomised, so always the same ones); this run draws
``--examples`` generated image sets per fitted mode (image-image, image-text, fused; 5x as many
synthesis cases, since those cost milliseconds) and records, per test, whether it passed and how
long it took. A failure is a crash to fix: hypothesis prints the smallest image set that causes it.

    .venv/bin/python benchmarks/robustness.py --examples 100 --json benchmarks/results/robustness.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from common import FITTED_MODES, REPO, RESULTS, run_header, write_json

TESTS = "tests/test_robustness.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100, help="generated image sets per fitted mode")
    parser.add_argument("--json", type=Path, default=RESULTS / "robustness.json")
    args = parser.parse_args()
    header = run_header(args, modes=list(FITTED_MODES))
    env = {**os.environ, "INSPECT_APP_PROPERTY_EXAMPLES": str(args.examples), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        status = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TESTS,
                                 f"--junitxml={report}"], cwd=REPO, env=env).returncode
        seconds = time.perf_counter() - start
        cases = ElementTree.parse(report).getroot().iter("testcase")
        tests = [{"test": case.get("name"), "seconds": round(float(case.get("time", 0)), 1),
                  "outcome": "failed" if case.find("failure") is not None or case.find("error") is not None
                  else "skipped" if case.find("skipped") is not None else "passed"} for case in cases]
    write_json(args.json, header, {
        "modes": FITTED_MODES, "exit_status": status, "seconds": round(seconds, 1),
        "passed": sum(t["outcome"] == "passed" for t in tests),
        "failed": sum(t["outcome"] == "failed" for t in tests), "tests": tests})
    sys.exit(status)


if __name__ == "__main__":
    main()
