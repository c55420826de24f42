"""Shared fixtures.

* ``core``: parametrized over the compiled (``c``) and pure (``py``) kernels.  Every core
  test takes it, so both twins run the same cases.  ``--no-c-extensions`` (or
  ``NOVA_NO_EXTENSIONS=1``) runs the ``py`` half only.
* ``core_pair``: both implementations at once, for differential tests.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from nova import _core


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-c-extensions",
        action="store_true",
        default=False,
        help="run the core tests against the pure-Python twins only",
    )


def _c_enabled(config: pytest.Config) -> bool:
    if config.getoption("--no-c-extensions"):
        return False
    return not _core.NO_EXTENSIONS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "core" in metafunc.fixturenames:
        impls = ["c", "py"] if _c_enabled(metafunc.config) else ["py"]
        metafunc.parametrize("core", impls, indirect=True, ids=impls, scope="session")


@pytest.fixture(scope="session")
def core(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The kernel names of one implementation (``core.RingQueue``, ``core.murmur2``...)."""
    which = request.param
    if which == "c" and not _core.compiled_available():
        raise RuntimeError(
            "the compiled kernels are not built; run `pip install -e .` or pass --no-c-extensions"
        )
    return _core.implementation(which)


@pytest.fixture(scope="session")
def core_pair(request: pytest.FixtureRequest) -> tuple[SimpleNamespace, SimpleNamespace]:
    """(compiled, pure) kernel namespaces, for differential tests."""
    if not _c_enabled(request.config):
        # Differential tests need both; in a pure-only run compare pure with itself
        # would assert nothing, so fail loudly instead of passing vacuously.
        pytest.fail("differential tests need the compiled kernels (run without --no-c-extensions)")
    return _core.implementation("c"), _core.implementation("py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Differential tests cannot run in a pure-only session: deselect them there (the
    # compiled session runs them), reporting the count, rather than skip or fake them.
    if _c_enabled(config):
        return
    keep, drop = [], []
    for item in items:
        fixturenames = getattr(item, "fixturenames", ())
        (drop if "core_pair" in fixturenames else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def env_clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A monkeypatch with the NOVA_* variables removed."""
    for var in list(os.environ):
        if var.startswith("NOVA_"):
            monkeypatch.delenv(var)
    return monkeypatch


# the real valkey-server fixtures of the Redis backend tests (nova_valkey, redis_prefix)
from valkey_server import nova_valkey, redis_prefix  # noqa: E402,F401
# the transport-parametrized Bus fixture (in-process and Redis Streams)
from bus_transports import bus_transport  # noqa: E402,F401
