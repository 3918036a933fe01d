"""Target sentences for adapter training, written from the synthetic ground truth in varied
phrasings, so the model learns to state kind, location and size, not to copy one template."""

from __future__ import annotations

import numpy as np

from inspect_app.explain.facts import Facts
from inspect_app.vocabulary import DEFECT_VOCABULARY

SIZE_WORDS = ("small", "medium", "large", "tiny", "big")
# Kind phrases without size words (a "small cavity" would state a size the facts may not have).
KIND_PHRASES = {kind: [p for p in phrases if not any(w in p.split() for w in SIZE_WORDS)]
                for kind, phrases in DEFECT_VOCABULARY.items()}
# The location comes before size and shape in every pattern: when one pattern put it last, greedy
# decoding of the trained model began one pattern and ended another, dropping the location.
FAIL_PATTERNS = [
    "{Kind} at the {location} of the {product}, {size} and {shape}. {action}",
    "There is {kind} at the {location} of the {product} ({size}, {shape}). {action}",
    "{Kind}{prob} at the {location}, {size} and {shape}. {action}",
    "The {product} shows {kind} in the {location} area, {size} in size. {action}",
    "{Kind} found at the {location} ({size}). {action}",
    "At the {location} of the {product}: {kind}, {size} and {shape}{prob}. {action}",
]
FAIL_ACTIONS = ["Remove the part.", "Reject this part.", "Remove the part from the line.",
                "Take the part off the line.", "Discard the part.", "Set it aside."]
PASS_SENTENCES = ["No defect found on the {product}. The part can go on.",
                  "The {product} has no defects. Keep the part.",
                  "No defect was found; the {product} can continue down the line.",
                  "The {product} looks good: no defect found. The part can go on."]


def target_sentence(facts: Facts, rng: np.random.Generator) -> str:
    if facts.verdict != "FAIL" or not facts.regions:
        return PASS_SENTENCES[int(rng.integers(len(PASS_SENTENCES)))].format(product=facts.product)
    region = facts.regions[0]
    phrases = (KIND_PHRASES.get(region.kind) if region.kind else None) or ["a defect"]
    kind = phrases[int(rng.integers(len(phrases)))]
    prob = f" ({region.confidence})" if region.confidence and rng.random() < 0.5 else ""
    pattern = FAIL_PATTERNS[int(rng.integers(len(FAIL_PATTERNS)))]
    return pattern.format(kind=kind, Kind=kind[0].upper() + kind[1:], size=region.size, shape=region.shape,
                          location=region.location, product=facts.product, prob=prob,
                          action=FAIL_ACTIONS[int(rng.integers(len(FAIL_ACTIONS)))])
