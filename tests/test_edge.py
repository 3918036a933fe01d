"""Exported models (inspect-app export) answer as the torch path does, and what changes a profile
without a refit (learn_good, a new threshold) reaches them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from edge_support import assert_same_answers

from inspect_app.config import BackboneConfig, ImageTextConfig, InspectorConfig
from inspect_app.edge.accelerate import AcceleratedInspector, accelerate
from inspect_app.edge.export import export_inspector, export_product
from inspect_app.edge.inspector import EdgeInspector
from inspect_app.edge.manifest import MANIFEST_FILE, EdgeManifest, GraphFormat
from inspect_app.edge.sessions import Runtime
from inspect_app.errors import ProfileError
from inspect_app.inspector import Inspector
from inspect_app.results import EvidenceFor, Verdict

from conftest import ImageFactory, teach_two_kinds, tiny_config


def _test_images(seed: int = 21) -> list[np.ndarray]:
    """Good parts and parts with defects of several sizes and places."""
    factory = ImageFactory(seed=seed)
    return [factory.good(), factory.defective(40, 50), factory.good(), factory.defective(96, 90, radius=12),
            factory.defective(20, 110, radius=5), factory.good()]


@pytest.fixture(autouse=True)
def _edge_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_APP_EDGE_CACHE", str(tmp_path / "edge-cache"))


@pytest.mark.parametrize(("graph_format", "runtime"), [(GraphFormat.OPENVINO, Runtime.OPENVINO),
                                                       (GraphFormat.ONNX, Runtime.ONNX),
                                                       (GraphFormat.ONNX, Runtime.OPENVINO)])
def test_exported_model_answers_as_torch(fitted_inspector, tmp_path, graph_format, runtime):
    images = _test_images()
    reference = fitted_inspector.predict(images)
    assert {r.verdict for r in reference} == {Verdict.PASS, Verdict.FAIL}  # the comparison covers both
    manifest = export_inspector(fitted_inspector, tmp_path / "edge", graph_format)
    assert manifest.input_shape == fitted_inspector.input_shape
    assert manifest.profile_version == fitted_inspector.profile_version
    edge = EdgeInspector.load(tmp_path / "edge", runtime)
    assert_same_answers(reference, edge.predict(images))
    singles = [edge.predict(image) for image in images]  # OpenVINO: the graph compiled for one image
    assert_same_answers(reference, singles)
    assert singles[1].product == "gradient" and singles[1].profile_version == fitted_inspector.profile_version


def test_edge_batch_keeps_order_and_bad_images(fitted_inspector, tmp_path):
    export_inspector(fitted_inspector, tmp_path / "edge", GraphFormat.ONNX)
    edge = EdgeInspector.load(tmp_path / "edge", Runtime.ONNX, batch_size=2)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    images = _test_images()
    results = edge.predict_batch([images[0], bad, images[1]], evidence=EvidenceFor.ALL)
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.ERROR, Verdict.FAIL]
    assert results[1].file == str(bad) and "bad.png" in (results[1].error or "")
    assert results[2].evidence is not None and results[2].evidence.embedding.ndim == 1


def test_fused_graph_with_kinds_answers_as_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECT_APP_CACHE_DIR", str(tmp_path / "cache"))
    config = InspectorConfig(mode="fused", backbone=BackboneConfig(image_size=128),
                             image_text=ImageTextConfig(steps=20, synthetic_per_image=2, max_synthetic=16))
    inspector = Inspector(config, product="fused")
    inspector.fit(ImageFactory(seed=7).goods(12))
    images = _test_images(seed=8)
    reference = inspector.predict(images)
    assert any(r.regions for r in reference)
    export_inspector(inspector, tmp_path / "edge", GraphFormat.ONNX)  # the IR conversion is tested above
    assert_same_answers(reference, EdgeInspector.load(tmp_path / "edge", Runtime.OPENVINO).predict(images))


def test_labelled_kinds_are_named_by_exported_and_accelerated_models(fitted_inspector, tmp_path):
    """Kinds taught after the fit name the same regions on an exported model (the kind book travels
    in its settings) and on the accelerated path (the live book), as on torch; some are named."""
    inspector = copy.deepcopy(fitted_inspector)
    factory = ImageFactory(seed=30)
    teach_two_kinds(inspector, factory)
    images = [make(i) for make in (factory.dark_spot, factory.scratch) for i in (4, 5)]
    reference = inspector.predict(images)
    assert any(r.defect_type for result in reference for r in result.regions), \
        inspector.post_processor.kind_book.bar.basis
    export_inspector(inspector, tmp_path / "edge", GraphFormat.ONNX)
    assert_same_answers(reference, EdgeInspector.load(tmp_path / "edge", Runtime.ONNX).predict(images))
    accelerated = accelerate(inspector, Runtime.OPENVINO)
    assert isinstance(accelerated, AcceleratedInspector)
    assert_same_answers(reference, accelerated.predict(images))


def test_non_square_input_shape_is_exported(tmp_path):
    wide = [cv2.resize(img, (256, 128)) for img in ImageFactory(seed=3).goods(12)]
    backbone = BackboneConfig(image_size=192, keep_aspect=True, choose_input=False)
    inspector = Inspector(InspectorConfig(mode="image-image", backbone=backbone), product="wide")
    inspector.fit(wide)
    height, width = inspector.input_shape
    assert width > height
    manifest = export_inspector(inspector, tmp_path / "edge", GraphFormat.ONNX)
    assert manifest.input_shape == (height, width)
    images = [cv2.resize(img, (256, 128)) for img in _test_images()]
    assert_same_answers(inspector.predict(images),
                        EdgeInspector.load(tmp_path / "edge", Runtime.OPENVINO).predict(images))


def test_a_grayscale_product_standardises_exposure_on_both_paths(tmp_path, models_dir):
    rng = np.random.default_rng(5)

    def grey(image: np.ndarray) -> np.ndarray:  # a grey part at a random exposure
        level = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) * rng.uniform(0.5, 1.2)
        return cv2.cvtColor(level.clip(0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)

    inspector = Inspector(tiny_config(), product="grey")
    report = inspector.fit([grey(img) for img in ImageFactory(seed=4).goods(12)])
    assert report.exposure_standardised and inspector.config.backbone.standardise_exposure
    inspector.save(models_dir)
    assert Inspector.load("grey", models_dir).model.standardise_exposure
    manifest = export_inspector(inspector, tmp_path / "edge", GraphFormat.OPENVINO)
    assert manifest.standardise_exposure
    images = [grey(img) for img in _test_images()]
    edge = EdgeInspector.load(tmp_path / "edge", Runtime.OPENVINO)
    assert_same_answers(inspector.predict(images), edge.predict(images))
    colour = Inspector(tiny_config(), product="colour")
    assert not colour.fit(ImageFactory(seed=4).goods(12)).exposure_standardised


def test_learn_good_and_threshold_reach_the_accelerated_path_without_export(fitted_inspector, models_dir):
    fitted_inspector.save(models_dir)
    inspector = Inspector.load("gradient", models_dir)
    accelerated = accelerate(inspector, Runtime.OPENVINO)
    assert isinstance(accelerated, AcceleratedInspector)
    images = _test_images()
    flagged = images[1]
    assert accelerated.predict(flagged).verdict == Verdict.FAIL
    accelerated.learn_good([flagged])  # the torch Inspector's, through the wrapper
    assert_same_answers(inspector.predict(images), accelerated.predict(images))
    assert accelerated.predict(flagged).verdict == Verdict.PASS
    accelerated.set_target_frr(0.3)
    assert accelerated.calibration == inspector.calibration
    assert_same_answers(inspector.predict(images), accelerated.predict(images))
    assert accelerated.profile_version == inspector.profile_version


def test_a_new_bank_of_the_same_size_reaches_the_openvino_graph(fitted_inspector, tmp_path):
    """The memory bank is fed to the compiled graph, not baked into it: a different bank of the same
    shape (as a profile reload could bring) gives that bank's answers, single images and batches."""
    export_inspector(fitted_inspector, tmp_path / "edge", GraphFormat.OPENVINO)
    edge = EdgeInspector.load(tmp_path / "edge", Runtime.OPENVINO)
    images = _test_images()
    before = [edge.predict(image).raw_score for image in images]
    edge._memory_bank = edge.memory_bank() + 0.5  # a new array, same shape
    reference = copy.deepcopy(fitted_inspector)  # the session's fixture stays as it is
    reference.model.image_image.set_bank(torch.from_numpy(edge.memory_bank()))
    expected = reference.predict(images)
    assert [r.raw_score for r in expected] != pytest.approx(before)
    assert_same_answers(expected, edge.predict(images))
    assert_same_answers(expected, [edge.predict(image) for image in images])


