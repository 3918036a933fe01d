"""``inspect-app``: fit products, inspect images, evaluate, and run the demo.

User errors (bad paths, unreadable images, missing or incompatible profiles) print one line
and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from inspect_app import __version__
from inspect_app.api import commands as api_commands
from inspect_app.api import create_app
from inspect_app.clikit import (
    ModelsDir,
    ModeOption,
    console,
    finish_process,
    out,
    parse_mode,
    progress_bar,
    user_errors,
)
from inspect_app.edge import commands as edge_commands
from inspect_app.edge.loading import RUNTIME_HELP, open_inspector, parse_runtime
from inspect_app.edge.sessions import Runtime, installed
from inspect_app.explain import commands as explain_commands
from inspect_app.kinds import commands as kinds_commands
from inspect_app.line import commands as line_commands
from inspect_app.reports import commands as reports_commands
from inspect_app.results import EvidenceFor, Verdict
from inspect_app.store import commands as store_commands
from inspect_app.store import token_commands
from inspect_app.ui import commands as ui_commands

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Learn good parts from normal images, flag and locate defects.")
VERDICT_COLOURS = {Verdict.PASS: "green", Verdict.FAIL: "red", Verdict.ERROR: "yellow"}


def _version(value: bool) -> None:
    if value:
        out.print(f"inspect-app {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    pass


@app.command()
@user_errors
def fit(folder: Path = typer.Argument(..., help="Folder of good images of the product."),
        product: str = typer.Option(..., "--product", help="Product name (profile folder name)."),
        models_dir: Path | None = ModelsDir,
        k_shot: int | None = typer.Option(None, "--k-shot", min=1, help="Use only K good images (few-shot)."),
        seed: int = typer.Option(0, "--seed", help="Seed for the held-out split, coreset and k-shot draw."),
        target_frr: float = typer.Option(0.01, "--target-frr", min=0.0001, max=0.49,
                                         help="False-reject rate of good parts the threshold aims for."),
        image_size: int | None = typer.Option(None, "--image-size", help="Encoder input long side (multiple of "
                                              "32); default: chosen from the good images."),
        keep_aspect: bool = typer.Option(False, "--keep-aspect", help="With --image-size: keep the good images' "
                                         "aspect ratio instead of a square input."),
        defects: Path | None = typer.Option(None, "--defects", help="Optional folder of a few labelled "
                                               "defective images: threshold becomes F1-optimal."),
        ignore_mask: Path | None = typer.Option(None, "--ignore-mask", help="PNG marking in white the pixels "
                                                "that never count (labels, date prints, fixtures)."),
        kinds: Path | None = typer.Option(None, "--kinds", help="Optional folder with one subfolder of a few "
                                          "defective images per defect kind (<stem>_mask.png beside an image "
                                          "marks its defect): taught as the product's kinds after the fit "
                                          "(modes with a memory of good patches: image-image, fused)."),
        mode: str = ModeOption,
        ) -> None:
    """Fit a product profile on good images and calibrate its pass/fail threshold."""
    from inspect_app.config import MODE_DECODERS, BackboneConfig, CalibrationConfig, InspectorConfig
    from inspect_app.data.images import list_images
    from inspect_app.errors import ProfileError
    from inspect_app.inspector import Inspector, kinds_need_a_memory_bank
    from inspect_app.profile import check_product_name

    check_product_name(product)
    images, skipped = list_images(folder)
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} non-image file(s):[/] "
                      f"{escape(', '.join(p.name for p in skipped[:5]))}")
    fit_mode = parse_mode(mode)
    kind_parts = kinds_commands.check_folder(kinds) if kinds is not None else None
    if kind_parts is not None and "image-image" not in MODE_DECODERS[fit_mode]:
        raise ProfileError(kinds_need_a_memory_bank(product, fit_mode))
    backbone = BackboneConfig() if image_size is None else \
        BackboneConfig(image_size=image_size, keep_aspect=keep_aspect, choose_input=False)
    config = InspectorConfig(backbone=backbone, k_shot=k_shot, seed=seed,
                             calibration=CalibrationConfig(target_frr=target_frr), mode=fit_mode)
    inspector = Inspector(config, product=product)
    defect_images = list_images(defects)[0] if defects else None
    with progress_bar() as progress:
        report = inspector.fit(images, progress=progress, defect_images=defect_images,
                               ignore_mask=None if ignore_mask is None else str(ignore_mask))
    for reason in report.skipped:
        console.print(f"[yellow]skipped:[/] {escape(reason)}")
    if report.input_choice is not None:
        tried = "; ".join(f"{c.name} {c.input_shape[1]}x{c.input_shape[0]}: {c.synthetic_detection:.0%}"
                          for c in report.input_choice.candidates)
        out.print(f"input {inspector.input_shape[1]}x{inspector.input_shape[0]} ({report.input_choice.chosen}; "
                  f"synthetic defects caught: {tried or 'too few images to compare'})")
    if report.exposure_standardised:
        out.print("grayscale good images: each image's grey levels are standardised before inspection")
    for kind, reason in report.skipped_defect_kinds.items():
        console.print(f"[yellow]defect kind {kind} not trained:[/] {escape(reason)}")
    if kind_parts is not None:
        kinds_commands.teach_parts(inspector, kind_parts)
    path = inspector.save(models_dir)
    cal = report.calibration
    out.print(f"fitted [bold]{product}[/] on {report.n_images} good images in {report.seconds:.1f} s "
              f"-> {path}")
    out.print(f"mode {inspector.mode} (profile supports: {', '.join(report.modes)}); threshold "
              f"{cal.raw_threshold:.3f} ({cal.method}, {cal.holdout_method} on {cal.n_normal} normal scores); "
              f"expected false-reject rate {cal.expected_frr:.2%}")
    if report.n_images < 10:
        console.print(f"[yellow]only {report.n_images} good image(s): the threshold is rough; 20 or more "
                      "good images give a reliable one[/]")


@app.command()
@user_errors
def predict(path: Path = typer.Argument(..., help="An image or a folder of images."),
            product: str | None = typer.Option(None, "--product", help="A fitted product (profile)."),
            model_dir: Path | None = typer.Option(None, "--model", help="An exported model folder "
                                                  "(inspect-app export) instead of --product."),
            runtime: str | None = typer.Option(None, "--runtime", help=RUNTIME_HELP),
            models_dir: Path | None = ModelsDir,
            json_out: Path | None = typer.Option(None, "--json", help="Write results as a JSON list."),
            overlays: Path | None = typer.Option(None, "--overlays", help="Write heatmap overlay PNGs here."),
            mode: str | None = typer.Option(None, "--mode", help="Decoder mode (default: the profile's)."),
            explain: bool = typer.Option(False, "--explain", help="Add an operator explanation to each FAIL "
                                         "(language model when available, else the deterministic sentence)."),
            ) -> None:
    """Inspect images with a fitted product; print a table of verdicts."""
    from inspect_app.data.images import list_images
    from inspect_app.errors import ImageLoadError

    inspector = open_inspector(product, models_dir, model_dir=model_dir, runtime=parse_runtime(runtime),
                               mode=parse_mode(mode) if mode else None)
    if path.is_dir():
        files, skipped = list_images(path)
        if skipped:
            console.print(f"[yellow]skipped {len(skipped)} non-image file(s):[/] "
                          f"{escape(', '.join(p.name for p in skipped[:5]))}")
    elif path.exists():
        files = [path]
    else:
        raise ImageLoadError(f"{path}: no such file or folder")
    with progress_bar() as progress:
        results = inspector.predict_batch(files, progress=progress if len(files) > 1 else None,
                                          evidence=EvidenceFor.FAILS if explain else EvidenceFor.NONE)
    if explain and installed(Runtime.TORCH):
        explain_commands.explain_results(results, models_dir)
    elif explain:  # the edge runtime has no language model: the deterministic sentence
        from inspect_app.explain import template_explanation

        for res in results:
            res.explanation, res.explanation_source = template_explanation(res), "template"
    table = Table(title=f"{inspector.product}: {len(results)} image(s)")
    for col in ("file", "verdict", "score", "regions"):
        table.add_column(col)
    for res in results:
        colour = VERDICT_COLOURS[res.verdict]
        where = ", ".join(f"{r.defect_type + ' ' if r.defect_type else ''}{r.size} {r.shape} at {r.location}"
                          for r in res.regions[:3]) or (res.error or "")
        score = "" if res.score is None else f"{res.score:.3f}"
        table.add_row(Path(res.file or "").name, f"[{colour}]{res.verdict}[/]", score,
                      res.explanation if explain and res.explanation else where)
    out.print(table)
    out.print("  ".join(f"{v} {sum(r.verdict == v for r in results)}" for v in Verdict))
    if overlays:
        from inspect_app.visualize import save_overlay

        for file, res in zip(files, results, strict=True):
            if res.verdict != Verdict.ERROR:
                save_overlay(file, res, overlays / f"{file.stem}_overlay.png")
        out.print(f"overlays written to {overlays}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([r.to_dict() for r in results], indent=2))
        out.print(f"results written to {json_out}")


@app.command("eval")
@user_errors
def evaluate_cmd(category_dir: Path = typer.Argument(..., help="A category folder in MVTec layout."),
                 k_shot: int | None = typer.Option(None, "--k-shot", min=1),
                 kind_shots: int = typer.Option(0, "--kind-shots", min=0, help="Teach K labelled images of each "
                                                "defect folder (with masks) as the product's kinds after the fit, "
                                                "and score the rest."),
                 seeds: int = typer.Option(1, "--seeds", min=1, help="Repeat with seeds 0..N-1; report means."),
                 json_out: Path | None = typer.Option(None, "--json"),
                 markdown: Path | None = typer.Option(None, "--markdown",
                                                         help="Markdown table path (default: next to --json)."),
                 image_size: int = typer.Option(256, "--image-size"),
                 mode: str = ModeOption,
                 runtime: str | None = typer.Option(None, "--runtime", help=RUNTIME_HELP),
                 ) -> None:
    """Fit on train/good, inspect test/*, and report AUROCs, AUPRO, false-reject and detection rates
    (and the defect-kind figures: defect_type_accuracy, wrong_kind_rate, kind_coverage)."""
    from inspect_app.config import BackboneConfig, InspectorConfig
    from inspect_app.edge.sessions import fastest_installed
    from inspect_app.metrics.evaluate import evaluate, markdown_table

    config = InspectorConfig(backbone=BackboneConfig(image_size=image_size), k_shot=k_shot, mode=parse_mode(mode))
    with progress_bar() as progress:
        summary = evaluate(category_dir, config, seeds=seeds, progress=progress, kind_shots=kind_shots,
                           runtime=parse_runtime(runtime) or fastest_installed())
    table = markdown_table([summary])
    out.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2))
        out.print(f"metrics written to {json_out}")
    md_path = markdown or (json_out.with_suffix(".md") if json_out else None)
    if md_path:
        md_path.write_text(table)


@app.command("synth-gallery")
@user_errors
def synth_gallery(folder: Path = typer.Argument(..., help="Folder of good images to draw defects on."),
                  out_png: Path = typer.Option(..., "--out", help="PNG file to write."),
                  n: int = typer.Option(24, "--n", min=1, help="Number of examples."),
                  seed: int = typer.Option(0, "--seed")) -> None:
    """Draw a grid of synthesised defects (image, mask, label) so a person can judge them."""
    from inspect_app.data.images import list_images
    from inspect_app.synthesis.gallery import draw_gallery

    images, _ = list_images(folder)
    with progress_bar() as progress:
        path = draw_gallery(images, out_png, n=n, seed=seed, progress=progress)
    out.print(f"gallery written to {path}")


@app.command("list")
@user_errors
def list_cmd(models_dir: Path | None = ModelsDir) -> None:
    """List fitted product profiles."""
    from inspect_app.profile import list_profiles
    from inspect_app.profile import models_dir as resolve

    names = list_profiles(models_dir)
    out.print("\n".join(names) if names else f"no profiles in {resolve(models_dir)}")


@app.command()
@user_errors
def refit(product: str | None = typer.Argument(None, help="The product to refit (or --all)."),
          all_products: bool = typer.Option(False, "--all", help="Refit every profile in the models folder."),
          images: Path | None = typer.Option(None, "--images", help="Folder of the product's good images, for "
                                             "profiles that do not record where theirs are."),
          models_dir: Path | None = ModelsDir,
          ) -> None:
    """Fit saved products again from the same good images with the same settings (after an upgrade
    changed the profile format). The images come from --images, the paths the profile recorded, or
    the UI's uploaded good images."""
    from inspect_app.errors import InspectAppError
    from inspect_app.refit import RefitPlan, plan_refit, refit_all_plans
    from inspect_app.refit import refit as run_refit

    if all_products == (product is not None):
        raise InspectAppError("name one product, or give --all")
    if all_products and images is not None:
        raise InspectAppError("--images names one product's folder: use it without --all")
    plans = refit_all_plans(models_dir) if all_products else [plan_refit(product or "", models_dir, images)]
    failed = 0
    for plan in plans:
        if not isinstance(plan, RefitPlan):
            console.print(f"[bold red]cannot refit:[/] {escape(str(plan))}")
            failed += 1
            continue
        out.print(f"refitting [bold]{plan.product}[/] ({plan.config.mode}) on {len(plan.images)} images from "
                  f"{escape(plan.source)}")
        for label, names in (("changed since the last fit", plan.changed), ("missing", plan.missing)):
            if names:
                console.print(f"[yellow]{len(names)} image(s) {label}:[/] {escape(', '.join(names[:5]))}")
        with progress_bar() as progress:
            report, path = run_refit(plan, models_dir, progress)
        out.print(f"refitted {plan.product} in {report.seconds:.1f} s -> {path}")
    if failed:
        raise typer.Exit(2)


@app.command()
@user_errors
def demo(out_dir: Path = typer.Option(Path("demo_output"), "--out", help="Where overlays and results go."),
         models_dir: Path | None = ModelsDir,
         dataset: str = typer.Option("auto", "--dataset",
                                     help="auto (shared bottle set when present, else solar cells), bottle or elpv."),
         ) -> None:
    """Fit a product on real good images, inspect good and defective ones, write overlays."""
    from inspect_app.demo import run_demo

    run_demo(out_dir, models_dir, dataset, progress_factory=progress_bar, console=out)


# Each feature builds its commands beside its code and registers them here; the line station gets
# the API factory from here, so the two features never import each other.
api_commands.register(app)
edge_commands.register(app)
explain_commands.register(app)
kinds_commands.register(app)
line_commands.register(app, create_api=create_app)
reports_commands.register(app)
store_commands.register(app)
token_commands.register(app)
ui_commands.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - outside a command
        sys.exit(130)
    except SystemExit as done:
        finish_process(done.code)
        raise

