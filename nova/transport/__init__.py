"""Where the partitions of a :class:`nova.Bus` live.

* :mod:`nova.transport.base` — the small internal interface the Bus talks to.
* :mod:`nova.transport.inprocess` — the default: partitions, lanes and delivery
  threads in this process.

.. versionadded:: 0.1
"""

from __future__ import annotations

from nova.transport.base import Consumer, Slot, TopicLog, Transport
from nova.transport.inprocess import InProcessTransport

__all__ = ("Transport", "TopicLog", "Slot", "Consumer", "InProcessTransport")
