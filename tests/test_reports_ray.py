"""Scale-out: the same folder scored on a local Ray instance (2 workers) gives the same report rows."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from inspect_app.reports import build_report
from test_reports import make_folder

RAY_TIME_LIMIT_S = 420


@pytest.mark.slow
def test_ray_report_matches_single_process(tmp_path, fitted_inspector):
    ray = pytest.importorskip("ray")
    models = tmp_path / "models"
    fitted_inspector.save(models)
    folder = make_folder(tmp_path)
    single = build_report("gradient", tmp_path / "single", images=folder, models_dir=models, explain=False)

    def too_slow(*_):
        raise TimeoutError(f"the Ray report took more than {RAY_TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(RAY_TIME_LIMIT_S)
    try:
        on_ray = build_report("gradient", tmp_path / "ray", images=folder, models_dir=models, explain=False,
                              ray_address="local")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        ray.shutdown()
    assert not ray.is_initialized()
    assert on_ray.scoring == "Ray (local)" and single.scoring == "this process"
    a, b = (json.loads(Path(s.json).read_text()) for s in (single, on_ray))
    assert [r["file"] for r in a] == [r["file"] for r in b]
    assert [r["verdict"] for r in a] == [r["verdict"] for r in b]
    assert [r["error"] for r in a] == [r["error"] for r in b]
    assert [len(r["regions"]) for r in a] == [len(r["regions"]) for r in b]
    for x, y in zip(a, b):
        if x["score"] is None:
            assert y["score"] is None
        else:  # different batch sizes/threads change float rounding only
            assert y["score"] == pytest.approx(x["score"], abs=1e-5)
            assert y["raw_score"] == pytest.approx(x["raw_score"], rel=1e-5)
    assert (single.n_pass, single.n_fail, single.n_error) == (on_ray.n_pass, on_ray.n_fail, on_ray.n_error)
