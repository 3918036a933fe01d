"""Defect kinds a region may be named with, and the rule that names one only when it is likely right.

Each kind is a prototype in the image-text space (patch features projected the way the image-text
decoder projects them): it starts from the kind's text embedding and moves towards the features of
the regions an engineer labelled with it (``KindBook.with_examples``; no refit). A region is
described by its patches' mean embedding minus the mean of the same image's patches below the
threshold, which takes out what the product's good surface leans towards (the kind prior from good
images) and leaves what is different about the defect. The kind's confidence is a softmax over the
cosine similarities to every prototype; it is shown only when it clears the book's bar, which is
calibrated by leave-one-out on the labelled regions themselves (real defects of this product); while
no kind has labelled regions nothing is named (text alone was wrong more often than right). A
region less similar to its nearest kind than that kind's labelled regions were is unlike anything
labelled and stays unnamed too. Unnamed regions get neutral words in explanations. Numpy only: an exported model
names kinds without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from inspect_app.errors import ProfileError
from inspect_app.results import THRESHOLD, Region

KINDS_FORMAT = 1  # the profile's "kinds" section; bumped when its layout or meaning changes
TEXT_WEIGHT = 1.0  # a kind's text embedding counts as this many labelled regions in its prototype
TEMPERATURE = 0.05  # of the softmax over cosine similarities
TARGET_PRECISION = 0.9  # named kinds should be right at least this often
MIN_NAMED = 3  # leave-one-out hits needed before any bar is trusted
FLOOR = 0.5  # a kind is never named when another is as likely
NEVER = 1.01  # the bar of a book whose labelled regions do not support naming
NO_SIMILARITY_FLOOR = -1.0  # cosine similarity's minimum: profiles saved before the floor existed
# Without labelled regions, kinds come from text alone, and those names were measured wrong far more
# often than right on real defects: the previous rule (decoder posteriors, always named) was right on
# 0-35 % of them (issue 26), and a strict 0.98 bar on the text prototypes named 1.6 % of bottle's
# flagged parts right and none of magnetic tile's or cookie's, while naming 6.7 % and 15.6 % of
# theirs wrong (benchmarks/RESULTS.md, "Defect kinds"). So a book without labelled regions names
# nothing; its kinds are still the vocabulary that labelled regions are given to.
TEXT_ONLY_BASIS = ("no labelled regions yet: kinds from their names alone were wrong more often than right on "
                   "real defects, so none is named until a few parts per kind are labelled")


def _unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-8)


def kind_prior(normal_posteriors: np.ndarray) -> np.ndarray:
    """The kinds this product's good patches lean towards: the mean posterior [K] of held-out good
    images' patches [B, K, h, w], floored so that no kind is divided by zero."""
    prior = np.clip(normal_posteriors.astype(np.float64).mean(axis=(0, 2, 3)), 1e-4, None)
    return (prior / prior.sum()).astype(np.float32)


