"""Scale-out: the same folder scored on a local Ray instance (2 workers) gives the same report rows."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from test_reports import make_folder

from inspect_app.reports import build_report

RAY_TIME_LIMIT_S = 420


@pytest.mark.slow
def test_ray_report_matches_single_process(tmp_path, fitted_inspector):
    import ray

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
    for x, y in zip(a, b, strict=True):
        if x["score"] is None:
            assert y["score"] is None
        else:  # different batch sizes/threads change float rounding only
            assert y["score"] == pytest.approx(x["score"], abs=1e-5)
            assert y["raw_score"] == pytest.approx(x["raw_score"], rel=1e-5)
    assert (single.n_pass, single.n_fail, single.n_error) == (on_ray.n_pass, on_ray.n_fail, on_ray.n_error)


def test_ray_workers_ship_back_the_arrays_explanations_need(tmp_path, fitted_inspector):
    """The worker's batch output rebuilds into results with the same anomaly map as in this
    process, and FAIL results with the same kind maps and embedding (the explanation adapter
    reads all three); PASS results ship no evidence."""
    import numpy as np

    from inspect_app.reports.ray_scoring import ARRAYS, RayInspector, _array, _unpack
    from inspect_app.results import EvidenceFor, Verdict

    fitted_inspector.save(tmp_path / "models")
    folder = make_folder(tmp_path)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    worker = RayInspector("gradient", str(tmp_path / "models"))
    out = worker({"path": np.array([str(f) for f in files], dtype=object),
                  "bytes": np.array([f.read_bytes() for f in files], dtype=object)})
    local = fitted_inspector.predict([str(f) for f in files], evidence=EvidenceFor.FAILS)
    assert {r.verdict for r in local} >= {Verdict.PASS, Verdict.FAIL}
    for row, expected in enumerate(local):
        for name in ARRAYS:
            want, got = _array(expected, name), _unpack(out[name][row], out[name + "_shape"][row])
            assert (want is None) == (got is None)
            if want is not None:
                assert got.shape == want.shape and np.allclose(got, want, atol=1e-5)
        shipped = _unpack(out["embedding"][row], out["embedding_shape"][row])
        assert (shipped is not None) == (expected.verdict == Verdict.FAIL)
