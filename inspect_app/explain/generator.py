"""Language-model text for a result: the prompts of both model variants, and generation.

- ``facts``: the facts as text in a chat prompt with two worked examples (no training).
- ``adapter``: soft tokens from the trained adapter (maps + embedding) followed by the facts as
  text; the adapter was trained with exactly this prompt (``adapter_prompt``).

The verdict shown never comes from here: ``service.finish`` validates the text against the facts
and prefixes the Inspector's verdict.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from inspect_app.explain.facts import Facts, RegionFact, facts_from_result, facts_text
from inspect_app.explain.language_model import EMBEDDED, LanguageModel, LanguageModelError, load_language_model

DEFAULT_VARIANT = "adapter"  # chosen by explain-eval (see README, "Explanations")
MAX_NEW_TOKENS = 48
SOFT_MARK = "<image>"  # where the soft tokens go; split out before tokenising
# Intended: with soft tokens there are no prompt ids to penalise; the adapter was trained and
# evaluated this way. Said once here instead of on every sentence.
warnings.filterwarnings("ignore", message="Passing `repetition_penalty` with `inputs_embeds`", category=UserWarning)
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
                  "pt": "Portuguese", "nl": "Dutch", "pl": "Polish", "zh": "Chinese", "ja": "Japanese"}

SYSTEM = ("You explain visual inspection results to factory operators. Use only the given facts. "
          "Write one or two short sentences in {language}: the defect, where it is, how big, and the action.")
# The adapter learnt the task in training: a short instruction keeps its prompt (and steps) short.
ADAPTER_SYSTEM = "Explain the inspection result to the operator in {language}, using only the facts."
FEW_SHOT = [
    (Facts("widget", "FAIL", 0.91, 0.5, (RegionFact("top-left", "small", "elongated", "crack", 0.8),), 1),
     "Likely a crack, small and elongated, at the top-left of the widget. Remove the part."),
    (Facts("widget", "FAIL", 0.74, 0.5, (RegionFact("bottom", "medium", "compact"),), 1),
     "A defect at the bottom of the widget, medium and compact. Remove the part."),
    (Facts("widget", "PASS", 0.1, 0.5), "No defect found on the widget. The part can go on."),
]


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def _chat(lm: LanguageModel, messages: list[dict[str, str]]) -> str:
    text = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):  # tokenize=False gives the prompt text
        raise LanguageModelError(f"{lm.name}: its chat template gave {type(text).__name__}, not text")
    return text


def facts_prompt(lm: LanguageModel, facts: Facts, language: str = "en") -> str:
    messages = [{"role": "system", "content": SYSTEM.format(language=language_name(language))}]
    for example, answer in FEW_SHOT:
        messages += [{"role": "user", "content": "Facts:\n" + facts_text(example)},
                     {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": "Facts:\n" + facts_text(facts)})
    return _chat(lm, messages)


def adapter_prompt(lm: LanguageModel, facts: Facts, language: str = "en") -> tuple[str, str]:
    """(text before the soft tokens, text after them)."""
    messages = [{"role": "system", "content": ADAPTER_SYSTEM.format(language=language_name(language))},
                {"role": "user", "content": f"Image: {SOFT_MARK}\nFacts:\n{facts_text(facts)}"}]
    before, after = _chat(lm, messages).split(SOFT_MARK)
    return before, after


def _ids(lm: LanguageModel, text: str) -> torch.Tensor:
    return lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]


def find_adapter(models_dir: str | Path | None, lm_name: str) -> Path | None:
    """``<models dir>/adapters/<lm>.safetensors``, else the one shipped with the project."""
    from inspect_app.profile import models_dir as resolve

    file = re.sub(r"[^A-Za-z0-9.\-]+", "-", Path(lm_name).name.lower()) + ".safetensors"
    shipped = Path(__file__).resolve().parents[2] / "models" / "adapters"
    for folder in (resolve(models_dir) / "adapters", shipped):
        if (folder / file).is_file():
            return folder / file
    return None


class LanguageModelGenerator:
    """Writes the raw sentence for an ``InspectionResult`` (greedy decoding, bounded length)."""

    def __init__(self, lm: LanguageModel, adapter=None, language: str = "en", max_new_tokens: int = MAX_NEW_TOKENS):
        self.lm, self.adapter, self.language, self.max_new_tokens = lm, adapter, language, max_new_tokens
        self.source = "adapter" if adapter is not None else "language-model"
        self._end = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")

    def _prompt(self, result) -> torch.Tensor:
        """One result's prompt: token ids [n] (facts variant) or input embeddings [n, hidden]."""
        facts = facts_from_result(result)
        if self.adapter is None:
            return _ids(self.lm, facts_prompt(self.lm, facts, self.language))[0]
        from inspect_app.explain.adapter import soft_prompt_embeds

        before, after = adapter_prompt(self.lm, facts, self.language)
        soft = self.adapter(*self.adapter.inputs(result))
        return soft_prompt_embeds(self.lm, _ids(self.lm, before), _ids(self.lm, after), soft)[0]

    @torch.inference_mode()
    def generate_batch(self, results: list, max_seconds: float | None = None) -> list[str]:
        """Raw sentences for several results in one greedy decoding pass.

        On a CPU each decoding step of a small model costs about the same for one sequence as for
        eight (reading the weights dominates), so a batch of n takes far less than n single calls.
        Prompts are left-padded and the padding masked."""
        if not results:
            return []
        prompts = [self._prompt(r) for r in results]
        longest = max(p.shape[0] for p in prompts)
        pad = self.lm.tokenizer.pad_token_id
        fill = 0 if self.adapter is not None else pad
        batch = prompts[0].new_full((len(prompts), longest, *prompts[0].shape[1:]), fill)
        mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for i, p in enumerate(prompts):
            batch[i, longest - p.shape[0]:] = p
            mask[i, longest - p.shape[0]:] = 1
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=False, repetition_penalty=1.1, pad_token_id=pad,
                      eos_token_id=[t for t in {self._end, self.lm.tokenizer.eos_token_id} if t is not None])
        if max_seconds is not None:
            kwargs["max_time"] = max(max_seconds, 0.05)
        if self.adapter is None:
            new = self.lm.model.generate(input_ids=batch, attention_mask=mask, **kwargs)[:, longest:]
        else:  # with inputs_embeds only the new tokens come back
            new = self.lm.model.generate(inputs_embeds=batch, attention_mask=mask, **kwargs)
        return [text.strip() for text in self.lm.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def generate(self, result, max_seconds: float | None = None) -> str:
        return self.generate_batch([result], max_seconds=max_seconds)[0]


def load_generator(variant: str, models_dir: str | Path | None = None, language: str = "en",
                   language_model: str | None = None, allow_download: bool = False) -> LanguageModelGenerator:
    """The generator of a model variant; raises ``LanguageModelError`` when files are missing."""
    lm = load_language_model(language_model, allow_download=allow_download)
    if variant == "facts":
        return LanguageModelGenerator(lm, None, language)
    from inspect_app.explain.adapter import ExplanationAdapter, merge_lora

    path = find_adapter(models_dir, lm.name)
    if path is None:
        raise LanguageModelError(f"no explanation adapter for {lm.name} in models/adapters: "
                                 f"run `inspect-app train-adapter` or use --variant facts")
    try:
        adapter, _, lora, lora_scale = ExplanationAdapter.load(path)
    except Exception as exc:
        raise LanguageModelError(f"explanation adapter {path} is unreadable ({type(exc).__name__}: {exc})") from None
    if adapter.config.hidden_size != lm.hidden_size:
        raise LanguageModelError(f"explanation adapter {path} was trained for another language model "
                                 f"(width {adapter.config.hidden_size}, this one {lm.hidden_size})")
    if lora:
        try:
            merge_lora(lm.model, lora, lora_scale)
        except (KeyError, AttributeError, RuntimeError) as exc:
            raise LanguageModelError(f"the LoRA in {path} does not fit {lm.name} ({exc})") from None
    return LanguageModelGenerator(lm, adapter, language)


__all__ = ["DEFAULT_VARIANT", "EMBEDDED", "LanguageModelGenerator", "adapter_prompt", "facts_prompt",
           "find_adapter", "load_generator"]
