"""An OpenCLIP ViT as feature encoder: patch tokens of chosen blocks plus the CLIP image embedding.

The image embedding lives in the same space as the model's text embeddings, which is what makes
image-text and zero-shot inspection possible; ``model`` (the whole open_clip model, text tower
included) and ``model_name`` are exposed so the CLIP text encoder reuses the very same weights.

``pretrained`` is an open_clip tag (``"openai"``, ``"laion2b_s34b_b88k"``: downloaded from the
Hugging Face Hub once, then cached), a local checkpoint file (safetensors, or a torch file read
with ``weights_only=True``), or ``None``/``"none"`` for a seeded random init. With
``HF_HUB_OFFLINE=1`` a tag is looked up in the local cache only, so it fails at once when absent.
A tag trained with QuickGELU (e.g. every ``openai`` tag) gets it even under the plain model name;
for a local OpenAI-style file use the ``-quickgelu`` model name.

Any ``image_size`` that is a multiple of the patch size works: the model is built for that size
and open_clip resizes the learnt positional embedding (bicubic) when it loads the weights.
"""

from __future__ import annotations

import difflib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from inspect_app.backbones.base import Backbone, EncodedImages
from inspect_app.errors import ProfileError
from inspect_app.weights import weights_digest

_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _is_offline() -> bool:
    """The Hub's offline switch, read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.upper() in {"1", "ON", "YES", "TRUE"} or constants.is_offline_mode()


def _vision_config(model_name: str) -> dict:
    """The model's vision tower config; only open_clip's own ViTs expose per-block patch tokens."""
    import open_clip

    config = open_clip.get_model_config(model_name)
    if config is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see open_clip.list_models()"
        raise ProfileError(f"unknown OpenCLIP model {model_name!r}{hint}")
    vision = config["vision_cfg"]
    if "timm_model_name" in vision or not isinstance(vision.get("layers"), int):
        raise ProfileError(f"OpenCLIP model {model_name!r} has no open_clip ViT image tower; choose a ViT model "
                           "such as ViT-B-16 or ViT-L-14-336")
    return vision


def _download_tag(model_name: str, tag: str, tag_cfg: dict) -> str:
    """Local path of a tag's checkpoint: a plain cache lookup when offline (no Hub client call,
    which may still reach out), else open_clip's Hub download (safetensors preferred)."""
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives, download_pretrained_from_hf

    repo_id, filename = os.path.split(tag_cfg["hf_hub"])
    filename = filename or HF_WEIGHTS_NAME
    if _is_offline():
        for candidate in [*_get_safe_alternatives(filename), filename]:
            cached = try_to_load_from_cache(repo_id, candidate)
            if isinstance(cached, str):
                return cached
        raise ProfileError(f"the OpenCLIP weights {model_name}/{tag} are not in the local Hugging Face cache and "
                           "HF_HUB_OFFLINE is set; download them once with network access or pass a local "
                           "checkpoint file as pretrained")
    try:
        return download_pretrained_from_hf(repo_id, filename=filename)
    except Exception as exc:
        raise ProfileError(f"could not download the OpenCLIP weights {model_name}/{tag} from the Hugging Face Hub "
                           f"({type(exc).__name__}); check the network, or pass a local checkpoint file as "
                           "pretrained") from exc


def _resolve_checkpoint(model_name: str, pretrained: str) -> tuple[str, dict, str]:
    """(checkpoint path, tag config or {}, label for the fingerprint) of a tag or local file."""
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if tag_cfg:
        return _download_tag(model_name, pretrained, tag_cfg), tag_cfg, pretrained
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path), {}, f"file:{path.name}"
    if path.suffix in _CHECKPOINT_SUFFIXES or os.sep in pretrained:
        raise ProfileError(f"OpenCLIP checkpoint file not found: {pretrained}")
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "(this model has none)"
    raise ProfileError(f"{pretrained!r} is neither a pretrained tag of {model_name} nor a checkpoint file; "
                       f"known tags: {tags}; 'none' means random init")


def _rgb(values: Sequence[float]) -> tuple[float, float, float]:
    """A model config's per-channel list (mean, std) as the three floats ``Backbone`` declares."""
    red, green, blue = (float(v) for v in values)
    return red, green, blue


class OpenClipEncoder(Backbone):
    """Patch tokens (class token dropped) of ViT blocks ``levels`` (1-based) as [B, width, H, W]
    maps on the patch grid, and the unit-length CLIP image embedding as ``global_embedding``."""

    def __init__(self, model_name: str = "ViT-B-16", pretrained: str | None = "openai",
                 levels: tuple[int, ...] = (6, 9, 12), image_size: int = 224, seed: int = 0):
        super().__init__()
        import open_clip

        vision = _vision_config(model_name)
        depth, patch = vision["layers"], vision["patch_size"]
        if not levels or any(not 1 <= lvl <= depth for lvl in levels):
            raise ProfileError(f"{model_name} levels must be block numbers 1..{depth}, got {tuple(levels)}")
        if image_size < patch or image_size % patch:
            raise ProfileError(f"{model_name} needs an image_size that is a multiple of its patch size {patch}, "
                               f"got {image_size}")
        self.model_name, self.levels, self.image_size = model_name, tuple(sorted(set(levels))), image_size
        self.native_image_size = vision["image_size"]

        checkpoint: str | None
        if pretrained is not None and pretrained.strip().lower() != "none":
            checkpoint, tag_cfg, source = _resolve_checkpoint(model_name, pretrained)
        else:  # seeded random init
            checkpoint, tag_cfg, source = None, {}, f"random-seed{seed}"
        preprocess = {k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg}
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # the same random init every time a profile is reloaded
                model = open_clip.create_model(model_name, pretrained=checkpoint, force_image_size=image_size,
                                               force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                                               force_preprocess_cfg=preprocess, weights_only=True)
        except pickle.UnpicklingError:
            raise ProfileError(f"refused to load {pretrained}: it holds more than plain tensors (torch.load with "
                               "weights_only=True rejected it); convert it to safetensors") from None
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ProfileError(f"could not build OpenCLIP {model_name} from {source}: {first_line}") from exc
        self.model = model.eval().requires_grad_(False)
        visual = self.model.visual
        self.mean = _rgb(visual.preprocess_cfg["mean"])
        self.std = _rgb(visual.preprocess_cfg["std"])
        width = visual.conv1.out_channels
        self.channels = [width] * len(self.levels)
        self.strides = [patch] * len(self.levels)
        self.embed_dim = visual.output_dim
        digest = weights_digest(visual.named_parameters())
        self.fingerprint = f"openclip:{model_name}:{source}:{image_size}:{digest}"

    def joint_projection(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(LayerNorm weight [C], bias [C], projection [C, D]): how the model maps its pooled token
        into the joint image-text space, for decoders that map patch tokens the same way (WinCLIP-like)."""
        visual = self.model.visual
        if visual.attn_pool is not None or visual.proj is None:
            raise ProfileError(f"{self.model_name} pools with attention: its patch tokens have no direct "
                               "projection into the text space")
        return (visual.ln_post.weight.detach().clone(), visual.ln_post.bias.detach().clone(),
                visual.proj.detach().clone())

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> EncodedImages:
        out = self.model.visual.forward_intermediates(images, indices=[lvl - 1 for lvl in self.levels],
                                                      output_fmt="NCHW")
        return EncodedImages(levels=list(out["image_intermediates"]),
                             global_embedding=F.normalize(out["image_features"], dim=-1))
