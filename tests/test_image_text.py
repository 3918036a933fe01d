"""The image-text decoder, fusion and decoder modes (fit once in fused mode, predict in each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ImageFactory, paste_blob

from inspect_app.config import BackboneConfig, ImageTextConfig, InspectorConfig
from inspect_app.decoders.fusion import DecoderStats, fuse
from inspect_app.decoders.image_text import ImageTextDecoder, TrainingSet, train_image_text_decoder
from inspect_app.errors import ProfileError
from inspect_app.inspector import Inspector
from inspect_app.synthesis.vocabulary import DEFECT_KINDS


def _fused_config(**overrides) -> InspectorConfig:
    return InspectorConfig(mode="fused", backbone=BackboneConfig(image_size=128),
                           image_text=ImageTextConfig(steps=120, synthetic_per_image=4, max_synthetic=48), **overrides)


@pytest.fixture(scope="module")
def fused_inspector(tmp_path_factory):
    import os

    os.environ["INSPECT_APP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    inspector = Inspector(_fused_config(), product="gradient")
    report = inspector.fit(ImageFactory(seed=7).goods(12))
    return inspector, report


def test_decoder_learns_to_separate_marked_patches():
    """On features where 'defect' patches carry a shifted channel, training must raise their
    anomaly probability above the normal patches'."""
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = 48, 8, 6, 6
    feats = torch.randn(n, c, h, w, generator=gen)
    masks = torch.zeros(n, h, w)
    masks[n // 2:, 2:4, 2:4] = 1
    feats[:, 0] += 4 * masks
    kinds = torch.tensor([0] * (n // 2) + [1] * (n // 2))
    text = torch.nn.functional.normalize(torch.randn(3, 16, generator=gen), dim=-1)
    decoder = ImageTextDecoder([c], text, ["crack", "hole"], kernel=1)
    decoder.set_feature_stats([feats])
    history = train_image_text_decoder(decoder, TrainingSet([feats], masks, kinds), steps=150, batch_size=8)
    assert history[-1] < history[0]
    anomaly, posteriors = decoder.maps([feats])
    assert anomaly[masks > 0.5].mean() > anomaly[masks < 0.5].mean() + 0.3
    assert posteriors.shape == (n, 2, h, w)
    assert torch.allclose(posteriors.sum(1), torch.ones(n, h, w), atol=1e-4)


def test_fuse_is_monotone_in_each_map_and_weighted_towards_image_image():
    stats = DecoderStats(log_mean=0.0, log_std=1.0)
    base = torch.full((1, 4, 4), 1.0)
    higher = base.clone()
    higher[0, 0, 0] = 5.0
    assert fuse(higher, base, stats, stats)[0, 0, 0] > fuse(base, base, stats, stats)[0, 0, 0]
    assert fuse(base, higher, stats, stats)[0, 0, 0] > fuse(base, base, stats, stats)[0, 0, 0]
    assert fuse(higher, base, stats, stats)[0, 0, 0] > fuse(base, higher, stats, stats)[0, 0, 0]
    assert (fuse(base, base, stats, stats) > 0).all()


def test_fused_fit_supports_three_modes_and_labels_regions(fused_inspector):
    inspector, report = fused_inspector
    assert report.modes == ["image-image", "image-text", "fused"]
    assert len(report.training_loss) >= 2 and report.training_loss[-1] < report.training_loss[0]
    defective = paste_blob(ImageFactory(seed=8).good(), 90, 30, radius=12)
    good = ImageFactory(seed=9).good()
    for mode in report.modes:
        bad_result, good_result = inspector.predict([defective, good], mode=mode)
        assert bad_result.mode == mode
        assert bad_result.score is not None and good_result.score is not None
    fused_bad = inspector.predict(defective, mode="fused")
    assert fused_bad.verdict == "FAIL"
    assert fused_bad.regions and fused_bad.regions[0].defect_type in DEFECT_KINDS
    assert 0 < fused_bad.regions[0].defect_probability <= 1
    assert inspector.predict(defective, mode="image-image").regions[0].defect_type is None


def test_fused_profile_round_trip(fused_inspector, models_dir):
    inspector, _ = fused_inspector
    inspector.save(models_dir)
    image = paste_blob(ImageFactory(seed=10).good(), 40, 90, radius=10)
    for mode in ("image-image", "image-text", "fused"):
        loaded = Inspector.load("gradient", models_dir, mode=mode)
        assert loaded.predict(image).score == pytest.approx(inspector.predict(image, mode=mode).score, abs=1e-5)


def test_image_image_profile_refuses_text_modes(fitted_inspector, models_dir):
    fitted_inspector.save(models_dir)
    with pytest.raises(ProfileError, match="supports image-image"):
        Inspector.load("gradient", models_dir, mode="fused")
    with pytest.raises(ProfileError, match="refit with --mode image-text"):
        fitted_inspector.predict(np.zeros((64, 64, 3), np.uint8), mode="image-text")


def test_zero_shot_needs_openclip():
    with pytest.raises(ProfileError, match="OpenCLIP"):
        Inspector(InspectorConfig(mode="zero-shot"), product="x").fit(ImageFactory(seed=1).goods(3))


def test_interrupted_training_leaves_no_profile(monkeypatch, models_dir, tmp_path):
    import inspect_app.inspector as inspector_module

    monkeypatch.setenv("INSPECT_APP_CACHE_DIR", str(tmp_path / "cache"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inspector_module, "train_image_text_decoder", interrupted)
    inspector = Inspector(_fused_config(), product="gradient")
    with pytest.raises(KeyboardInterrupt):
        inspector.fit(ImageFactory(seed=3).goods(12))
    assert not inspector.is_fitted
    assert list(models_dir.iterdir()) == []
