"""OpenCLIP backbone on a tiny random ViT registered for the tests: offline, no downloads."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

open_clip = pytest.importorskip("open_clip")

from inspect_app import Inspector  # noqa: E402
from inspect_app.backbones import create_backbone  # noqa: E402
from inspect_app.backbones.openclip import OpenClipEncoder  # noqa: E402
from inspect_app.config import BackboneConfig, InspectorConfig  # noqa: E402
from inspect_app.errors import ProfileError  # noqa: E402

TINY = "inspect-tiny-vit-openclip-test"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def connections(monkeypatch) -> list:
    """Registered tiny model, Hub offline, and no connection can open: each attempt is refused and
    recorded (the encoder may catch the error, so tests check the record)."""
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY, TINY_CFG)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert not attempts, "network access attempted"


def textures(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def tiny(pretrained: str | None = "none", levels=(1, 2, 3), image_size: int = 64, seed: int = 0) -> OpenClipEncoder:
    return OpenClipEncoder(TINY, pretrained, levels, image_size, seed=seed)


def test_shapes_and_preprocessing():
    enc = tiny(levels=(3, 1))
    out = enc.encode(enc.prepare(textures(2)))
    assert enc.levels == (1, 3) and enc.channels == [64, 64] and enc.strides == [16, 16]
    assert [tuple(level.shape) for level in out.levels] == [(2, 64, 4, 4)] * 2
    assert out.global_embedding.shape == (2, 32)
    assert torch.allclose(out.global_embedding.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert enc.mean == open_clip.OPENAI_DATASET_MEAN and enc.std == open_clip.OPENAI_DATASET_STD
    assert enc.model_name == TINY and not any(p.requires_grad for p in enc.parameters())


def test_levels_are_the_requested_blocks_and_embedding_is_clip_space():
    enc = tiny()
    x = enc.prepare(textures(2))
    out = enc.encode(x)
    a, b, c = out.levels
    assert not torch.allclose(a, b, atol=1e-3) and not torch.allclose(b, c, atol=1e-3)
    # Block 2's patch tokens, recomputed by hand from the open_clip modules.
    visual = enc.model.visual
    with torch.inference_mode():
        tokens = visual._embeds(x)
        for block in visual.transformer.resblocks[:2]:
            tokens = block(tokens)
        expected = tokens[:, 1:].reshape(2, 4, 4, 64).permute(0, 3, 1, 2)
        clip_embedding = enc.model.encode_image(x, normalize=True)
        for block in visual.transformer.resblocks[2:]:
            tokens = block(tokens)
    assert torch.allclose(b, expected, atol=1e-5)
    assert torch.allclose(out.global_embedding, clip_embedding, atol=1e-5)
    # The joint projection maps the final class token to the same CLIP embedding.
    weight, bias, proj = enc.joint_projection()
    assert weight.shape == bias.shape == (64,) and proj.shape == (64, 32)
    joint = F.layer_norm(tokens[:, 0], (64,), weight, bias) @ proj
    assert torch.allclose(F.normalize(joint, dim=-1), out.global_embedding, atol=1e-5)


def test_batch_consistency():
    enc = tiny()
    x = enc.prepare(textures(3))
    together = enc.encode(x)
    for i in range(3):
        alone = enc.encode(x[i:i + 1])
        for t, a in zip(together.levels, alone.levels, strict=True):
            assert torch.allclose(t[i:i + 1], a, atol=1e-5)
        assert torch.allclose(together.global_embedding[i], alone.global_embedding[0], atol=1e-5)


def test_random_init_is_seeded_and_fingerprinted():
    x = tiny().prepare(textures(1))
    first, again, none_obj, other = tiny(seed=0), tiny(seed=0), tiny(pretrained=None), tiny(seed=1)
    assert first.fingerprint == again.fingerprint == none_obj.fingerprint
    assert "random" in first.fingerprint
    assert torch.equal(first.encode(x).levels[0], again.encode(x).levels[0])
    assert other.fingerprint != first.fingerprint
    assert not torch.allclose(other.encode(x).levels[0], first.encode(x).levels[0])
    assert tiny(image_size=96).fingerprint != first.fingerprint


def test_local_checkpoints_load_safely(tmp_path):
    source = tiny(seed=3)
    state = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    safe, pt = tmp_path / "tiny.safetensors", tmp_path / "tiny.pt"
    save_file(state, str(safe))
    torch.save(state, pt)
    x = source.prepare(textures(2))
    expected = source.encode(x)
    for path in (safe, pt):
        loaded = tiny(pretrained=str(path))
        got = loaded.encode(x)
        assert torch.allclose(got.levels[2], expected.levels[2], atol=1e-6)
        assert torch.allclose(got.global_embedding, expected.global_embedding, atol=1e-6)
        assert f"file:{path.name}" in loaded.fingerprint
        assert loaded.fingerprint.split(":")[-1] == source.fingerprint.split(":")[-1]  # same weights digest
        assert loaded.fingerprint != tiny(seed=0).fingerprint

    # A pickle that is not plain tensors is refused by weights_only loading.
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": state, "extra": object()}, evil)
    with pytest.raises(ProfileError, match="weights_only") as refused:
        tiny(pretrained=str(evil))
    assert "\n" not in str(refused.value)


def test_non_native_image_size_interpolates_positional_embedding(tmp_path):
    source = tiny(seed=3)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    big = tiny(pretrained=str(path), image_size=96)
    assert big.native_image_size == 64 and big.image_size == 96
    assert big.model.visual.positional_embedding.shape == (37, 64)
    assert torch.equal(big.model.visual.positional_embedding[0], source.model.visual.positional_embedding[0])
    out = big.encode(big.prepare(textures(2, size=80)))
    assert [tuple(level.shape) for level in out.levels] == [(2, 64, 6, 6)] * 3


def test_bad_configuration_is_a_clear_error(tmp_path):
    with pytest.raises(ProfileError, match="unknown OpenCLIP model"):
        OpenClipEncoder("ViT-B-61", "none", (1,), 224)
    with pytest.raises(ProfileError, match="ViT"):
        OpenClipEncoder("RN50", "none", (1,), 224)
    with pytest.raises(ProfileError, match="block numbers 1..3"):
        tiny(levels=(0, 2))
    with pytest.raises(ProfileError, match="block numbers 1..3"):
        tiny(levels=(4,))
    with pytest.raises(ProfileError, match="multiple of its patch size 16"):
        tiny(image_size=70)
    with pytest.raises(ProfileError, match="not found"):
        tiny(pretrained=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ProfileError, match="neither a pretrained tag"):
        tiny(pretrained="laion9000_no_such_tag")


def test_cached_tag_loads_offline_with_its_preprocessing(tmp_path, monkeypatch, connections):
    """A tag already in the Hub cache loads offline; its mean/std and QuickGELU are honoured."""
    import huggingface_hub.constants

    source = tiny(seed=5)
    snapshot = tmp_path / "hub" / "models--inspect--tiny-clip" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()},
              str(snapshot / "open_clip_model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # only the variable says offline
    tag = {"hf_hub": "inspect/tiny-clip/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "quick_gelu": True}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY, {"tinytag": tag})

    enc = tiny(pretrained="tinytag")
    assert enc.mean == (0.5, 0.5, 0.5) and enc.std == (0.25, 0.25, 0.25)
    assert type(enc.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert ":tinytag:" in enc.fingerprint
    assert enc.fingerprint.split(":")[-1] == source.fingerprint.split(":")[-1]
    assert connections == []


def test_uncached_tag_fails_at_once_when_offline(tmp_path, monkeypatch, connections):
    """A real tag with an empty Hub cache and HF_HUB_OFFLINE=1 set after huggingface_hub was
    imported (it reads the variable once): no connection attempt, a ProfileError that says what to do."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ProfileError, match="HF_HUB_OFFLINE") as missing:
        OpenClipEncoder("ViT-B-32", "openai", (6, 12), 224)
    assert connections == [] and "\n" not in str(missing.value)


