"""The image-text decoder, fusion and decoder modes (fit once in fused mode, predict in each)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspect_app.config import BackboneConfig, ImageTextConfig, InspectorConfig
from inspect_app.decoders.fusion import Fusion
from inspect_app.decoders.image_text import ImageTextDecoder, TrainingSet, anomaly_odds, train_image_text_decoder
from inspect_app.errors import ProfileError
from inspect_app.inspector import Inspector
from inspect_app.post_processing.calibration import calibrate_threshold
from inspect_app.vocabulary import DEFECT_KINDS

from conftest import ImageFactory, paste_blob


def _fused_config(**overrides) -> InspectorConfig:
    settings = {"mode": "fused", "backbone": BackboneConfig(image_size=128, choose_input=False),
                "image_text": ImageTextConfig(steps=120, synthetic_per_image=4, max_synthetic=48), **overrides}
    return InspectorConfig(**settings)


@pytest.fixture(scope="module")
def fused_inspector(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # the text-embedding cache of this module only
        patch.setenv("INSPECT_APP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
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
    decoder = ImageTextDecoder([c], text, ["crack", "hole"])
    decoder.set_feature_stats([feats])
    history = train_image_text_decoder(decoder, TrainingSet([feats], masks, kinds), steps=150, batch_size=8)
    assert history[-1] < history[0]
    anomaly, posteriors = decoder.maps([feats])
    assert anomaly[masks > 0.5].mean() > anomaly[masks < 0.5].mean() + 0.3
    assert posteriors.shape == (n, 2, h, w)
    assert torch.allclose(posteriors.sum(1), torch.ones(n, h, w), atol=1e-4)


@pytest.mark.parametrize("channels", [[6, 20], [40]])  # narrower than the text space, and wider
def test_cosines_equal_those_of_the_explicit_projection(channels):
    """The decoder scores a patch without forming its D-channel projection when C < D (the Gram
    form): logits and every parameter's gradient must equal those of projecting, normalising and
    taking the products with the texts directly."""
    gen = torch.Generator().manual_seed(3)
    text = torch.randn(4, 24, generator=gen)
    decoder = ImageTextDecoder(channels, text, ["crack", "hole", "stain"])
    levels = [torch.randn(5, c, 8 // (i + 1), 8 // (i + 1), generator=gen) * 2 + 1 for i, c in enumerate(channels)]
    decoder.set_feature_stats(levels)
    for seq in decoder.projections:  # biases away from zero, so their terms count
        torch.nn.init.normal_(seq[1].bias, std=0.5, generator=gen)

    def explicit() -> torch.Tensor:
        total = torch.zeros(())
        for feat, seq in zip(decoder._prepare(levels), decoder.projections, strict=True):
            emb = torch.nn.functional.normalize(seq(feat), dim=1)
            logits = torch.einsum("bdhw,kd->bkhw", emb, decoder.text) / decoder.log_temperature.exp()
            total = total + torch.nn.functional.interpolate(logits, size=levels[0].shape[-2:], mode="bilinear",
                                                            align_corners=False)
        return total / len(channels)

    params = list(decoder.parameters())
    reference, logits = explicit(), decoder(levels)
    assert torch.allclose(logits, reference, atol=1e-5, rtol=1e-4)
    for want, got in zip(torch.autograd.grad(reference.sin().sum(), params),
                         torch.autograd.grad(logits.sin().sum(), params), strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_image_text_threshold_stays_reachable_when_good_probabilities_spread_over_decades():
    """Bottle's 42 held-out good parts (a fused fit, 2026-12-02) scored 0.0005 to 0.38; a log-normal
    bound on these probabilities lies above 1 (no part could fail), on their odds below 1."""
    good = np.array([0.001217, 0.07276, 0.02323, 0.009525, 0.1004, 0.0005726, 0.0008443, 0.04628, 0.001736,
                     0.05035, 0.03898, 0.0005572, 0.0004921, 0.0007453, 0.0008964, 0.002962, 0.383, 0.002848,
                     0.003906, 0.007853, 0.0004986, 0.02011, 0.0957, 0.006608, 0.02025, 0.2819, 0.001298, 0.136,
                     0.01536, 0.0005766, 0.08591, 0.001091, 0.0005594, 0.03077, 0.03656, 0.1357, 0.009905,
                     0.1324, 0.001098, 0.00252, 0.0005673, 0.02173])
    assert calibrate_threshold(good, 0.01, "holdout").raw_threshold > 1
    odds = calibrate_threshold(anomaly_odds(torch.from_numpy(good)).numpy(), 0.01, "holdout").raw_threshold
    assert 0.3 < odds / (1 + odds) < 0.95
    assert anomaly_odds(torch.tensor([0.0, 0.5, 1.0])).tolist()[:2] == [0.0, 1.0]
    assert torch.isfinite(anomaly_odds(torch.tensor([1.0]))).all()


def test_fusion_is_monotone_in_each_map_and_weighted_towards_image_image():
    fusion = Fusion()
    fusion.set_stats((0.0, 1.0), (0.0, 1.0))
    base = torch.full((1, 4, 4), 1.0)
    higher = base.clone()
    higher[0, 0, 0] = 5.0
    assert fusion(higher, base)[0, 0, 0] > fusion(base, base)[0, 0, 0]
    assert fusion(base, higher)[0, 0, 0] > fusion(base, base)[0, 0, 0]
    assert fusion(higher, base)[0, 0, 0] > fusion(base, higher)[0, 0, 0]
    assert (fusion(base, base) > 0).all()
    assert set(dict(fusion.named_buffers())) == {"log_mean", "log_std"}  # saved with the model


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
    assert fused_bad.regions
    assert set(inspector.kinds) == set(DEFECT_KINDS)  # named only above the bar (tests/test_kinds.py)
    for region in fused_bad.regions + inspector.predict(defective, mode="image-image").regions:
        assert region.defect_type is None or region.defect_type in DEFECT_KINDS
        assert (region.defect_probability is None) == (region.defect_type is None)


def test_same_seed_same_image_text_decoder(fused_inspector):
    """A second fit with the same seed, after the global RNG has moved on, gives the same weights."""
    inspector, _ = fused_inspector
    torch.manual_seed(12345)
    again = Inspector(_fused_config(), product="gradient")
    again.fit(ImageFactory(seed=7).goods(12))
    for name, value in inspector.model.image_text.state_dict().items():
        assert torch.equal(value, again.model.image_text.state_dict()[name]), name


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


def test_interrupted_refit_keeps_the_fitted_model(monkeypatch, tmp_path):
    """Ctrl-C during a refit's training leaves the inspector as it was: same model, same scores."""
    import inspect_app.training as training_module

    monkeypatch.setenv("INSPECT_APP_CACHE_DIR", str(tmp_path / "cache"))
    inspector = Inspector(_fused_config(mode="image-image"), product="gradient")
    inspector.fit(ImageFactory(seed=3).goods(12))
    probe = ImageFactory(seed=4).good()
    before, model = inspector.predict(probe).score, inspector.model

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_module, "train_image_text_decoder", interrupted)
    inspector.config = _fused_config()
    with pytest.raises(KeyboardInterrupt):
        inspector.fit(ImageFactory(seed=3).goods(12))
    assert inspector.model is model and inspector.predict(probe).score == before
    fresh = Inspector(_fused_config(), product="gradient")
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(ImageFactory(seed=3).goods(12))
    assert not fresh.is_fitted
    with pytest.raises(ProfileError, match="not fitted"):
        fresh.save(tmp_path / "models")


@pytest.mark.parametrize("steps", [1, 2, 9, 10, 11, 29, 30, 31])
def test_any_number_of_training_steps_trains(steps):
    """Short runs (``explain``'s ``image_text_steps``, tests) must train, not crash in the schedule."""
    decoder = ImageTextDecoder([4], torch.nn.functional.normalize(torch.randn(2, 8), dim=-1), ["crack"])
    data = TrainingSet([torch.randn(4, 4, 2, 2)], torch.zeros(4, 2, 2), torch.zeros(4, dtype=torch.long))
    history = train_image_text_decoder(decoder, data, steps=steps, batch_size=2)
    assert len(history) >= 1 and all(np.isfinite(history))
