"""Fingerprints of model weights: a profile records its encoder's, and a different checkpoint
(or a random init) is refused at load time instead of silently giving other scores."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_SAMPLES_PER_TENSOR = 1024


def weights_digest(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """Short digest of a set of weights: every tensor's name, shape and dtype plus an evenly strided
    sample of its values, so a different checkpoint (or random init) changes it without hashing
    hundreds of megabytes."""
    h = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
        sample = flat[::step][:_SAMPLES_PER_TENSOR].cpu().float().contiguous()
        h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]
