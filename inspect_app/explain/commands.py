"""CLI of the explanations feature: ``explain``, ``explain-eval`` and ``train-adapter``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from inspect_app.clikit import ModelsDir, console, out, progress_bar, user_errors
from inspect_app.results import EvidenceFor, InspectionResult

VariantOption = typer.Option(None, "--variant", help="adapter (soft tokens + facts), facts (facts-only prompt) "
                                                     "or template; default: the measured best.")
LanguageModelOption = typer.Option(None, "--language-model", help="A Hugging Face causal LM (local folder or hub "
                                                                  "id); default: the embedded SmolLM2-135M-Instruct.")


def _check_variant(variant: str, allowed: tuple[str, ...]) -> str:
    from inspect_app.errors import InspectAppError

    if variant not in allowed:
        raise InspectAppError(f"unknown variant {variant!r}: choose one of {', '.join(allowed)}")
    return variant


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def explain(image: Path = typer.Argument(..., help="The image to inspect and explain."),
                product: str = typer.Option(..., "--product"),
                models_dir: Path | None = ModelsDir,
                variant: str | None = VariantOption,
                language: str = typer.Option("en", "--language", help="Output language (English is tested; "
                                                                     "others need a larger model)."),
                language_model: str | None = LanguageModelOption,
                allow_download: bool = typer.Option(False, "--allow-download",
                                                    help="Let --language-model fetch from the hub."),
                timeout: float = typer.Option(30.0, "--timeout", help="Seconds before the deterministic sentence."),
                json_out: Path | None = typer.Option(None, "--json", help="Write the result with its explanation."),
                ) -> None:
        """Inspect one image and explain the result in a sentence or two (any verdict)."""
        from inspect_app.errors import ImageLoadError
        from inspect_app.explain import ExplainerService
        from inspect_app.explain.service import VARIANTS
        from inspect_app.inspector import Inspector

        logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
        if variant is not None:
            _check_variant(variant, VARIANTS)
        if not image.is_file():
            raise ImageLoadError(f"{image}: no such file")
        inspector = Inspector.load(product, models_dir)
        result = inspector.predict(str(image), evidence=EvidenceFor.FAILS)
        with ExplainerService(models_dir, language=language, timeout_s=timeout, variant=variant,
                              language_model=language_model, allow_download=allow_download) as svc:
            expl = svc.explain(result)
        result.explanation, result.explanation_source = expl.text, expl.source
        out.print(expl.text, soft_wrap=True, markup=False, highlight=False)
        note = f"source: {expl.source}" + (f" (fallback: {expl.fallback_reason})" if expl.fallback_reason else "")
        console.print(f"[dim]{note}; {expl.seconds:.2f} s[/]")
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result.to_dict(), indent=2))

    @app.command("explain-eval")
    @user_errors
    def explain_eval(category_dir: Path = typer.Argument(..., help="A category folder in MVTec layout."),
                     variant: str = typer.Option("all", "--variant",
                                                 help="all (facts, adapter and template side by side), or one."),
                     json_out: Path | None = typer.Option(None, "--json"),
                     mode: str = typer.Option("fused", "--mode", help="Inspector mode to fit (fused gives kinds)."),
                     k_shot: int | None = typer.Option(None, "--k-shot", min=1,
                                                          help="Fit on K good images only (faster)."),
                     per_folder: int | None = typer.Option(None, "--per-folder", min=1,
                                                              help="At most N test images per folder (seeded)."),
                     models_dir: Path | None = ModelsDir,
                     language_model: str | None = LanguageModelOption,
                     ) -> None:
        """Fit on train/good, explain every test image with each variant; faithfulness and latency."""
        from inspect_app.clikit import parse_mode
        from inspect_app.explain.evaluation import evaluate_explanations
        from inspect_app.explain.generator import DEFAULT_VARIANT
        from inspect_app.explain.language_model import LanguageModelError
        from inspect_app.explain.service import VARIANTS

        variants = list(VARIANTS) if variant == "all" else [_check_variant(variant, VARIANTS)]
        with progress_bar() as progress:
            summary = evaluate_explanations(category_dir, variants, parse_mode(mode), k_shot, per_folder,
                                            language_model=language_model, models_dir=models_dir, progress=progress)
        measured = [v for v in variants if "error" not in summary["variants"][v]]
        for name in set(variants) - set(measured):
            console.print(f"[yellow]variant {name} not measured:[/] {summary['variants'].pop(name)['error']}")
        if not measured:
            raise LanguageModelError("no variant could be measured")
        headline = DEFAULT_VARIANT if DEFAULT_VARIANT in measured else measured[0]
        summary = {"variant": headline, **{k: v for k, v in summary["variants"][headline].items() if k != "examples"},
                   **summary}
        keys = ["verdict_consistency", "location_faithfulness", "type_mention_accuracy", "hallucination_rate",
                "fallback_rate", "p50_seconds", "p95_seconds"]
        unlocalised = (f"; {summary['n_unlocalised']} defective with an empty mask, not in the location figures"
                       if summary["n_unlocalised"] else "")
        out.print(f"{summary['category']}: {summary['n_test']} test images ({summary['n_defective']} defective, "
                  f"{summary['n_fail']} FAIL{unlocalised})")
        out.print("variant   | " + " | ".join(keys))
        for name, figs in summary["variants"].items():
            shown = [f"{figs[k]}" + ("" if k in ("fallback_rate", "p50_seconds", "p95_seconds")
                                     or figs.get(f"raw_{k}") is None else f" (raw {figs[f'raw_{k}']})") for k in keys]
            out.print(f"{name:9} | " + " | ".join(shown))
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(summary, indent=2, default=sorted))
            out.print(f"metrics written to {json_out}")

    @app.command("train-adapter")
    @user_errors
    def train_adapter_cmd(datasets: Path | None = typer.Option(None, "--datasets",
                                                               help="Shared datasets folder (MVTec layout "
                                                                    "categories; default: $INSPECT_APP_DATASETS "
                                                                    "or ../shared/datasets)."),
                          out_dir: Path = typer.Option(Path("models/adapters"), "--out",
                                                       help="Where the adapter weights go."),
                          cache: Path = typer.Option(Path("data/explain/features.safetensors"), "--cache",
                                                     help="Precomputed maps and facts (built once, then reused)."),
                          samples_per_product: int = typer.Option(160, "--samples-per-product", min=8),
                          steps: int = typer.Option(600, "--steps", min=1),
                          batch_size: int = typer.Option(4, "--batch-size", min=1),
                          learning_rate: float = typer.Option(3e-3, "--lr"),
                          max_minutes: float = typer.Option(25.0, "--max-minutes",
                                                            help="Stop training after this long."),
                          seed: int = typer.Option(0, "--seed"),
                          lora_rank: int = typer.Option(0, "--lora-rank", min=0, max=8,
                                                        help="Also train a LoRA of this rank on the attention "
                                                             "query/value projections (0: adapter only)."),
                          init: Path | None = typer.Option(None, "--init", help="Continue from these adapter "
                                                              "weights (a .safetensors written by this command)."),
                          language_model: str | None = LanguageModelOption,
                          ) -> None:
        """Train the explanation adapter on synthesised defects over good images of several products."""
        import torch

        from inspect_app.data.datasets import DATASETS_ENV, shared_datasets
        from inspect_app.errors import NotEnoughImagesError
        from inspect_app.explain.adapter import ExplanationAdapter
        from inspect_app.explain.dataset import build_dataset, shared_sources
        from inspect_app.explain.language_model import load_language_model
        from inspect_app.explain.training import CachedFeatures, lora_weights, train_adapter

        if not cache.is_file():
            datasets = datasets or shared_datasets()
            if datasets is None:
                raise NotEnoughImagesError("the shared datasets were not found: give --datasets or set "
                                           f"{DATASETS_ENV}")
            sources = shared_sources(datasets)
            console.print("products: " + ", ".join(f"{s.name} ({len(s.images)} good)" for s in sources))
            with progress_bar() as progress:
                build_dataset(sources, cache, seed=seed, samples_per_product=samples_per_product, progress=progress)
        data = CachedFeatures.load(cache)
        console.print(f"{len(data)} cached samples from {cache}")
        lm = load_language_model(language_model, dtype=torch.float32)
        with progress_bar() as progress:
            start = ExplanationAdapter.load(init)[0].train() if init else None
            adapter, report, val = train_adapter(lm, data, steps=steps, batch_size=batch_size, lr=learning_rate,
                                                 seed=seed, progress=progress, max_seconds=max_minutes * 60,
                                                 lora_rank=lora_rank, init=start)
        lora, lora_scale = lora_weights(lm) if lora_rank else ({}, 1.0)
        name = Path(lm.name).name.lower().replace("_", "-")
        info = {"language_model": lm.name, "seed": seed, "steps": report.steps, "batch_size": batch_size,
                "lr": learning_rate, "n_train": report.n_train, "n_val": report.n_val, "val_loss": report.val_loss,
                "losses": report.losses, "seconds": report.seconds, "val_indices": val,
                "products": sorted({r["product"] for r in data.records}), "lora_rank": lora_rank,
                "init": str(init) if init else None}
        path = adapter.save(out_dir / f"{name}.safetensors", info, lora, lora_scale)
        out.print(f"adapter written to {path} ({report.steps} steps in {report.seconds:.0f} s, "
                  f"validation loss {report.val_loss})")


def explain_results(results: list[InspectionResult], models_dir: Path | None) -> None:
    """``predict --explain``: each FAIL result explained in turn (each with its own deadline);
    PASS and ERROR results get the deterministic sentence."""
    from inspect_app.explain import ExplainerService

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    with ExplainerService(models_dir) as svc:
        for res in results:
            expl = svc.explain(res)
            res.explanation, res.explanation_source = expl.text, expl.source
