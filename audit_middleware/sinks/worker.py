"""The one per-process worker mechanism every buffering sink shares.

A :class:`BackgroundWorker` is a bounded queue and one daemon thread that drains it in
batches. The thread is started lazily, by the first ``offer`` in each process: a
gunicorn worker forked after ``--preload`` gets a queue and a thread of its own, and
what the parent had queued stays the parent's to write. :func:`after_fork_in_child`
lets other per-process state (the spool's open files and locks) start over the same way.

Subclasses implement :meth:`BackgroundWorker.handle` (one batch), or take over the loop
with :meth:`BackgroundWorker.run_once` when a round is more than "take a batch, handle
it" (the OpenSearch shipper checks readiness and replays its spool first).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["BackgroundWorker", "after_fork_in_child"]

T = TypeVar("T")

_fork_hooks: list[weakref.WeakMethod[Callable[[], None]]] = []
_fork_hooks_lock = threading.Lock()


def after_fork_in_child(method: Callable[[], None]) -> None:
    """Call the bound ``method`` in every forked child, for as long as its object lives."""
    with _fork_hooks_lock:
        _fork_hooks[:] = [ref for ref in _fork_hooks if ref() is not None]  # forget dead objects
        _fork_hooks.append(weakref.WeakMethod(method))


_generation = 0
"""Bumped in every forked child: a worker of another generation belongs to the parent (cheaper
than ``os.getpid()``, a system call, on every ``offer``)."""


def _run_fork_hooks() -> None:
    global _generation  # noqa: PLW0603 - one counter per process
    _generation += 1
    alive: list[weakref.WeakMethod[Callable[[], None]]] = []
    for ref in _fork_hooks:
        method = ref()
        if method is not None:
            alive.append(ref)
            method()
    _fork_hooks[:] = alive


os.register_at_fork(after_in_child=_run_fork_hooks)


class BackgroundWorker(Generic[T]):
    """A bounded queue drained in batches by one background thread per process.

    ``linger`` is how long a batch may wait to fill up to ``batch_size`` (0: handle
    whatever is there at once); ``flush()`` ships what is queued without waiting.
    ``idle_every`` (seconds) makes the thread call :meth:`idle` whenever the queue has
    been empty that long (None: the thread sleeps until the next item).
    """

    def __init__(
        self,
        name: str,
        *,
        max_queue: int,
        batch_size: int,
        linger: float = 0.0,
        idle_every: float | None = None,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        self.name = name
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger = linger
        self.idle_every = idle_every
        self._reset()

    def _reset(self) -> None:
        """Fresh queue, locks and thread: at start, and in a forked child."""
        self._generation = _generation
        self._queue: deque[T] = deque()
        self._lock = threading.Lock()  # never re-entered: a plain lock is cheaper
        self._wake = threading.Condition(self._lock)
        self._unfinished = 0  # offered and not yet reported done by the thread
        self._offered = 0  # ever offered in this process, and ever done: see wait_for_earlier
        self._handled = 0
        self._flush_requested = False
        self._waiting = False  # the thread waits (take(), wait()) for items: an offer may wake it
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _this_process(self) -> None:
        if self._generation != _generation:
            self._reset()

    # -- producers ----------------------------------------------------------------------

    def offer(self, item: T) -> bool:
        """Queue ``item``; False when the queue is full or stopped (the caller keeps it another way)."""
        if self._generation != _generation:
            self._reset()
        if self._thread is None:
            self._start()
        with self._lock:  # the condition's own lock, without the condition's Python-level __enter__
            if len(self._queue) >= self.max_queue or self.stopping.is_set():
                return False
            self._queue.append(item)
            self._unfinished += 1
            self._offered += 1
            # only while the thread waits: a busy thread takes the next batch unasked, and
            # under load the queue stays past batch_size for many offers
            if self._waiting and (self.linger <= 0 or len(self._queue) >= self.batch_size):
                self._wake.notify()
        return True

    def offer_many(self, items: list[T]) -> int:
        """Queue ``items`` in order under one lock, as far as there is room; how many were taken
        (the caller keeps the rest another way). The thread is woken once, not once an item."""
        if self._generation != _generation:
            self._reset()
        if self._thread is None:
            self._start()
        with self._lock:
            if self.stopping.is_set():
                return 0
            taken = max(0, min(len(items), self.max_queue - len(self._queue)))
            self._queue.extend(items[:taken])
            self._unfinished += taken
            self._offered += taken
            if taken and self._waiting and (self.linger <= 0 or len(self._queue) >= self.batch_size):
                self._wake.notify()
        return taken

    def start(self) -> None:
        """Start this process's thread now (``offer`` does it too), e.g. to drain a spool."""
        self._this_process()
        self._start()

    def depth(self) -> int:
        """Items waiting in memory in this process."""
        return len(self._queue) if self._generation == _generation else 0

    def wait_for_earlier(self, timeout: float) -> bool:
        """Wait until the items offered before this call are handled (not the ones offered
        meanwhile: a busy queue never keeps the caller longer than its own backlog)."""
        if self._generation != _generation or self._thread is None:
            return True
        with self._wake:
            mark = self._offered
            return self._wake.wait_for(lambda: self._handled >= mark, timeout)

    def unfinished(self) -> int:
        """Items offered in this process and not yet handled (queued or in the batch at work)."""
        return self._unfinished if self._generation == _generation else 0

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything offered so far is handled and :meth:`drained` holds."""
        self._this_process()
        if self._thread is None:
            return self.drained()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            self._flush_requested = True
            self._wake.notify_all()
            try:
                while not (self._unfinished <= 0 and self.drained()):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    # drained() may turn true without a notification (a spool emptied): poll too
                    self._wake.wait(0.05 if remaining is None else min(0.05, remaining))
            finally:
                self._flush_requested = False
        return True

    def stop(self, timeout: float | None) -> list[T]:
        """Stop the thread (it finishes its round) and return what it did not take."""
        self._this_process()
        self.stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.take_all()

    @property
    def running(self) -> bool:
        """Whether this process's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._generation == _generation

    # -- the thread ---------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None or self.stopping.is_set():
            return
        with self._wake:
            created = self._thread is None
            if created:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        if created:
            self.started()

    def _loop(self) -> None:
        while self._guarded_round():
            pass

    def _guarded_round(self) -> bool:
        try:
            return self.run_once()
        except Exception as exc:  # noqa: BLE001 - the thread must outlive any one round
            self.failed(exc)
            return True

    def run_once(self) -> bool:
        """One round: take a batch and handle it. Return False to end the thread."""
        batch = self.take(self.batch_size, self.linger)
        if batch:
            try:
                self.handle(batch)
            finally:
                self.done(len(batch))
        elif not self.stopping.is_set() and self.idle_every is not None:
            self.idle()
        return bool(batch) or not self.stopping.is_set()

    def take(self, count: int, linger: float) -> list[T]:
        """Up to ``count`` items, waiting up to ``linger`` for that many (less on flush or stop)."""
        deadline = time.monotonic() + linger
        idle_until = None if self.idle_every is None else time.monotonic() + self.idle_every
        with self._wake:
            while len(self._queue) < count and not self.stopping.is_set():
                remaining = deadline - time.monotonic() if self._queue else max(linger, 0.5)
                if remaining <= 0 or (self._flush_requested and self._queue):
                    break
                if not self._queue and idle_until is not None:
                    if time.monotonic() >= idle_until:
                        break  # empty for idle_every: an empty batch, and run_once calls idle()
                    remaining = min(remaining, idle_until - time.monotonic())
                self._waiting = True
                try:
                    self._wake.wait(remaining)
                finally:
                    self._waiting = False
                if not self._queue and not self._flush_requested and not self.stopping.is_set():
                    deadline = time.monotonic() + linger  # the linger counts from the first item
            return [self._queue.popleft() for _ in range(min(count, len(self._queue)))]

    def take_all(self) -> list[T]:
        """Everything queued, at once (what a stopping or degraded worker moves elsewhere)."""
        with self._wake:
            items = list(self._queue)
            self._queue.clear()
        return items

    def done(self, count: int) -> None:
        """Report ``count`` taken items finished with (stored, spooled or reported)."""
        with self._wake:
            self._unfinished -= count
            self._handled += count
            self._wake.notify_all()

    def wait(self, seconds: float, until: Callable[[], bool]) -> None:
        """Sleep up to ``seconds``, waking early when stopping or when ``until()`` holds."""
        with self._wake:
            self._waiting = True  # an offer's notification re-checks ``until`` (a queue filling up)
            try:
                self._wake.wait_for(lambda: self.stopping.is_set() or until(), timeout=seconds)
            finally:
                self._waiting = False

    # -- hooks --------------------------------------------------------------------------

    def handle(self, batch: list[T]) -> None:
        """Process one batch (the default :meth:`run_once` calls it)."""
        raise NotImplementedError

    def idle(self) -> None:
        """The queue has been empty for ``idle_every`` seconds (called on the thread)."""

    def started(self) -> None:
        """The thread of this process was just started (by the caller's thread): per-process set-up."""

    def drained(self) -> bool:
        """Whether nothing is left elsewhere either (a spool, say); ``flush`` waits for it."""
        return True

    def failed(self, exc: Exception) -> None:  # noqa: ARG002 - for subclasses, which report it
        """A round raised ``exc``; the thread goes on after a short pause (never a busy loop)."""
        self.wait(0.1, lambda: False)
