"""The one background asyncio loop thread.

Everything in nova that needs an event loop of its own (an Emitter running ``async def``
listeners for ``emit``/``emit_async`` callers, a ListenerManager running async retries)
uses a :class:`LoopThread`: one loop on one daemon thread, started on first use, closed
by :meth:`LoopThread.close`, which finishes what is queued, cancels what is still
pending and runs the callbacks those tasks leave, so futures other threads wait on
always complete.  In a process forked from one with a running loop thread, the copy
starts a fresh loop on its next use (the thread did not survive the fork).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ("LoopThread", "LoopWatch", "start_on_loop", "watch_loop")

T = TypeVar("T")

_LIVE: weakref.WeakSet[LoopThread] = weakref.WeakSet()


class LoopThread:
    """An asyncio event loop running on its own daemon thread, started lazily.

    Args:
        name: the thread's name.

    Thread-safe: any thread may submit coroutines; the first use starts the thread.
    """

    __slots__ = ("_name", "_lock", "_loop", "_thread", "_closed", "_ended", "__weakref__")

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ended = False  # its loop ran its last turn: nothing can be handed to it
        _LIVE.add(self)

    # -- use ------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started on first use).

        Raises:
            RuntimeError: the loop thread was closed.
        """
        lp = self._loop
        if lp is not None:
            return lp
        with self._lock:
            if self._closed:
                raise RuntimeError(f"Expected an open loop thread, got {self._name!r} closed")
            if self._loop is None:
                lp = asyncio.new_event_loop()
                ready = threading.Event()
                t = threading.Thread(target=self._main, args=(lp, ready), name=self._name, daemon=True)
                t.start()
                ready.wait()
                self._thread = t
                self._loop = lp
            return self._loop

    @property
    def started(self) -> bool:
        """True while a loop thread is running."""
        return self._loop is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def in_thread(self) -> bool:
        """True when called from the loop's own thread."""
        t = self._thread
        return t is not None and t is threading.current_thread()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule *coro* on the loop; its future completes when it ends (cancelled if
        :meth:`close` cancels it).  If the loop cannot take it (closed, or closing and past
        its last turn), *coro* is closed unstarted and the error raised: a coroutine
        handed over is never dropped unawaited with a future nobody completes."""
        try:
            loop = self.loop
            with self._lock:  # the loop thread's last turn takes this lock first
                if self._ended:
                    raise RuntimeError(f"Expected an open loop thread, got {self._name!r} closed")
                return asyncio.run_coroutine_threadsafe(coro, loop)
        except BaseException:
            coro.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run *coro* on the loop and return its result (blocking the caller).

        Raises:
            RuntimeError: called from the loop's own thread (it would deadlock).
        """
        if self.in_thread():
            coro.close()
            raise RuntimeError(f"Expected a call from outside the loop thread {self._name!r}, got one from it")
        return self.submit(coro).result(timeout)

    # -- close ------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> bool:
        """Stop the loop: tasks already queued get one more turn, tasks still pending are
        cancelled and finished, then the loop closes.  Returns True if the thread ended
        within *timeout* (``None`` waits for it).  Idempotent; from the loop thread itself
        it only asks the loop to stop."""
        with self._lock:
            self._closed = True
            lp, t = self._loop, self._thread
        if lp is None or t is None:
            return True
        try:
            lp.call_soon_threadsafe(lp.stop)
        except RuntimeError:  # already closed
            pass
        if t is threading.current_thread():
            return False
        t.join(timeout)
        return not t.is_alive()

    def _main(self, lp: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(lp)
        lp.call_soon(ready.set)
        try:
            lp.run_forever()
        finally:
            try:
                finish_tasks(lp)
                lp.run_until_complete(lp.shutdown_asyncgens())
                finish_tasks(lp)  # what closing async generators started
                with self._lock:  # from now on submit() refuses: none is left queued
                    self._ended = True
                finish_tasks(lp)  # what was submitted until then
            finally:
                asyncio.set_event_loop(None)
                lp.close()

    def _after_fork_in_child(self) -> None:
        # The thread did not survive the fork; the loop object's state belongs to the
        # parent.  Forget both: the next use starts a fresh loop in this process.
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._ended = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._loop is not None else "idle")
        return f"<LoopThread {self._name!r} {state}>"


