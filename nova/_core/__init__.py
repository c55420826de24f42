"""The compiled kernels and their pure-Python twins, and the chooser between them.

Each kernel is a pair: ``<name>.pyx`` (compiled, the speed) and ``<name>_py.py`` (pure
Python, the specification).  Both expose the same names with the same behaviour.

The compiled kernels are used unless:

* the environment variable ``NOVA_NO_EXTENSIONS`` is set to a non-empty value other
  than ``0``, or
* the interpreter is not CPython, or
* the compiled modules cannot be imported (a broken or missing build).  In that last
  case :data:`USING_EXTENSIONS` is ``False`` and :data:`IMPORT_ERROR` says why; with
  ``NOVA_REQUIRE_EXTENSIONS=1`` the import fails loudly instead.

The choice is made once, for all kernels together, when this package is imported.
Public names are re-exported here (``from nova._core import RingQueue``) and resolved
lazily, so importing nova does not import kernels it does not use.
"""

from __future__ import annotations

import importlib
import os
import platform
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

__all__ = (
    "USING_EXTENSIONS",
    "IMPORT_ERROR",
    "KERNELS",
    "kernel",
    "implementation",
    "compiled_available",
)

#: kernel module name -> the public names it provides.
KERNELS: dict[str, tuple[str, ...]] = {
    "hashing": ("murmur2", "partition_for", "partition_many"),
    "event": ("Event", "new_id", "to_timestamp_ns", "now_ns"),
    "ring": ("RingQueue",),
    "bucket": ("TokenBucket",),
    "columns": ("ColumnLog",),
    "audit": ("call_rows", "deliver_noted", "note_call"),
    "park": ("ParkLock", "Watch", "WOKEN", "CHECK", "IDLE"),
}

_NAME_TO_KERNEL = {name: k for k, names in KERNELS.items() for name in names}


def _flag(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0")


NO_EXTENSIONS: bool = _flag("NOVA_NO_EXTENSIONS") or platform.python_implementation() != "CPython"

#: Why the compiled kernels could not be imported (``None`` when they could).
IMPORT_ERROR: ImportError | None = None


def _probe_compiled() -> bool:
    global IMPORT_ERROR
    try:
        importlib.import_module("nova._core.hashing")
    except ImportError as exc:
        IMPORT_ERROR = exc
        if _flag("NOVA_REQUIRE_EXTENSIONS"):
            raise ImportError(
                "NOVA_REQUIRE_EXTENSIONS=1 but the compiled nova kernels cannot be imported "
                f"({exc}); rebuild with `pip install -e .`"
            ) from exc
        return False
    return True


if TYPE_CHECKING:
    USING_EXTENSIONS = False
else:
    #: True when the compiled kernels are the active implementation.
    USING_EXTENSIONS: bool = False if NO_EXTENSIONS else _probe_compiled()


def compiled_available() -> bool:
    """Return True if the compiled kernels can be imported (whatever is active)."""
    try:
        importlib.import_module("nova._core.hashing")
    except ImportError:
        return False
    return True


def kernel(name: str, *, pure: bool | None = None) -> ModuleType:
    """Return the module of kernel *name*: the active one, or the pure (``pure=True``)
    or compiled (``pure=False``) one explicitly.

    Raises:
        KeyError: *name* is not a kernel.
        ImportError: the compiled module was asked for and cannot be imported.
    """
    if name not in KERNELS:
        raise KeyError(f"Expected a kernel name among {sorted(KERNELS)}, got {name!r}")
    if pure is None:
        pure = not USING_EXTENSIONS
    return importlib.import_module(f"nova._core.{name}_py" if pure else f"nova._core.{name}")


def implementation(which: str) -> SimpleNamespace:
    """Return every kernel name of one implementation: ``"c"`` (compiled) or ``"py"``.

    Used by the tests to run the same cases against both twins.  Kernels are imported
    lazily on attribute access.
    """
    if which not in ("c", "py"):
        raise ValueError(f"Expected implementation 'c' or 'py', got {which!r}")
    pure = which == "py"

    class _Impl(SimpleNamespace):
        def __getattr__(self, attr: str) -> Any:
            k = _NAME_TO_KERNEL.get(attr)
            if k is None:
                raise AttributeError(attr)
            value = getattr(kernel(k, pure=pure), attr)
            setattr(self, attr, value)
            return value

        def __repr__(self) -> str:
            return f"<nova kernels {which}>"

    ns = _Impl(name=which, pure=pure)
    return ns


def __getattr__(attr: str) -> Any:
    k = _NAME_TO_KERNEL.get(attr)
    if k is None:
        raise AttributeError(f"module 'nova._core' has no attribute {attr!r}")
    value = getattr(kernel(k), attr)
    globals()[attr] = value
    return value
