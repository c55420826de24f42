"""Helpers shared by the benchmark files: the implementations to parametrize over."""

from nova import _core

#: Parametrize benchmarks over these: "c" (compiled) and "py" (pure twin).
IMPLS = ["c", "py"] if _core.compiled_available() and not _core.NO_EXTENSIONS else ["py"]


def impl(name):
    """The kernel namespace of implementation *name* ("c" or "py")."""
    return _core.implementation(name)
