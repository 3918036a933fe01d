"""Our batch-norm-folded EfficientNet-Lite must compute what the reference implementation does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inspect_app.backbones import create_backbone
from inspect_app.backbones.efficientnet_lite import _DEPTH, _STAGES, EfficientNetLiteEncoder, weights_path
from inspect_app.config import BackboneConfig
from inspect_app.errors import ProfileError
from inspect_app.pre_processing import EXPOSURE_MEAN, EXPOSURE_SPREAD


def _stage_end_blocks(variant: str) -> list[int]:
    """Index of the last block of each stage 1..7 in the reference's flat ``_blocks`` list."""
    ends, idx = [], -1
    for stage, (repeats, *_rest) in enumerate(_STAGES, start=1):
        if stage not in (1, len(_STAGES)):
            repeats = int(math.ceil(repeats * _DEPTH[variant]))
        idx += repeats
        ends.append(idx)
    return ends


@pytest.fixture(scope="module")
def lite0_all_stages() -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder("lite0", levels=tuple(range(1, 8)), image_size=128)


def test_matches_reference_implementation_at_every_stage(lite0_all_stages):
    ref_module = pytest.importorskip("efficientnet_lite_pytorch")
    size = 128
    ref = ref_module.EfficientNet.from_name("efficientnet-lite0", image_size=size)
    ref.load_state_dict(torch.load(weights_path("lite0"), weights_only=True))
    ref.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = ref._swish(ref._bn0(ref._conv_stem(x)))
        blocks = []
        for block in ref._blocks:
            h = block(h)
            blocks.append(h)
    ours = lite0_all_stages.encode(x).levels
    ends = _stage_end_blocks("lite0")
    assert len(ours) == 7
    for stage, (out, end) in enumerate(zip(ours, ends, strict=True), start=1):
        expected = blocks[end]
        assert out.shape == expected.shape, f"stage {stage}"
        diff = (out - expected).abs().max().item()
        assert diff < 1e-3, f"stage {stage}: max abs diff {diff}"
    # guard against a vacuous comparison: features are far from zero
    assert blocks[ends[-1]].abs().mean() > 0.1


def test_levels_shapes_strides_channels():
    enc = EfficientNetLiteEncoder("lite0", levels=(5, 3), image_size=64)
    assert enc.levels == (3, 5)
    assert enc.channels == [40, 112]
    assert enc.strides == [8, 16]
    assert len(enc.stages) == 5  # nothing beyond the deepest requested stage is built
    out = enc.encode(torch.zeros(2, 3, 64, 64))
    assert [tuple(t.shape) for t in out.levels] == [(2, 40, 8, 8), (2, 112, 4, 4)]
    assert tuple(out.global_embedding.shape) == (2, 152)
    np.testing.assert_allclose(out.global_embedding[:, :40].numpy(), out.levels[0].mean(dim=(2, 3)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_encoder_is_frozen():
    enc = EfficientNetLiteEncoder("lite0", levels=(3,), image_size=64)
    assert not enc.training
    assert all(not p.requires_grad for p in enc.parameters())


def test_prepare_resizes_and_normalises():
    enc = EfficientNetLiteEncoder("lite0", levels=(3,), image_size=64)
    images = [np.zeros((40, 90, 3), np.uint8), np.full((300, 200, 3), 255, np.uint8)]
    batch = enc.prepare(images)
    assert tuple(batch.shape) == (2, 3, 64, 64)
    assert torch.allclose(batch[0], torch.full_like(batch[0], -1.0))  # (0 - 0.5) / 0.5
    assert torch.allclose(batch[1], torch.full_like(batch[1], 1.0))


def test_standardised_exposure_evens_out_brightness_and_contrast():
    enc = EfficientNetLiteEncoder("lite0", levels=(3,), image_size=64)
    texture = np.random.default_rng(0).normal(110, 30, (64, 64)).clip(0, 255)
    dim = (texture * 0.5 + 20).astype(np.uint8)  # the same part at another exposure
    grey = [np.repeat(t.astype(np.uint8)[..., None], 3, axis=2) for t in (texture, dim)]
    as_is, standardised = enc.prepare(grey), enc.prepare(grey, exposure=True)
    assert (as_is[0] - as_is[1]).abs().mean() > 0.2
    assert (standardised[0] - standardised[1]).abs().mean() < 0.03
    pixels = standardised * 0.5 + 0.5  # back to 0..1
    assert abs(float(pixels.mean()) - EXPOSURE_MEAN / 255) < 0.01
    assert abs(float(pixels.std()) - EXPOSURE_SPREAD / 255) < 0.01
    flat = enc.prepare([np.full((64, 64, 3), 7, np.uint8)], exposure=True)  # no spread to stretch
    assert torch.allclose(flat, torch.full_like(flat, EXPOSURE_MEAN / 127.5 - 1), atol=1e-6)


def test_fingerprint_names_variant_and_weights():
    a = create_backbone(BackboneConfig(variant="lite0", levels=(3,), image_size=64))
    b = create_backbone(BackboneConfig(variant="lite0", levels=(3,), image_size=64, pretrained="none"))
    assert "lite0" in a.fingerprint and "imagenet" in a.fingerprint
    assert "random" in b.fingerprint and a.fingerprint != b.fingerprint
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fa, fb = a.encode(x).levels[0], b.encode(x).levels[0]
    assert fa.shape == fb.shape
    assert (fa - fb).abs().max() > 0.1


def test_lite1_has_deeper_stages_but_same_interface():
    enc = EfficientNetLiteEncoder("lite1", levels=(3, 5), image_size=64)
    assert "lite1" in enc.fingerprint
    assert enc.channels == [40, 112]
    assert sum(len(s) for s in enc.stages) > sum(len(s) for s in EfficientNetLiteEncoder("lite0", (3, 5), 64).stages)


@pytest.mark.parametrize("kwargs, match", [
    ({"levels": (0,)}, "levels"),
    ({"levels": (8,)}, "levels"),
    ({"levels": ()}, "levels"),
    ({"image_size": 100}, "multiple of 32"),
    ({"variant": "lite9"}, "unknown"),
])
def test_bad_settings_are_profile_errors(kwargs, match):
    args = {"variant": "lite0", "levels": (3,), "image_size": 64, **kwargs}
    with pytest.raises(ProfileError, match=match):
        EfficientNetLiteEncoder(**args)
