"""Loaded product inspectors for long-running processes (the REST API, the station UI): each
product's ``Inspector`` loads once per profile version and reloads when the profile on disk
changes, so a refit or a threshold change saved by the UI or the CLI is picked up by the next
request. Thread-safe; each product also has a lock to predict under (one inference at a time per
model: the CPU is the limit anyway, and memory stays bounded). With ``model_dir`` it serves the one
exported model there (the product its manifest names), without torch; with ``runtime`` the
profiles predict on that runtime (``edge.loading.open_inspector``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from inspect_app.edge.manifest import MANIFEST_FILE, EdgeManifest
from inspect_app.edge.sessions import Runtime
from inspect_app.errors import ProfileError
from inspect_app.profile import PROFILE_FILE, check_product_name, list_profiles, models_dir

if TYPE_CHECKING:
    from inspect_app.edge.inspector import EdgeInspector
    from inspect_app.inspector import Inspector

MAX_PRODUCTS = 16  # loaded at once; the least recently used is dropped beyond that


class MissingProfileError(ProfileError, LookupError):
    """No fitted profile for the product (the API answers 404; other callers see a ``ProfileError``)."""


class LoadedInspector(NamedTuple):
    inspector: Inspector | EdgeInspector
    lock: threading.Lock  # predict under it


@dataclass
class _Entry:
    predict_lock: threading.Lock = field(default_factory=threading.Lock)
    load_lock: threading.Lock = field(default_factory=threading.Lock)  # one load of a product at a time
    version: tuple[int, int, int] | None = None
    inspector: Inspector | EdgeInspector | None = None


class InspectorCache:
    """See module docstring. ``root``: the profiles folder (``profile.models_dir`` resolves it)."""

    def __init__(self, root: str | Path | None = None, max_products: int = MAX_PRODUCTS, *,
                 runtime: Runtime | None = Runtime.TORCH, model_dir: Path | None = None):
        self.root = models_dir(root)
        self.max_products = max_products
        self.runtime, self.model_dir = runtime, model_dir
        self._model_product = EdgeManifest.read(model_dir, verify=False).product if model_dir else None
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def products(self) -> list[str]:
        """The fitted products in the profiles folder (the exported model's one with ``model_dir``)."""
        return [self._model_product] if self._model_product else list_profiles(self.root)

    def profile_version(self, product: str) -> tuple[int, int, int]:
        """Changes whenever the profile file is rewritten (profiles are saved by an atomic rename,
        so the inode changes even where the clock is coarse). Raises ``MissingProfileError``."""
        path = self.root / check_product_name(product) / PROFILE_FILE
        if self.model_dir is not None:
            path = self.model_dir / MANIFEST_FILE if product == self._model_product else self.model_dir / product
        try:
            stat = path.stat()
        except OSError:
            known = ", ".join(self.products()) or "none"
            raise MissingProfileError(f"no profile for product {product!r} in {self.root} "
                                      f"(fitted products: {known})") from None
        return stat.st_mtime_ns, stat.st_ino, stat.st_size

    def get(self, product: str) -> LoadedInspector:
        """The product's current Inspector and its lock. Raises ``MissingProfileError``, or
        ``ProfileError`` for a corrupt or incompatible profile."""
        from inspect_app.edge.loading import open_inspector

        try:
            version = self.profile_version(product)
        except MissingProfileError:
            with self._lock:
                self._entries.pop(product, None)
            raise
        with self._lock:
            entry = self._entries.setdefault(product, _Entry())
            self._entries.move_to_end(product)
            while len(self._entries) > self.max_products:
                self._entries.popitem(last=False)
        with entry.load_lock:
            if entry.inspector is None or entry.version != version:
                entry.inspector = open_inspector(product, self.root, model_dir=self.model_dir,
                                                 runtime=self.runtime)
                entry.version = version
            return LoadedInspector(entry.inspector, entry.predict_lock)
