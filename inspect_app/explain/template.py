"""The deterministic sentence: built from the facts alone, instant and always faithful. It is
what operators see whenever a language model is off, slow, unavailable or fails validation."""

from __future__ import annotations

from inspect_app.explain.facts import Facts, RegionFact, facts_from_result

FAIL_ACTION = "Remove the part."
PASS_ACTION = "The part can go on."
ERROR_ACTION = "Check the camera and inspect the part again."


def _region_clause(region: RegionFact, product: str | None) -> str:
    what = region.kind_phrase
    if region.probability is not None and region.kind:
        what += f" ({region.probability:.0%} likely)"
    where = f"at the {region.location}" + (f" of the {product}" if product else "")
    return f"{what}, {region.size} and {region.shape}, {where}"


def template_from_facts(facts: Facts) -> str:
    if facts.verdict == "ERROR":
        return f"ERROR: the image could not be inspected ({facts.error or 'unknown error'}). {ERROR_ACTION}"
    score = "" if facts.score is None else f"score {facts.score:.2f} vs threshold {facts.threshold:.2f}"
    if facts.verdict == "PASS":
        return f"PASS: no defect found on the {facts.product} ({score}). {PASS_ACTION}"
    if not facts.regions:
        return f"FAIL: the {facts.product} is anomalous ({score}), location unclear. {FAIL_ACTION}"
    clauses = [_region_clause(facts.regions[0], facts.product)]
    clauses += [_region_clause(r, None) for r in facts.regions[1:]]
    text = "FAIL: " + clauses[0]
    if len(clauses) > 1:
        text += "; also " + "; ".join(clauses[1:])
    extra = facts.n_regions - len(facts.regions)
    if extra > 0:
        text += f"; and {extra} more region{'s' if extra > 1 else ''}"
    return f"{text} ({score}). {FAIL_ACTION}"


def template_explanation(result, language: str = "en") -> str:
    """One or two sentences stating the verdict, score vs threshold and, per region, location,
    size, shape and defect kind with its probability.

    The sentence is English whatever ``language`` asks for: a fallback must never fail, and a
    wrong translation would be worse than a foreign but correct sentence."""
    return template_from_facts(facts_from_result(result))
