"""Training data for the explanation adapter, product-agnostic: synthesised defects over good
images of several products, run through the real Inspector, with the facts taken from the
synthetic ground truth (kind, location, size, shape) so that targets and facts always agree.

Each product gets a fused-mode Inspector fitted on part of its good images; defects are drawn on
the other part, so the maps look like those of unseen parts. Only what the adapter needs is kept
(anomaly map, kind posteriors, pooled embedding, the facts), in a safetensors file plus JSON, so
training steps run only the adapter and the language model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_app.explain.facts import Facts, RegionFact
from inspect_app.imaging.locations import size_word
from inspect_app.progress import ProgressCallback
from inspect_app.vocabulary import sanitize_product

MAP_SIZE = 64  # anomaly map side the adapter sees
GRID_SIZE = 32  # kind posterior side the adapter sees


@dataclass
class ProductSource:
    name: str
    images: list[Path]


def shared_sources(datasets_dir: Path, max_per_product: int = 240) -> list[ProductSource]:
    """Good images of the shared datasets (train/good) and the elpv-dataset normal cells."""
    from inspect_app.data.datasets import elpv_cells
    from inspect_app.data.images import list_images

    sources = []
    for name, rel in (("bottle", "mvtec_ad/bottle"), ("magnetic tile", "magnetic_tile/tile"),
                      ("cookie", "lookout_cookies/cookie")):
        folder = datasets_dir / rel / "train" / "good"
        if folder.is_dir():
            sources.append(ProductSource(name, list_images(folder)[0]))
    good_cells, _ = elpv_cells()
    sources.append(ProductSource("solar cell", list(good_cells)))
    rng = np.random.default_rng(0)
    for src in sources:
        if len(src.images) > max_per_product:
            src.images = [src.images[i] for i in sorted(rng.choice(len(src.images), max_per_product, replace=False))]
    return sources


def resize_maps(anomaly_map: np.ndarray | None, kind_maps: np.ndarray | None,
                n_kinds: int) -> tuple[np.ndarray, np.ndarray]:
    """(anomaly [MAP, MAP], kinds [K, GRID, GRID]) at the adapter's fixed sizes; zeros when absent."""
    anomaly = np.zeros((MAP_SIZE, MAP_SIZE), np.float32) if anomaly_map is None else \
        cv2.resize(anomaly_map.astype(np.float32), (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_AREA)
    if kind_maps is None or kind_maps.shape[0] != n_kinds:
        kinds = np.zeros((n_kinds, GRID_SIZE, GRID_SIZE), np.float32)
    else:
        kinds = np.stack([cv2.resize(k.astype(np.float32), (GRID_SIZE, GRID_SIZE), interpolation=cv2.INTER_AREA)
                          for k in kind_maps])
    return anomaly, kinds


def _ground_truth_region(mask: np.ndarray, kind: str, kind_maps: np.ndarray | None, kinds: list[str],
                         part_box) -> RegionFact | None:
    """The synthetic defect's facts, measured with the same region logic as inspection."""
    from inspect_app.post_processing.regions import extract_regions

    h, w = mask.shape
    regions = extract_regions(mask.astype(np.float32), (w, h), part_box, 0.5)
    if not regions:
        return None
    biggest = max(regions, key=lambda r: r.area_fraction)
    area = float(mask.sum()) / max((part_box[2] - part_box[0]) * (part_box[3] - part_box[1]), 1) if part_box \
        else float(mask.mean())
    size = size_word(area)
    probability = None
    if kind_maps is not None and kind in kinds:
        small = cv2.resize(mask.astype(np.float32), kind_maps.shape[:0:-1], interpolation=cv2.INTER_AREA)
        weight = small.sum()
        if weight > 0:
            probability = round(float((kind_maps[kinds.index(kind)] * small).sum() / weight), 2)
    return RegionFact(biggest.location, size, biggest.shape, kind, probability)


def build_dataset(sources: Sequence[ProductSource], out: Path, seed: int = 0, fit_share: float = 0.5,
                  max_fit: int = 40, samples_per_product: int = 160, normal_share: float = 0.25,
                  image_text_steps: int = 200, progress: ProgressCallback | None = None) -> Path:
    """Fit, synthesise, inspect; write ``out`` (.safetensors) and ``out`` with .json (facts).

    The image-text decoders train for fewer steps than a product fit (200, not 600): their kind
    maps are inputs here, and four fits at full length would cost 20 minutes more on this CPU."""
    import torch
    from safetensors.torch import save_file

    from inspect_app.config import ImageTextConfig, InspectorConfig
    from inspect_app.data.images import load_image
    from inspect_app.inspector import Inspector
    from inspect_app.results import EvidenceFor, Verdict
    from inspect_app.synthesis import DefectSynthesizer, SyntheticDefect
    from inspect_app.synthesis.defects import SynthesisError

    anomaly_maps, kind_maps, embeddings, records = [], [], [], []
    kinds: list[str] = []
    for p_index, source in enumerate(sources):
        part = out.with_name(f"{out.stem}.part{p_index}.npz")
        if part.is_file():  # built by an earlier, interrupted run with the same arguments
            cached = np.load(part, allow_pickle=False)
            anomaly_maps += list(cached["anomaly"])
            kind_maps += list(cached["kinds"])
            embeddings += list(cached["embedding"])
            records += json.loads(str(cached["records"]))
            kinds = json.loads(str(cached["kind_names"]))
            continue
        first = len(records)
        rng = np.random.default_rng(seed + 1000 * p_index)
        order = rng.permutation(len(source.images))
        n_fit = min(max_fit, max(10, int(fit_share * len(order))))
        fit_paths = [source.images[i] for i in order[:n_fit]]
        synth_paths = [source.images[i] for i in order[n_fit:]] or fit_paths
        config = InspectorConfig(mode="fused", seed=seed, image_text=ImageTextConfig(steps=image_text_steps))
        inspector = Inspector(config, product=source.name.replace(" ", "-"))
        inspector.fit(fit_paths, progress=progress)
        kinds = inspector.kinds
        synthesizer = DefectSynthesizer(seed=seed + p_index)
        goods = [load_image(p) for p in synth_paths]
        n_normal = int(samples_per_product * normal_share)
        # (good image index, whether a defect is drawn on it)
        plan = [(i % len(goods), False) for i in range(min(n_normal, len(goods)))]
        plan += [(int(rng.integers(len(goods))), True) for _ in range(samples_per_product - len(plan))]
        for start in range(0, len(plan), 16):
            chunk = plan[start:start + 16]
            images: list[np.ndarray] = []
            truths: list[SyntheticDefect | None] = []
            for idx, with_defect in chunk:
                if not with_defect:
                    images.append(goods[idx])
                    truths.append(None)
                else:
                    donor = goods[int(rng.integers(len(goods)))]
                    try:
                        sample = synthesizer.synthesize(goods[idx], donor=donor, rng=rng)
                    except SynthesisError:
                        continue  # a kind this product cannot show (e.g. a deformation on black): no sample
                    images.append(sample.image)
                    truths.append(sample)
            if not images:
                continue
            for result, truth in zip(inspector.predict_batch(images, evidence=EvidenceFor.ALL), truths, strict=True):
                expected = Verdict.PASS if truth is None else Verdict.FAIL
                if result.verdict != expected or result.score is None or result.evidence is None:
                    continue  # facts and verdict must agree; missed or false detections are left out
                evidence = result.evidence
                regions: tuple[RegionFact, ...] = ()
                if truth is not None:
                    region = _ground_truth_region(truth.mask, truth.kind, evidence.kind_maps, kinds, result.part_box)
                    if region is None:
                        continue
                    regions = (region,)
                facts = Facts(sanitize_product(source.name), result.verdict, round(result.score, 3), result.threshold,
                              regions, len(regions))
                anomaly, kmaps = resize_maps(result.anomaly_map, evidence.kind_maps, len(kinds))
                anomaly_maps.append(anomaly.astype(np.float16))
                kind_maps.append(kmaps.astype(np.float16))
                embeddings.append(evidence.embedding.astype(np.float32))
                records.append({"product": source.name, "facts": asdict(facts),
                                "method": None if truth is None else truth.method})
            if progress:
                progress(min(start + 16, len(plan)), len(plan), f"synthesising and inspecting {source.name}")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(part, anomaly=np.stack(anomaly_maps[first:]), kinds=np.stack(kind_maps[first:]),
                 embedding=np.stack(embeddings[first:]), records=json.dumps(records[first:]),
                 kind_names=json.dumps(kinds))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"anomaly": torch.from_numpy(np.stack(anomaly_maps)), "kinds": torch.from_numpy(np.stack(kind_maps)),
               "embedding": torch.from_numpy(np.stack(embeddings))}, str(out))
    out.with_suffix(".json").write_text(json.dumps({"seed": seed, "kinds": kinds, "records": records}))
    return out


def facts_from_record(record: dict) -> Facts:
    f = dict(record["facts"])
    f["regions"] = tuple(RegionFact(**r) for r in f["regions"])
    return Facts(**f)
