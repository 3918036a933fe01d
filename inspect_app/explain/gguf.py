"""A minimal GGUF reader for Llama-architecture models (the embedded SmolLM2 default).

transformers reads GGUF only through the ``gguf`` package, which this project does not depend on;
this reader covers what the embedded file uses: metadata, F32/F16/BF16/Q4_0/Q4_1/Q8_0/Q6_K tensors,
llama.cpp's Q/K row permutation, and the GPT-2 style byte-level BPE tokenizer. It turns the file
into a transformers ``LlamaForCausalLM`` and tokenizer, which are then cached as safetensors.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from inspect_app.errors import InspectAppError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
# ggml type -> (block size in values, bytes per block)
_BLOCKS = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34), 14: (256, 210)}


class GGUFError(InspectAppError):
    """The file is not a GGUF model this reader understands."""


class _Cursor:
    def __init__(self, data: memoryview):
        self.data, self.pos = data, 0

    def unpack(self, fmt: str):
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        value = bytes(self.data[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return value

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item, n = self.unpack("<I"), self.unpack("<Q")
            return [self.value(item) for _ in range(n)]
        raise GGUFError(f"unknown GGUF metadata type {kind}")


def _dequantize(kind: int, raw: np.ndarray, n: int) -> np.ndarray:
    if kind == 0:
        return raw.view("<f4")[:n].astype(np.float32)
    if kind == 1:
        return raw.view("<f2")[:n].astype(np.float32)
    if kind == 30:
        return (raw.view("<u2")[:n].astype(np.uint32) << 16).view(np.float32)
    if kind in (2, 3):
        blocks = raw.reshape(-1, _BLOCKS[kind][1])
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)
        offset = 2 if kind == 2 else 4
        m = -8.0 * d if kind == 2 else blocks[:, 2:4].copy().view("<f2").astype(np.float32)
        qs = blocks[:, offset:offset + 16]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        return (q * d + m).reshape(-1)[:n]
    if kind == 8:
        blocks = raw.reshape(-1, 34)
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)
        return (blocks[:, 2:].copy().view(np.int8).astype(np.float32) * d).reshape(-1)[:n]
    if kind == 14:  # Q6_K: 256 values = ql[128] qh[64] scales[16] (int8) d (f16)
        blocks = raw.reshape(-1, 210)
        ql, qh = blocks[:, :128].astype(np.int16), blocks[:, 128:192].astype(np.int16)
        scales = blocks[:, 192:208].copy().view(np.int8).astype(np.float32)
        d = blocks[:, 208:210].copy().view("<f2").astype(np.float32)
        out = np.empty((blocks.shape[0], 256), np.float32)
        for half in range(2):
            l, h = ql[:, 64 * half:64 * half + 64], qh[:, 32 * half:32 * half + 32]
            q1 = (l[:, :32] & 0xF) | ((h & 3) << 4)
            q2 = (l[:, 32:] & 0xF) | (((h >> 2) & 3) << 4)
            q3 = (l[:, :32] >> 4) | (((h >> 4) & 3) << 4)
            q4 = (l[:, 32:] >> 4) | (((h >> 6) & 3) << 4)
            for j, q in enumerate((q1, q2, q3, q4)):
                base = 128 * half + 32 * j
                sc = scales[:, 8 * half + 2 * j: 8 * half + 2 * j + 2]  # one scale per 16 values
                vals = (q.astype(np.float32) - 32).reshape(-1, 2, 16) * sc[:, :, None]
                out[:, base:base + 32] = vals.reshape(-1, 32) * d
        return out.reshape(-1)[:n]
    raise GGUFError(f"GGUF tensor type {kind} is not supported by this reader")


def read_gguf(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, tensors as float32 arrays in PyTorch's [out, in] layout)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(memoryview(data))
    if bytes(data[:4]) != b"GGUF":
        raise GGUFError(f"{path} is not a GGUF file")
    cur.pos = 4
    version = cur.unpack("<I")
    if version < 2:
        raise GGUFError(f"{path}: GGUF version {version} is too old")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    meta = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = [cur.unpack("<Q") for _ in range(cur.unpack("<I"))]
        infos.append((name, dims, cur.unpack("<I"), cur.unpack("<Q")))
    align = int(meta.get("general.alignment", 32))
    start = (cur.pos + align - 1) // align * align
    tensors = {}
    for name, dims, kind, offset in infos:
        if kind not in _BLOCKS:
            raise GGUFError(f"{path}: tensor {name} has GGUF type {kind}, not supported by this reader")
        n = int(np.prod(dims))
        block, nbytes = _BLOCKS[kind]
        size = (n + block - 1) // block * nbytes
        raw = np.asarray(data[start + offset:start + offset + size])
        if raw.size != size:
            raise GGUFError(f"{path} is truncated (tensor {name})")
        tensors[name] = _dequantize(kind, raw, n).reshape(list(reversed(dims)))
    return meta, tensors


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of the rotary halves in the Q and K projections."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_LAYER_NAMES = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
                "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
                "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
                "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
                "ffn_down.weight": "mlp.down_proj.weight"}


def llama_from_gguf(path: str | Path):
    """(``LlamaForCausalLM`` in float32, ``PreTrainedTokenizerFast``) from a Llama GGUF file."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    meta, tensors = read_gguf(path)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise GGUFError(f"{path}: architecture {arch!r} is not supported (llama only)")
    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise GGUFError(f"{path}: tokenizer {meta.get('tokenizer.ggml.model')!r} is not supported (gpt2 BPE only)")
    n_head, n_kv = int(meta["llama.attention.head_count"]), int(meta["llama.attention.head_count_kv"])
    tokens = meta["tokenizer.ggml.tokens"]
    tied = "output.weight" not in tensors
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=int(meta["llama.embedding_length"]),
        intermediate_size=int(meta["llama.feed_forward_length"]), num_hidden_layers=int(meta["llama.block_count"]),
        num_attention_heads=n_head, num_key_value_heads=n_kv,
        max_position_embeddings=int(meta.get("llama.context_length", 2048)),
        rms_norm_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)), tie_word_embeddings=tied,
        bos_token_id=int(meta.get("tokenizer.ggml.bos_token_id", 1)),
        eos_token_id=int(meta.get("tokenizer.ggml.eos_token_id", 2)),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"))
    state = {"model.embed_tokens.weight": tensors["token_embd.weight"], "model.norm.weight": tensors["output_norm.weight"]}
    if not tied:
        state["lm_head.weight"] = tensors["output.weight"]
    for name, value in tensors.items():
        if name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            if rest not in _LAYER_NAMES:
                continue
            if rest == "attn_q.weight":
                value = _unpermute(value, n_head)
            elif rest == "attn_k.weight":
                value = _unpermute(value, n_kv)
            state[f"model.layers.{layer}.{_LAYER_NAMES[rest]}"] = value
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
                                                strict=False)
    missing = [m for m in missing if not (tied and m == "lm_head.weight") and "rotary" not in m]
    if missing or unexpected:
        raise GGUFError(f"{path}: weights do not fit the Llama layout (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if tied:
        model.tie_weights()

    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    # SmolLM2 splits digits one by one before the byte-level split (its "smollm" pre-tokenizer).
    split = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if meta.get("tokenizer.ggml.pre") == "smollm":
        split.insert(0, pre_tokenizers.Digits(individual_digits=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence(split)
    backend.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type", [])
    special = [tokens[i] for i, t in enumerate(types) if t == 3]  # 3 = control tokens
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=tokens[config.bos_token_id], eos_token=tokens[config.eos_token_id],
        unk_token=tokens[int(meta["tokenizer.ggml.unknown_token_id"])] if "tokenizer.ggml.unknown_token_id" in meta else None,
        pad_token=tokens[int(meta["tokenizer.ggml.padding_token_id"])] if "tokenizer.ggml.padding_token_id" in meta else None,
        additional_special_tokens=special)
    if "tokenizer.chat_template" in meta:
        tokenizer.chat_template = meta["tokenizer.chat_template"]
    return model, tokenizer
