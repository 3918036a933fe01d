"""The exported model folder: graph, memory bank, post-processing settings and the manifest that
names them with their checksums (torch-free)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from inspect_app.errors import ProfileError

EDGE_FORMAT = 1
MANIFEST_FILE = "manifest.json"
POST_PROCESSING_FILE = "post_processing.json"
KIND_BOOK = "kind_book"  # the labelled kinds (``KindBook.to_dict``) in the post-processing settings
BANK_FILE = "memory_bank.npy"
PIXELS, BANK = "pixels", "memory_bank"  # the graph's inputs (the bank only where the mode uses it)
ANOMALY_MAP, KINDS, EMBEDDING = "anomaly_map", "kinds", "embedding"  # its outputs (kinds with image-text)
PATCHES = "patches"  # and the aggregated patches kinds are named from (graphs with a bank, since graph version 2)


class GraphFormat(StrEnum):
    OPENVINO = "openvino"  # model.xml + model.bin (OpenVINO IR)
    ONNX = "onnx"  # model.onnx


GRAPH_FILES = {GraphFormat.OPENVINO: ("model.xml", "model.bin"), GraphFormat.ONNX: ("model.onnx",)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class EdgeManifest:
    """What an exported model is: which product and profile version, which input it takes and
    how its pixels are normalised, and a checksum of every file beside it."""

    product: str
    profile_version: str | None
    mode: str
    graph_format: GraphFormat
    input_shape: tuple[int, int]  # (height, width), from the profile's backbone config
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    inputs: list[str]
    outputs: list[str]
    backbone_fingerprint: str
    package_version: str
    standardise_exposure: bool = False  # each image's grey levels standardised before the graph (pre_processing)
    format: int = EDGE_FORMAT
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def graph_file(self) -> str:
        return GRAPH_FILES[self.graph_format][0]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "graph_format": str(self.graph_format), "input_shape": list(self.input_shape)}

    def write(self, folder: Path) -> Path:
        """Checksum the folder's files and write the manifest beside them."""
        self.checksums = {p.name: sha256(p) for p in sorted(folder.iterdir())
                          if p.is_file() and p.name != MANIFEST_FILE}
        path = folder / MANIFEST_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def read(cls, folder: Path, verify: bool = True) -> EdgeManifest:
        """The manifest of an exported model folder; ``ProfileError`` with the fix when the folder
        is not one, is of another format, or a file does not match its checksum."""
        path = Path(folder) / MANIFEST_FILE
        if not path.is_file():
            raise ProfileError(f"{folder} is not an exported model (no {MANIFEST_FILE}); "
                               "write one with: inspect-app export --product NAME --out DIR")
        try:
            data = json.loads(path.read_text())
            if data.get("format") != EDGE_FORMAT:
                raise ProfileError(f"{folder} is an exported model of format {data.get('format')}; this "
                                   f"installation reads format {EDGE_FORMAT}: export the product again")
            manifest = cls(**{**data, "graph_format": GraphFormat(data["graph_format"]),
                              "input_shape": tuple(data["input_shape"]), "mean": tuple(data["mean"]),
                              "std": tuple(data["std"])})
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, KeyError) as exc:
            raise ProfileError(f"{path} is corrupt ({exc}); export the product again") from None
        if verify:
            for name, expected in manifest.checksums.items():
                file = Path(folder) / name
                if not file.is_file() or sha256(file) != expected:
                    raise ProfileError(f"{file} is missing or does not match the manifest's checksum; "
                                       "export the product again")
        return manifest
