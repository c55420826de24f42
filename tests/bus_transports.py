"""The ``bus_transport`` fixture: the in-process Bus tests of delivery, ordering and
delivery modes run against each transport (in-process, and Redis Streams on the
session's real valkey-server).

A test takes ``bus_transport`` and builds its buses with
``Bus(transport=bus_transport(), ...)``: ``None`` (the default transport) for
``inprocess``, a fresh :class:`~nova.RedisTransport` (its own key prefix, short
leases) for ``redis``; the clients are closed at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from valkey_server import fresh_prefix

__all__ = ("bus_transport", "TransportFactory")


class TransportFactory:
    """Makes the transport of one parametrization (``name``: ``inprocess``/``redis``)."""

    def __init__(self, name: str, server: Any) -> None:
        self.name = name
        self.server = server
        self.made: list[Any] = []

    @property
    def redis(self) -> bool:
        return self.name == "redis"

    def __call__(self, **kwargs: Any) -> Any:
        if self.name == "inprocess":
            return None
        from nova import RedisTransport

        kwargs.setdefault("session_timeout", 2.0)
        kwargs.setdefault("heartbeat", 0.2)
        t = RedisTransport(self.server.url, prefix=fresh_prefix(), **kwargs)
        self.made.append(t)
        return t

    def close(self) -> None:
        for t in self.made:
            t.client.close()


@pytest.fixture(params=["inprocess", "redis"])
def bus_transport(request: pytest.FixtureRequest) -> Iterator[TransportFactory]:
    """A transport factory per transport kind (see the module docstring)."""
    server = request.getfixturevalue("nova_valkey") if request.param == "redis" else None
    f = TransportFactory(request.param, server)
    try:
        yield f
    finally:
        f.close()
