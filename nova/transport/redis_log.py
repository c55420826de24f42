"""The partition streams of one topic on Redis (publishing), and the lazily opened
store of a topic's dead letters: the log half of
:class:`~nova.transport.redis.RedisTransport`.

.. versionadded:: 0.3
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nova.errors import BusClosed, TopicNotFound
from nova.transport.base import TopicLog
from nova.transport.redis_consumer import offset_of

if TYPE_CHECKING:
    from nova.transport.redis import RedisTransport

__all__ = ("RedisTopicLog", "DeadLetterStore")

class RedisTopicLog(TopicLog):
    """The partition streams of one topic (see the module docstring)."""

    def __init__(self, transport: RedisTransport, name: str, partitions: int, capacity: int) -> None:
        self.transport = transport
        self.name = name
        self.partitions = partitions
        self.capacity = capacity
        self.keys = [f"{transport.kp}:t:{name}:{p}" for p in range(partitions)]
        self.closed = False
        self.deleted = False
        self.on_drop = None
        self._xadd = transport.client.execute_command
        self._encode = transport.entry.encode

    def _closed_error(self) -> Exception:
        if self.deleted:
            return TopicNotFound(f"Expected an existing topic, got {self.name!r} deleted while publishing")
        return BusClosed(f"Expected an open bus, got topic {self.name!r} closed for publishing")

    def close(self, deleted: bool = False) -> None:
        """See :meth:`TopicLog.close`."""
        self.closed = True
        self.deleted = self.deleted or deleted

    def append(self, partition: int, event: Any, timeout: float | None) -> int:
        """``XADD`` *event* to its partition stream; return its offset.

        Raises:
            StoreUnavailable: the server did not answer (after the client's retries).
            BusClosed / TopicNotFound: the log was closed / deleted.
            TypeError: the codec cannot encode the event's data.
        """
        if self.closed:
            raise self._closed_error()
        data = self._encode(event)
        with self.transport._guard(f"publishing to topic {self.name!r}"):
            eid = self._xadd("XADD", self.keys[partition], "0-*", "e", data)
        return offset_of(eid)

    def append_many(self, partitions: Sequence[int], events: Sequence[Any], timeout: float | None) -> list[int]:
        """Pipelined ``XADD`` in batches of the transport's ``batch`` events (one round
        trip each).  Every event is encoded before the first batch is sent.  On a
        server error, the batches before the failing one are stored; the failing
        one may be partly stored."""
        if self.closed:
            raise self._closed_error()
        enc = self._encode
        datas: list[bytes] = []
        try:
            for ev in events:
                datas.append(enc(ev))
        except BaseException:
            self.append_many(partitions[:len(datas)], events[:len(datas)], timeout)  # the ones before stay
            raise
        keys = self.keys
        out: list[int] = []
        step = self.transport.batch
        client = self.transport.client
        for i in range(0, len(datas), step):
            pipe = client.pipeline(transaction=False)
            cmd = pipe.execute_command
            for p, d in zip(partitions[i:i + step], datas[i:i + step]):
                cmd("XADD", keys[p], "0-*", "e", d)
            with self.transport._guard(f"publishing to topic {self.name!r}"):
                replies = pipe.execute()
            out.extend(offset_of(r) for r in replies)
        return out

    def offsets(self) -> list[int]:
        """The next offset of each partition, from the server (every process's events)."""
        ends = self.transport.ends(self.keys)
        return [ends[k] + 1 for k in self.keys]


class DeadLetterStore:
    """A topic's dead-letter :class:`~nova.store.RedisStore`, opened on first use."""

    def __init__(self, transport: RedisTransport, prefix: str) -> None:
        self._transport = transport
        self._prefix = prefix
        self._store: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        with self._lock:
            if self._store is None:
                from nova.store.redis import RedisStore

                t = self._transport
                self._store = RedisStore(client=t.client, prefix=self._prefix, codec=t.entry.codec, sweep_interval=None)
            return self._store

    def append(self, stream: str, *events: Any) -> int:
        """See :meth:`nova.store.RedisStore.append`."""
        return int(self._open().append(stream, *events))

    def replay(self, *args: Any, **kwargs: Any) -> Any:
        """See :meth:`nova.store.RedisStore.replay`."""
        return self._open().replay(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._open(), name)

    def __repr__(self) -> str:
        return f"<dead letters of RedisTransport prefix {self._prefix!r}>"
