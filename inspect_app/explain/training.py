"""Training the explanation adapter on cached, precomputed features (``explain.dataset``).

Only the adapter learns; the language model stays frozen (a LoRA on top did not pay for its cost
here, see the model card). Each step builds [prompt before, soft tokens, prompt after, target]
embeddings per sample and takes the cross-entropy on the target tokens. Kind maps are zeroed for
a fifth of the samples so the adapter also serves profiles without an image-text decoder.

Each synthetic part has one defect, but real failing parts often show several regions, and an
adapter trained on single-region facts then described a weaker region (most of cookie's
fallbacks). So most defect samples get one or two made-up weaker regions appended to their facts;
the target still describes region 1, the first, as validation requires.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inspect_app.explain.adapter import AdapterConfig, ExplanationAdapter, soft_prompt_embeds
from inspect_app.explain.dataset import facts_from_record
from inspect_app.explain.facts import MAX_FACT_REGIONS, Facts, RegionFact
from inspect_app.explain.generator import _ids, adapter_prompt
from inspect_app.explain.language_model import LanguageModel, LanguageModelError
from inspect_app.explain.targets import target_sentence
from inspect_app.imaging.locations import LOCATION_WORDS
from inspect_app.progress import ProgressCallback

KIND_DROPOUT = 0.2
WEAKER_REGION_SHARE = 0.6  # share of defect samples given made-up weaker regions
LORA_TARGETS = ("q_proj", "v_proj")
_LOCATIONS = [word for row in LOCATION_WORDS for word in row]


@dataclass
class CachedFeatures:
    anomaly: torch.Tensor  # [N, 64, 64]
    kinds: torch.Tensor  # [N, K, 32, 32]
    embedding: torch.Tensor  # [N, E]
    records: list[dict]
    kind_names: list[str]

    @classmethod
    def load(cls, path: Path) -> CachedFeatures:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        meta = json.loads(path.with_suffix(".json").read_text())
        return cls(tensors["anomaly"].float(), tensors["kinds"].float(), tensors["embedding"].float(),
                   meta["records"], meta["kinds"])

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class TrainingReport:
    steps: int
    seconds: float
    n_train: int
    n_val: int
    losses: list[float] = field(default_factory=list)  # mean training loss per logging window
    val_loss: float | None = None


def with_weaker_regions(facts: Facts, kinds: list[str], rng: np.random.Generator) -> Facts:
    """``facts`` with one or two weaker regions after the first (sometimes more counted than
    listed, as ``facts_from_result`` does beyond ``MAX_FACT_REGIONS``)."""
    if facts.verdict != "FAIL" or not facts.regions or rng.random() >= WEAKER_REGION_SHARE:
        return facts
    top = facts.regions[0]
    extra = []
    for _ in range(int(rng.integers(1, MAX_FACT_REGIONS))):
        kind = str(rng.choice(kinds)) if top.kind is not None else None
        probability = round(float(rng.uniform(0.2, 1.0)), 2) if top.probability is not None else None
        extra.append(RegionFact(str(rng.choice(_LOCATIONS)), str(rng.choice(["small", "small", "medium"])),
                                str(rng.choice(["compact", "elongated"])), kind, probability))
    regions = (top, *extra)
    n_regions = len(regions) + (int(rng.integers(1, 4)) if rng.random() < 0.2 else 0)
    return replace(facts, regions=regions, n_regions=n_regions)


def _sample_embeds(lm: LanguageModel, adapter: ExplanationAdapter, data: CachedFeatures, idx: list[int],
                   rng: np.random.Generator, training: bool):
    """Padded input embeddings, attention mask and labels for a batch of cached samples."""
    kinds = data.kinds[idx].clone()
    if training:
        drop = torch.from_numpy(rng.random(len(idx)) < KIND_DROPOUT)
        kinds[drop] = 0
    soft = adapter(data.anomaly[idx], kinds, data.embedding[idx])
    end = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    rows, labels = [], []
    for b, i in enumerate(idx):
        facts = with_weaker_regions(facts_from_record(data.records[i]), data.kind_names, rng)
        before, after = adapter_prompt(lm, facts)
        target = _ids(lm, target_sentence(facts, rng))[0].tolist() + [end]
        prompt = soft_prompt_embeds(lm, _ids(lm, before), _ids(lm, after), soft[b:b + 1])[0]
        target_ids = torch.tensor(target)
        rows.append(torch.cat([prompt, lm.embed(target_ids).to(prompt.dtype)]))
        labels.append(torch.cat([torch.full((prompt.shape[0],), -100), target_ids]))
    width = max(r.shape[0] for r in rows)
    embeds = torch.zeros(len(rows), width, rows[0].shape[1], dtype=rows[0].dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    lab = torch.full((len(rows), width), -100)
    for b, (row, label) in enumerate(zip(rows, labels, strict=True)):
        embeds[b, :row.shape[0]], mask[b, :row.shape[0]], lab[b, :row.shape[0]] = row, 1, label
    return embeds, mask, lab


def _loss(lm: LanguageModel, embeds, mask, labels) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = lm.model(inputs_embeds=embeds, attention_mask=mask).logits
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


def train_adapter(lm: LanguageModel, data: CachedFeatures, steps: int = 600, batch_size: int = 4,
                  lr: float = 3e-3, seed: int = 0, val_share: float = 0.1, progress: ProgressCallback | None = None,
                  max_seconds: float | None = None, lora_rank: int = 0,
                  init: ExplanationAdapter | None = None) -> tuple[ExplanationAdapter, TrainingReport, list[int]]:
    """Train a new adapter; returns it, the report and the held-out sample indices.

    ``max_seconds`` stops early (cleanly, with the learning-rate schedule cut short) so a run fits
    a time budget on a shared CPU. ``lora_rank`` > 0 also trains a LoRA on the attention query and
    value projections (``lora_weights`` extracts it); ``init`` continues from an adapter."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lora_params: list[torch.nn.Parameter] = []
    order = rng.permutation(len(data))
    n_val = max(1, int(round(val_share * len(data))))
    val, train = order[:n_val].tolist(), order[n_val:].tolist()
    for p in lm.model.parameters():
        p.requires_grad_(False)
    scale = float(lm.embeddings.weight.float().std())
    adapter = init or ExplanationAdapter(AdapterConfig(hidden_size=lm.hidden_size,
                                                       embedding_dim=data.embedding.shape[1],
                                                       n_kinds=data.kinds.shape[1], embedding_scale=scale))
    if lora_rank:
        from peft import LoraConfig, get_peft_model

        if not isinstance(lm.model, torch.nn.Module):
            raise LanguageModelError(f"{lm.name} is not a torch module: no LoRA can be trained on it")
        lm.model = get_peft_model(lm.model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0,
                                                       target_modules=list(LORA_TARGETS)))
        lora_params = [p for n, p in lm.model.named_parameters() if "lora_" in n]
    optimizer = torch.optim.AdamW(list(adapter.parameters()) + lora_params, lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) *
                                                 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    report = TrainingReport(steps=0, seconds=0.0, n_train=len(train), n_val=len(val))
    start, window = time.perf_counter(), []
    adapter.train()
    for step in range(steps):
        idx = [train[int(i)] for i in rng.integers(len(train), size=batch_size)]
        loss = _loss(lm, *_sample_embeds(lm, adapter, data, idx, rng, True))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(adapter.parameters()) + lora_params, 1.0)
        optimizer.step()
        schedule.step()
        window.append(float(loss.detach()))
        report.steps = step + 1
        if (step + 1) % 25 == 0 or step + 1 == steps:
            report.losses.append(round(sum(window) / len(window), 4))
            window = []
        if progress:
            progress(step + 1, steps, "training explanation adapter")
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    adapter.eval()
    with torch.no_grad():
        val_rng = np.random.default_rng(seed + 1)
        losses = [float(_loss(lm, *_sample_embeds(lm, adapter, data, val[i:i + batch_size], val_rng, False)))
                  for i in range(0, len(val), batch_size)]
    report.val_loss = round(sum(losses) / len(losses), 4)
    report.seconds = round(time.perf_counter() - start, 1)
    return adapter, report, val


def lora_weights(lm: LanguageModel) -> tuple[dict[str, torch.Tensor], float]:
    """The trained LoRA as plain tensors (``<module>.lora_A``/``.lora_B``) and its scale, to ship
    beside the adapter and merge into the frozen weights at load (``explain.generator``)."""
    from peft.tuners.lora import LoraLayer

    tensors, scale = {}, 1.0
    for name, module in lm.model.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            path = name.split("base_model.model.", 1)[-1]
            tensors[f"{path}.lora_A"] = module.lora_A.get_parameter("default.weight").detach().float().clone()
            tensors[f"{path}.lora_B"] = module.lora_B.get_parameter("default.weight").detach().float().clone()
            scale = float(module.scaling["default"])
    return tensors, scale
