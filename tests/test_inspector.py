"""The Inspector end to end on synthetic parts: fit, calibrated verdicts, regions, batches with bad
files, few-shot calibration paths, and save/load."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspect_app.errors import NotEnoughImagesError, ProfileError
from inspect_app.inspector import Inspector, next_profile_version
from inspect_app.results import EvidenceFor, InspectionResult, Verdict

from conftest import SIZE, ImageFactory, good_image, paste_blob, tiny_config

BLOBS = [((26, 26), "top-left"), ((102, 102), "bottom-right"), ((102, 26), "top-right"), ((26, 102), "bottom-left")]


@pytest.fixture(scope="module")
def fresh_goods() -> list[np.ndarray]:
    return ImageFactory(seed=200).goods(10)


@pytest.fixture(scope="module")
def good_results(fitted_inspector, fresh_goods) -> list[InspectionResult]:
    return fitted_inspector.predict(fresh_goods)


def test_fit_report_and_calibration(fitted_inspector):
    cal = fitted_inspector.calibration
    assert fitted_inspector.is_fitted
    assert cal.holdout_method == "in-bank-leave-one-out"
    assert cal.n_normal == 12  # every good image, each scored without its own bank rows
    assert cal.raw_threshold > max(cal.normal_scores)  # 12 normals, 1 % target: extrapolated
    assert fitted_inspector.meta["training"]["count"] == 12


def test_good_parts_pass(good_results):
    verdicts = [r.verdict for r in good_results]
    assert verdicts.count("PASS") >= 9, verdicts  # target false-reject rate is 1 %
    for r in good_results:
        assert 0.0 < r.score < 1.0 and r.threshold == 0.5
        assert r.anomaly_map.shape == (SIZE, SIZE)
        assert (r.verdict == "FAIL") == (r.score > 0.5)
        assert r.image_size == (SIZE, SIZE)


@pytest.mark.parametrize("centre, word", BLOBS)
def test_defect_fails_with_region_at_its_location(fitted_inspector, good_results, centre, word):
    image = paste_blob(ImageFactory(seed=300).good(), *centre, radius=10)
    result = fitted_inspector.predict(image)
    assert result.verdict == "FAIL"
    assert result.score > max(r.score for r in good_results)
    assert result.regions, "a FAIL must come with at least one region"
    top = result.regions[0]
    assert top.location == word
    x0, y0, x1, y1 = top.bbox
    assert x0 <= centre[0] < x1 and y0 <= centre[1] < y1  # the box covers the defect
    assert top.peak_score == pytest.approx(result.score, abs=1e-3)
    # the map is hottest near the defect
    peak_y, peak_x = np.unravel_index(np.argmax(result.anomaly_map), result.anomaly_map.shape)
    assert abs(peak_x - centre[0]) < SIZE / 4 and abs(peak_y - centre[1]) < SIZE / 4


def test_single_image_returns_one_result_and_list_returns_list(fitted_inspector, fresh_goods):
    single = fitted_inspector.predict(fresh_goods[0])
    assert isinstance(single, InspectionResult)
    batch = fitted_inspector.predict(fresh_goods[:3], names=["a", "b", "c"])
    assert [r.file for r in batch] == ["a", "b", "c"]
    assert batch[0].score == pytest.approx(single.score, rel=1e-5)


def test_batch_with_corrupt_files_reports_them_and_goes_on(fitted_inspector, tmp_path: Path):
    factory = ImageFactory(tmp_path, seed=400)
    ok1 = factory.write(tmp_path / "ok1.png", factory.good())
    defect = factory.write(tmp_path / "defect.png", factory.defective(26, 26, radius=10))
    buf = io.BytesIO()
    Image.fromarray(factory.good()).save(buf, format="PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(buf.getvalue()[:300])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    ok2 = factory.write(tmp_path / "ok2.png", factory.good())
    files = [ok1, truncated, defect, empty, ok2, tmp_path / "missing.png"]
    results = fitted_inspector.predict(files)
    assert [Path(r.file).name for r in results] == [p.name for p in files]
    assert [r.verdict for r in results] == ["PASS", "ERROR", "FAIL", "ERROR", "PASS", "ERROR"]
    for r in results:
        if r.verdict == "ERROR":
            assert r.score is None and r.anomaly_map is None
            assert Path(r.file).name in r.error
            assert r.to_dict()["error"] == r.error
        else:
            assert r.error is None and r.score is not None
    assert "truncated" in results[1].error and "empty" in results[3].error


def test_batches_larger_than_batch_size_keep_order(fitted_inspector, fresh_goods):
    defect = paste_blob(fresh_goods[0], 64, 64, radius=10)
    images = list(fresh_goods) + [defect]  # 11 > batch size 8
    results = fitted_inspector.predict(images)
    assert len(results) == 11 and results[-1].verdict == "FAIL"
    assert results[-1].score > max(r.score for r in results[:-1])


def test_result_to_dict_is_json_ready(fitted_inspector):
    import json

    result = fitted_inspector.predict(paste_blob(ImageFactory(seed=5).good(), 64, 64, radius=10), names=["x"])
    data = json.loads(json.dumps(result.to_dict()))
    assert {"file", "verdict", "score", "threshold", "regions", "error"} <= set(data)
    assert data["verdict"] == "FAIL" and data["regions"][0]["location"] == "centre"


def test_save_load_gives_identical_scores(fitted_inspector, fresh_goods, models_dir: Path):
    folder = fitted_inspector.save(models_dir)
    assert folder == models_dir / "gradient"
    loaded = Inspector.load("gradient", models_dir)
    assert loaded.calibration == fitted_inspector.calibration
    images = fresh_goods[:3] + [paste_blob(fresh_goods[3], 26, 102, radius=10)]
    before = fitted_inspector.predict(images)
    after = loaded.predict(images)
    for a, b in zip(before, after, strict=False):
        assert a.verdict == b.verdict
        assert a.score == pytest.approx(b.score, abs=1e-6)
        np.testing.assert_allclose(a.anomaly_map, b.anomaly_map, atol=1e-5)
        assert [r.to_dict() for r in a.regions] == [r.to_dict() for r in b.regions]


def test_unfitted_inspector_refuses_to_predict_or_save(models_dir: Path):
    inspector = Inspector(tiny_config(), product="empty")
    with pytest.raises(ProfileError, match="not fitted"):
        inspector.predict(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ProfileError, match="not fitted"):
        inspector.save(models_dir)


# ---------------------------------------------------------------- few-shot calibration paths


@pytest.mark.parametrize("k_shot, n_available, method", [
    (1, 4, "augmented-views"),
    (3, 6, "leave-one-out"),
    (None, 10, "in-bank-leave-one-out"),
])
def test_calibration_method_follows_image_count(k_shot, n_available, method):
    goods = ImageFactory(seed=500).goods(n_available)
    inspector = Inspector(tiny_config(k_shot=k_shot), product="few")
    report = inspector.fit(goods)
    expected_n = k_shot or n_available
    assert report.n_images == expected_n
    assert method in report.calibration.holdout_method
    assert report.calibration.n_normal >= 2
    defect = inspector.predict(paste_blob(ImageFactory(seed=501).good(), 102, 102, radius=10))
    good = inspector.predict(ImageFactory(seed=502).good())
    assert defect.verdict == "FAIL" and defect.score > good.score


def test_k_shot_draw_is_reproducible_per_seed():
    goods = ImageFactory(seed=600).goods(6, size=64)
    a = Inspector(tiny_config(64, k_shot=2, seed=1)).fit(goods)
    b = Inspector(tiny_config(64, k_shot=2, seed=1)).fit(goods)
    assert a.calibration.raw_threshold == pytest.approx(b.calibration.raw_threshold, rel=1e-6)


def test_k_shot_larger_than_available_raises():
    with pytest.raises(NotEnoughImagesError, match="k-shot 5.*3 available"):
        Inspector(tiny_config(k_shot=5)).fit(ImageFactory(seed=1).goods(3))


def test_no_images_raises(tmp_path: Path):
    with pytest.raises(NotEnoughImagesError, match="at least 1"):
        Inspector(tiny_config()).fit([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotEnoughImagesError):
        Inspector(tiny_config()).fit(tmp_path / "empty")


def test_all_images_unreadable_raises(tmp_path: Path):
    for i in range(3):
        (tmp_path / f"bad{i}.png").write_text("not an image")
    with pytest.raises(NotEnoughImagesError, match="none of the 3 images could be read"):
        Inspector(tiny_config()).fit(tmp_path)


def test_fit_from_folder_skips_unreadable_files(tmp_path: Path):
    factory = ImageFactory(tmp_path, seed=700)
    folder = factory.folder("goods", 3, size=64)
    (folder / "broken.png").write_text("not an image")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    report = Inspector(tiny_config(64), product="folder").fit(folder)
    assert report.n_images == 3
    assert len(report.skipped) == 1 and "broken.png" in report.skipped[0]


def test_fit_skips_image_with_oversized_header(tmp_path: Path):
    """A decompression bomb among the good images is skipped like any unreadable file."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + 20_000 // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(20_000)) + comp.flush()
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 1, 0, 0, 0, 0)) \
        + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    folder = ImageFactory(tmp_path, seed=800).folder("goods", 3, size=64)
    (folder / "bomb.png").write_bytes(bomb)
    report = Inspector(tiny_config(64)).fit(folder)
    assert report.n_images == 3 and "bomb.png" in report.skipped[0]


