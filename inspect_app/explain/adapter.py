"""The explanation adapter: soft tokens for the language model from what the Inspector measured.

A small CNN reads the calibrated anomaly map (64x64) and the defect-kind posterior maps (7 x
32x32, upsampled); its 3x3 pooled grid gives 9 map-derived tokens, one per image cell, the same
cells the location words name. 9 learned tokens carry the task; a linear projection of the
pooled encoder embedding is added to them, so they also know what the part looks like
(AnomalyGPT's 9 + 9 layout). Profiles without an image-text decoder give zero kind maps: the
adapter is trained with those zeroed part of the time, so it works on the anomaly map alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inspect_app.explain.dataset import GRID_SIZE, MAP_SIZE, resize_maps
from inspect_app.explain.language_model import CausalLM, LanguageModel

ADAPTER_FORMAT = 1


@dataclass
class AdapterConfig:
    hidden_size: int  # the language model's embedding width
    embedding_dim: int  # the encoder's pooled feature width (EfficientNet-Lite0 stages 3+5: 152)
    n_kinds: int = 7
    n_learned: int = 9
    n_map: int = 9  # a 3x3 grid
    width: int = 32
    embedding_scale: float = 0.1  # the LM's token embedding standard deviation, for the output scale

    @property
    def n_tokens(self) -> int:
        return self.n_learned + self.n_map


class ExplanationAdapter(nn.Module):
    """``forward(anomaly [B, 64, 64], kinds [B, K, 32, 32], embedding [B, E]) -> [B, k, hidden]``."""

    def __init__(self, config: AdapterConfig):
        super().__init__()
        self.config = config
        c, w, h = 1 + config.n_kinds, config.width, config.hidden_size
        self.cnn = nn.Sequential(
            nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(int(round(config.n_map ** 0.5))))
        self.cell = nn.Parameter(torch.zeros(config.n_map, 2 * w))
        self.map_proj = nn.Linear(2 * w, h)
        self.learned = nn.Parameter(torch.randn(config.n_learned, h) * config.embedding_scale)
        self.embed_norm = nn.LayerNorm(config.embedding_dim)
        self.embed_proj = nn.Linear(config.embedding_dim, h)
        nn.init.normal_(self.embed_proj.weight, std=config.embedding_scale / config.embedding_dim ** 0.5)
        nn.init.zeros_(self.embed_proj.bias)
        self.out_norm = nn.LayerNorm(h)
        nn.init.constant_(self.out_norm.weight, config.embedding_scale)

    def forward(self, anomaly: torch.Tensor, kinds: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        kinds = F.interpolate(kinds.float(), size=anomaly.shape[-2:], mode="bilinear", align_corners=False)
        maps = torch.cat([anomaly.float().unsqueeze(1), kinds], dim=1)
        grid = self.cnn(maps).flatten(2).transpose(1, 2) + self.cell  # [B, 9, 2w], row-major cells
        map_tokens = self.out_norm(self.map_proj(grid))
        learned = self.learned.unsqueeze(0) + self.embed_proj(self.embed_norm(embedding.float())).unsqueeze(1)
        return torch.cat([learned, map_tokens], dim=1)

    def inputs(self, result) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched adapter inputs for one ``InspectionResult`` (zeros for what it lacks)."""
        evidence = result.evidence
        anomaly, kinds = resize_maps(result.anomaly_map, evidence and evidence.kind_maps, self.config.n_kinds)
        embedding = evidence.embedding if evidence is not None else None
        if embedding is None or embedding.shape[0] != self.config.embedding_dim:
            raise ValueError(f"the adapter needs the encoder embedding of width {self.config.embedding_dim} "
                             f"(EfficientNet-Lite0); this result has "
                             f"{'none' if embedding is None else embedding.shape[0]}")
        return (torch.from_numpy(anomaly)[None], torch.from_numpy(kinds)[None],
                torch.from_numpy(np.asarray(embedding, np.float32))[None])

    def save(self, path: Path, info: dict, lora: dict[str, torch.Tensor] | None = None,
             lora_scale: float = 1.0) -> Path:
        """Adapter weights (and an optional LoRA of the language model, ``lora.``-prefixed) in one
        safetensors file, written atomically."""
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        meta = {"format": str(ADAPTER_FORMAT), "config": json.dumps(asdict(self.config)), "info": json.dumps(info),
                "lora_scale": str(lora_scale)}
        tensors = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        tensors.update({f"lora.{k}": v.contiguous() for k, v in (lora or {}).items()})
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> tuple[ExplanationAdapter, dict, dict[str, torch.Tensor], float]:
        """(adapter, training info, LoRA tensors by module path, LoRA scale)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != str(ADAPTER_FORMAT):
            raise ValueError(f"{path} is not an explanation adapter of format {ADAPTER_FORMAT}")
        adapter = cls(AdapterConfig(**json.loads(meta["config"])))
        lora = {k[len("lora."):]: v for k, v in state.items() if k.startswith("lora.")}
        adapter.load_state_dict({k: v for k, v in state.items() if not k.startswith("lora.")})
        return adapter.eval(), json.loads(meta.get("info", "{}")), lora, float(meta.get("lora_scale", 1.0))


def merge_lora(model: CausalLM, lora: dict[str, torch.Tensor], scale: float) -> int:
    """Add a LoRA's low-rank updates to the frozen weights (W += scale * B @ A); returns the number
    of modules changed. Raises ``AttributeError`` when a module path does not exist in ``model``."""
    paths = sorted({k.rsplit(".", 1)[0] for k in lora})
    with torch.no_grad():
        for path in paths:
            weight = model.get_parameter(f"{path}.weight")
            delta = scale * lora[f"{path}.lora_B"].float() @ lora[f"{path}.lora_A"].float()
            weight.add_(delta.to(weight.dtype))
    return len(paths)


def soft_prompt_embeds(lm: LanguageModel, prefix_ids: torch.Tensor, suffix_ids: torch.Tensor,
                       soft: torch.Tensor) -> torch.Tensor:
    """[prefix tokens, soft tokens, suffix tokens] as input embeddings: [B, n, hidden]."""
    embed = lm.embeddings
    dtype = embed.weight.dtype
    batch = soft.shape[0]
    prefix = embed(prefix_ids).expand(batch, -1, -1)
    suffix = embed(suffix_ids).expand(batch, -1, -1) if suffix_ids.shape[0] == 1 else embed(suffix_ids)
    return torch.cat([prefix, soft.to(dtype), suffix], dim=1)


__all__ = ["AdapterConfig", "ExplanationAdapter", "GRID_SIZE", "MAP_SIZE", "merge_lora", "soft_prompt_embeds"]
