"""Threshold-free figures of merit: AUROC from scikit-learn, AUPRO from anomalib's public metric.

scikit-learn's ``roc_auc_score`` takes scores as they are. torchmetrics' ROC (under anomalib's
AUROC) passes scores outside [0, 1] through a sigmoid first, which saturates raw distances into
ties, so callers had to rescale them; here raw and calibrated scores both work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

AUPRO_FPR_LIMIT = 0.3  # the usual MVTec AD convention: the PRO curve up to 30 % false-positive pixels


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` (higher = more anomalous) against binary ``labels``.

    Arrays of any shape are flattened: image scores against image labels, or anomaly maps against
    masks (pixel AUROC). Raises ``ValueError`` unless ``labels`` hold both classes (scikit-learn
    would return NaN with a warning, which a table would then show as a figure).
    """
    from sklearn.metrics import roc_auc_score

    flat_labels = np.ravel(labels)
    if flat_labels.size == 0 or flat_labels.min() == flat_labels.max():
        raise ValueError("AUROC needs both normal (0) and anomalous (1) labels")
    return float(roc_auc_score(flat_labels, np.ravel(scores)))


@dataclass(frozen=True)
class _PixelBatch:
    """The two fields anomalib's ``AUPRO`` reads from a batch, by name (its ``fields``). Its own
    ``ImageBatch`` would also demand the input images, which the metric never reads."""

    anomaly_map: torch.Tensor
    gt_mask: torch.Tensor


def aupro(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Normalised area under the per-region overlap curve up to ``fpr_limit`` (anomalib's ``AUPRO``).

    ``maps`` [N, H, W] (higher = more anomalous) and binary ``masks`` [N, H, W]; every connected
    region of a mask counts equally, whatever its size, which pixel AUROC does not do.
    """
    from anomalib.metrics import AUPRO

    metric = AUPRO(fields=("anomaly_map", "gt_mask"), fpr_limit=fpr_limit)
    batch = _PixelBatch(torch.as_tensor(np.asarray(maps)), torch.as_tensor(np.asarray(masks)))
    metric.update(batch)  # type: ignore[arg-type]  # annotated as anomalib's Batch, read by field name
    return float(metric.compute())