def test_re_export_carries_learnt_parts_and_thresholds(fitted_inspector, models_dir, tmp_path):
    fitted_inspector.save(models_dir)
    export_product("gradient", models_dir, tmp_path / "edge", GraphFormat.ONNX)
    before = EdgeManifest.read(tmp_path / "edge")
    inspector = Inspector.load("gradient", models_dir)
    inspector.learn_good([_test_images()[1]])
    inspector.save(models_dir)
    manifest = export_product("gradient", models_dir, tmp_path / "edge", GraphFormat.ONNX)
    assert manifest.checksums["model.onnx"] == before.checksums["model.onnx"]  # the graph itself did not change
    assert manifest.checksums["memory_bank.npy"] != before.checksums["memory_bank.npy"]
    images = _test_images()
    assert_same_answers(inspector.predict(images), EdgeInspector.load(tmp_path / "edge").predict(images))


def test_damaged_or_foreign_folders_are_refused(fitted_inspector, tmp_path):
    with pytest.raises(ProfileError, match="not an exported model"):
        EdgeInspector.load(tmp_path)
    export_inspector(fitted_inspector, tmp_path / "edge", GraphFormat.ONNX)
    bank = tmp_path / "edge" / "memory_bank.npy"
    np.save(bank, np.zeros((4, 4), np.float32))
    with pytest.raises(ProfileError, match="checksum"):
        EdgeInspector.load(tmp_path / "edge")
    manifest = json.loads((tmp_path / "edge" / MANIFEST_FILE).read_text())
    (tmp_path / "edge" / MANIFEST_FILE).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(ProfileError, match="export the product again"):
        EdgeInspector.load(tmp_path / "edge")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(ProfileError, match="not an exported model"):
        export_inspector(fitted_inspector, tmp_path / "other", GraphFormat.ONNX)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"


def test_onnx_runtime_refuses_an_openvino_export(fitted_inspector, tmp_path):
    from inspect_app.errors import InspectAppError

    export_inspector(fitted_inspector, tmp_path / "edge", GraphFormat.OPENVINO)
    with pytest.raises(InspectAppError, match="--format onnx"):
        EdgeInspector.load(tmp_path / "edge", Runtime.ONNX)


def test_both_inspectors_keep_numpy_blas_on_one_thread(fitted_inspector, tmp_path):
    """OpenBLAS's idle thread spins after post-processing's small dot products and slowed the next
    image's inference 2x on a 2-core station (batching.keep_numpy_blas_on_one_thread)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    export_inspector(fitted_inspector, tmp_path / "edge", GraphFormat.ONNX)
    threadpool_limits(2, user_api="blas")
    assert blas_threads() == {2}
    EdgeInspector.load(tmp_path / "edge", Runtime.ONNX)
    assert blas_threads() == {1}
    threadpool_limits(2, user_api="blas")
    Inspector(InspectorConfig())
    assert blas_threads() == {1}
