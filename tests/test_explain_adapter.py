"""The adapter and the language-model path with a tiny random-init Llama (no download, no GGUF):
soft-token shapes, save and load, the inputs_embeds generation path (batched as one at a time), a
training step that lowers the loss, and a LoRA trained, saved and merged. The embedded model's
GGUF is de-quantised by transformers; ``test_explain_cli`` runs that model end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from inspect_app.explain.adapter import AdapterConfig, ExplanationAdapter
from inspect_app.explain.facts import Facts, RegionFact
from inspect_app.explain.language_model import LanguageModel
from inspect_app.results import ExplanationEvidence, InspectionResult, Region

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tiny_lm() -> LanguageModel:
    """A 2-layer Llama with a byte-level tokenizer built here (nothing read from disk or the hub)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = CHAT
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=2, pad_token_id=0, bos_token_id=1)
    return LanguageModel(LlamaForCausalLM(config).eval(), tok, "tiny")


def result(kind_maps=True) -> InspectionResult:
    rng = np.random.default_rng(0)
    region = Region((0, 0, 20, 20), 0.004, (10.0, 10.0), "top-left", 4.0, "elongated", "small", 0.9, "crack", 0.8)
    return InspectionResult(file="x.png", verdict="FAIL", score=0.8, product="bottle", regions=[region],
                            anomaly_map=rng.random((256, 256)).astype(np.float32),
                            evidence=ExplanationEvidence(
                                rng.random((7, 32, 32)).astype(np.float32) if kind_maps else None,
                                rng.random(152).astype(np.float32)))


def write_features(folder: Path, facts: Facts, n: int) -> Path:
    """A cached-features file of ``n`` random samples that all carry ``facts`` (what
    ``explain.dataset`` writes), for training tests."""
    from safetensors.torch import save_file

    records = [{"product": "bottle", "facts": {**facts.__dict__, "regions": [r.__dict__ for r in facts.regions]}}] * n
    path = folder / "feat.safetensors"
    save_file({"anomaly": torch.rand(n, 64, 64), "kinds": torch.rand(n, 7, 32, 32), "embedding": torch.rand(n, 152)},
              str(path))
    path.with_suffix(".json").write_text(json.dumps({"seed": 0, "kinds": list("abcdefg"), "records": records}))
    return path


def test_adapter_token_shapes_and_missing_inputs():
    adapter = ExplanationAdapter(AdapterConfig(hidden_size=32, embedding_dim=152))
    tokens = adapter(*adapter.inputs(result()))
    assert tokens.shape == (1, 18, 32) and torch.isfinite(tokens).all()
    no_kinds = adapter.inputs(result(kind_maps=False))
    assert no_kinds[1].abs().sum() == 0  # no image-text decoder: zero kind maps
    batch = adapter(torch.rand(3, 64, 64), torch.rand(3, 7, 32, 32), torch.rand(3, 152))
    assert batch.shape == (3, 18, 32)
    wrong = result()
    wrong.evidence = ExplanationEvidence(None, np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="embedding of width 152"):
        adapter.inputs(wrong)


def test_adapter_save_load_roundtrip(tmp_path):
    adapter = ExplanationAdapter(AdapterConfig(hidden_size=32, embedding_dim=152))
    path = adapter.save(tmp_path / "a.safetensors", {"seed": 3})
    loaded, info, lora, _ = ExplanationAdapter.load(path)
    assert info == {"seed": 3} and lora == {}
    args = adapter.inputs(result())
    assert torch.allclose(adapter.eval()(*args), loaded(*args))
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(SafetensorError):
        ExplanationAdapter.load(tmp_path / "bad.safetensors")


def test_generation_through_inputs_embeds(tiny_lm):
    from inspect_app.explain.generator import LanguageModelGenerator

    adapter = ExplanationAdapter(AdapterConfig(hidden_size=32, embedding_dim=152))
    for gen in (LanguageModelGenerator(tiny_lm, adapter, max_new_tokens=8),
                LanguageModelGenerator(tiny_lm, None, max_new_tokens=8)):
        text = gen.generate(result())
        assert isinstance(text, str)
    assert LanguageModelGenerator(tiny_lm, adapter).source == "adapter"


