"""Greedy k-center coreset selection (PatchCore), batched in torch."""

from __future__ import annotations

import torch


def greedy_coreset(features: torch.Tensor, n_select: int, projection_dim: int = 64, seed: int = 0,
                   initial: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of ``n_select`` rows of ``features`` [N, C] chosen by greedy k-center.

    Distances are computed after a Gaussian random projection to ``projection_dim`` (the
    Johnson-Lindenstrauss trick PatchCore uses), which cuts the memory traffic per step.
    ``initial`` [M, C] are already-chosen centres (to extend an existing coreset).
    """
    n = features.shape[0]
    n_select = max(1, min(n_select, n))
    generator = torch.Generator().manual_seed(seed)
    if projection_dim and projection_dim < features.shape[1]:
        proj = torch.randn(features.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        x = features @ proj
        init = initial @ proj if initial is not None else None
    else:
        x, init = features, initial
    x = x.contiguous()
    sq = (x * x).sum(1)
    if init is not None and len(init):
        min_d = torch.cdist(x, init).pow_(2).amin(1)
        first = int(torch.argmax(min_d))
    else:
        min_d = torch.full((n,), float("inf"))
        first = int(torch.randint(n, (1,), generator=generator))
    chosen = torch.empty(n_select, dtype=torch.long)
    idx = first
    for i in range(n_select):
        chosen[i] = idx
        c = x[idx]
        d = sq - 2.0 * (x @ c) + c.dot(c)
        torch.minimum(min_d, d, out=min_d)
        idx = int(torch.argmax(min_d))
    return chosen
