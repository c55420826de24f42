"""The one lazy-attribute path (nova._util.lazy) through both packages that use it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("package", "name", "home"), [
    ("nova", "Bus", "nova.bus"),
    ("nova.observability", "Tracing", "nova.observability.tracing"),
])
def test_a_lazy_name_is_loaded_once_and_listed(package: str, name: str, home: str) -> None:
    pkg = importlib.import_module(package)
    assert name in dir(pkg)
    value = getattr(pkg, name)
    assert value is getattr(importlib.import_module(home), name)
    assert vars(pkg)[name] is value  # kept: the next lookup does not go through __getattr__
    with pytest.raises(AttributeError, match=rf"^module '{package}' has no attribute 'no_such_name'$"):
        pkg.no_such_name  # noqa: B018


def test_import_nova_does_not_import_the_lazy_modules() -> None:
    code = ("import sys, nova, nova.observability; "
            "print(sorted(m for m in ('nova.bus', 'nova.store', 'nova.observability.http') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]"
