"""The deterministic sentence: built from the facts alone, instant and always faithful. It is
what operators see whenever a language model is off, slow, unavailable or fails validation."""

from __future__ import annotations

from inspect_app.explain.facts import Facts, RegionFact, facts_from_result

FAIL_ACTION = "Remove the part."
PASS_ACTION = "The part can go on."
ERROR_ACTION = "Check the camera and inspect the part again."


def _region_clause(region: RegionFact, product: str) -> str:
    what = f"{region.confidence} {region.kind_phrase}" if region.confidence else region.kind_phrase
    return f"{what}, {region.size} and {region.shape}, at the {region.location} of the {product}"


def template_from_facts(facts: Facts) -> str:
    if facts.verdict == "ERROR":
        return f"ERROR: the image could not be inspected ({facts.error or 'unknown error'}). {ERROR_ACTION}"
    score = "" if facts.score is None else f"score {facts.score:.2f} vs threshold {facts.threshold:.2f}"
    if facts.verdict == "PASS":
        return f"PASS: no defect found on the {facts.product} ({score}). {PASS_ACTION}"
    if not facts.regions:
        return f"FAIL: the {facts.product} is anomalous ({score}), location unclear. {FAIL_ACTION}"
    text = "FAIL: " + _region_clause(facts.regions[0], facts.product)
    others = facts.n_regions - 1
    if others > 0:
        text += f", and {others} more region{'s' if others > 1 else ''}"
    return f"{text} ({score}). {FAIL_ACTION}"


def template_explanation(result, language: str = "en") -> str:
    """One or two short sentences: the verdict, the first region's defect kind with its
    confidence in words (only when the kind clears the naming bar; else "a defect"), size, shape
    and location (the strongest on the part: ``extract_regions``), how
    many more regions there are (the overlay shows them), and score vs threshold. Naming only
    the first region keeps the sentence short and is the form the explanation adapter was
    trained to write (``explain.targets``).

    The sentence is English whatever ``language`` asks for: a fallback must never fail, and a
    wrong translation would be worse than a foreign but correct sentence."""
    return template_from_facts(facts_from_result(result))
