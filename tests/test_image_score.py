"""Leave-one-out calibration of the memory bank, and the ignore mask from fit to saved profile."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from inspect_app.decoders.image_image import ImageImageDecoder
from inspect_app.errors import ImageLoadError
from inspect_app.inspector import Inspector
from inspect_app.post_processing.image_score import image_scores, read_ignore_mask
from tests.conftest import ImageFactory, paste_blob, tiny_config


def test_leave_one_out_equals_a_bank_without_the_image():
    patches = torch.randn(6, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    bank = ImageImageDecoder(8, coreset_ratio=1.0)
    source = bank.fit(patches, 6)
    loo = bank.leave_one_out_scores(patches, source)
    for i in range(6):
        others = ImageImageDecoder(8, coreset_ratio=1.0)
        others.fit(torch.cat([patches[:i], patches[i + 1:]]), 5)
        assert torch.allclose(loo[i], others.patch_scores(patches[i:i + 1])[0], atol=1e-4)
    assert (bank.patch_scores(patches) < 1e-2).all()  # in the bank, an image would score ~0 itself


def test_coreset_bank_remembers_where_its_rows_came_from():
    patches = torch.randn(20, 8, 4, 4, generator=torch.Generator().manual_seed(1))
    bank = ImageImageDecoder(8, coreset_ratio=0.25)
    source = bank.fit(patches, 20)
    assert len(source) == len(bank.memory_bank) == 80
    flat = bank.flatten(patches)
    for row, image in zip(bank.memory_bank[:10], source[:10], strict=True):
        assert torch.equal(row, flat[image * 16:(image + 1) * 16][(flat[image * 16:(image + 1) * 16] == row)
                                                                   .all(1)][0])


def test_image_scores_ignore_the_masked_pixels():
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, 1, 1], maps[1, 6, 6] = 5.0, 3.0
    ignore = np.zeros((8, 8), bool)
    ignore[:4, :4] = True
    assert image_scores(maps).tolist() == [5.0, 3.0]
    assert image_scores(maps, ignore).tolist() == [0.0, 3.0]
    assert image_scores(maps, read_ignore_mask(ignore.astype(np.uint8) * 255, (4, 4))).tolist() == [0.0, 3.0]


def test_ignore_mask_errors_are_clear(tmp_path):
    with pytest.raises(ImageLoadError, match="whole image"):
        read_ignore_mask(np.ones((10, 10), np.uint8), (8, 8))
    (tmp_path / "mask.png").write_bytes(b"not a png")
    with pytest.raises(ImageLoadError, match="not a readable image"):
        read_ignore_mask(str(tmp_path / "mask.png"), (8, 8))
    with pytest.raises(ImageLoadError, match="cannot read"):
        read_ignore_mask(str(tmp_path / "missing.png"), (8, 8))


def test_a_defect_under_the_ignore_mask_does_not_count(tmp_path):
    factory = ImageFactory(seed=40)
    mask = np.zeros((128, 128), np.uint8)
    mask[:, :64] = 255  # the left strip holds a "label" that changes from part to part
    mask_path = tmp_path / "ignore.png"
    cv2.imwrite(str(mask_path), mask)
    inspector = Inspector(tiny_config(), product="masked")
    inspector.fit(factory.goods(12), ignore_mask=str(mask_path))
    hidden = inspector.predict(paste_blob(factory.good(), 16, 64, radius=8))
    shown = inspector.predict(paste_blob(factory.good(), 108, 64, radius=8))
    assert shown.verdict == "FAIL", shown.score
    assert hidden.verdict == "PASS", (hidden.score, np.unravel_index(hidden.anomaly_map.argmax(), (128, 128)))
    assert hidden.anomaly_map[:, :64].max() < 0.2 and not hidden.regions
    unmasked = Inspector(tiny_config(), product="plain")
    unmasked.fit(ImageFactory(seed=40).goods(12))
    assert unmasked.predict(paste_blob(factory.good(), 16, 64, radius=8)).verdict == "FAIL"
    loaded = Inspector.load("masked", inspector.save(tmp_path / "models").parent)
    again = loaded.predict(paste_blob(ImageFactory(seed=41).good(), 16, 64, radius=8))
    assert again.verdict == "PASS"
    assert np.array_equal(loaded.post_processor.ignore_mask, inspector.post_processor.ignore_mask)


def test_the_fit_chooses_its_input_and_records_why(tmp_path):
    from inspect_app.config import BackboneConfig, InspectorConfig
    from inspect_app.self_config import CANDIDATES

    factory = ImageFactory(seed=60)
    wide = [cv2.resize(factory.good(), (256, 64)) for _ in range(6)]
    inspector = Inspector(InspectorConfig(mode="image-image", backbone=BackboneConfig(choose_input=True)), "wide")
    report = inspector.fit(wide)
    choice = report.input_choice
    assert choice is not None and choice.chosen in {c.name for c in CANDIDATES}
    shapes = [c.input_shape for c in choice.candidates]
    assert (256, 256) in shapes and (128, 512) in shapes and len(set(shapes)) == len(shapes)
    assert inspector.input_shape == choice.input_shape
    assert all(0 <= c.synthetic_detection <= 1 for c in choice.candidates)
    loaded = Inspector.load("wide", inspector.save(tmp_path / "models").parent)
    assert loaded.meta["input_choice"]["chosen"] == choice.chosen and loaded.input_shape == choice.input_shape
    square = Inspector(InspectorConfig(mode="image-image"), "square").fit(factory.goods(6)).input_choice
    assert square is not None and square.candidates == [] and square.input_shape == (256, 256)  # nothing to try
    fixed = Inspector(InspectorConfig(mode="image-image", backbone=BackboneConfig(choose_input=False)), "fixed")
    assert fixed.fit(wide).input_choice is None and fixed.input_shape == (256, 256)
