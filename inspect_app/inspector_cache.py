"""Loaded product inspectors for long-running processes (the REST API, the station UI): each
product's ``Inspector`` loads once per profile version and reloads when the profile on disk
changes, so a refit or a threshold change saved by the UI or the CLI is picked up by the next
request. Thread-safe; each product also has a lock to predict under (one inference at a time per
model: the CPU is the limit anyway, and memory stays bounded)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from inspect_app.errors import ProfileError
from inspect_app.profile import PROFILE_FILE, check_product_name, list_profiles, models_dir

if TYPE_CHECKING:
    from inspect_app.inspector import Inspector

MAX_PRODUCTS = 16  # loaded at once; the least recently used is dropped beyond that


class MissingProfileError(ProfileError, LookupError):
    """No fitted profile for the product (the API answers 404; other callers see a ``ProfileError``)."""


class LoadedInspector(NamedTuple):
    inspector: Inspector
    lock: threading.Lock  # predict under it


@dataclass
class _Entry:
    predict_lock: threading.Lock = field(default_factory=threading.Lock)
    load_lock: threading.Lock = field(default_factory=threading.Lock)  # one load of a product at a time
    version: tuple[int, int, int] | None = None
    inspector: Inspector | None = None


class InspectorCache:
    """See module docstring. ``root``: the profiles folder (``profile.models_dir`` resolves it)."""

    def __init__(self, root: str | Path | None = None, max_products: int = MAX_PRODUCTS):
        self.root = models_dir(root)
        self.max_products = max_products
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def products(self) -> list[str]:
        """The fitted products in the profiles folder."""
        return list_profiles(self.root)

    def profile_version(self, product: str) -> tuple[int, int, int]:
        """Changes whenever the profile file is rewritten (profiles are saved by an atomic rename,
        so the inode changes even where the clock is coarse). Raises ``MissingProfileError``."""
        path = self.root / check_product_name(product) / PROFILE_FILE
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
        from inspect_app.inspector import Inspector

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
                entry.inspector = Inspector.load(product, self.root)
                entry.version = version
            return LoadedInspector(entry.inspector, entry.predict_lock)
