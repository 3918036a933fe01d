"""``explain-eval``: how faithful the explanations are on real defects.

Fits the one Inspector on ``train/good``, inspects every test image, and explains each result
with every variant (facts-only prompt, adapter + facts, deterministic template). For each variant
the figures are reported for the raw language-model text (``raw_`` keys, before validation) and
for what is shown (after validation and fallback):

- ``verdict_consistency``: the text never says "no defect" on a FAIL, nor a defect or a removal
  on a PASS (all results).
- ``location_faithfulness``: on defective images the Inspector fails, the text names a location
  and every location it names is a 3x3 cell of the part that holds >= 10 % of the ground-truth
  mask (always including the mask centroid's cell). ``location_centroid_agreement`` is the
  stricter share whose first location is the centroid's cell. Cells use
  ``post_processing.regions.location_word`` with the result's part box, as regions do. A
  defective image whose mask is empty (the defect is not localised, e.g. some magnetic-tile
  ``uneven`` images) has no true location: it is left out of both, and ``n_unlocalised`` counts it.
- ``type_mention_accuracy``: the first defect kind named is one the test folder maps to
  (``synthesis.vocabulary.kinds_for_folder``), on defective images the Inspector fails.
- ``hallucination_rate``: the text names a kind or location that is not in the facts.
- ``fallback_rate``: share of model texts replaced by the deterministic sentence.
- ``p50_seconds``/``p95_seconds``: time per explanation (generation + validation).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.config import Mode
from inspect_app.explain.facts import Facts, facts_from_result
from inspect_app.explain.service import SOURCES, VARIANTS, finish
from inspect_app.explain.template import template_from_facts
from inspect_app.explain.validate import (
    _KEEP,
    _REMOVE,
    mentioned_kinds,
    mentioned_locations,
    says_defect,
    says_no_defect,
    strip_product,
)
from inspect_app.imaging.locations import location_word
from inspect_app.progress import ProgressCallback
from inspect_app.results import EvidenceFor
from inspect_app.vocabulary import kinds_for_folder

CELL_SHARE = 0.10
MAX_MASK_POINTS = 4000


@dataclass(frozen=True)
class Case:
    """One test image: its facts and its ground truth."""

    file: str
    folder: str
    defective: bool
    facts: Facts
    cells: set[str]  # location words of the ground-truth mask (empty: not localised)
    centroid: str | None  # location word of the mask's centroid
    folder_kinds: set[str] | None  # defect kinds the test folder maps to (None: unmapped or good)


def ground_truth_cells(mask: np.ndarray, part_box) -> tuple[set[str], str | None]:
    """(location words of the cells holding >= 10 % of the mask, the centroid's word)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return set(), None
    h, w = mask.shape
    box = part_box or (0, 0, w, h)
    centroid = location_word(float(xs.mean()), float(ys.mean()), box)
    pick = np.random.default_rng(0).choice(len(xs), min(len(xs), MAX_MASK_POINTS), replace=False)
    words = [location_word(float(xs[i]), float(ys[i]), box) for i in pick]
    cells = {word for word in set(words) if words.count(word) >= CELL_SHARE * len(words)}
    return cells | {centroid}, centroid


def verdict_consistent(text: str, facts: Facts) -> bool:
    body = strip_product(text, facts).lower()
    if facts.verdict == "FAIL":
        return not says_no_defect(body) and not _KEEP.search(body)
    if facts.verdict == "PASS":
        return not says_defect(body) and not _REMOVE.search(body)
    return True


def hallucinates(text: str, facts: Facts) -> bool:
    body = strip_product(text, facts)
    return bool(set(mentioned_kinds(body, facts.kinds)) - facts.kinds
                or set(mentioned_locations(body)) - facts.locations)


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def text_metrics(texts: list[str], cases: list[Case]) -> dict[str, float | None]:
    """The issue's figures for one list of texts (one per case)."""
    consistent: list[bool] = []
    located: list[bool] = []
    centroid: list[bool] = []
    typed: list[bool] = []
    hallucinated: list[bool] = []
    for text, case in zip(texts, cases, strict=True):
        facts = case.facts
        if facts.verdict == "ERROR":
            continue
        consistent.append(verdict_consistent(text, facts))
        hallucinated.append(hallucinates(text, facts))
        if case.defective and facts.verdict == "FAIL":
            body = strip_product(text, facts)
            if case.cells:
                words = mentioned_locations(body)
                located.append(bool(words) and set(words) <= case.cells)
                centroid.append(bool(words) and words[0] == case.centroid)
            if case.folder_kinds:
                kinds = mentioned_kinds(body)
                typed.append(bool(kinds) and kinds[0] in case.folder_kinds)
    return {"verdict_consistency": _rate(consistent), "location_faithfulness": _rate(located),
            "location_centroid_agreement": _rate(centroid), "type_mention_accuracy": _rate(typed),
            "hallucination_rate": _rate(hallucinated)}


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def evaluate_explanations(category_dir: str | Path, variants: list[str], mode: Mode = "fused",
                          k_shot: int | None = None, per_folder: int | None = None, seed: int = 0,
                          language_model: str | None = None, models_dir: str | Path | None = None,
                          progress: ProgressCallback | None = None) -> dict[str, Any]:
    from inspect_app.config import InspectorConfig
    from inspect_app.data.mvtec import MVTecCategory
    from inspect_app.explain.generator import load_generator
    from inspect_app.explain.language_model import LanguageModelError
    from inspect_app.inspector import Inspector

    category = MVTecCategory(category_dir)
    inspector = Inspector(InspectorConfig(mode=mode, k_shot=k_shot, seed=seed), product=category.name)
    t0 = time.perf_counter()
    report = inspector.fit(category.train_images(), progress=progress)
    fit_seconds = time.perf_counter() - t0
    samples = category.test_samples()
    if per_folder is not None:
        rng = np.random.default_rng(seed)
        by_folder: dict[str, list] = {}
        for s in samples:
            by_folder.setdefault(s.defect_type, []).append(s)
        samples = [s for group in by_folder.values()
                   for s in ([group[i] for i in sorted(rng.choice(len(group), min(per_folder, len(group)),
                                                                  replace=False))])]
    cases: list[Case] = []
    results = []
    for i, sample in enumerate(samples):
        # Every result carries the adapter's inputs: the language-model variants write for PASS
        # parts (and missed defects) too, which the adapter cannot do without them.
        result = inspector.predict(str(sample.path), evidence=EvidenceFor.ALL)
        cells: set[str] = set()
        centroid = None
        if sample.is_defective and result.image_size:
            cells, centroid = ground_truth_cells(sample.mask(result.image_size), result.part_box)
        cases.append(Case(str(sample.path), sample.defect_type, sample.is_defective, facts_from_result(result), cells,
                          centroid, kinds_for_folder(sample.defect_type) if sample.is_defective else None))
        results.append(result)
        if progress:
            progress(i + 1, len(samples), "inspecting test images")

    variant_figures: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {
        "category": category.name, "mode": mode, "n_train": report.n_images, "fit_seconds": round(fit_seconds, 1),
        "n_test": len(cases), "n_defective": sum(c.defective for c in cases),
        "n_fail": sum(c.facts.verdict == "FAIL" for c in cases),
        "n_unlocalised": sum(c.defective and not c.cells for c in cases), "per_folder": per_folder,
        "variants": variant_figures}
    for variant in sorted(variants, key=("template", "facts", "adapter").index):
        raw_texts: list[str] = []
        shown_texts: list[str] = []
        seconds: list[float] = []
        fallbacks: list[bool] = []
        examples: list[dict[str, str]] = []
        try:
            generator = None if variant == "template" else load_generator(variant, models_dir=models_dir,
                                                                          language_model=language_model)
        except LanguageModelError as exc:  # e.g. no adapter trained yet: the other variants still count
            variant_figures[variant] = {"error": str(exc)}
            continue
        for i, (case, result) in enumerate(zip(cases, results, strict=True)):
            facts = case.facts
            t1 = time.perf_counter()
            if generator is None:
                raw = shown = template_from_facts(facts)
                fell_back = None
            else:
                raw = generator.generate(result)
                expl = finish(raw, facts, SOURCES[variant], 0.0)
                shown, fell_back = expl.text, expl.fallback_reason is not None
            seconds.append(time.perf_counter() - t1)
            raw_texts.append(raw)
            shown_texts.append(shown)
            if fell_back is not None:
                fallbacks.append(fell_back)
            if len(examples) < 6 and (case.defective or len(examples) < 2):
                examples.append({"file": Path(case.file).name, "verdict": facts.verdict, "raw": raw, "shown": shown})
            if progress:
                progress(i + 1, len(cases), f"explaining ({variant})")
        figures: dict[str, Any] = dict(text_metrics(shown_texts, cases))
        figures.update({f"raw_{k}": v for k, v in text_metrics(raw_texts, cases).items()})
        figures.update({"fallback_rate": _rate(fallbacks) if generator is not None else 0.0,
                        "p50_seconds": _percentile(seconds, 50), "p95_seconds": _percentile(seconds, 95),
                        "mean_seconds": round(statistics.fmean(seconds), 3) if seconds else None,
                        "examples": examples})
        variant_figures[variant] = figures
    return out


__all__ = ["VARIANTS", "Case", "evaluate_explanations", "ground_truth_cells", "text_metrics"]
