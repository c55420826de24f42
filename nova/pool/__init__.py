"""Worker pool, weighted semaphore and rate limiter (see nova.pool.workers)."""

from nova.pool.workers import _DONE_COND, _FORK_KEEP, BATCH, PoolMetrics, RateLimiter, Semaphore, WorkerPool, _owned_by

__all__ = ("WorkerPool", "PoolMetrics", "Semaphore", "RateLimiter")
