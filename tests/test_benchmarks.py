"""The benchmark tables stay reproducible: RESULTS.md shows each table under the exact command of
a ``benchmarks/run_all.py`` entry, and every entry that fits an inspector names its mode."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run_all():
    if "benchmarks_run_all" not in sys.modules:  # a dataclass module must be registered before it runs
        spec = importlib.util.spec_from_file_location("benchmarks_run_all", BENCHMARKS / "run_all.py")
        assert spec is not None and spec.loader is not None
        sys.modules["benchmarks_run_all"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["benchmarks_run_all"])
    return sys.modules["benchmarks_run_all"]


def test_every_entry_is_shown_in_results_with_its_exact_command():
    run_all = _run_all()
    results = (BENCHMARKS / "RESULTS.md").read_text()
    for entry in run_all.ENTRIES:
        assert run_all.shell_line(entry, "../shared/datasets") in results, entry.name
        assert re.search(rf"\b{entry.name}\b", results), entry.name
    named = set(re.findall(r"run_all\.py --only ([a-z_]+)", results))
    assert named <= set(run_all.BY_NAME), named - set(run_all.BY_NAME)


def test_entries_that_fit_an_inspector_name_their_mode():
    run_all = _run_all()
    assert len(run_all.BY_NAME) == len(run_all.ENTRIES)
    for entry in run_all.ENTRIES:
        script = BENCHMARKS.parent / entry.argv[0]
        source = script.read_text() if script.suffix == ".py" else ""
        if "explain-eval" in entry.argv or re.search(r"\bInspector\(|\bevaluate(_run)?\(", source):
            assert "--mode" in entry.argv or "--modes" in entry.argv, entry.name
        if "add_input_option" in source or "--input" in source:
            assert "--input" in entry.argv, entry.name  # the input choice is a setting, not a default of the day


def test_every_script_writes_the_shared_header():
    for script in sorted(BENCHMARKS.glob("*.py")):
        if script.name in {"common.py", "run_all.py"}:
            continue
        source = script.read_text()
        assert "run_header(args" in source and "write_json(" in source, script.name
