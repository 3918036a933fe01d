"""Image-score rules and threshold calibrations of the image-image decoder, compared on real data.

For each category: the good training images are encoded once; a memory bank per fold (k folds)
scores each good image with a bank that does not contain it (cross-fitted good maps); the
product's own fit (a bank on 80 % of the good images, their held-out 20 % scored, then added to
the bank, as ``training.Trainer`` does) scores the test images. Then, without refitting:

- image-score rules: the maximum of the smoothed map (what the product did), the mean of its top
  k % of pixels, and the maximum after normalising every position by the good maps' own mean and
  spread there (cross-fitted good maps only; test images are never used to fit anything);
- calibrations: the log-normal bound on the 20 % held-out scores (what the product did), the
  same bound on all cross-fitted scores, and a conformal order statistic of the cross-fitted
  scores where there are enough of them (else that bound);

each scored by image AUROC, and false-reject and detection rates at the calibrated threshold
(target false-reject rate 1 %). Pixel AUROC and AUPRO of each rule's map at 256 x 256, as today.

    .venv/bin/python benchmarks/score_rules.py --mode image-image [--categories ...] [--folds 5]
        [--image-size 256] [--keep-aspect] [--json OUT]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.data.images import load_image
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.decoders.coreset import greedy_coreset
from inspect_app.decoders.image_image import ImageImageDecoder, aggregate_patches, smooth_upsample
from inspect_app.metrics.curves import aupro, auroc
from inspect_app.post_processing.calibration import LogNormalTail
from inspect_app.pre_processing import input_shape
from inspect_app.training import encode_images, new_model

from common import (
    CATEGORIES,
    RESULTS,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    run_header,
    set_threads,
    write_json,
)

EVAL_SIZE = 256  # pixel metrics on 256 x 256 maps and masks, whatever the model's input shape
TARGET_FRR = 0.01


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_bank(channels: int, config: InspectorConfig) -> ImageImageDecoder:
    cfg = config.image_image
    return ImageImageDecoder(channels, cfg.aggregation_kernel, cfg.coreset_ratio, cfg.coreset_projection_dim,
                             config.seed)


def maps_of(category: MVTecCategory, config: InspectorConfig, folds: int) -> dict[str, np.ndarray]:
    """Raw smoothed maps: cross-fitted good training maps, the product's held-out maps and its test maps."""
    goods = [load_image(p) for p in category.train_images()]
    shape = input_shape([g.shape[:2] for g in goods], config.backbone.image_size, config.backbone.keep_aspect)
    config = config.model_copy(update={"backbone": config.backbone.model_copy(update={"input_shape": shape})})
    model = new_model(config)
    kernel, sigma = config.image_image.aggregation_kernel, config.image_image.blur_sigma
    patches = aggregate_patches(encode_images(model, goods, 8).levels, kernel)
    n = len(goods)
    channels = patches.shape[1]

    def smooth(patch_maps: torch.Tensor) -> np.ndarray:
        return smooth_upsample(patch_maps, shape, sigma).numpy()

    fold_of = np.random.default_rng(config.seed).permutation(n) % max(folds, 1)
    cross = np.empty((n, *shape), np.float32)
    for f in range(folds):
        bank = new_bank(channels, config)
        bank.fit(patches[torch.as_tensor(fold_of != f)], int((fold_of != f).sum()))
        cross[fold_of == f] = smooth(bank.patch_scores(patches[torch.as_tensor(fold_of == f)]))
        log(f"  fold {f + 1}/{folds}: bank of {len(bank.memory_bank)} patches")
    n_hold = max(5, int(round(config.calibration.holdout_fraction * n)))
    order = np.random.default_rng(config.seed).permutation(n)
    hold, keep = torch.as_tensor(order[:n_hold]), torch.as_tensor(order[n_hold:])
    bank = new_bank(channels, config)
    bank.fit(patches[keep], len(keep))
    held_out = smooth(bank.patch_scores(patches[hold]))
    bank.extend(patches[hold])
    # A bank of every good image, and each good image scored by it without its own rows.
    full = new_bank(channels, config)
    flat = full.flatten(patches)
    per_image = patches.shape[2] * patches.shape[3]
    if n <= 16 or config.image_image.coreset_ratio >= 1:
        chosen = torch.arange(len(flat))
    else:
        chosen = greedy_coreset(flat, max(1, int(round(len(flat) * config.image_image.coreset_ratio))),
                                config.image_image.coreset_projection_dim, config.seed)
    full.set_bank(flat[chosen])
    source = chosen // per_image
    in_bank = np.empty((n, *shape), np.float32)
    for i in range(n):
        queries = flat[i * per_image:(i + 1) * per_image]
        d = torch.addmm(full.bank_sq.unsqueeze(0), queries, full.memory_bank.T, alpha=-2.0)
        d[:, source == i] = float("inf")
        nearest = (d.amin(1) + (queries * queries).sum(1)).clamp_min(0).sqrt()
        in_bank[i] = smooth(nearest.view(1, *patches.shape[2:]))[0]
    samples = category.test_samples()
    test, test_full = [], []
    for start in range(0, len(samples), 16):
        images = [load_image(s.path) for s in samples[start:start + 16]]
        test_patches = aggregate_patches(encode_images(model, images, 16).levels, kernel)
        test.append(smooth(bank.patch_scores(test_patches)))
        test_full.append(smooth(full.patch_scores(test_patches)))
    log(f"  input {shape[1]}x{shape[0]}, {n} good training images, {len(samples)} test images")
    if folds == 0:  # no cross-fitted banks: the in-bank leave-one-out maps stand in for them
        cross = in_bank
    return {"cross": cross, "held_out": held_out, "test": np.concatenate(test), "in_bank": in_bank,
            "test_full": np.concatenate(test_full), "labels": np.array([s.is_defective for s in samples])}


