"""Pictures people look at: heatmap overlays with region boxes, and score histograms."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.images import load_image
from inspect_app.results import InspectionResult


def overlay(image: np.ndarray, result: InspectionResult, boxes: bool = True, alpha: float = 0.45) -> np.ndarray:
    """RGB image with the calibrated anomaly map as a heatmap (red = above threshold), region
    boxes and the verdict banner."""
    out = image.copy()
    h, w = out.shape[:2]
    if result.anomaly_map is not None:
        amap = cv2.resize(result.anomaly_map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        heat = cv2.applyColorMap(np.clip(amap * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
        weight = (alpha * np.clip((amap - 0.2) / 0.3, 0, 1))[..., None]
        out = (out * (1 - weight) + heat * weight).astype(np.uint8)
    thickness = max(2, round(min(h, w) / 200))
    if boxes:
        for region in result.regions:
            x0, y0, x1, y1 = region.bbox
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 0), thickness)
    colour = {"PASS": (0, 160, 0), "FAIL": (220, 0, 0)}.get(result.verdict, (120, 120, 120))
    label = f"{result.verdict} {result.score:.2f}" if result.score is not None else result.verdict
    scale = max(0.5, min(h, w) / 500)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(out, (0, 0), (tw + 12, th + 14), colour, -1)
    cv2.putText(out, label, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def save_overlay(source, result: InspectionResult, path: str | Path, boxes: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = source if isinstance(source, np.ndarray) else load_image(source)
    cv2.imwrite(str(path), cv2.cvtColor(overlay(image, result, boxes), cv2.COLOR_RGB2BGR))
    return path


def score_histogram(normal_scores, threshold: float, path: str | Path, title: str = "",
                    defect_scores=None) -> Path:
    """Histogram of held-out normal scores (and optional defect scores) with the threshold line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.hist(normal_scores, bins=30, color="#3a7", alpha=0.8, label="good (held out)")
    if defect_scores is not None and len(defect_scores):
        ax.hist(defect_scores, bins=30, color="#c33", alpha=0.6, label="defective")
    ax.axvline(threshold, color="k", linestyle="--", label="threshold")
    ax.set_xlabel("raw anomaly score")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
