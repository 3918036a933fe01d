"""The fitted model as one exportable graph (torch side; only ``inspect-app export`` and the
``--runtime`` acceleration of a full install import this module).

The graph is ``torch_model.InspectionModel.forward`` itself, so it computes what the torch path
computes. The memory bank is a graph input, not a constant: ``Inspector.learn_good`` grows the
bank without a refit, and a graph that reads the bank it is given answers with the learnt parts
without being exported again. Graphs with a bank also return the aggregated patches, from which
the numpy post-processing names defect kinds as the torch path does. Everything else a profile
changes without a refit (thresholds, the part frame, labelled kinds and the kind prior) is
post-processing, which stays in numpy (``post_processing.PostProcessor``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from inspect_app.config import MODE_DECODERS, Mode
from inspect_app.edge.manifest import ANOMALY_MAP, BANK, EMBEDDING, KINDS, PATCHES, PIXELS
from inspect_app.torch_model import InspectionModel

OPSET = 17
GRAPH_VERSION = 2  # bumped when the graph's inputs or outputs change (2: the aggregated patches)


class InspectionGraph(nn.Module):
    """pixels [B, 3, H, W] (+ memory bank [N, C]) -> raw map of ``mode`` [B, H, W], kind
    posteriors [B, K, h, w] (when the model gives them), the embedding [B, D] and, with a bank, the
    aggregated patches [B, C, h, w]: the model's own ``forward``, with the bank it is given."""

    def __init__(self, model: InspectionModel, mode: Mode):
        super().__init__()
        if not model.supports(mode):
            raise ValueError(f"the model has no decoders for mode {mode!r}")
        self.model, self.mode = model, mode
        self.uses_bank = "image-image" in MODE_DECODERS[mode]
        height, width = model.input_shape
        self.has_kinds = model(torch.zeros(1, 3, height, width), mode).kinds is not None

    @property
    def input_names(self) -> list[str]:
        return [PIXELS, BANK] if self.uses_bank else [PIXELS]

    @property
    def output_names(self) -> list[str]:
        return [ANOMALY_MAP] + ([KINDS] if self.has_kinds else []) + [EMBEDDING] + ([PATCHES] if self.uses_bank else [])

    def forward(self, pixels: torch.Tensor, memory_bank: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if memory_bank is not None:
            assert self.model.image_image is not None
            self.model.image_image.set_bank(memory_bank)
        out = self.model(pixels, self.mode, keep_patches=self.uses_bank)
        kinds = [out.kinds] if out.kinds is not None else []
        patches = [out.patches] if out.patches is not None else []
        return (out.anomaly_map, *kinds, out.embedding, *patches)


def export_onnx(model: InspectionModel, mode: Mode, path: Path) -> tuple[list[str], list[str]]:
    """Write the graph of ``mode`` as ONNX (batch and bank size dynamic); returns its input and
    output names."""
    graph = InspectionGraph(model, mode).eval()
    height, width = model.input_shape
    pixels = torch.zeros(2, 3, height, width)
    args: tuple[torch.Tensor, ...] = (pixels,)
    axes: dict[str, dict[int, str]] = {PIXELS: {0: "batch"}, ANOMALY_MAP: {0: "batch"}, EMBEDDING: {0: "batch"}}
    bank = model.image_image.memory_bank if model.image_image is not None else None
    if graph.uses_bank:
        assert bank is not None
        args = (pixels, bank.clone())
        axes[BANK] = {0: "bank_rows"}
    if graph.has_kinds:
        axes[KINDS] = {0: "batch"}
    if graph.uses_bank:
        axes[PATCHES] = {0: "batch"}
    try:
        with warnings.catch_warnings():
            # The tracer warns about shape-dependent Python branches (level sizes, an empty bank):
            # constant for a fitted model's fixed input shape, and checked by the agreement tests.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, args, str(path), input_names=graph.input_names,
                              output_names=graph.output_names, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    finally:
        if bank is not None:
            assert model.image_image is not None
            model.image_image.set_bank(bank)
    return graph.input_names, graph.output_names
