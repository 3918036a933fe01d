"""Prompt ensembles for image-text scoring: state phrases (normal, each defect kind) × templates.

Averaging many phrasings of the same state (WinCLIP-style) makes the text embedding depend on the
state rather than on one sentence's wording. The product name is user text, so it is reduced to a
short, plain phrase before it enters any prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from inspect_app.errors import InspectAppError
from inspect_app.vocabulary import DEFECT_VOCABULARY, NORMAL_KIND, sanitize_product

# ``{a}`` receives the phrase with its indefinite article, ``{the}`` with "the".
TEMPLATES: tuple[str, ...] = (
    "a photo of {a}.",
    "a photo of {the}.",
    "a cropped photo of {a}.",
    "a close-up photo of {a}.",
    "a close-up photo of {the}.",
    "a bright photo of {a}.",
    "a dark photo of {the}.",
    "a blurry photo of {a}.",
    "an industrial photo of {a}.",
    "a photo of {a} for visual inspection.",
    "a photo of {the} for anomaly detection.",
    "a product photo of {a} on a production line.",
)

# ``{}`` is the product.
NORMAL_STATES: tuple[str, ...] = (
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "good {}",
    "intact {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)

# ``{product}`` and ``{defect}`` (a vocabulary phrase such as "a crack").
DEFECT_STATE = "{product} with {defect}"


class PromptError(InspectAppError):
    """A defect vocabulary cannot be turned into prompts."""


def _indefinite(phrase: str) -> str:
    return ("an " if re.match(r"[aeiou]", phrase) else "a ") + phrase


def _fill(phrases: Sequence[str]) -> list[str]:
    return [t.format(a=_indefinite(p), the=f"the {p}") for p in phrases for t in TEMPLATES]


def build_prompts(product: str, vocabulary: Mapping[str, Sequence[str]] = DEFECT_VOCABULARY) -> dict[str, list[str]]:
    """Prompts per state: ``"normal"`` first, then each defect kind of ``vocabulary`` in its order.

    ``vocabulary`` maps a defect kind to its label phrases (``{"crack": ["a crack", ...]}``); each
    phrase yields ``"<product> with <phrase>"`` in every template.
    """
    subject = sanitize_product(product)
    if not vocabulary:
        raise PromptError("the defect vocabulary is empty")
    prompts = {NORMAL_KIND: _fill([state.format(subject) for state in NORMAL_STATES])}
    for kind, phrases in vocabulary.items():
        if kind == NORMAL_KIND:
            raise PromptError(f"{NORMAL_KIND!r} cannot be a defect kind")
        if isinstance(phrases, str):
            raise PromptError(f"defect kind {kind!r} needs a list of phrases, not one string")
        cleaned = [" ".join(str(p).split()) for p in phrases]
        if not cleaned or not all(cleaned):
            raise PromptError(f"defect kind {kind!r} needs at least one non-empty phrase")
        prompts[kind] = _fill([DEFECT_STATE.format(product=subject, defect=p) for p in cleaned])
    return prompts