def test_batched_generation_matches_one_at_a_time(tiny_lm):
    """Left-padded prompts of different lengths decode to the same greedy text as alone."""
    from inspect_app.explain.generator import LanguageModelGenerator

    short, long = result(), result()
    long.product = "a much longer product name"
    long.regions = long.regions * 3
    adapter = ExplanationAdapter(AdapterConfig(hidden_size=32, embedding_dim=152))
    for gen in (LanguageModelGenerator(tiny_lm, adapter, max_new_tokens=12),
                LanguageModelGenerator(tiny_lm, None, max_new_tokens=12)):
        alone = [gen.generate(short), gen.generate(long)]
        assert gen.generate_batch([short, long]) == alone
        assert gen.generate_batch([]) == []


def test_training_step_lowers_the_loss(tiny_lm, tmp_path, monkeypatch):
    from inspect_app.explain import training
    from inspect_app.explain.training import CachedFeatures, train_adapter

    monkeypatch.setattr(training, "WEAKER_REGION_SHARE", 0.0)  # one fixed prompt: the loss must fall

    facts = Facts("bottle", "FAIL", 0.8, 0.5, (RegionFact("top-left", "small", "elongated", "crack", 0.8),), 1)
    data = CachedFeatures.load(write_features(tmp_path, facts, 12))
    adapter, report, val = train_adapter(tiny_lm, data, steps=30, batch_size=2, lr=5e-3)
    assert report.steps == 30 and len(val) == 1
    assert report.losses[-1] < report.losses[0]
    assert all(not p.requires_grad for p in tiny_lm.model.parameters())  # the language model stays frozen


def test_lora_is_trained_saved_and_merged(tiny_lm, tmp_path):
    """A LoRA trained with the adapter travels in the same file and, merged into a fresh copy of
    the frozen model, reproduces the trained model's outputs."""
    import copy

    from inspect_app.explain.adapter import merge_lora
    from inspect_app.explain.language_model import LanguageModel
    from inspect_app.explain.training import CachedFeatures, lora_weights, train_adapter

    lm = LanguageModel(copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer, "tiny")
    base = copy.deepcopy(tiny_lm.model)
    facts = Facts("bottle", "FAIL", 0.8, 0.5, (RegionFact("top", "small", "compact", "hole", 0.6),), 1)
    adapter, report, _ = train_adapter(lm, CachedFeatures.load(write_features(tmp_path, facts, 6)), steps=8,
                                       batch_size=2, lr=1e-2, lora_rank=2)
    lora, scale = lora_weights(lm)
    assert len(lora) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    assert any(float(v.abs().sum()) > 0 for k, v in lora.items() if k.endswith("lora_B"))
    saved = adapter.save(tmp_path / "with_lora.safetensors", {}, lora, scale)
    _, _, loaded, loaded_scale = ExplanationAdapter.load(saved)
    assert merge_lora(base, loaded, loaded_scale) == 4
    ids = torch.randint(3, 200, (1, 12))
    with torch.no_grad():
        assert torch.allclose(lm.model(input_ids=ids).logits, base(input_ids=ids).logits, atol=1e-4)


def test_weaker_regions_keep_the_strongest_first_and_leave_pass_alone():
    import numpy as np

    from inspect_app.explain.facts import MAX_FACT_REGIONS, Facts, RegionFact
    from inspect_app.explain.training import with_weaker_regions

    top = RegionFact("left", "medium", "compact", "crack", 0.8)
    fail = Facts("bottle", "FAIL", 0.9, 0.5, (top,), 1)
    rng = np.random.default_rng(0)
    seen = [with_weaker_regions(fail, ["crack", "hole", "stain"], rng) for _ in range(200)]
    grown = [f for f in seen if len(f.regions) > 1]
    assert 0.4 < len(grown) / len(seen) < 0.8
    assert all(f.regions[0] == top and len(f.regions) <= MAX_FACT_REGIONS and f.n_regions >= len(f.regions)
               for f in seen)
    assert all(r.kind in {"crack", "hole", "stain"} and r.probability is not None for f in grown for r in f.regions)
    passing = Facts("bottle", "PASS", 0.1, 0.5)
    assert with_weaker_regions(passing, ["crack"], rng) is passing