def start_on_loop(loop: asyncio.AbstractEventLoop,
                  factory: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
    """:func:`asyncio.run_coroutine_threadsafe`, but the coroutine is made by *factory*
    on the loop's own thread, when the hand-off runs, and never outlives the loop.

    Whatever way the loop ends, the returned future completes, and no coroutine is left
    "never awaited" nor any task "destroyed but pending":

    * if the loop closes with the hand-off still queued (``asyncio.run`` ending in
      another thread), no coroutine was ever made; the future is cancelled (when the
      dropped hand-off is collected);
    * if the loop is being shut down (``asyncio.run``/``asyncio.Runner`` ending:
      ``loop.shutdown_asyncgens()`` has begun, see :func:`watch_loop`), the hand-off
      makes no coroutine and cancels the future;
    * a task it started that is still pending when that shutdown begins (made after
      ``asyncio.run`` cancelled the loop's tasks) is cancelled and awaited there, before
      the loop closes.

    Only a loop closed without ``shutdown_asyncgens()`` (``loop.close()`` by hand while
    tasks are pending) can still strand a task, as it would any of the caller's own.

    Raises:
        RuntimeError: the loop is closed.
    """
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()
    ran: list[bool] = []

    def start() -> None:
        ran.append(True)
        if fut.cancelled():
            return
        watch = watch_loop(loop)
        if watch.closing:  # the loop is shutting down: nothing new starts on it
            fut.cancel()
            return
        try:
            task = loop.create_task(factory())
        except BaseException as exc:  # noqa: BLE001 - the caller's future carries it
            if fut.set_running_or_notify_cancel():
                fut.set_exception(exc)
            return
        watch.tasks.add(task)

        def copy(t: asyncio.Future[T]) -> None:
            watch.tasks.discard(t)
            if t.cancelled():
                fut.cancel()
            elif fut.set_running_or_notify_cancel():
                exc = t.exception()
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(t.result())

        def cancel_task(f: concurrent.futures.Future[T]) -> None:
            if f.cancelled() and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(task.cancel)
                except RuntimeError:  # closed meanwhile
                    pass

        task.add_done_callback(copy)
        fut.add_done_callback(cancel_task)

    def dropped() -> None:
        if not ran:
            fut.cancel()

    # Not at interpreter exit (atexit=False): weakref's own exit hook runs before nova's
    # and would cancel hand-offs still queued on a loop that is running fine.
    weakref.finalize(start, dropped).atexit = False
    loop.call_soon_threadsafe(start)
    return fut


class LoopWatch:
    """What :func:`start_on_loop` knows of one loop: ``closing`` (its shutdown began)
    and ``tasks`` (the ones it started there that have not finished)."""

    __slots__ = ("closing", "tasks", "gen", "__weakref__")

    def __init__(self) -> None:
        self.closing = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.gen: Any = None  # the sentinel async generator (kept alive here)


# loop -> its watch, while the loop is open (removed when its shutdown begins; closed
# loops that never shut down are swept when a new loop is watched)
_WATCHES: dict[asyncio.AbstractEventLoop, LoopWatch] = {}
_WATCHES_LOCK = threading.Lock()


def watch_loop(loop: asyncio.AbstractEventLoop) -> LoopWatch:
    """The :class:`LoopWatch` of *loop*, made on first use.  Call it from the loop's own
    thread while it runs (then the shutdown can be seen); from another thread, or on a
    loop whose ``shutdown_asyncgens()`` already began, it returns a watch that is
    ``closing`` when that is known.

    How the shutdown is seen: a sentinel async generator is started on the loop; the
    loop keeps track of it like any async generator, and ``loop.shutdown_asyncgens()``
    (which ``asyncio.run`` and ``asyncio.Runner`` call after cancelling the loop's
    tasks, before closing it) closes it.  Its ``finally`` marks the watch ``closing``,
    then cancels and awaits the tasks :func:`start_on_loop` made there that are still
    pending."""
    w = _WATCHES.get(loop)
    if w is not None:
        return w
    w = LoopWatch()
    if loop.is_closed() or getattr(loop, "_asyncgens_shutdown_called", False):
        w.closing = True  # too late to watch (BaseEventLoop's flag: shutdown began)
        return w
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not loop:
        return w  # cannot start the sentinel from here: an unregistered, open watch
    with _WATCHES_LOCK:
        known = _WATCHES.get(loop)
        if known is not None:
            return known
        for lp in [lp for lp in _WATCHES if lp.is_closed()]:  # closed without shutdown
            del _WATCHES[lp]
        gen = _sentinel(loop, w)
        try:
            gen.asend(None).send(None)  # runs to its yield: the loop's hook registers it
        except StopIteration:
            pass
        w.gen = gen
        _WATCHES[loop] = w
    return w


async def _sentinel(loop: asyncio.AbstractEventLoop, w: LoopWatch) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        w.closing = True
        with _WATCHES_LOCK:
            if _WATCHES.get(loop) is w:
                del _WATCHES[loop]
        pending = [t for t in w.tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def finish_tasks(lp: asyncio.AbstractEventLoop) -> None:
    """Cancel and finish every task of the stopped loop *lp*, the ones created while
    others finish too, and run the callbacks still queued (a finished task's done
    callbacks, which complete the futures other threads wait on)."""
    for _ in range(1000):
        lp.run_until_complete(asyncio.sleep(0))
        pending = asyncio.all_tasks(lp)
        if pending:
            for task in pending:
                task.cancel()
            lp.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        elif not getattr(lp, "_ready", None):
            return


def _reset_after_fork() -> None:
    global _WATCHES_LOCK
    _WATCHES_LOCK = threading.Lock()  # a parent thread may have held it at fork()
    _WATCHES.clear()  # the parent's loops do not run here
    for lt in list(_LIVE):
        lt._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork)
