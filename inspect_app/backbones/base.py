"""The one interface every frozen image encoder offers to the decoders."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn


@dataclass
class EncodedImages:
    """Multi-level patch features (finest first) and one global embedding per image."""

    levels: list[torch.Tensor]  # each [B, C_l, H_l, W_l]
    global_embedding: torch.Tensor  # [B, D]


class Backbone(nn.Module):
    """A frozen encoder: ``encode(images) -> EncodedImages``.

    Subclasses set ``image_size``, ``mean``, ``std``, ``fingerprint`` (a string that changes
    whenever the weights or the returned features would change, stored in profiles) and, per
    returned level, its ``channels`` and ``strides`` (input pixels per feature cell).
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fingerprint: str
    levels: tuple[int, ...]
    channels: list[int]
    strides: list[int]

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        """Resize RGB uint8 arrays to the encoder's square input and normalise them."""
        size = self.image_size
        batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
            batch[i] = cv2.resize(image, (size, size), interpolation=interp)
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((tensor - mean) / std).contiguous(memory_format=torch.channels_last)

    def encode(self, images: torch.Tensor) -> EncodedImages:  # pragma: no cover - interface
        raise NotImplementedError
