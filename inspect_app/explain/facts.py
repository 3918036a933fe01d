"""The measured facts an explanation may state, taken from an ``InspectionResult``.

Everything a sentence says must come from here: the verdict and score come from the Inspector
(never from a language model), the regions from its post-processing. The product name is
user text that ends up in prompts, so it is reduced to a short, harmless phrase
(``vocabulary.sanitize_product``).
"""

from __future__ import annotations

from dataclasses import dataclass

from inspect_app.post_processing.kinds import confidence_words
from inspect_app.results import InspectionResult
from inspect_app.vocabulary import DEFECT_VOCABULARY, sanitize_product

MAX_FACT_REGIONS = 3
UNNAMED_PRODUCT = "part"  # what sentences call a product whose name has nothing to keep


@dataclass(frozen=True)
class RegionFact:
    location: str  # a 3x3 location word relative to the part (post_processing.regions.LOCATION_WORDS)
    size: str  # small / medium / large
    shape: str  # elongated / compact
    kind: str | None = None  # the product's kind, only when its confidence clears the naming bar
    probability: float | None = None  # the kind's confidence: shown in words, never as a number

    @property
    def kind_phrase(self) -> str:
        """The kind in operators' words ("a crack", "a burr"); neutral when no kind is named."""
        if not self.kind:
            return "a defect"
        if self.kind in DEFECT_VOCABULARY:
            return DEFECT_VOCABULARY[self.kind][0]
        return ("an " if self.kind[0] in "aeiou" else "a ") + self.kind

    @property
    def confidence(self) -> str | None:
        """The named kind's confidence in words ("likely", "very likely")."""
        return confidence_words(self.probability) if self.kind and self.probability is not None else None


@dataclass(frozen=True)
class Facts:
    product: str
    verdict: str  # PASS / FAIL / ERROR, always the Inspector's
    score: float | None
    threshold: float
    regions: tuple[RegionFact, ...] = ()
    n_regions: int = 0  # all regions found (``regions`` keeps the first few)
    error: str | None = None

    @property
    def locations(self) -> set[str]:
        return {r.location for r in self.regions}

    @property
    def sizes(self) -> set[str]:
        return {r.size for r in self.regions}

    @property
    def kinds(self) -> set[str]:
        return {r.kind for r in self.regions if r.kind}


def facts_from_result(result: InspectionResult) -> Facts:
    regions = tuple(RegionFact(r.location, r.size, r.shape, r.defect_type, r.defect_probability)
                    for r in result.regions[:MAX_FACT_REGIONS])
    return Facts(product=sanitize_product(result.product, fallback=UNNAMED_PRODUCT), verdict=result.verdict,
                 score=result.score, threshold=result.threshold, regions=regions, n_regions=len(result.regions),
                 error=result.error)


def facts_text(facts: Facts) -> str:
    """The facts as short ``key: value`` lines, the form prompts carry them in."""
    lines = [f"product: {facts.product}", f"verdict: {facts.verdict}"]
    if facts.score is not None:
        relation = "above" if facts.score > facts.threshold else "below"
        lines.append(f"score: {facts.score:.2f} ({relation} threshold {facts.threshold:.2f})")
    for i, r in enumerate(facts.regions, 1):
        # An unnamed kind is "defect", the template's word: "unknown kind" was copied into the text.
        kind = f"{r.kind} ({r.confidence})" if r.kind and r.confidence else (r.kind or "defect")
        lines.append(f"region {i}: {kind}, {r.location}, {r.size}, {r.shape}")
    return "\n".join(lines)
