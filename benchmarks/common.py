"""What every benchmark shares: the shared real data sets and their categories, the options every
script spells out (mode, categories, torch threads), and the header every result JSON starts with.

A figure is only reproducible with everything it depended on, so each script's JSON begins with
``run_header``: the exact command, every setting (defaults included), the inspector
configuration it fitted, the git commit (and whether the tree had uncommitted changes), the
machine and the library versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from inspect_app.config import MODES, InspectorConfig
from inspect_app.data.datasets import shared_datasets

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# Category name -> folder under the shared data sets (see its README.md).
CATEGORIES = {
    "bottle": "mvtec_ad/bottle",
    "cookie": "lookout_cookies/cookie",
    "tile": "magnetic_tile/tile",
    "metal_plate": "mpdd/metal_plate",
    "ball_screw": "bsdata/ball_screw",
}
FITTED_MODES = [m for m in MODES if m != "zero-shot"]  # the modes a benchmark fits on good images
DEFAULT_THREADS = 2  # the development machine's two cores


def datasets_root() -> Path:
    """The shared data sets folder; exits with a clear message when it is absent."""
    root = shared_datasets()
    if root is None:
        sys.exit("shared datasets not found: set INSPECT_APP_DATASETS or place them in ../shared/datasets")
    return root


def category_dir(name: str) -> Path:
    """The folder of one shared category; exits with a clear message when it is missing."""
    path = datasets_root() / CATEGORIES[name]
    if not (path / "train" / "good").is_dir():
        sys.exit(f"dataset folder missing: {path}")
    return path


def category_names(text: str) -> list[str]:
    """argparse type: comma-separated category names, each one of ``CATEGORIES``."""
    names = [c for c in text.split(",") if c]
    unknown = [c for c in names if c not in CATEGORIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown categories {unknown or text!r}: choose from {', '.join(CATEGORIES)}")
    return names


def mode_names(text: str) -> list[str]:
    """argparse type: comma-separated inspector modes."""
    names = [m for m in text.split(",") if m]
    unknown = [m for m in names if m not in MODES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown modes {unknown or text!r}: choose from {', '.join(MODES)}")
    return names


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers (batch sizes, shots); may be empty."""
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_mode_option(parser: argparse.ArgumentParser, what: str = "the inspector's mode") -> None:
    """``--mode``, required: a table must name the mode it was measured in, not inherit the default of the day."""
    parser.add_argument("--mode", required=True, choices=FITTED_MODES, help=f"{what} (required)")


def add_input_option(parser: argparse.ArgumentParser) -> None:
    """``--input``, required: whether fits choose their input (the product's default since issue 25)
    or take the fixed 256 x 256 square (``--input fixed``; the tables measured before it)."""
    parser.add_argument("--input", required=True, choices=("auto", "fixed"),
                        help="auto: each fit chooses its input size and shape (self_config); fixed: 256 x 256")


def with_input(config: InspectorConfig, args: argparse.Namespace) -> InspectorConfig:
    """``config`` with the ``--input`` choice applied."""
    backbone = config.backbone.model_copy(update={"choose_input": args.input == "auto"})
    return config.model_copy(update={"backbone": backbone})


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch intra-op threads")


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def git_state() -> dict[str, Any]:
    """The commit the figures were measured at, and whether the working tree differed from it."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def machine() -> dict[str, Any]:
    """The CPU a run was timed on: timings from different machines are not comparable."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": model, "simd": simd, "cores": os.cpu_count()}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("inspect_app", "torch", "anomalib", "scikit-learn"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


NO_MODE = "none: no inspector is fitted"


def run_header(args: argparse.Namespace, config: InspectorConfig | None = None,
               modes: list[str] | None = None) -> dict[str, Any]:
    """The start of every benchmark JSON: what was run, with which settings, at which commit (also
    top-level ``commit``), in which mode (``mode``: the fitted mode, or the modes a run covers,
    comma-separated), where.

    ``config``: the inspector configuration the script fitted (the base one, when it varies a
    setting per row; the rows then say what they changed). ``modes``: the modes of a script that
    fits several without a ``--mode``/``--modes`` option.
    """
    script = Path(sys.argv[0])
    git = git_state()
    mode = getattr(args, "mode", None) or ",".join(getattr(args, "modes", None) or modes or []) or \
        (config.mode if config is not None else NO_MODE)
    return {
        "benchmark": script.stem,
        "commit": git["commit"],
        "mode": mode,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join([f"benchmarks/{script.name}", *sys.argv[1:]]),
        "settings": {key: _plain(value) for key, value in vars(args).items()},
        "inspector_config": None if config is None else config.model_dump(mode="json"),
        "git": git,
        "machine": machine(),
        "software": _versions(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def write_json(path: Path, header: dict[str, Any], figures: dict[str, Any]) -> None:
    """The run's header followed by its figures, as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**header, **figures}, indent=2) + "\n")
    print(f"written {path}", file=sys.stderr, flush=True)
