"""Defect kinds a region may be named with, and the rule that names one only when it is likely right.

A region is described by what differs from good parts there (``kind_features``): its patches' mean
appearance (standardised by the memory of good patches) minus the same image's patches below the
threshold, beside its patches' mean difference from their nearest good patch; each half is unit, the
whole is unit. Each kind's prototype is the mean of the regions an engineer labelled with it
(``KindBook.with_examples``; no refit). This space names real defects from a few labelled ones far
better than the image-text space it replaced (K = 3 labelled parts per folder, kinds named right
under the bar below: bottle 0.10 -> 0.61, magnetic tile 0.28 -> 0.41; NOTEBOOK 2026-12-06), and
needs only the memory bank, so kinds work in every mode with one (image-image, the default, and
fused). A kind's text does not take part: names from text alone were wrong more often than right on
real defects (RESULTS.md, "Defect kinds"), so a kind without labelled regions is only a name regions
can be labelled with.

The kind's confidence is a softmax over the cosine similarities to the labelled kinds' prototypes;
it is shown only when it clears the book's bar, which is calibrated by leave-one-out on the labelled
regions themselves (real defects of this product). A region less similar to its nearest kind than
that kind's labelled regions were is unlike anything labelled and stays unnamed too. Unnamed regions
get neutral words in explanations. Numpy only: an exported model names kinds with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from inspect_app.errors import ProfileError
from inspect_app.results import THRESHOLD, Region

KINDS_FORMAT = 2  # the profile's "kinds" section; bumped when its layout or meaning changes
TEMPERATURE = 0.05  # of the softmax over cosine similarities
TARGET_PRECISION = 0.9  # named kinds should be right at least this often
MIN_NAMED = 3  # leave-one-out hits needed before any bar is trusted
FLOOR = 0.5  # a kind is never named when another is as likely
NEVER = 1.01  # the bar of a book whose labelled regions do not support naming
NO_SIMILARITY_FLOOR = -1.0  # cosine similarity's minimum: profiles saved before the floor existed
# Kinds from text alone were measured wrong far more often than right on real defects: the image-text
# decoder's posteriors, always named, were right on 0-35 % of them (issue 26), and a strict 0.98 bar
# on text prototypes named 1.6 % of bottle's flagged parts right and none of magnetic tile's or
# cookie's, while naming 6.7 % and 15.6 % of theirs wrong (benchmarks/RESULTS.md, "Defect kinds").
# So a book without labelled regions names nothing; its kinds are the vocabulary labels are given to.
TEXT_ONLY_BASIS = ("no labelled regions yet: kinds from their names alone were wrong more often than right on "
                   "real defects, so none is named until a few parts per kind are labelled")
OLD_FORMAT_BASIS = ("the labelled regions were described in an earlier way that no longer applies ({sources}): "
                    "label them again (inspect-app kinds add); until then no kind is named")


def _unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-8)


def kind_prior(normal_posteriors: np.ndarray) -> np.ndarray:
    """The kinds this product's good patches lean towards: the mean posterior [K] of held-out good
    images' patches [B, K, h, w], floored so that no kind is divided by zero."""
    prior = np.clip(normal_posteriors.astype(np.float64).mean(axis=(0, 2, 3)), 1e-4, None)
    return (prior / prior.sum()).astype(np.float32)


