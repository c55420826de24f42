"""Concurrency primitives: ring queue, token bucket (both implementations), worker pool,
semaphore, with the standard-library baselines beside them."""

import collections
import concurrent.futures
import queue
import threading

from nova.pool import Semaphore, WorkerPool

from .common import IMPLS, impl


def _trivial(x):
    return None


def _noop():
    return None


class RingSingleThread:
    params = (IMPLS,)
    param_names = ["impl"]

    def setup(self, name):
        self.q = impl(name).RingQueue(1024)

    def time_put_nowait_get_nowait_x1000(self, name):
        put, get = self.q.put_nowait, self.q.get_nowait
        for i in range(1000):
            put(i)
            get()

    def time_fill_then_get_many_1000(self, name):
        put = self.q.put_nowait
        for i in range(1000):
            put(i)
        self.q.get_many(1000)


class RingHandoff:
    """One producer thread -> one consumer thread draining with get_many."""

    params = (IMPLS,)
    param_names = ["impl"]
    n = 100_000

    def setup(self, name):
        self.make = impl(name).RingQueue

    def time_handoff_100k(self, name):
        q = self.make(1024)
        n = self.n

        def consumer():
            got = 0
            get_many = q.get_many
            while got < n:
                batch = get_many(1024)
                for x in batch:
                    _trivial(x)
                got += len(batch)

        t = threading.Thread(target=consumer)
        t.start()
        put = q.put
        for i in range(n):
            put(i)
        t.join()


class BaselineQueues:
    """The baselines the ratios use: queue.Queue handoff and a deque pair."""

    n = 20_000

    def time_queue_Queue_handoff_20k(self):
        q = queue.Queue(maxsize=1024)
        n = self.n

        def consumer():
            get = q.get
            for _ in range(n):
                _trivial(get())

        t = threading.Thread(target=consumer)
        t.start()
        put = q.put
        for i in range(n):
            put(i)
        t.join()

    def time_deque_append_popleft_x1000(self):
        d = collections.deque()
        append, popleft = d.append, d.popleft
        for i in range(1000):
            append(i)
            popleft()


class RingMemory:
    params = (IMPLS,)
    param_names = ["impl"]

    def setup(self, name):
        self.make = impl(name).RingQueue
        self.items = list(range(100_000))

    def peakmem_full_100k(self, name):
        q = self.make(100_000)
        put = q.put_nowait
        for x in self.items:
            put(x)


class Bucket:
    params = (IMPLS,)
    param_names = ["impl"]

    def setup(self, name):
        self.b = impl(name).TokenBucket(1e12, 1e12)

    def time_try_acquire_x1000(self, name):
        t = self.b.try_acquire
        for _ in range(1000):
            t()

    def time_try_acquire_weighted_x1000(self, name):
        t = self.b.try_acquire
        for _ in range(1000):
            t(3)


class Pool:
    params = ([1, 4],)
    param_names = ["workers"]
    n = 20_000

    def time_submit_then_drain_20k(self, workers):
        pool = WorkerPool(workers, 1024)
        submit = pool.submit
        for _ in range(self.n):
            submit(_noop)
        pool.drain()

    def time_threadpoolexecutor_submit_5k(self, workers):
        ex = concurrent.futures.ThreadPoolExecutor(workers)
        submit = ex.submit
        for _ in range(5_000):
            submit(_noop)
        ex.shutdown(wait=True)

    def track_pool_vs_executor_tasks_per_s_ratio(self, workers):
        import time

        t0 = time.perf_counter()
        self.time_submit_then_drain_20k(workers)
        pool_rate = self.n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        self.time_threadpoolexecutor_submit_5k(workers)
        tpe_rate = 5_000 / (time.perf_counter() - t0)
        return pool_rate / tpe_rate

    track_pool_vs_executor_tasks_per_s_ratio.unit = "x"


class SemaphoreBench:
    def setup(self):
        self.s = Semaphore(4)

    def time_acquire_release_x1000(self):
        a, r = self.s.acquire, self.s.release
        for _ in range(1000):
            a()
            r()

    def time_with_x1000(self):
        s = self.s
        for _ in range(1000):
            with s:
                pass