@pytest.mark.parametrize("mode", ["image-image", "fused", "zero-shot"])
def test_inspector_end_to_end(mode, models_dir):
    """Fit, predict, save and reload with the tiny random backbone. Only the image-image scores are
    meaningful with random weights; the text modes must run and return calibrated maps."""
    backbone_cfg = BackboneConfig(name="openclip", variant=TINY, pretrained="none", levels=(2, 3), image_size=64)
    assert isinstance(create_backbone(backbone_cfg), OpenClipEncoder)
    inspector = Inspector(InspectorConfig(mode=mode, backbone=backbone_cfg), product="tiny")
    rng = np.random.default_rng(1)
    base = rng.integers(60, 200, (64, 64, 3)).astype(np.float32)
    goods = [np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8) for _ in range(12)]
    inspector.fit(goods)
    defect = goods[0].copy()
    defect[20:44, 20:44] = 0
    results = inspector.predict([goods[1], defect])
    assert [r.verdict in ("PASS", "FAIL") for r in results] == [True, True]
    for r in results:
        assert r.anomaly_map is not None and r.anomaly_map.shape == (64, 64) and np.isfinite(r.anomaly_map).all()
    if mode == "image-image":
        assert results[1].score > results[0].score
    inspector.save(models_dir)
    again = Inspector.load("tiny", models_dir).predict([defect])[0]
    assert again.score == pytest.approx(results[1].score, rel=1e-4, abs=1e-6)
