"""One loaded ``Inspector`` per product for the API process, reloaded when the profile on disk
changes (a refit from the UI or the CLI is picked up by the next request)."""

from __future__ import annotations

import threading
from pathlib import Path

from inspect_app.profile import PROFILE_FILE, check_product_name, list_profiles, models_dir


class InspectorCache:
    def __init__(self, root: str | Path | None = None):
        self.root = models_dir(root)
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, object, threading.Lock]] = {}

    def products(self) -> list[str]:
        return list_profiles(self.root)

    def get(self, product: str):
        """``(inspector, lock)`` for ``product``; predict under the lock (one inference at a time per
        model: the CPU is the limit anyway, and memory stays bounded). Raises ``ProfileError``."""
        from inspect_app.inspector import Inspector

        check_product_name(product)
        profile = self.root / product / PROFILE_FILE
        try:
            stamp = profile.stat().st_mtime
        except OSError:
            known = ", ".join(self.products()) or "none"
            raise LookupError(f"no profile for product {product!r} in {self.root} (fitted products: {known})") from None
        with self._lock:
            entry = self._entries.get(product)
            if entry is not None and entry[0] == stamp:
                return entry[1], entry[2]
            inspector = Inspector.load(product, self.root)  # ProfileError for corrupt/incompatible profiles
            lock = entry[2] if entry is not None else threading.Lock()
            self._entries[product] = (stamp, inspector, lock)
            return inspector, lock

