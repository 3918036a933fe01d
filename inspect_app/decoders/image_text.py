"""Image-text decoder: each patch is compared with text embeddings of the normal state and of
each defect kind.

Per encoder level, a learned linear projection maps patch features into the text embedding
space; cosine similarities with the state embeddings (over a learned temperature) give, per
patch, a softmax over {normal} + defect kinds: an anomaly probability map (1 - p(normal)) and
defect-kind posteriors. The projections are trained on good images with synthesised defects
that carry a mask and a kind (focal + dice loss); the text embeddings stay frozen, so the
kinds keep the meaning their descriptions give them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inspect_app.errors import NotEnoughImagesError
from inspect_app.progress import ProgressCallback


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each patch of a [B, C, H, W] map."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)  # a constant shape: exports
        return x.permute(0, 3, 1, 2)


class ImageTextDecoder(nn.Module):
    """Patch-to-text scoring. ``text_embeddings`` [1 + K, D]: row 0 is the normal state."""

    text: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, channels: list[int], text_embeddings: torch.Tensor, kinds: list[str]):
        super().__init__()
        if text_embeddings.shape[0] != len(kinds) + 1:
            raise ValueError("text_embeddings needs one row for 'normal' plus one per kind")
        self.kinds = list(kinds)
        dim = text_embeddings.shape[1]
        # Prompt ensembles of one product share most of their direction ("a photo of a <product>
        # ..."); centring on the states' mean keeps what tells the states apart.
        text = text_embeddings.float()
        self.register_buffer("text", F.normalize(text - text.mean(0, keepdim=True), dim=-1))
        self.register_buffer("feature_mean", torch.zeros(sum(channels)))
        self.register_buffer("feature_std", torch.ones(sum(channels)))
        self.channels = list(channels)
        self.projections = nn.ModuleList(nn.Sequential(LayerNorm2d(c), nn.Conv2d(c, dim, 1)) for c in channels)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.07)))

    def init_zero_shot(self, joint_projection: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """Start from the encoder's own patch-to-joint-space projection (OpenCLIP: ``ln_post``
        weight [C], bias [C] and ``proj`` [C, D]), so the decoder scores patches against the text
        before any training (WinCLIP-like)."""
        self.feature_mean.zero_()
        self.feature_std.fill_(1.0)
        norm_weight, norm_bias, proj = joint_projection
        for seq in self.projections:
            norm, conv = cast(nn.Sequential, seq)
            assert isinstance(norm, LayerNorm2d) and isinstance(conv, nn.Conv2d)
            norm.weight.data.copy_(norm_weight)
            norm.bias.data.copy_(norm_bias)
            conv.weight.data.copy_(proj.T.reshape(proj.shape[1], proj.shape[0], 1, 1))
            assert conv.bias is not None
            conv.bias.data.zero_()
        self.log_temperature.data.fill_(math.log(0.01))

    def set_feature_stats(self, levels: list[torch.Tensor]) -> None:
        """Per-channel standardisation from normal images (fixed, so training only moves projections)."""
        means, stds = [], []
        for feat in levels:
            feat = feat.float()
            means.append(feat.mean(dim=(0, 2, 3)))
            stds.append(feat.std(dim=(0, 2, 3)).clamp_min(1e-4))
        self.feature_mean.copy_(torch.cat(means))
        self.feature_std.copy_(torch.cat(stds))

    def _prepare(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Standardised features of each patch on its own. Unlike the image-image decoder, no 3 x 3
        neighbourhood average: it measured better in image-text mode (mean image AUROC 0.807 ->
        0.857, pixel 0.807 -> 0.842 over three categories) and the same fused (benchmarks/NOTEBOOK.md, 2026-12-02)."""
        out, start = [], 0
        for feat, c in zip(levels, self.channels, strict=True):
            feat = feat.float()
            mean = self.feature_mean[start:start + c].view(1, -1, 1, 1)
            std = self.feature_std[start:start + c].view(1, -1, 1, 1)
            out.append((feat - mean) / std)
            start += c
        return out

    def _cosines(self, feat: torch.Tensor, projection: nn.Module) -> torch.Tensor:
        """Cosine similarity [B, 1 + K, H, W] of each patch's projection with each state's text.

        When the projection widens the patch (C < D: 40 and 112 channels into MiniLM's 384), the
        [B, D, H, W] projection is never formed: its products with the texts come from the texts
        mapped back through the weights, W^T t [1 + K, C], and its squared norm from the Gram
        matrix, |W y + b|^2 = y^T (W^T W) y + 2 (W^T b) . y + b . b. The same function (float32
        rounding apart); training the fused mode's decoder on bottle-sized batches spent most
        of its time on the element-wise work of the D-channel maps (NOTEBOOK 2026-12-07)."""
        seq = cast(nn.Sequential, projection)
        norm, conv = seq[0], cast(nn.Conv2d, seq[1])
        y = norm(feat)
        weight = conv.weight.flatten(1)  # [D, C]
        bias = conv.bias
        assert bias is not None
        if weight.shape[0] <= weight.shape[1]:
            return torch.einsum("bdhw,kd->bkhw", F.normalize(conv(y), dim=1), self.text)
        dots = torch.einsum("kc,bchw->bkhw", self.text @ weight, y) + (self.text @ bias).view(1, -1, 1, 1)
        gram_y = torch.einsum("cd,bdhw->bchw", weight.T @ weight, y)
        squared = (y * gram_y).sum(1) + 2 * torch.einsum("c,bchw->bhw", weight.T @ bias, y) + bias @ bias
        return dots / squared.clamp_min(1e-24).sqrt().unsqueeze(1)  # F.normalize's floor, 1e-12, on the norm

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Logits [B, 1 + K, H, W] on the finest level's grid (mean over levels)."""
        size = levels[0].shape[-2:]
        total = torch.zeros(())
        scale = self.log_temperature.exp()
        for feat, proj in zip(self._prepare(levels), self.projections, strict=True):
            logits = self._cosines(feat, proj) / scale
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            total = total + logits
        return total / len(self.projections)

    @torch.inference_mode()
    def maps(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(anomaly probability [B, H, W], defect-kind posteriors [B, K, H, W])."""
        probs = self.forward(levels).softmax(dim=1)
        anomaly = 1.0 - probs[:, 0]
        kinds = probs[:, 1:] / probs[:, 1:].sum(dim=1, keepdim=True).clamp_min(1e-8)
        return anomaly, kinds


def anomaly_odds(anomaly: torch.Tensor) -> torch.Tensor:
    """Odds p / (1 - p) of an anomaly-probability map, the score the image-text mode calibrates.

    The threshold is a log-normal tail bound on held-out good scores. Bounded probabilities spread
    over decades on good parts (bottle: 0.0005 to 0.38), and their bound landed above 1, so the
    mode could fail no part; on odds the same bound is a normal tail of the logit.
    """
    p = anomaly.clamp(0.0, 1.0 - 1e-6)
    return p / (1.0 - p)


@dataclass
class TrainingSet:
    """Encoded training samples: level features, patch-grid masks (soft) and kind targets."""

    levels: list[torch.Tensor]  # each [N, C_l, H_l, W_l]
    masks: torch.Tensor  # [N, H, W] fraction of each patch covered by the defect
    kinds: torch.Tensor  # [N] index into decoder.kinds + 1 (0 = normal sample)
    skipped_kinds: dict[str, str] = field(default_factory=dict)  # kind -> why no sample of it was drawn


MIN_ONE_CYCLE_STEPS = 30


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss over [B, C, H, W] logits and [B, H, W] class targets."""
    logp = F.log_softmax(logits, dim=1)
    logp_t = logp.gather(1, target.unsqueeze(1)).squeeze(1)
    return (-(1 - logp_t.exp()) ** gamma * logp_t).mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft dice over the batch (defect-free samples contribute only through false positives)."""
    inter = (prob * target).sum()
    return 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)


def train_image_text_decoder(decoder: ImageTextDecoder, data: TrainingSet, steps: int = 600,
                             batch_size: int = 16, lr: float = 1e-2, seed: int = 0,
                             progress: ProgressCallback | None = None) -> list[float]:
    """Train the projections (and temperature) with focal + dice loss for a fixed number of
    steps (so small products get as much training as large ones); returns the loss per 50 steps."""
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    # One-cycle needs a warm-up of at least two steps (10 steps gave it a zero-length phase and a
    # division by zero); shorter runs keep the learning rate constant.
    scheduler: torch.optim.lr_scheduler.LRScheduler = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
        if steps >= MIN_ONE_CYCLE_STEPS else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0))
    n = data.masks.shape[0]
    history, window = [], []
    decoder.train()
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        levels = [lvl[idx] for lvl in data.levels]
        mask = data.masks[idx]
        kinds = data.kinds[idx].view(-1, 1, 1)
        target = torch.where(mask > 0.5, kinds, torch.zeros_like(kinds))
        logits = decoder(levels)
        anomaly = 1 - logits.softmax(dim=1)[:, 0]
        loss = focal_loss(logits, target) + dice_loss(anomaly, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        window.append(float(loss.detach()))
        if (step + 1) % 50 == 0 or step + 1 == steps:
            history.append(sum(window) / len(window))
            window = []
            if progress:
                progress(step + 1, steps, "training image-text decoder")
    decoder.eval()
    return history


@dataclass(frozen=True)
class Unplaceable:
    """A defect kind could not be drawn on a given image, and why."""

    reason: str


class SynthesizeDefect(Protocol):
    """Paint a defect of ``kind`` on a good image (``donor``: another good image some kinds
    borrow from); returns the defective image and its mask [H, W], or ``Unplaceable`` when this
    kind cannot be drawn on this image."""

    def __call__(self, image: np.ndarray, donor: np.ndarray, kind: str,
                 rng: np.random.Generator, /) -> tuple[np.ndarray, np.ndarray] | Unplaceable: ...


# A kind is dropped once it failed on this share of its tries, after at least this many tries: a
# texture cannot show a part's broken edge on any image, while a kind that fails on a few images
# only is drawn on others.
DROP_SHARE = 0.9
MIN_TRIES_TO_DROP = 5
MAX_TRIES_PER_SAMPLE = 4  # on average over the set, so a kind that mostly fails cannot stall the loop


def build_training_set(images: list[np.ndarray], normal_levels: list[torch.Tensor],
                       encode: Callable[[list[np.ndarray]], list[torch.Tensor]], synthesize: SynthesizeDefect,
                       kinds: list[str], per_image: int, max_synthetic: int, seed: int,
                       batch_size: int = 8, progress: ProgressCallback | None = None) -> TrainingSet:
    """Synthesise defects on good images (kinds cycled for balance), encode them, and pair them
    with the good images themselves as normal samples.

    ``synthesize(image, donor, kind, rng) -> (defect_image, mask) | Unplaceable``; ``encode(list of
    images) -> levels``; ``normal_levels`` are the already-encoded good images. A kind that cannot
    be drawn on an image is tried on another; one that fails on (almost) all is left out and
    listed with its reason in ``TrainingSet.skipped_kinds``. Raises ``NotEnoughImagesError`` when
    no kind can be drawn at all: the decoder would have nothing to learn defects from.
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    total = min(n * per_image, max_synthetic)
    grid_h, grid_w = normal_levels[0].shape[-2:]
    syn_levels: list[list[torch.Tensor]] = [[] for _ in normal_levels]
    masks: list[torch.Tensor] = []
    targets: list[int] = []
    pending_images: list[np.ndarray] = []
    pending_masks: list[np.ndarray] = []
    active = list(kinds)
    tries = dict.fromkeys(kinds, 0)
    failures: dict[str, list[str]] = {kind: [] for kind in kinds}
    skipped: dict[str, str] = {}

    def flush() -> None:
        for store, feat in zip(syn_levels, encode(pending_images), strict=True):
            store.append(feat)
        for m in pending_masks:
            masks.append(torch.from_numpy(cv2.resize(m.astype(np.float32), (grid_w, grid_h),
                                                     interpolation=cv2.INTER_AREA)))
        pending_images.clear()
        pending_masks.clear()

    turn = attempts = 0
    while len(targets) < total and active and attempts < MAX_TRIES_PER_SAMPLE * total:
        src = int(rng.integers(n))
        donor = images[int(rng.integers(n))] if n > 1 else images[src]
        kind = active[turn % len(active)]
        drawn = synthesize(images[src], donor, kind, rng)
        attempts += 1
        tries[kind] += 1
        if isinstance(drawn, Unplaceable):  # the same kind's turn again, on another image
            failures[kind].append(drawn.reason)
            if tries[kind] >= MIN_TRIES_TO_DROP and len(failures[kind]) >= DROP_SHARE * tries[kind]:
                active.remove(kind)
                skipped[kind] = f"could not be drawn on {len(failures[kind])} of {tries[kind]} tries " \
                                f"({failures[kind][-1]})"
            continue
        turn += 1
        pending_images.append(drawn[0])
        pending_masks.append(drawn[1])
        targets.append(kinds.index(kind) + 1)
        if len(pending_images) == batch_size:
            flush()
        if progress and (len(targets) % batch_size == 0 or len(targets) == total):
            progress(len(targets), total, "synthesising defects")
    if pending_images:
        flush()
    if not targets:
        reasons = "; ".join(f"{kind}: {failures[kind][-1]}" for kind in kinds if failures[kind])
        raise NotEnoughImagesError(f"no defect could be synthesised on any of the {n} good images ({reasons}), "
                                   "so the image-text decoder cannot be trained: fit with --mode image-image")
    levels = [torch.cat([normal.float(), *store]) for normal, store in zip(normal_levels, syn_levels, strict=True)]
    normal_masks = torch.zeros(normal_levels[0].shape[0], grid_h, grid_w)
    return TrainingSet(levels=levels, masks=torch.cat([normal_masks, torch.stack(masks)]),
                       kinds=torch.tensor([0] * normal_levels[0].shape[0] + targets, dtype=torch.long),
                       skipped_kinds=skipped)