def grid_weights_from_mask(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A binary mask (any size) as the share of each patch [h, w] it covers."""
    return cv2.resize(mask.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)


def grid_weights_from_box(box: tuple[int, int, int, int], image_size: tuple[int, int],
                          grid: tuple[int, int], cal_map: np.ndarray | None = None) -> np.ndarray:
    """The patches of a box (x0, y0, x1, y1 in image pixels), weighted by how far the calibrated map
    is above the threshold there when one is given (so a loose box still centres on the defect)."""
    width, height = image_size
    grid_h, grid_w = grid
    x0, y0, x1, y1 = box
    gx0, gy0 = min(max(int(x0 / width * grid_w), 0), grid_w - 1), min(max(int(y0 / height * grid_h), 0), grid_h - 1)
    gx1 = min(max(int(np.ceil(x1 / width * grid_w)), gx0 + 1), grid_w)
    gy1 = min(max(int(np.ceil(y1 / height * grid_h)), gy0 + 1), grid_h)
    weights = np.zeros(grid, np.float32)
    if cal_map is None:
        weights[gy0:gy1, gx0:gx1] = 1.0
    else:
        small = cv2.resize(cal_map.astype(np.float32), (grid_w, grid_h), interpolation=cv2.INTER_AREA)
        weights[gy0:gy1, gx0:gx1] = np.clip(small[gy0:gy1, gx0:gx1] - THRESHOLD, 1e-3, None)
    return weights


def region_descriptor(embeddings: np.ndarray, weights: np.ndarray, background: np.ndarray) -> np.ndarray:
    """A region's unit descriptor [D] from patch embeddings [D, h, w]: the ``weights``-weighted mean
    minus the mean over ``background`` patches (the image's good surface; all patches when none)."""
    flat = embeddings.reshape(embeddings.shape[0], -1).astype(np.float32)
    w = weights.reshape(-1).astype(np.float32)
    region = flat @ w / max(float(w.sum()), 1e-8)
    bg = background.reshape(-1)
    good = flat[:, bg].mean(axis=1) if bg.any() else flat.mean(axis=1)
    return _unit(region - good)


def background_patches(cal_map: np.ndarray, grid: tuple[int, int], exclude: np.ndarray | None = None) -> np.ndarray:
    """Patches [h, w] below the threshold (and outside ``exclude`` weights) that stand for good surface."""
    small = cv2.resize(cal_map.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    good = small < THRESHOLD
    return good & (exclude <= 0) if exclude is not None else good


def confidence_words(confidence: float) -> str:
    """A named kind's confidence as operators read it (it is never a number beside the score)."""
    return "very likely" if confidence >= 0.95 else "likely"


@dataclass
class Kind:
    """One defect kind of a product: its name, text direction [D] and labelled region descriptors."""

    name: str
    text: np.ndarray  # unit [D]
    examples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [N, D] unit
    sources: list[str] = field(default_factory=list)  # where each example came from (file names)

    @property
    def n_examples(self) -> int:
        return int(self.examples.shape[0])

    def prototype(self, leave_out: int | None = None) -> np.ndarray:
        examples = self.examples if leave_out is None else np.delete(self.examples, leave_out, axis=0)
        total = TEXT_WEIGHT * self.text + (examples.sum(axis=0) if examples.size else 0.0)
        return _unit(total)


@dataclass(frozen=True)
class Bar:
    """The confidence a kind needs to be named, and what it was calibrated on (in words)."""

    value: float
    basis: str
    # A region less similar than this to its best kind's prototype is unlike every labelled region
    # (the lowest similarity a held-out labelled region had to its own kind): it stays unnamed, so
    # a product with one labelled kind does not give that name to every other defect.
    min_similarity: float = NO_SIMILARITY_FLOOR


@dataclass
class KindBook:
    """A product's defect kinds with the bar that decides when one is named."""

    kinds: list[Kind]
    bar: Bar = field(default_factory=lambda: Bar(NEVER, TEXT_ONLY_BASIS))

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.kinds]

    @property
    def n_examples(self) -> int:
        return sum(k.n_examples for k in self.kinds)

    def find(self, name: str) -> Kind | None:
        key = name.strip().lower()
        return next((k for k in self.kinds if k.name.lower() == key), None)

    def prototypes(self) -> np.ndarray:
        return np.stack([k.prototype() for k in self.kinds])

    def probabilities(self, descriptor: np.ndarray, prototypes: np.ndarray | None = None) -> np.ndarray:
        protos = prototypes if prototypes is not None else self.prototypes()
        logits = protos @ descriptor / TEMPERATURE
        logits = logits - logits.max()
        p = np.exp(logits)
        return p / p.sum()

    def name_descriptor(self, descriptor: np.ndarray) -> tuple[str | None, float]:
        """(kind, confidence) when the confidence clears the bar and the region is as similar to
        the kind as its labelled regions were, else (None, confidence)."""
        if not self.kinds:
            return None, 0.0
        protos = self.prototypes()
        p = self.probabilities(descriptor, protos)
        best = int(p.argmax())
        confidence = float(p[best])
        similar = float(protos[best] @ descriptor) >= self.bar.min_similarity
        return (self.kinds[best].name if confidence > self.bar.value and similar else None), confidence

    def name_regions(self, regions: list[Region], cal_map: np.ndarray, embeddings: np.ndarray,
                     image_size: tuple[int, int]) -> None:
        """Set ``defect_type``/``defect_probability`` of each region whose kind clears the bar."""
        grid = (int(embeddings.shape[1]), int(embeddings.shape[2]))
        background = background_patches(cal_map, grid)
        for region in regions:
            weights = grid_weights_from_box(region.bbox, image_size, grid, cal_map)
            kind, confidence = self.name_descriptor(region_descriptor(embeddings, weights, background))
            region.defect_type = kind
            region.defect_probability = None if kind is None else round(confidence, 4)

    def with_examples(self, name: str, text: np.ndarray | None, descriptors: np.ndarray,
                      sources: list[str]) -> KindBook:
        """A new book where ``name`` (a new kind needs ``text``) has these labelled regions too,
        with its bar calibrated again."""
        kinds = list(self.kinds)
        existing = self.find(name)
        if existing is None:
            if text is None:
                raise ValueError(f"kind {name!r} is new: its text embedding is needed")
            existing = Kind(name.strip(), _unit(np.asarray(text, np.float32)),
                            np.zeros((0, len(text)), np.float32), [])
            kinds.append(existing)
        merged = np.concatenate([existing.examples.reshape(-1, existing.text.shape[0]),
                                 np.asarray(descriptors, np.float32).reshape(-1, existing.text.shape[0])])
        kinds[kinds.index(existing)] = replace(existing, examples=merged, sources=existing.sources + list(sources))
        return KindBook(kinds).calibrated()

    def without(self, name: str) -> KindBook:
        kind = self.find(name)
        if kind is None:
            raise KeyError(name)
        return KindBook([k for k in self.kinds if k is not kind]).calibrated()

    def leave_one_out(self) -> list[tuple[float, bool, float]]:
        """(confidence, right, similarity to its own kind) of every labelled region, named by the
        book without it."""
        if not self.kinds:
            return []
        full = self.prototypes()
        out = []
        for i, kind in enumerate(self.kinds):
            for j in range(kind.n_examples):
                protos = full.copy()
                protos[i] = kind.prototype(leave_out=j)
                p = self.probabilities(kind.examples[j], protos)
                out.append((float(p.max()), int(p.argmax()) == i, float(protos[i] @ kind.examples[j])))
        return out

    def calibrated(self) -> KindBook:
        """This book with the bar leave-one-out places: each labelled region is named by the book
        without it, and the bar is the lowest confidence above which those names were right at
        least ``TARGET_PRECISION`` of the time (at least ``MIN_NAMED`` of them, and never below
        ``FLOOR``). No naming at all without labelled regions, or when no bar keeps the
        held-out names right often enough."""
        trials = self.leave_one_out()
        if not trials:
            return KindBook(self.kinds, Bar(NEVER, TEXT_ONLY_BASIS))
        trials.sort(key=lambda t: -t[0])
        kept = hits = 0
        running = 0
        for n, (_, right, _) in enumerate(trials, 1):
            running += right
            if running >= MIN_NAMED and running / n >= TARGET_PRECISION:
                kept, hits = n, running
        labelled = sum(k.n_examples > 0 for k in self.kinds)
        if not kept:
            basis = (f"leave-one-out on {len(trials)} labelled regions of {labelled} kinds was not right often "
                     f"enough to name any kind: label more regions")
            return KindBook(self.kinds, Bar(NEVER, basis))
        bar = max(FLOOR, trials[kept][0] if kept < len(trials) else 0.0)
        basis = (f"leave-one-out on {len(trials)} labelled regions of {labelled} kinds: {hits} of the {kept} "
                 f"held-out regions named with at least this confidence were named right")
        floor = min(similarity for _, _, similarity in trials)
        basis += f"; a region less similar to its kind than {floor:.2f} (the least similar labelled one) stays unnamed"
        return KindBook(self.kinds, Bar(round(bar, 6), basis, round(floor, 6)))

    def to_dict(self) -> dict[str, Any]:
        return {"format": KINDS_FORMAT, "bar": self.bar.value, "bar_basis": self.bar.basis,
                "min_similarity": self.bar.min_similarity,
                "kinds": [{"name": k.name, "text": np.round(k.text, 6).tolist(),
                           "examples": np.round(k.examples, 6).tolist(), "sources": list(k.sources)}
                          for k in self.kinds]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KindBook:
        if data.get("format") != KINDS_FORMAT:
            raise ProfileError(f"the profile's defect kinds have format {data.get('format')}, this installation "
                               f"reads format {KINDS_FORMAT}: remove and add them again (inspect-app kinds)")
        kinds = []
        for k in data["kinds"]:
            text = np.asarray(k["text"], np.float32)
            examples = np.asarray(k["examples"], np.float32).reshape(-1, text.shape[0])
            kinds.append(Kind(str(k["name"]), text, examples, [str(s) for s in k.get("sources", [])]))
        floor = float(data.get("min_similarity", NO_SIMILARITY_FLOOR))
        return cls(kinds, Bar(float(data["bar"]), str(data["bar_basis"]), floor))

    @classmethod
    def from_text(cls, names: list[str], texts: np.ndarray) -> KindBook:
        """The default book: every kind from its text direction alone [K, D]."""
        return cls([Kind(n, _unit(np.asarray(t, np.float32)), np.zeros((0, len(t)), np.float32), [])
                    for n, t in zip(names, texts, strict=True)])
