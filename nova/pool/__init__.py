"""Worker pool, weighted semaphore and rate limiter: what Go's "Ion" gave nova-go.

* :class:`WorkerPool` (:mod:`.workers`) runs callables on a fixed set of threads fed by a
  bounded :class:`~nova._core.RingQueue`; workers take tasks in batches (``get_many``),
  which is what makes submission cheap.  Its futures live in :mod:`.futures`.
* :class:`Semaphore` (:mod:`.semaphore`) is a weighted, FIFO-fair semaphore usable from
  threads and from asyncio code at the same time.
* :class:`RateLimiter` (:mod:`.ratelimit`) is a small facade over
  :class:`~nova._core.TokenBucket`.

Every class here is thread-safe.

.. versionadded:: 0.1
"""

from nova.pool.futures import _DONE_COND
from nova.pool.ratelimit import RateLimiter
from nova.pool.semaphore import Semaphore
from nova.pool.workers import _FORK_KEEP, BATCH, PoolMetrics, WorkerPool, _owned_by

__all__ = ("WorkerPool", "PoolMetrics", "Semaphore", "RateLimiter")
