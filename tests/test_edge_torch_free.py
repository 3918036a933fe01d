"""The edge runtime imports and runs predict, line and api without torch.

A subprocess makes torch (and the other torch packages) unimportable with a meta path finder, so
this runs in every test run without building a venv; `make edge-check` checks the real
torch-free `.venv-edge` (benchmarks/edge_venv_check.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from edge_support import assert_same_answers

from inspect_app.edge.export import export_inspector
from inspect_app.edge.manifest import GraphFormat
from inspect_app.results import InspectionResult, Verdict

from conftest import ImageFactory

BLOCK_TORCH = textwrap.dedent('''
    import importlib.abc
    import sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {"torch", "torchvision", "open_clip", "pytorch_lightning", "torchmetrics",
                                      "transformers", "anomalib"}:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoTorch())
''')

SCRIPT = BLOCK_TORCH + textwrap.dedent('''
    import json
    from pathlib import Path

    from fastapi.testclient import TestClient

    from inspect_app.cli import app
    from inspect_app.api import create_app
    from inspect_app.store import ResultsStore

    model, images, out = (Path(p) for p in sys.argv[1:4])
    for args in (["predict", str(images), "--model", str(model), "--json", str(out / "predict.json"),
                  "--explain"],
                 ["line", "--model", str(model), "--source", str(images), "--max-frames", "3",
                  "--store", f"sqlite:///{out / 'line.db'}"]):
        try:
            app(args)
        except SystemExit as exc:
            assert exc.code in (0, None), (args[0], exc.code)
    with ResultsStore(f"sqlite:///{out / 'api.db'}") as store:
        client = TestClient(create_app(store=store, model_dir=model))
        token = store.add_token("edge-station", "station")
        with (images / "bad.png").open("rb") as fh:
            answer = client.post("/inspect", params={"product": "gradient"}, files={"file": fh},
                                 headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        (out / "api.json").write_text(answer.text)
        assert client.get("/health").json()["products"] == ["gradient"]
    with ResultsStore(f"sqlite:///{out / 'line.db'}") as store:
        (out / "line.json").write_text(json.dumps(sorted(r.verdict for r in store.query(limit=10))))
    assert not [m for m in sys.modules if m.split(".")[0] == "torch"]
''')


def test_predict_line_and_api_run_an_exported_model_without_torch(fitted_inspector, tmp_path: Path):
    factory = ImageFactory(tmp_path / "images", seed=31)
    images = {"bad.png": factory.defective(40, 50), "good.png": factory.good(), "worse.png": factory.defective(90, 90)}
    for name, image in images.items():
        factory.write(tmp_path / "images" / name, image)
    export_inspector(fitted_inspector, tmp_path / "model", GraphFormat.OPENVINO)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "model"), str(tmp_path / "images"),
                           str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(images)
    reference = fitted_inspector.predict([images[n] for n in names], names=names)
    predicted = json.loads((tmp_path / "predict.json").read_text())
    assert all(d["explanation"] and d["explanation_source"] == "template" for d in predicted)
    edge = [_result(d) for d in predicted]
    assert_same_answers(reference, sorted(edge, key=lambda r: r.file or ""))
    assert json.loads((tmp_path / "api.json").read_text())["verdict"] == reference[0].verdict == Verdict.FAIL
    assert json.loads((tmp_path / "line.json").read_text()) == sorted(r.verdict for r in reference)


def _result(data: dict) -> InspectionResult:
    from inspect_app.results import Region

    result = InspectionResult(Path(data["file"]).name, Verdict(data["verdict"]), raw_score=data["raw_score"])
    result.regions = [Region(**{**r, "bbox": tuple(r["bbox"]), "centroid": tuple(r["centroid"])})
                      for r in data["regions"]]
    return result


@pytest.mark.parametrize("module", ["inspect_app.cli", "inspect_app.edge.loading", "inspect_app.edge.inspector",
                                   "inspect_app.inspector_cache", "inspect_app.line.station", "inspect_app.api.app"])
def test_edge_modules_import_without_torch(module: str):
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH + f"import {module}\n"], capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
