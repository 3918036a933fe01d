"""Choosing a product's input shape at fit time, from its good images alone.

A user's first product is one nobody tuned for: a wide ball screw squashed into a square loses
its small pittings; a plate photographed square does not care. Each candidate input is tried on a
sample of the good images: a memory bank of them scores every one of them without its own rows
(as unseen good parts), and defects synthesised on them are scored the same way. The criterion is
the share of synthetic defects caught at the threshold those good scores calibrate.

The candidates cost the same: the configured size squared in pixels, square or shaped like the
images (a 2.5:1 part gets 416 x 160 instead of 256 x 256); the square wins a tie. Larger inputs
were candidates too, and were dropped: synthesised defects are small, so the criterion asked for
384 px on bottle and cookie, whose real defects the 256 px square already finds at AUROC 1.0, for
2.25 times the prediction cost (NOTEBOOK 2026-12-06). A finer input stays the user's explicit
choice (``--image-size``), its cost and gain per category in RESULTS. Test images are never read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from inspect_app.config import InspectorConfig
from inspect_app.decoders.image_image import ImageImageDecoder, aggregate_patches, smooth_upsample
from inspect_app.post_processing.calibration import calibrate_threshold
from inspect_app.post_processing.image_score import image_scores
from inspect_app.pre_processing import SHAPE_STEP, input_shape
from inspect_app.progress import ProgressCallback
from inspect_app.torch_model import InspectionModel


@dataclass(frozen=True)
class InputCandidate:
    """The configured size squared in pixels (what a prediction costs), as a square or shaped like
    the good images."""

    name: str
    keep_aspect: bool

    def shape(self, image_sizes: Sequence[tuple[int, int]], image_size: int) -> tuple[int, int]:
        if not self.keep_aspect or not image_sizes:
            return input_shape([], image_size, False)
        ratio = float(np.median([w / h for h, w in image_sizes]))
        long_side = int(round(image_size * math.sqrt(max(ratio, 1 / ratio)) / SHAPE_STEP)) * SHAPE_STEP
        return input_shape(image_sizes, min(long_side, MAX_LONG_SIDE), True)


CANDIDATES = (InputCandidate("square", False), InputCandidate("as many pixels, shaped like the images", True))
MAX_LONG_SIDE = 1024
SAMPLE_IMAGES = 24  # good images the choice looks at (all of them when fewer)
DEFECTS_PER_IMAGE = 2
CRITERION = ("synthetic defects caught at the threshold calibrated on leave-one-out good scores "
             "(the square on a tie)")


@dataclass
class CandidateResult:
    name: str
    input_shape: tuple[int, int]
    synthetic_detection: float
    synthetic_auroc: float
    seconds: float


@dataclass
class InputChoice:
    """What a fit chose and why (saved in the profile, printed in the fit report)."""

    chosen: str
    input_shape: tuple[int, int]
    criterion: str = CRITERION
    candidates: list[CandidateResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_input(model: InspectionModel, images: Sequence[np.ndarray], config: InspectorConfig,
                 batch_size: int = 8, progress: ProgressCallback | None = None) -> InputChoice:
    """The candidate input for these good images (``model`` lends its encoder; its input shape is
    restored). Nothing is tried when every candidate gives the same shape (square-ish images)."""
    sizes = [im.shape[:2] for im in images]
    size = config.backbone.image_size
    shapes = list(dict.fromkeys(c.shape(sizes, size) for c in CANDIDATES))
    if len(shapes) == 1:  # square-ish images: every candidate is the square, nothing to try
        return InputChoice(CANDIDATES[0].name, shapes[0], candidates=[])
    rng = np.random.default_rng(config.seed)
    finest = max(max(shape) for shape in shapes)  # no candidate looks finer: synthesis runs smaller
    sample = [_shrunk(images[i], finest) for i in sorted(rng.permutation(len(images))[:SAMPLE_IMAGES])]
    defects, sources = _synthetic_defects(sample, config.seed)
    if len(sample) < 3 or len(defects) < 4:  # too little to compare: the square default
        return InputChoice(CANDIDATES[0].name, shapes[0], candidates=[])
    original_shape, results = model.input_shape, []
    try:
        for step, candidate in enumerate(CANDIDATES):
            shape = candidate.shape(sizes, size)
            if progress:
                progress(step, len(CANDIDATES), f"trying input {shape[1]}x{shape[0]}")
            start = time.perf_counter()
            model.input_shape = shape
            good, bad = _leave_one_out_scores(model, sample, defects, sources, config, batch_size)
            threshold = calibrate_threshold(good, config.calibration.target_frr).raw_threshold
            results.append(CandidateResult(candidate.name, shape, float(np.mean(bad > threshold)),
                                           float(roc_auc_score(np.r_[np.zeros(len(good)), np.ones(len(bad))],
                                                               np.concatenate([good, bad]))),
                                           round(time.perf_counter() - start, 2)))
    finally:
        model.input_shape = original_shape
    if progress:
        progress(len(CANDIDATES), len(CANDIDATES), "choosing the input")
    best = results[0]
    for result in results[1:]:
        if result.synthetic_detection > best.synthetic_detection:
            best = result
    return InputChoice(best.name, best.input_shape, candidates=results)


def _shrunk(image: np.ndarray, long_side: int) -> np.ndarray:
    scale = long_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _synthetic_defects(sample: Sequence[np.ndarray], seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Defects drawn on the sampled good images (every kind in turn), with the image each came from."""
    from inspect_app.synthesis import DefectSynthesizer, SynthesisError

    synthesizer = DefectSynthesizer(seed=seed)
    rng = np.random.default_rng(seed + 1)
    defects, sources = [], []
    for i, image in enumerate(sample):
        for j in range(DEFECTS_PER_IMAGE):
            kind = synthesizer.kinds[(i * DEFECTS_PER_IMAGE + j) % len(synthesizer.kinds)]
            try:
                drawn = synthesizer.synthesize(image, donor=sample[(i + 1) % len(sample)], kind=kind, rng=rng)
            except SynthesisError:
                continue
            defects.append(drawn.image)
            sources.append(i)
    return defects, sources


def _leave_one_out_scores(model: InspectionModel, sample: Sequence[np.ndarray], defects: Sequence[np.ndarray],
                          sources: list[int], config: InspectorConfig,
                          batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw image scores of the sampled good images and of the defects drawn on them, each scored
    by a bank of the sample without the rows of the good image concerned."""
    cfg = config.image_image
    kernel = cfg.aggregation_kernel

    def patches_of(batch: Sequence[np.ndarray]) -> torch.Tensor:
        chunks = [aggregate_patches(model.encode(model.prepare(list(batch[s:s + batch_size]))).levels, kernel)
                  for s in range(0, len(batch), batch_size)]
        return torch.cat(chunks)

    def scores(patch_maps: torch.Tensor) -> np.ndarray:  # the product's image-score rule
        return image_scores(smooth_upsample(patch_maps, model.input_shape, cfg.blur_sigma).numpy())

    with torch.inference_mode():
        good_patches = patches_of(sample)
        bank = ImageImageDecoder(good_patches.shape[1], kernel, cfg.coreset_ratio, cfg.coreset_projection_dim,
                                 config.seed)
        source = bank.fit(good_patches, len(sample))
        good = scores(bank.leave_one_out_scores(good_patches, source))
        bad = scores(bank.leave_one_out_scores(patches_of(defects), source, sources))
    return good, bad