class PositionStats:
    """Per-position mean and spread of good maps; the spread is floored by the maps' overall
    spread, so that a few good images cannot make one position's spread vanish."""

    def __init__(self, good_maps: np.ndarray):
        self.mean = good_maps.mean(axis=0)
        spread = good_maps.std(axis=0, ddof=1) if len(good_maps) > 1 else np.zeros_like(self.mean)
        floor = float(good_maps.std())
        self.spread = np.sqrt(spread**2 + (0.5 * floor) ** 2)

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        return (maps - self.mean) / self.spread


def top_fraction_mean(maps: np.ndarray, fraction: float) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return np.partition(flat, -k, axis=1)[:, -k:].mean(axis=1)


def inner_max(maps: np.ndarray, border: float) -> np.ndarray:
    h, w = maps.shape[1:]
    dy, dx = int(round(border * h)), int(round(border * w))
    return maps[:, dy:h - dy, dx:w - dx].reshape(len(maps), -1).max(axis=1)


def excess_mass(maps: np.ndarray, level: float) -> np.ndarray:
    """How much of the map lies above ``level``, summed: a region-level score (area x strength)."""
    return np.clip(maps - level, 0, None).reshape(len(maps), -1).sum(axis=1) / maps[0].size + 1e-6


def rule_scores(maps: dict[str, np.ndarray]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Image-score rules, each a function of a stack of raw maps; those that learn something learn
    it from the cross-fitted good maps only."""
    position = PositionStats(maps["cross"])
    level = float(np.quantile(maps["cross"], 0.999))
    return {
        "max inside a 6 % border": lambda m: inner_max(m, 0.06),
        "excess mass over the good 99.9 % level": lambda m: excess_mass(m, level),
        "max": lambda m: m.reshape(len(m), -1).max(axis=1),
        "top 1 % mean": lambda m: top_fraction_mean(m, 0.01),
        "top 0.1 % mean": lambda m: top_fraction_mean(m, 0.001),
        "position-normalised max": lambda m: position(m).reshape(len(m), -1).max(axis=1),
        "position-normalised top 0.1 % mean": lambda m: top_fraction_mean(position(m), 0.001),
    }


def lognormal_bound(scores: np.ndarray, target: float) -> float:
    """The product's rule: log-normal prediction bound (Student t) for ``target``; scores that can be
    zero or negative (normalised rules) are shifted to be positive first."""
    shift = max(0.0, 1e-3 - float(scores.min()))
    return float(LogNormalTail.fit(scores + shift).bound(target)) - shift


def conformal_or_bound(scores: np.ndarray, target: float) -> float:
    """The ceil((n + 1)(1 - target))-th smallest score when it exists (a distribution-free bound
    on the false-reject rate of exchangeable new good parts), else the log-normal bound."""
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - target))
    if rank <= n:
        return float(np.sort(scores)[rank - 1])
    return lognormal_bound(scores, target)


def evaluate(category: str, maps: dict[str, np.ndarray], with_cross_fit: bool) -> list[dict]:
    labels = maps["labels"]
    rows = []
    for name, rule in rule_scores(maps).items():
        test, cross, held = rule(maps["test"]), rule(maps["cross"]), rule(maps["held_out"])
        row = {"category": category, "rule": name, "image_auroc": auroc(test, labels)}
        calibrations = [("held-out bound", lognormal_bound(held, TARGET_FRR))]
        if with_cross_fit:
            calibrations += [("cross-fit bound", lognormal_bound(cross, TARGET_FRR)),
                             ("cross-fit conformal", conformal_or_bound(cross, TARGET_FRR))]
        for cal_name, threshold in calibrations:
            fails = test > threshold
            row[cal_name] = {"frr": float(fails[~labels].mean()), "detection": float(fails[labels].mean())}
        full_test, in_bank = rule(maps["test_full"]), rule(maps["in_bank"])
        row["full-bank image_auroc"] = auroc(full_test, labels)
        for cal_name, threshold in (("in-bank leave-one-out bound", lognormal_bound(in_bank, TARGET_FRR)),
                                    ("in-bank leave-one-out conformal", conformal_or_bound(in_bank, TARGET_FRR))):
            fails = full_test > threshold
            row[cal_name] = {"frr": float(fails[~labels].mean()), "detection": float(fails[labels].mean())}
        rows.append(row)
    return rows


def pixel_figures(maps: dict[str, np.ndarray], masks: np.ndarray, keep: np.ndarray) -> dict[str, dict]:
    position = PositionStats(maps["cross"])
    out = {}
    for name, transform in (("raw", lambda m: m), ("position-normalised", position)):
        resized = np.stack([cv2.resize(transform(m[None])[0], (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_LINEAR)
                            for m in maps["test"][keep]]).astype(np.float32)
        out[name] = {"pixel_auroc": auroc(resized, masks[keep]), "aupro": aupro(resized, masks[keep])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the decoder mode (image-image only: the rules act on its distance maps)")
    parser.add_argument("--categories", type=category_names, default=list(CATEGORIES))
    parser.add_argument("--folds", type=int, default=5, help="cross-fitted banks (0: none; the in-bank "
                        "leave-one-out maps then stand in for position statistics)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--keep-aspect", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "score_rules.json")
    args = parser.parse_args()
    if args.mode != "image-image":
        parser.error("score_rules compares rules on the image-image decoder's maps: --mode image-image")
    config = InspectorConfig(mode=args.mode, seed=args.seed,
                             backbone=BackboneConfig(image_size=args.image_size, keep_aspect=args.keep_aspect))
    header = run_header(args, config)
    set_threads(args.threads)
    rows, pixels = [], {}
    for name in args.categories:
        log(f"{name}:")
        category = MVTecCategory(category_dir(name))
        maps = maps_of(category, config, args.folds)
        samples = category.test_samples()
        masks = np.stack([s.mask((EVAL_SIZE, EVAL_SIZE)) for s in samples])
        keep = np.array([not s.is_defective or bool(masks[i].any()) for i, s in enumerate(samples)])
        rows += evaluate(name, maps, args.folds > 0)
        pixels[name] = pixel_figures(maps, masks, keep)
        for row in rows[-7:]:
            log(f"  {row['rule']:>36}: AUROC {row['image_auroc']:.4f} | " + " | ".join(
                f"{k} frr {v['frr']:.3f} det {v['detection']:.3f}" for k, v in row.items() if isinstance(v, dict))
                + f" | full-bank AUROC {row['full-bank image_auroc']:.4f}")
        log(f"  pixels: {pixels[name]}")
    print("| rule | " + " | ".join(args.categories) + " | mean |\n|---|" + "---|" * (len(args.categories) + 1))
    for rule in dict.fromkeys(r["rule"] for r in rows):
        values = [r["image_auroc"] for r in rows if r["rule"] == rule]
        print(f"| {rule} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {statistics.fmean(values):.4f} |")
    write_json(args.json, header, {"rows": rows, "pixels": pixels})


if __name__ == "__main__":
    main()
