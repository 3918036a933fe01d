"""Coreset, nearest-neighbour distances, patch aggregation and blur of the image-image decoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inspect_app.decoders.coreset import greedy_coreset
from inspect_app.decoders.image_image import ImageImageDecoder, aggregate_patches, nearest_distances, smooth_upsample
from inspect_app.post_processing.kinds import BankStatistics, kind_features


def _blobs(n_per: int = 200, dim: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Five tight, well separated gaussian clusters; returns (features, cluster label per row)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, dim, generator=g) * 20
    feats = torch.cat([c + 0.1 * torch.randn(n_per, dim, generator=g) for c in centres])
    labels = torch.arange(5).repeat_interleave(n_per)
    return feats, labels


# ---------------------------------------------------------------- coreset


@pytest.mark.parametrize("projection_dim", [0, 8])
def test_coreset_picks_one_point_per_cluster(projection_dim: int):
    feats, labels = _blobs()
    idx = greedy_coreset(feats, 5, projection_dim=projection_dim, seed=3)
    assert idx.shape == (5,) and idx.dtype == torch.long
    assert sorted(labels[idx].tolist()) == [0, 1, 2, 3, 4]


def test_coreset_indices_are_distinct_and_in_range():
    feats = torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
    idx = greedy_coreset(feats, 50, projection_dim=8)
    assert len(set(idx.tolist())) == 50
    assert int(idx.min()) >= 0 and int(idx.max()) < 300


def test_coreset_clamps_selection_size():
    feats = torch.randn(10, 4, generator=torch.Generator().manual_seed(2))
    assert len(greedy_coreset(feats, 100)) == 10
    assert len(greedy_coreset(feats, 0)) == 1


def test_coreset_is_deterministic_per_seed():
    feats = torch.randn(500, 16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(greedy_coreset(feats, 20, seed=7), greedy_coreset(feats, 20, seed=7))


def test_coreset_extension_avoids_existing_centres():
    feats, labels = _blobs()
    # clusters 0-2 are already covered by the existing bank: the 2 new picks must be in 3 and 4
    initial = torch.stack([feats[labels == k][0] for k in range(3)])
    idx = greedy_coreset(feats, 2, projection_dim=0, initial=initial)
    assert sorted(labels[idx].tolist()) == [3, 4]


def test_coreset_max_distance_shrinks_versus_random():
    """k-center property: the covering radius of the greedy pick beats a random subset."""
    feats = torch.randn(2000, 8, generator=torch.Generator().manual_seed(5))
    greedy = feats[greedy_coreset(feats, 40, projection_dim=0)]
    random = feats[torch.randperm(2000, generator=torch.Generator().manual_seed(6))[:40]]
    assert nearest_distances(feats, greedy).max() < nearest_distances(feats, random).max()


# ---------------------------------------------------------------- nearest distances


def test_nearest_distances_equal_brute_force():
    g = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(700, 24, generator=g), torch.randn(300, 24, generator=g)
    expected = torch.cdist(queries, bank).amin(1)
    got = nearest_distances(queries, bank, chunk=128)  # several chunks, last one partial
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_nearest_distance_near_zero_for_bank_members():
    bank = torch.randn(50, 8, generator=torch.Generator().manual_seed(1)) * 10
    pairwise = torch.cdist(bank, bank) + torch.eye(50) * 1e9
    # float32 |q|^2 - 2 q.b + |b|^2 cancels to ~1e-4 of |q|^2, far below any real gap
    assert nearest_distances(bank, bank).max() < 1e-3 * pairwise.min() + 0.05


# ---------------------------------------------------------------- aggregation and decoder


def test_aggregate_patches_brings_levels_to_finest_grid():
    fine, coarse = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)
    out = aggregate_patches([fine, coarse], kernel=3)
    assert tuple(out.shape) == (2, 10, 8, 8)
    # kernel 1: no averaging, the fine level passes through unchanged
    torch.testing.assert_close(aggregate_patches([fine, coarse], kernel=1)[:, :4], fine)


def test_aggregate_patches_averages_neighbourhood():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 9.0
    out = aggregate_patches([x], kernel=3)
    assert out[0, 0, 1, 1].item() == pytest.approx(1.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.0)


def test_patch_scores_flag_the_unusual_patch():
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(6, 16, 8, 8, generator=g) * 0.1 + 1.0
    decoder = ImageImageDecoder(16, coreset_ratio=1.0)
    decoder.fit(normal, n_images=6)
    query = torch.randn(1, 16, 8, 8, generator=g) * 0.1 + 1.0
    query[0, :, 2, 5] = -3.0  # one patch unlike anything in the bank
    scores = decoder.patch_scores(query)
    assert tuple(scores.shape) == (1, 8, 8)
    flat = scores.flatten()
    assert int(flat.argmax()) == 2 * 8 + 5
    others = torch.cat([flat[: 2 * 8 + 5], flat[2 * 8 + 6:]])
    assert flat.max() > 5 * others.max()


def test_fit_uses_coreset_for_many_images_and_keeps_all_for_few():
    g = torch.Generator().manual_seed(1)
    many = torch.randn(20, 8, 4, 4, generator=g)
    full = ImageImageDecoder(8, coreset_ratio=0.1, projection_dim=4)
    full.fit(many, n_images=20)
    assert full.memory_bank.shape == (32, 8)  # 10% of 320 patches
    few = ImageImageDecoder(8, coreset_ratio=0.1)
    few.fit(many[:5], n_images=5)
    assert few.memory_bank.shape == (80, 8)


def test_extend_adds_new_patches():
    g = torch.Generator().manual_seed(2)
    decoder = ImageImageDecoder(8, coreset_ratio=0.1, projection_dim=4)
    decoder.fit(torch.randn(20, 8, 4, 4, generator=g), n_images=20)
    before = decoder.memory_bank.shape[0]
    far = torch.randn(5, 8, 4, 4, generator=g) + 50.0
    assert decoder.patch_scores(far).min() > 40
    decoder.extend(far)
    assert decoder.memory_bank.shape[0] == before + 8
    assert decoder.patch_scores(far).median() < 10


def test_decoder_before_fit_raises():
    with pytest.raises(RuntimeError, match="before fit"):
        ImageImageDecoder(4).patch_scores(torch.zeros(1, 4, 2, 2))


# ---------------------------------------------------------------- upsampling and blur


def _upsample_then_blur(maps: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """The definition smooth_upsample must match: bilinear upsampling, then a 2-D Gaussian
    convolution over reflect-padded maps."""
    up = F.interpolate(maps.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    radius = int(math.ceil(4 * sigma))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(xs**2) / (2 * sigma**2))
    kernel = torch.outer(g, g) / g.sum() ** 2
    padded = F.pad(up, (radius,) * 4, mode="reflect")
    return F.conv2d(padded, kernel.view(1, 1, *kernel.shape)).squeeze(1)


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 20, 28)])
def test_smooth_upsample_equals_upsampling_then_blurring(shape):
    maps = torch.rand(*shape) * 5
    torch.testing.assert_close(smooth_upsample(maps, (128, 128), 4.0), _upsample_then_blur(maps, 128, 4.0),
                               rtol=1e-5, atol=1e-5)


def test_smooth_upsample_spreads_a_spike_but_keeps_it_centred():
    maps = torch.zeros(1, 16, 16)
    maps[0, 8, 4] = 1.0
    out = smooth_upsample(maps, (64, 64), 2.0)[0]
    peak = divmod(int(out.argmax()), 64)
    assert abs(peak[0] - 33.5) <= 1.5 and abs(peak[1] - 17.5) <= 1.5, peak
    assert out.max() < 0.5


def test_smooth_upsample_without_blur_is_bilinear_upsampling():
    maps = torch.randn(2, 8, 8)
    expected = F.interpolate(maps.unsqueeze(1), size=(32, 32), mode="bilinear", align_corners=False).squeeze(1)
    torch.testing.assert_close(smooth_upsample(maps, (32, 32), 0.0), expected, rtol=1e-5, atol=1e-6)


def test_kind_features_search_only_the_needed_patches_and_scoring_keeps_its_patches():
    """Scoring hands its aggregated patches to kind naming with unchanged scores; the difference half
    is each needed patch minus its nearest bank row, and zero where no search was asked for; the
    bank's statistics are computed once per bank."""
    torch.manual_seed(0)
    levels = [torch.randn(2, 4, 6, 6), torch.randn(2, 3, 3, 3)]
    decoder = ImageImageDecoder(7, coreset_ratio=0.5)
    decoder.fit(aggregate_patches([torch.randn(3, 4, 6, 6), torch.randn(3, 3, 3, 3)]), 3)
    scores, patches = decoder.scores_and_patches(levels)
    assert torch.allclose(scores, decoder(levels)) and torch.equal(patches, aggregate_patches(levels))
    needed = np.zeros((1, 6, 6), bool)
    needed[0, 2, 3] = True
    bank, statistics = decoder.memory_bank.numpy(), BankStatistics()
    features = kind_features(patches[1:].numpy(), bank, statistics, needed)
    assert features.shape == (1, 14, 6, 6)
    patch = patches[1, :, 2, 3]
    nearest = decoder.memory_bank[torch.cdist(patch[None], decoder.memory_bank).argmin()]
    assert np.allclose(features[0, 7:, 2, 3], (patch - nearest).numpy(), atol=1e-5)
    assert np.abs(features[0, 7:]).sum() == np.abs(features[0, 7:, 2, 3]).sum()  # nothing else searched
    standardised = (patch - decoder.memory_bank.mean(0)) / decoder.memory_bank.std(0)
    assert np.allclose(features[0, :7, 2, 3], standardised.numpy(), atol=1e-5)
    assert statistics(bank)[0] is statistics(decoder.memory_bank.numpy())[0]  # the same bank: cached
    decoder.set_bank(decoder.memory_bank[:-1])
    assert statistics(decoder.memory_bank.numpy())[2].shape == (len(bank) - 1,)  # a new bank: computed again
