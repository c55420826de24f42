"""The public surface: names, __all__ tuples, docstrings, errors."""

from __future__ import annotations

import importlib
import inspect
import queue

import pytest

import nova
from nova import errors

MODULES = [
    "nova",
    "nova.events",
    "nova.errors",
    "nova.testing",
    "nova.observability.metrics",
    "nova.pool",
    "nova.emitter",
    "nova.bus",
    "nova.listener",
    "nova.store",
    "nova.store.base",
    "nova.store.memory",
    "nova.transport",
    "nova._core.hashing_py",
    "nova._core.event_py",
    "nova._core.ring_py",
    "nova._core.bucket_py",
    "nova._core.columns_py",
]

DESIGN_NAMES = (
    "Event Emitter Bus TopicConfig DeliveryMode ListenerManager ListenerConfig RetryPolicy "
    "Backoff CircuitConfig DeadLetterConfig Health MemoryStore Cursor WorkerPool Semaphore "
    "RateLimiter SimpleMetricsCollector RingQueue TokenBucket EventBatch DeadLetter "
    "PublishReceipt as_listener errors"
).split()


def test_all_is_a_tuple_and_resolves():
    assert isinstance(nova.__all__, tuple)
    assert len(set(nova.__all__)) == len(nova.__all__)
    for name in nova.__all__:
        assert getattr(nova, name) is not None, name


def test_design_names_exported():
    missing = [n for n in DESIGN_NAMES if n not in nova.__all__]
    assert not missing


@pytest.mark.parametrize("modname", MODULES)
def test_module_all_is_tuple(modname):
    mod = importlib.import_module(modname)
    assert isinstance(mod.__all__, tuple)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{modname}.{name}"


def test_public_names_have_docstrings():
    """Every public name of every module, and every public method of public classes."""
    undocumented = []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if not (inspect.getdoc(obj) or "").strip():
                undocumented.append(f"{modname}.{name}")
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member):
                        continue
                    if not (inspect.getdoc(member) or "").strip():
                        undocumented.append(f"{modname}.{name}.{attr}")
    assert not undocumented


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        nova.Nope  # noqa: B018


def test_error_hierarchy():
    for name in errors.__all__:
        obj = getattr(errors, name)
        if inspect.isclass(obj):
            assert issubclass(obj, errors.NovaError), name
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.Timeout, TimeoutError)
    assert issubclass(errors.BufferFull, queue.Full)
    assert issubclass(errors.QueueEmpty, queue.Empty)
    for closed in (errors.EmitterClosed, errors.BusClosed, errors.StoreClosed, errors.QueueClosed):
        assert issubclass(closed, errors.ClosedError)
    exc = errors.RetryLimitExceeded("gave up after 3 attempts", attempts=3)
    assert exc.attempts == 3 and "3 attempts" in str(exc)
    assert errors.type_name(3) == "int"
