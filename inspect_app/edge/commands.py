"""``inspect-app export``: write a fitted product as a deployable model folder (see ``edge.export``)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from inspect_app.clikit import ModelsDir, out, parse_mode, user_errors

    @app.command("export")
    @user_errors
    def export(product: str = typer.Option(..., "--product", help="The fitted product to export."),
               out_dir: Path = typer.Option(..., "--out", help="Folder to write the exported model to."),
               models_dir: Path | None = ModelsDir,
               graph_format: str = typer.Option("openvino", "--format", help="openvino (IR) or onnx."),
               mode: str | None = typer.Option(None, "--mode", help="Decoder mode (default: the profile's)."),
               ) -> None:
        """Export a fitted product (encoder, decoders, memory bank, smoothing as one graph, with its
        post-processing settings and a manifest) for ``predict/line/api --model DIR`` without torch."""
        from inspect_app.edge.export import export_product
        from inspect_app.edge.manifest import GraphFormat
        from inspect_app.errors import InspectAppError

        try:
            fmt = GraphFormat(graph_format)
        except ValueError:
            raise InspectAppError(f"unknown format {graph_format!r}: use openvino or onnx") from None
        manifest = export_product(product, models_dir, out_dir, fmt, parse_mode(mode) if mode else None)
        height, width = manifest.input_shape
        out.print(f"exported [bold]{manifest.product}[/] ({manifest.mode}, {width}x{height} px, "
                  f"profile {manifest.profile_version}) as {manifest.graph_format} -> {out_dir}")