def map_on_grid(cal_map: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The calibrated map averaged onto the patch grid [h, w]."""
    return cv2.resize(cal_map.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)


def excess_on_grid(cal_map: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """How far each patch [h, w] is above the threshold, at least 1e-3: the weight of a region's
    patches, so a loose box or mask centres on the defect and its patches below it still count a little."""
    return np.clip(map_on_grid(cal_map, grid) - THRESHOLD, 1e-3, None)


def grid_weights_from_mask(mask: np.ndarray, grid: tuple[int, int], cal_map: np.ndarray | None = None) -> np.ndarray:
    """A binary mask (any size) as the share of each patch [h, w] it covers; weighted by
    ``excess_on_grid`` when a calibrated map is given, as a box's patches are."""
    share = cv2.resize(mask.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    return share if cal_map is None else share * excess_on_grid(cal_map, grid)


def grid_weights_from_box(box: tuple[int, int, int, int], image_size: tuple[int, int],
                          grid: tuple[int, int], excess: np.ndarray | None = None) -> np.ndarray:
    """The patches of a box (x0, y0, x1, y1 in image pixels), weighted by how far the calibrated map
    is above the threshold there (``excess``: its ``excess_on_grid``, computed once per image by
    callers with several boxes) when one is given, so a loose box still centres on the defect."""
    width, height = image_size
    grid_h, grid_w = grid
    x0, y0, x1, y1 = box
    gx0, gy0 = min(max(int(x0 / width * grid_w), 0), grid_w - 1), min(max(int(y0 / height * grid_h), 0), grid_h - 1)
    gx1 = min(max(int(np.ceil(x1 / width * grid_w)), gx0 + 1), grid_w)
    gy1 = min(max(int(np.ceil(y1 / height * grid_h)), gy0 + 1), grid_h)
    weights = np.zeros(grid, np.float32)
    weights[gy0:gy1, gx0:gx1] = 1.0 if excess is None else excess[gy0:gy1, gx0:gx1]
    return weights


Statistics = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class BankStatistics:
    """The memory bank's per-channel mean and std, its rows' squared norms and its transpose laid out
    for the search's matrix product, kept until the bank changes: computing them took 2-7 ms on
    bottle's bank, too long for every failed part. The bank it describes is held, so no other array
    can take its memory (the cache key) meanwhile."""

    def __init__(self) -> None:
        self._of: tuple[tuple[int, tuple[int, ...]], np.ndarray, Statistics] | None = None

    def __call__(self, bank: np.ndarray) -> Statistics:
        """(mean [C], std [C], squared norms [N], contiguous transpose [C, N]) of ``bank`` [N, C]."""
        key = (bank.__array_interface__["data"][0], bank.shape)
        if self._of is None or self._of[0] != key:
            bank64 = bank.astype(np.float64)
            stats = (bank64.mean(0).astype(np.float32), np.maximum(bank64.std(0, ddof=1), 1e-6).astype(np.float32),
                     (bank * bank).sum(1), np.ascontiguousarray(bank.T, dtype=np.float32))
            self._of = (key, bank, stats)
        return self._of[2]


def kind_features(patches: np.ndarray, bank: np.ndarray, statistics: BankStatistics,
                  needed: np.ndarray | None = None) -> np.ndarray:
    """What each patch's defect looks like, for naming its kind [B, 2C, h, w], from the image-image
    decoder's aggregated patches [B, C, h, w] and its memory bank [N, C]: each patch standardised by
    the bank's statistics, beside its difference from its nearest bank row. The difference needs a
    search, so it is computed only on ``needed`` patches [B, h, w] (all when None) and is zero
    elsewhere; only those patches are gathered, channel-first layout kept (1.95 -> 0.88 ms for a
    bottle FAIL against transposing every patch; NOTEBOOK 2026-12-07). Numpy, so the torch
    path and an exported model name kinds with the same code. Measured better for few-shot kinds
    than the image-text space on bottle and magnetic tile (benchmarks/NOTEBOOK.md, 2026-12-06)."""
    b, c, h, w = patches.shape
    mean, std, bank_sq, bank_t = statistics(bank)
    features = np.empty((b, 2 * c, h * w), np.float32)
    by_patch = patches.reshape(b, c, h * w)
    np.subtract(by_patch, mean[:, None], out=features[:, :c])
    features[:, :c] /= std[:, None]
    features[:, c:] = 0.0
    images, positions = np.nonzero(np.ones((b, h * w), bool) if needed is None else needed.reshape(b, h * w))
    if len(images):
        rows = np.asarray(by_patch[images, :, positions], np.float32)  # [n, C]
        distances = bank_sq[None, :] - 2.0 * (rows @ bank_t)
        features[images, c:, positions] = rows - bank[distances.argmin(1)]
    return features.reshape(b, 2 * c, h, w)


def region_descriptor(features: np.ndarray, weights: np.ndarray, background: np.ndarray) -> np.ndarray:
    """A region's unit descriptor [2C] from ``kind_features`` [2C, h, w] of its image: the
    ``weights``-weighted mean appearance minus the mean over ``background`` patches (the image's good
    surface; all patches when none), beside the weighted mean difference from the nearest good
    patches (zero, so not searched, outside the region); each half unit."""
    flat = features.reshape(features.shape[0], -1)
    half = flat.shape[0] // 2
    w = weights.reshape(-1).astype(np.float32)
    good = background.reshape(-1).astype(np.float32)
    if not good.any():
        good[:] = 1.0
    # Both means as one product with a two-column matrix: a boolean selection of the background's
    # columns took 0.5 ms of a FAIL's naming.
    means = flat @ np.stack([w / max(float(w.sum()), 1e-8), good / good.sum()], axis=1)
    return _unit(np.concatenate([_unit(means[:half, 0] - means[:half, 1]), _unit(means[half:, 0])]))


def region_patches(regions: list[Region], cal_map: np.ndarray, image_size: tuple[int, int],
                   grid: tuple[int, int]) -> np.ndarray:
    """The patches [h, w] of any region's box where the calibrated map is above the threshold: the
    only ones whose difference from good patches ``region_descriptor`` reads with a weight that
    counts (the rest of a box weighs 1e-3), so the nearest-patch search is limited to them."""
    needed = np.zeros(grid, bool)
    excess = excess_on_grid(cal_map, grid)
    for region in regions:
        weights = grid_weights_from_box(region.bbox, image_size, grid, excess)
        above = weights > 1e-3
        needed |= above if above.any() else weights > 0  # a region too small for the grid: its whole box
    return needed


def background_patches(cal_map: np.ndarray, grid: tuple[int, int], exclude: np.ndarray | None = None) -> np.ndarray:
    """Patches [h, w] below the threshold (and outside ``exclude`` weights) that stand for good surface."""
    good = map_on_grid(cal_map, grid) < THRESHOLD
    return good & (exclude <= 0) if exclude is not None else good


def confidence_words(confidence: float) -> str:
    """A named kind's confidence as operators read it (it is never a number beside the score)."""
    return "very likely" if confidence >= 0.95 else "likely"


@dataclass
class Kind:
    """One defect kind of a product: its name and labelled region descriptors [N, D] (none yet: N = 0)."""

    name: str
    examples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [N, D] unit
    sources: list[str] = field(default_factory=list)  # where each example came from (file names)

    @property
    def n_examples(self) -> int:
        return int(self.examples.shape[0])

    def prototype(self, leave_out: int | None = None) -> np.ndarray | None:
        """The unit mean of the labelled regions (without example ``leave_out``); None without any."""
        examples = self.examples if leave_out is None else np.delete(self.examples, leave_out, axis=0)
        return _unit(examples.sum(axis=0)) if len(examples) else None


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

    @property
    def can_name(self) -> bool:
        """Whether any region can be named (else describing regions is wasted work)."""
        return self.bar.value <= 1 and any(k.n_examples for k in self.kinds)

    def prototypes(self) -> tuple[list[int], np.ndarray]:
        """The labelled kinds' indices and their prototypes [L, D]."""
        pairs = [(i, p) for i, k in enumerate(self.kinds) if (p := k.prototype()) is not None]
        return [i for i, _ in pairs], np.stack([p for _, p in pairs]) if pairs else np.zeros((0, 0), np.float32)

    @staticmethod
    def probabilities(descriptor: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
        logits = prototypes @ descriptor / TEMPERATURE
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def name_descriptor(self, descriptor: np.ndarray) -> tuple[str | None, float]:
        """(kind, confidence) when the confidence clears the bar and the region is as similar to
        the kind as its labelled regions were, else (None, confidence)."""
        indices, protos = self.prototypes()
        if not indices:
            return None, 0.0
        p = self.probabilities(descriptor, protos)
        best = int(p.argmax())
        confidence = float(p[best])
        similar = float(protos[best] @ descriptor) >= self.bar.min_similarity
        return (self.kinds[indices[best]].name if confidence > self.bar.value and similar else None), confidence

    def name_regions(self, regions: list[Region], cal_map: np.ndarray, features: np.ndarray,
                     image_size: tuple[int, int]) -> None:
        """Set ``defect_type``/``defect_probability`` of each region whose kind clears the bar, from
        the image's ``kind_features`` [2C, h, w]."""
        grid = (int(features.shape[1]), int(features.shape[2]))
        background = background_patches(cal_map, grid)
        excess = excess_on_grid(cal_map, grid)
        for region in regions:
            weights = grid_weights_from_box(region.bbox, image_size, grid, excess)
            kind, confidence = self.name_descriptor(region_descriptor(features, weights, background))
            region.defect_type = kind
            region.defect_probability = None if kind is None else round(confidence, 4)

    def with_examples(self, name: str, descriptors: np.ndarray, sources: list[str]) -> KindBook:
        """A new book where ``name`` (created when new) has these labelled regions [N, D] too, with
        its bar calibrated again."""
        kinds = list(self.kinds)
        existing = self.find(name)
        if existing is None:
            existing = Kind(name.strip())
            kinds.append(existing)
        descriptors = np.asarray(descriptors, np.float32)
        if len(descriptors):
            merged = np.concatenate([existing.examples.reshape(-1, descriptors.shape[1]),
                                     descriptors.reshape(-1, descriptors.shape[1])])
            kinds[kinds.index(existing)] = replace(existing, examples=merged, sources=existing.sources + list(sources))
        return KindBook(kinds).calibrated()

    def without(self, name: str) -> KindBook:
        kind = self.find(name)
        if kind is None:
            raise KeyError(name)
        return KindBook([k for k in self.kinds if k is not kind]).calibrated()

    def leave_one_out(self) -> list[tuple[float, bool, float | None]]:
        """(confidence, right, similarity to its own kind) of every labelled region, named by the
        book without it (a kind left without labelled regions cannot be named: wrong, no similarity)."""
        indices, full = self.prototypes()
        out: list[tuple[float, bool, float | None]] = []
        for row, i in enumerate(indices):
            kind = self.kinds[i]
            for j in range(kind.n_examples):
                own = kind.prototype(leave_out=j)
                keep = [r for r in range(len(indices)) if r != row or own is not None]
                if not keep:
                    out.append((0.0, False, None))
                    continue
                protos = full[keep].copy()
                if own is not None:
                    protos[keep.index(row)] = own
                p = self.probabilities(kind.examples[j], protos)
                best = int(p.argmax())
                out.append((float(p[best]), keep[best] == row,
                            None if own is None else float(own @ kind.examples[j])))
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
        floor = min((sim for _, _, sim in trials if sim is not None), default=NO_SIMILARITY_FLOOR)
        basis += f"; a region less similar to its kind than {floor:.2f} (the least similar labelled one) stays unnamed"
        return KindBook(self.kinds, Bar(round(bar, 6), basis, round(floor, 6)))

    def to_dict(self) -> dict[str, Any]:
        return {"format": KINDS_FORMAT, "bar": self.bar.value, "bar_basis": self.bar.basis,
                "min_similarity": self.bar.min_similarity,
                "kinds": [{"name": k.name, "examples": np.round(k.examples, 6).tolist(), "sources": list(k.sources)}
                          for k in self.kinds]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KindBook:
        """The profile's kinds. Format 1 (labelled regions in the image-text space) keeps its names
        and drops its regions, saying which files to label again: a profile must load on a station."""
        if data.get("format") == 1:
            sources = [s for k in data["kinds"] for s in k.get("sources", [])]
            listed = ", ".join(sources[:5]) + (f" and {len(sources) - 5} more" if len(sources) > 5 else "")
            basis = OLD_FORMAT_BASIS.format(sources=listed) if sources else TEXT_ONLY_BASIS
            return cls([Kind(str(k["name"])) for k in data["kinds"]], Bar(NEVER, basis))
        if data.get("format") != KINDS_FORMAT:
            raise ProfileError(f"the profile's defect kinds have format {data.get('format')}, this installation "
                               f"reads format {KINDS_FORMAT}: remove and add them again (inspect-app kinds)")
        kinds = []
        for k in data["kinds"]:
            examples = np.asarray(k["examples"], np.float32)
            kinds.append(Kind(str(k["name"]), examples.reshape(len(examples), -1) if len(examples) else
                              np.zeros((0, 0), np.float32), [str(s) for s in k.get("sources", [])]))
        floor = float(data.get("min_similarity", NO_SIMILARITY_FLOOR))
        return cls(kinds, Bar(float(data["bar"]), str(data["bar_basis"]), floor))

    @classmethod
    def from_names(cls, names: list[str]) -> KindBook:
        """The default book: the vocabulary's kinds, none labelled yet."""
        return cls([Kind(n) for n in names])
