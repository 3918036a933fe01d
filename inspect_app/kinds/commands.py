"""``inspect-app kinds add/list/remove``: a product's own defect kinds, taught without a refit.

Imports nothing heavy at module level (the CLI's ``--help`` stays fast); the Inspector is loaded
inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from inspect_app.clikit import ModelsDir, out, user_errors

if TYPE_CHECKING:
    from inspect_app.inspector import Inspector
    from inspect_app.kinds.learning import LabelledPart
    from inspect_app.post_processing.kinds import KindBook


def _print_book(book: KindBook, product: str) -> None:
    table = Table(title=f"{product}: defect kinds")
    table.add_column("kind")
    table.add_column("labelled regions", justify="right")
    table.add_column("from")
    for kind in book.kinds:
        table.add_row(escape(kind.name), str(kind.n_examples), "labelled regions" if kind.n_examples else
                      "name only (not named until labelled)")
    out.print(table)
    shown = "never (no bar is reached yet)" if book.bar.value > 1 else f"confidence at least {book.bar.value:.2f}"
    out.print(f"a kind is named when its {shown}; the bar comes from {escape(book.bar.basis)}")


def check_folder(folder: Path) -> dict[str, list[LabelledPart]]:
    """A kinds folder's labelled parts, read before a fit so a bad folder fails fast."""
    from inspect_app.kinds.learning import folder_parts

    return folder_parts(folder)


def teach_parts(inspector: Inspector, parts: dict[str, list[LabelledPart]]) -> None:
    """Teach each kind's labelled parts to a fitted inspector (``fit --kinds``) and report."""
    from inspect_app.kinds.learning import add_kind, require_kinds

    book = require_kinds(inspector)
    for name, kind_parts in parts.items():
        book = add_kind(inspector, name, kind_parts)
    _print_book(book, inspector.product or "")


def register(app: typer.Typer) -> None:
    kinds_app = typer.Typer(no_args_is_help=True, help="A product's defect kinds: taught from a few labelled "
                            "defective images, no refit needed.")
    app.add_typer(kinds_app, name="kinds")

    @kinds_app.command("add")
    @user_errors
    def add(images: list[Path] = typer.Argument(None, help="Defective images of this kind (none: a "
                                                 "name to label regions with later; never named before)."),
            product: str = typer.Option(..., "--product"),
            kind: str = typer.Option(..., "--kind", help="The kind's name, in the factory's own words."),
            masks: list[Path] = typer.Option(None, "--mask", help="A mask per image, in the same order "
                                             "(non-zero on the defect); without masks the region comes from "
                                             "the product's anomaly map."),
            models_dir: Path | None = ModelsDir) -> None:
        """Add labelled images to a kind (a new name creates the kind)."""
        import time

        import cv2

        from inspect_app.errors import ImageLoadError
        from inspect_app.inspector import Inspector
        from inspect_app.kinds.learning import LabelledPart, add_kind

        images, masks = list(images or []), list(masks or [])
        if masks and len(masks) != len(images):
            raise ImageLoadError(f"{len(masks)} masks for {len(images)} images: give one --mask per image, or none")
        parts = []
        for i, path in enumerate(images):
            if not path.is_file():
                raise ImageLoadError(f"{path}: no such file")
            mask = None
            if masks:
                mask = cv2.imread(str(masks[i]), cv2.IMREAD_GRAYSCALE)
                if mask is None:
                    raise ImageLoadError(f"{masks[i]}: not a readable mask image")
            parts.append(LabelledPart(path, path.name, mask))
        inspector = Inspector.load(product, models_dir)
        t0 = time.perf_counter()
        book = add_kind(inspector, kind, parts)
        seconds = time.perf_counter() - t0
        inspector.save(models_dir)
        out.print(f"kind {escape(kind)!r} of {product} learnt from {len(parts)} image(s) in {seconds:.1f} s "
                  "(no refit)")
        _print_book(book, product)

    @kinds_app.command("list")
    @user_errors
    def list_kinds(product: str = typer.Option(..., "--product"), models_dir: Path | None = ModelsDir) -> None:
        """List a product's defect kinds and the bar a kind's confidence must clear to be named."""
        from inspect_app.inspector import Inspector
        from inspect_app.kinds.learning import require_kinds

        inspector = Inspector.load(product, models_dir)
        _print_book(require_kinds(inspector), product)

    @kinds_app.command("remove")
    @user_errors
    def remove(product: str = typer.Option(..., "--product"), kind: str = typer.Option(..., "--kind"),
               models_dir: Path | None = ModelsDir) -> None:
        """Remove a kind (built-in or the product's own) and its labelled regions."""
        from inspect_app.inspector import Inspector
        from inspect_app.kinds.learning import remove_kind

        inspector = Inspector.load(product, models_dir)
        book = remove_kind(inspector, kind)
        inspector.save(models_dir)
        out.print(f"kind {escape(kind)!r} removed from {product}")
        _print_book(book, product)