def test_line_scan_strips_fit_and_predict():
    """Very wide frames (line-scan cameras) are valid images and must not crash fit or predict."""
    rng = np.random.default_rng(900)
    strips = [np.clip(rng.normal(128, 20, (16, 8192, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
    inspector = Inspector(tiny_config(image_size=64))
    inspector.fit(strips)
    assert inspector.predict(strips[0]).verdict in ("PASS", "FAIL")


def test_object_on_plain_background_uses_part_frame():
    """Location words are relative to the part when it stands out from a plain background."""
    rng = np.random.default_rng(1000)

    def part(defect: bool = False) -> np.ndarray:
        image = np.zeros((SIZE, SIZE, 3), np.uint8)
        texture = good_image(rng)
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        inside = (x - 64) ** 2 + (y - 64) ** 2 <= 44 ** 2
        image[inside] = texture[inside]
        if defect:  # top-left of the part, but inside the centre third of the image
            image = paste_blob(image, 44, 44, radius=7, value=250)
        return image

    inspector = Inspector(tiny_config(), product="disc")
    inspector.fit([part() for _ in range(4)])
    assert inspector.post_processor.part_frame == "object"
    result = inspector.predict(part(defect=True))
    assert result.verdict == "FAIL"
    assert result.part_box is not None
    x0, y0, x1, y1 = result.part_box
    assert abs(x0 - 20) <= 4 and abs(x1 - 109) <= 4 and abs(y0 - 20) <= 4 and abs(y1 - 109) <= 4
    assert result.regions[0].location == "top-left"
    good = inspector.predict(part())
    assert good.verdict == "PASS" and good.part_box is None  # only a FAIL's regions need the part found


def test_explanation_evidence_only_on_request(fitted_inspector, fresh_goods):
    """The adapter's inputs ride on a result only when asked for: most results are never explained."""
    defect = paste_blob(fresh_goods[0], 64, 64, radius=10)
    plain = fitted_inspector.predict([fresh_goods[1], defect])
    assert all(r.evidence is None for r in plain)
    fails_only = fitted_inspector.predict([fresh_goods[1], defect], evidence=EvidenceFor.FAILS)
    assert [r.verdict for r in fails_only] == [Verdict.PASS, Verdict.FAIL]
    assert fails_only[0].evidence is None
    assert fails_only[1].evidence is not None and fails_only[1].evidence.embedding.ndim == 1
    every = fitted_inspector.predict([fresh_goods[1], defect], evidence=EvidenceFor.ALL)
    assert all(r.evidence is not None for r in every)


def test_learn_good_accepts_an_approved_false_reject_without_a_refit(tmp_path: Path, models_dir: Path):
    """A good part the product rejects (a new batch with a fine ribbed texture) is learnt: afterwards
    it and parts like it pass, a real defect still fails, and the threshold moved with its score."""
    factory = ImageFactory(seed=31)
    inspector = Inspector(tiny_config(), product="gradient")
    inspector.fit(factory.goods(12))

    def variant(seed: int) -> np.ndarray:  # good parts of a new batch: a fine ribbed surface
        image = good_image(np.random.default_rng(seed)).astype(np.float32)
        image += 40 * np.sin(np.arange(image.shape[1]) / 3.0)[None, :, None]
        return np.clip(image, 0, 255).astype(np.uint8)

    rejected = variant(1)
    assert inspector.predict(rejected).verdict == Verdict.FAIL
    before = inspector.calibration
    version = inspector.profile_version
    calibrations = inspector.learn_good([rejected], names=["false-reject.png"])
    assert calibrations[inspector.mode].raw_threshold >= before.raw_threshold
    assert calibrations[inspector.mode].n_normal == before.n_normal + 1
    assert inspector.predict(rejected).verdict == Verdict.PASS
    assert inspector.predict(variant(2)).verdict == Verdict.PASS
    assert inspector.predict(paste_blob(factory.good(), 64, 64, radius=10)).verdict == Verdict.FAIL
    assert inspector.meta["learned"][0]["name"] == "false-reject.png" and inspector.profile_version >= version
    inspector.save(models_dir)
    reloaded = Inspector.load("gradient", models_dir)
    assert reloaded.predict(rejected).verdict == Verdict.PASS and len(reloaded.meta["learned"]) == 1


def test_profile_versions_differ_even_within_one_millisecond():
    """Teaching a kind or moving a threshold right after a fit must name a new profile: a version
    never repeats or goes back, even when the clock has not moved on (or is behind it)."""
    ahead = "2999-01-01T00:00:00.000+00:00"
    assert next_profile_version(ahead) == "2999-01-01T00:00:00.001+00:00"
    first = next_profile_version(None)
    versions = [first]
    for _ in range(50):
        versions.append(next_profile_version(versions[-1]))
    assert len(set(versions)) == len(versions) and versions == sorted(versions)
