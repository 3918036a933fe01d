"""``explain-eval`` figures on a small synthetic category (template variant: no language model)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from inspect_app.explain.evaluation import Case, ground_truth_cells, text_metrics, verdict_consistent
from inspect_app.explain.facts import Facts, RegionFact

from conftest import ImageFactory, paste_blob


def test_ground_truth_cells_use_the_region_location_logic():
    mask = np.zeros((90, 90), np.uint8)
    mask[5:25, 5:25] = 1  # top-left cell only
    assert ground_truth_cells(mask, None) == ({"top-left"}, "top-left")
    mask[5:25, 25:45] = 1  # spills into the top cell: both count, the centroid is on the border
    cells, centroid = ground_truth_cells(mask, None)
    assert cells == {"top-left", "top"} and centroid in cells
    # relative to the part box, as regions are: the same pixels are the centre of a small part
    assert ground_truth_cells(mask, (0, 0, 45, 30))[1] == "centre"
    assert ground_truth_cells(np.zeros((9, 9), np.uint8), None) == (set(), None)


def test_text_metrics_count_what_the_issue_asks():
    fail = Facts("tile", "FAIL", 0.8, 0.5, (RegionFact("top", "small", "compact", "hole", 0.7),), 1)
    good = Facts("tile", "PASS", 0.1, 0.5)
    cases = [Case("a.png", "hole", True, fail, {"top", "top-left"}, "top", {"hole"}),
             Case("b.png", "good", False, good, set(), None, None)]
    right = ["A hole at the top of the tile. Remove the part.", "No defect found. The part can go on."]
    assert text_metrics(right, cases) == {"verdict_consistency": 1.0, "location_faithfulness": 1.0,
                                          "location_centroid_agreement": 1.0, "type_mention_accuracy": 1.0,
                                          "hallucination_rate": 0.0}
    wrong = ["A crack at the bottom. Keep the part.", "A hole at the top. Remove the part."]
    figures = text_metrics(wrong, cases)
    assert figures == {"verdict_consistency": 0.0, "location_faithfulness": 0.0, "location_centroid_agreement": 0.0,
                       "type_mention_accuracy": 0.0, "hallucination_rate": 1.0}
    assert not verdict_consistent("No defects, fine.", fail) and verdict_consistent("FAIL: a hole.", fail)


def test_defects_without_a_mask_count_for_the_verdict_and_kind_but_not_the_location():
    fail = Facts("tile", "FAIL", 0.8, 0.5, (RegionFact("top", "small", "compact", "hole", 0.7),), 1)
    located = Case("a.png", "hole", True, fail, {"bottom"}, "bottom", {"hole"})
    unlocalised = dataclasses.replace(located, cells=set(), centroid=None)
    text = "A hole at the top of the tile. Remove the part."
    figures = text_metrics([text, text], [located, unlocalised])
    assert figures["location_faithfulness"] == 0.0 and figures["location_centroid_agreement"] == 0.0
    assert figures["type_mention_accuracy"] == 1.0 and figures["verdict_consistency"] == 1.0
    assert text_metrics([text], [unlocalised])["location_faithfulness"] is None


@pytest.fixture
def category(tmp_path):
    """A tiny MVTec-layout category: 12 good training images, a 'hole' folder with masks, test/good."""
    factory = ImageFactory(tmp_path, seed=3)
    root = tmp_path / "widget"
    for i in range(12):
        factory.write(root / "train" / "good" / f"{i:03d}.png", factory.good())
    for i in range(3):
        factory.write(root / "test" / "good" / f"{i:03d}.png", factory.good())
    for i, (cx, cy) in enumerate([(25, 25), (100, 30), (64, 100)]):
        factory.write(root / "test" / "hole" / f"{i:03d}.png", paste_blob(factory.good(), cx, cy, radius=12))
        yy, xx = np.mgrid[0:128, 0:128]
        mask = (((xx - cx) ** 2 + (yy - cy) ** 2) <= 144).astype(np.uint8) * 255
        factory.write(root / "ground_truth" / "hole" / f"{i:03d}_mask.png", np.repeat(mask[..., None], 3, 2))
    return root


def test_explain_eval_cli_template(category, tmp_path, monkeypatch):
    from inspect_app.cli import app

    monkeypatch.delenv("INSPECT_APP_MODELS_DIR", raising=False)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["explain-eval", str(category), "--variant", "template", "--mode", "image-image",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["variant"] == "template" and data["n_test"] == 6 and data["n_defective"] == 3
    figures = data["variants"]["template"]
    assert figures["verdict_consistency"] == 1.0 and figures["raw_verdict_consistency"] == 1.0
    assert figures["hallucination_rate"] == 0.0 and figures["fallback_rate"] == 0.0
    assert data["n_fail"] >= 2 and figures["location_faithfulness"] >= 2 / 3  # the holes are found and located
    assert data["location_faithfulness"] == figures["location_faithfulness"]  # headline keys at the top
    for key in ("type_mention_accuracy", "p50_seconds", "p95_seconds", "raw_location_faithfulness"):
        assert key in data


def test_explain_eval_gives_the_language_model_variants_evidence_for_every_verdict(category, monkeypatch):
    """The adapter needs the maps and embedding of each result it explains, PASS parts included
    (explain-eval of the adapter crashed on bottle's first missed defect when only FAILs had them)."""
    from inspect_app.explain import generator as generator_module
    from inspect_app.explain.evaluation import evaluate_explanations

    class NeedsEvidence:
        def generate(self, result, max_seconds=None):
            assert result.evidence is not None and result.evidence.embedding is not None, result.verdict
            return "the part looks as expected"

    monkeypatch.setattr(generator_module, "load_generator", lambda variant, **kwargs: NeedsEvidence())
    summary = evaluate_explanations(category, ["adapter"], mode="image-image")
    assert summary["n_test"] == 6 and "error" not in summary["variants"]["adapter"]
