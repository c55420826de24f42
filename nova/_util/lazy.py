"""The one lazy-attribute path of nova's packages (PEP 562): a package lists which of
its public names live in which module, and those modules are imported on first use
(``import nova`` does not pull in the Bus, the stores or the HTTP server)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ("load_lazy", "lazy_dir")


def load_lazy(package: str, table: Mapping[str, str], namespace: MutableMapping[str, Any], name: str) -> Any:
    """The attribute *name* of *package*: imported from the module *table* names for
    it and kept in *namespace* (the package's globals) so that the next lookup does not
    come here.  Raises AttributeError, worded as Python's own, for a name not in
    *table*."""
    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    namespace[name] = value
    return value


def lazy_dir(namespace: Iterable[str], public: Iterable[str]) -> list[str]:
    """``dir()`` of a package with lazy names: what is loaded and what is public."""
    return sorted(set(namespace) | set(public))
