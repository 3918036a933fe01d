"""Regenerate every table of benchmarks/RESULTS.md, each with the exact options it was measured with.

Each entry is one command whose JSON lands in benchmarks/results/; RESULTS.md shows every table
under its entry's name. Everything runs in sequence and takes hours (fits of every shared
category, soak runs of minutes, a 1,000-image report): it is not part of CI. Timing entries want a
quiet machine; other jobs on the cores distort them.

    .venv/bin/python benchmarks/run_all.py                  # every entry, in order
    .venv/bin/python benchmarks/run_all.py --list           # the commands, one line each
    .venv/bin/python benchmarks/run_all.py --only calibration --only part_finder
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = "{datasets}"  # replaced by the shared data sets folder when a command needs it
ALL_CATEGORIES = "bottle,cookie,tile,metal_plate,ball_screw"


@dataclass(frozen=True)
class Entry:
    name: str
    table: str  # the RESULTS.md section the entry regenerates
    argv: tuple[str, ...]  # after the Python interpreter

    @property
    def needs_datasets_path(self) -> bool:
        return any(DATASETS in a for a in self.argv)

    def command(self, datasets: Path | str) -> list[str]:
        return [a.replace(DATASETS, str(datasets)) for a in self.argv]


def _script(name: str, *options: str) -> tuple[str, ...]:
    return (f"benchmarks/{name}.py", *options)


def _kinds(mode: str, category: str, shots: str, seeds: str, json_name: str, *options: str) -> tuple[str, ...]:
    return _script("kinds", "--mode", mode, "--categories", category, "--shots", shots, "--seeds", seeds, *options,
                   "--json", f"benchmarks/results/{json_name}.json")


def _encoder(variant: str, levels: str, size: str) -> Entry:
    """The matrix at a fixed input with one encoder choice (the encoder's table on all five categories)."""
    name = f"encoder_{variant}_{size}_{levels.replace(',', '')}"
    return Entry(name, "Encoder variant on all five shared categories (issue 25)", _script(
        "matrix", "--input", "fixed", "--modes", "image-image", "--variant", variant, "--levels", levels,
        "--image-size", size, "--threads", "2", "--json", f"benchmarks/results/matrix_{name}.json"))


def _explain_eval(category: str, json_name: str, *options: str) -> tuple[str, ...]:
    return _script("explain_eval", "--category", category, "--mode", "fused", *options,
                   "--json", f"benchmarks/results/{json_name}.json")


ENTRIES = [
    Entry("foundation", "Foundation: image-image mode, full-shot and few-shot", _script(
        "eval_foundation", "--mode", "image-image", "--input", "fixed",
        "--full", "bottle,cookie,tile", "--few", "bottle,cookie",
        "--shots", "1,4", "--seeds", "3", "--image-size", "256", "--threads", "2",
        "--out", "benchmarks/results/foundation")),
    Entry("speed_image_image", "Speed and memory, image-image mode", _script(
        "speed", "--mode", "image-image", "--input", "fixed", "--predict-modes", "image-image", "--category", "bottle",
        "--fit-runs", "3", "--latency-samples", "40", "--batch-sizes", "1,4,8,16", "--batch-size", "8",
        "--threads", "2", "--json", "benchmarks/results/speed_image_image.json")),
    Entry("encoder_buffers", "In-place activations in the embedded encoder", _script(
        "encoder_buffers", "--batch-sizes", "1,2,4,8", "--rounds", "5", "--image-size", "256", "--threads", "2",
        "--json", "benchmarks/results/encoder_buffers.json")),
    Entry("vs_anomalib", "Side by side with anomalib's PatchCore", _script(
        "bench_vs_anomalib", "--mode", "image-image", "--input", "fixed",
        "--categories", "bottle,cookie", "--image-size", "256",
        "--batch-size", "8", "--threads", "2", "--latency-samples", "30",
        "--json", "benchmarks/results/vs_anomalib.json")),
    Entry("calibration", "Calibration from good images only", _script(
        "calibration", "--mode", "image-image", "--input", "fixed",
        "--categories", "bottle,cookie,tile", "--seeds", "3",
        "--target-frr", "0.01", "--threads", "2", "--json", "benchmarks/results/calibration.json")),
    Entry("backbone_choice", "Encoder variant, input size and stages", _script(
        "backbone_choice", "--mode", "image-image", "--categories", "bottle,cookie", "--seed", "0",
        "--latency-samples", "10", "--threads", "2", "--json", "benchmarks/results/backbone_choice.json")),
    _encoder("lite0", "3,5", "256"),
    _encoder("lite2", "3,5", "256"),
    _encoder("lite1", "3,5", "256"),
    _encoder("lite0", "3,4", "256"),
    _encoder("lite0", "3,5", "320"),
    Entry("matrix", "Every shared category in the default mode (issue 25)", _script(
        "matrix", "--input", "auto", "--modes", "image-image", "--categories", "cookie,tile,ball_screw",
        "--json", "benchmarks/results/matrix_auto.json")),
    Entry("matrix_fixed", "Every shared category in the default mode (issue 25)", _script(
        "matrix", "--input", "fixed", "--modes", "image-image", "--json", "benchmarks/results/matrix_fixed.json")),
    Entry("matrix_ball_screw_608", "Every shared category in the default mode (issue 25)", _script(
        "matrix", "--input", "fixed", "--modes", "image-image", "--categories", "ball_screw", "--image-size", "608",
        "--keep-aspect", "--coreset-ratio", "0.0025", "--json", "benchmarks/results/matrix_ball_screw_608.json")),
    Entry("matrix_modes", "Every shared category in the default mode (issue 25)", _script(
        "matrix", "--input", "fixed", "--modes", "image-image,image-text,fused",
        "--json", "benchmarks/results/matrix_modes.json")),
    Entry("ablation", "Modes side by side and the fusion rule", _script(
        "ablation", "--mode", "fused", "--input", "fixed", "--predict-modes", "image-image,image-text,fused",
        "--categories", ALL_CATEGORIES, "--seed", "0", "--latency-samples", "20", "--threads", "2",
        "--json", "benchmarks/results/ablation.json")),
    Entry("speed_fused", "Speed of the fused mode", _script(
        "speed", "--mode", "fused", "--input", "fixed", "--predict-modes", "image-image,fused", "--category", "bottle",
        "--fit-runs", "1", "--latency-samples", "83", "--batch-sizes", "1,2,4,8,16", "--batch-size", "8",
        "--threads", "2", "--json", "benchmarks/results/speed_fused.json")),
    Entry("smooth_upsample", "Upsampling and blur as one matrix product per axis", _script(
        "smooth_upsample", "--mode", "fused", "--input", "fixed",
        "--category", "bottle", "--rounds", "5", "--batch-size", "8",
        "--threads", "2", "--json", "benchmarks/results/smooth_upsample.json")),
    Entry("robustness", "Never crash: property tests", _script(
        "robustness", "--examples", "100", "--json", "benchmarks/results/robustness.json")),
    Entry("part_finder", "Part finder", _script(
        "part_finder", "--categories", ALL_CATEGORIES, "--json", "benchmarks/results/part_finder.json")),
    Entry("line_soak", "Line station soak", _script(
        "line_soak", "--mode", "fused", "--input", "fixed", "--category", "bottle", "--frames", "2000", "--fps", "20",
        "--part-frames", "3", "--gap-frames", "2", "--explain-variant", "adapter", "--threads", "2",
        "--json", "benchmarks/results/line_soak.json")),
    Entry("line_soak_long", "Line station soak", _script(
        "line_soak", "--mode", "fused", "--input", "fixed", "--category", "bottle", "--frames", "6000", "--fps", "20",
        "--part-frames", "3", "--gap-frames", "2", "--explain-variant", "adapter", "--threads", "2",
        "--json", "benchmarks/results/line_soak_long.json")),
    Entry("line_faults", "Line faults: exactly once, SIGTERM, API access", _script(
        "line_faults", "--mode", "fused", "--category", "bottle", "--frames", "2000", "--kills", "10",
        "--db-outages", "2", "--broker-outages", "2", "--sigterm-runs", "10", "--api-clients", "4",
        "--api-requests", "200", "--threads", "2", "--json", "benchmarks/results/line_faults.json")),
    Entry("report_speed", "Batch reports: overhead and Ray agreement", _script(
        "report_speed", "--mode", "fused", "--input", "fixed", "--category", "bottle", "--n", "1000", "--rounds", "3",
        "--threads", "2", "--json", "benchmarks/results/report_speed.json")),
    Entry("explain_eval_bottle", "Operator explanations",
          _explain_eval("bottle", "explain_eval_bottle")),
    Entry("explain_eval_cookie", "Operator explanations",
          _explain_eval("cookie", "explain_eval_cookie")),
    Entry("explain_eval_tile", "Operator explanations",
          _explain_eval("tile", "explain_eval_tile", "--k-shot", "200", "--per-folder", "12")),
    Entry("explain_eval_tile_full", "Operator explanations",
          _explain_eval("tile", "explain_eval_tile_full")),
    Entry("edge_speed", "Exported model without torch: speed", _script(
        "edge_speed", "--mode", "image-image", "--category", "bottle", "--image-size", "256", "--runtime", "openvino",
        "--latency-samples", "40", "--batch-size", "8", "--throughput-rounds", "4", "--threads", "2",
        "--json", "benchmarks/results/edge_speed.json")),
    Entry("edge_bound", "Exported model without torch: speed", _script(
        "edge_bound", "--mode", "image-image", "--category", "bottle", "--image-size", "256", "--samples", "16",
        "--rounds", "10", "--threads", "2", "--json", "benchmarks/results/edge_bound.json")),
    Entry("edge_agreement", "Exported model without torch: the same answers", _script(
        "edge_agreement", "--mode", "image-image", "--categories", ALL_CATEGORIES, "--image-size", "256",
        "--runtime", "openvino", "--threads", "2", "--json", "benchmarks/results/edge_agreement.json")),
    Entry("edge_agreement_kinds", "Exported model without torch: the same answers", _script(
        "edge_agreement", "--mode", "image-image", "--categories", "bottle,tile", "--image-size", "256",
        "--kind-shots", "3", "--runtime", "openvino", "--threads", "2",
        "--json", "benchmarks/results/edge_agreement_kinds.json")),
    Entry("edge_venv_check", "Exported model without torch: the edge venv", _script(
        "edge_venv_check", "--mode", "image-image", "--edge-python", ".venv-edge/bin/python",
        "--json", "benchmarks/results/edge_venv_check.json")),
    Entry("explain_throughput", "Inspection throughput with explanations on", _script(
        "explain_throughput", "--mode", "fused", "--input", "fixed", "--category", "bottle", "--frames", "240",
        "--defect-share", "0.1", "--rounds", "5", "--k-shot", "40", "--threads", "2",
        "--json", "benchmarks/results/explain_throughput.json")),
    Entry("kinds_bottle", "Defect kinds", _kinds("image-image", "bottle", "0,1,3,5", "3", "kinds_bottle", "--bound")),
    Entry("kinds_cookie", "Defect kinds", _kinds("image-image", "cookie", "0,3", "1", "kinds_cookie")),
    Entry("kinds_tile", "Defect kinds", _kinds("image-image", "tile", "0,1,3,5", "3", "kinds_tile", "--bound")),
    Entry("kinds_latency_bottle", "Defect kinds", _kinds("image-image", "bottle", "0,3,0,3,0,3", "1",
                                                         "kinds_latency_bottle", "--latency-samples", "40",
                                                         "--wording", "0")),
    Entry("kinds_bottle_fused", "Defect kinds", _kinds("fused", "bottle", "0,1,3,5", "1", "kinds_bottle_fused")),
    Entry("kinds_tile_fused", "Defect kinds", _kinds("fused", "tile", "0,1,3,5", "1", "kinds_tile_fused")),
    Entry("ui_feedback", "Station UI: learning from a false reject, and the run screen's refresh", _script(
        "ui_feedback", "--mode", "image-image", "--category", "bottle", "--k-shot", "20", "--rounds", "2",
        "--threads", "2",
        "--json", "benchmarks/results/ui_feedback.json")),
    Entry("ui_refresh", "Station UI: learning from a false reject, and the run screen's refresh", _script(
        "ui_refresh", "--mode", "image-image", "--category", "bottle", "--k-shot", "40", "--fps", "10",
        "--frame-size", "448", "--phase-s", "15", "--phases", "6", "--ui-cpu-priority", "idle",
        "--browser-cpu-priority", "idle", "--threads", "2", "--json", "benchmarks/results/ui_refresh.json")),
    Entry("ui_refresh_same_priority", "Station UI: learning from a false reject, and the run screen's refresh",
          _script("ui_refresh", "--mode", "image-image", "--category", "bottle", "--k-shot", "40", "--fps", "10",
                  "--frame-size", "448", "--phase-s", "15", "--phases", "6", "--ui-cpu-priority", "normal",
                  "--browser-cpu-priority", "normal", "--threads", "2",
                  "--json", "benchmarks/results/ui_refresh_same_priority.json")),
]
BY_NAME = {e.name: e for e in ENTRIES}


def shell_line(entry: Entry, datasets: Path | str) -> str:
    return shlex.join([".venv/bin/python", *entry.command(datasets)])


def find_datasets(entries: list[Entry]) -> Path | None:
    """The shared data sets folder, when an entry names a path in it (found as the benchmarks find it)."""
    if not any(e.needs_datasets_path for e in entries):
        return None
    from inspect_app.data.datasets import shared_datasets

    return shared_datasets()


def run(entries: list[Entry]) -> int:
    """Runs each entry in turn from the repository root; a failed entry does not stop the others."""
    datasets = find_datasets(entries)
    if datasets is None and any(e.needs_datasets_path for e in entries):
        sys.exit("shared datasets not found: set INSPECT_APP_DATASETS or place them in ../shared/datasets")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    failed = []
    for i, entry in enumerate(entries, 1):
        argv = entry.command(datasets or DATASETS)
        print(f"[{i}/{len(entries)}] {entry.name}: {shlex.join(argv)}", flush=True)
        start = time.perf_counter()
        status = subprocess.run([sys.executable, *argv], cwd=REPO, env=env).returncode
        print(f"[{i}/{len(entries)}] {entry.name}: exit {status} after {time.perf_counter() - start:.0f} s", flush=True)
        if status:
            failed.append(entry.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the commands instead of running them")
    parser.add_argument("--only", action="append", choices=list(BY_NAME), metavar="NAME",
                        help=f"run only this entry (repeatable): {', '.join(BY_NAME)}")
    args = parser.parse_args()
    entries = [BY_NAME[n] for n in args.only] if args.only else ENTRIES
    if args.list:
        datasets = find_datasets(entries) or "../shared/datasets"
        for entry in entries:
            print(f"{entry.name:<24} {shell_line(entry, datasets)}")
        return
    sys.exit(run(entries))


if __name__ == "__main__":
    main()
