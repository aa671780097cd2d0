"""The per-process background worker: batches, linger, flush, stop, failures, a full queue, and fork."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from audit_middleware.sinks.worker import BackgroundWorker, after_fork_in_child
from tests.fork_support import in_forked_child

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
multi_threaded_fork = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


class Recorder(BackgroundWorker[str]):
    """Keeps each batch it handles; ``gate`` (when given) holds handling in the process that made it."""

    def __init__(self, *, gate: threading.Event | None = None, **options: float) -> None:
        super().__init__("test-worker", **options)  # type: ignore[arg-type]
        self.batches: list[list[str]] = []
        self.handled = threading.Event()
        self.gate = gate
        self.maker_pid = os.getpid()

    def handle(self, batch: list[str]) -> None:
        if self.gate is not None and os.getpid() == self.maker_pid:
            assert self.gate.wait(10), "the test never opened the gate"
        self.batches.append(batch)
        self.handled.set()

    @property
    def items(self) -> list[str]:
        return [item for batch in self.batches for item in batch]


@pytest.fixture
def make_worker() -> Iterator[Callable[..., Recorder]]:
    """Workers for the test; their gates are opened and their threads stopped at the end."""
    made: list[Recorder] = []

    def make(**options: object) -> Recorder:
        options.setdefault("max_queue", 100)
        options.setdefault("batch_size", 10)
        worker = Recorder(**options)  # type: ignore[arg-type]
        made.append(worker)
        return worker

    yield make
    for worker in made:
        if worker.gate is not None:
            worker.gate.set()
        worker.stop(timeout=5)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def busy_with_first_item(worker: Recorder) -> None:
    """Offer one item and wait until the thread has taken it (and blocks at the gate)."""
    assert worker.offer("first")
    assert wait_until(lambda: worker.depth() == 0)


@pytest.mark.parametrize(("max_queue", "batch_size"), [(0, 1), (1, 0), (-1, 5)])
def test_sizes_must_be_positive(max_queue: int, batch_size: int) -> None:
    """A queue or a batch of fewer than one item is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        BackgroundWorker("w", max_queue=max_queue, batch_size=batch_size)


def test_the_thread_starts_on_the_first_offer(make_worker: Callable[..., Recorder]) -> None:
    """No thread runs until something is offered (or start() is called)."""
    worker = make_worker()
    assert not worker.running
    worker.offer("a")
    assert worker.running
    idle = make_worker()
    idle.start()
    assert idle.running


def test_batches_hold_at_most_batch_size_items_in_order(make_worker: Callable[..., Recorder]) -> None:
    """Items are handled in offer order, in batches of at most batch_size, a full batch going at once."""
    worker = make_worker(batch_size=4, linger=5.0)
    items = [f"item-{n}" for n in range(10)]
    for item in items:
        assert worker.offer(item)
    assert worker.flush(timeout=10)
    assert worker.items == items
    assert max(len(batch) for batch in worker.batches) == 4
    assert worker.batches[0] == items[:4], "the first batch filled up before the linger ran out"


def test_a_batch_lingers_until_it_is_full(make_worker: Callable[..., Recorder]) -> None:
    """With a long linger, a partial batch waits; the item completing the batch sends it."""
    worker = make_worker(batch_size=3, linger=30.0)
    worker.offer("a")
    worker.offer("b")
    assert not worker.handled.wait(0.3), "a partial batch must wait for the linger"
    worker.offer("c")
    assert worker.handled.wait(5)
    assert worker.batches == [["a", "b", "c"]]


def test_a_partial_batch_goes_when_the_linger_ends(make_worker: Callable[..., Recorder]) -> None:
    """A short linger sends a partial batch by itself, without a flush."""
    worker = make_worker(batch_size=100, linger=0.05)
    worker.offer("alone")
    assert worker.handled.wait(5)
    assert worker.batches == [["alone"]]


def test_without_linger_each_item_goes_at_once(make_worker: Callable[..., Recorder]) -> None:
    """linger=0 hands over whatever is queued without waiting for a full batch."""
    worker = make_worker(batch_size=100, linger=0.0)
    worker.offer("now")
    assert worker.handled.wait(5)
    assert worker.items == ["now"]


def test_flush_ships_a_lingering_batch(make_worker: Callable[..., Recorder]) -> None:
    """flush() does not wait out the linger: the partial batch is handled and flush returns True."""
    worker = make_worker(batch_size=100, linger=60.0)
    worker.offer("a")
    worker.offer("b")
    assert worker.flush(timeout=10)
    assert worker.batches == [["a", "b"]]


def test_flush_waits_until_taken_items_are_handled(make_worker: Callable[..., Recorder]) -> None:
    """An item the thread took but has not finished keeps flush() waiting; its timeout gives False."""
    gate = threading.Event()
    worker = make_worker(gate=gate)
    busy_with_first_item(worker)
    assert worker.flush(timeout=0.2) is False
    assert worker.items == []
    gate.set()
    assert worker.flush(timeout=10) is True
    assert worker.items == ["first"]


def test_flush_waits_for_drained(make_worker: Callable[..., Recorder]) -> None:
    """flush() returns True only once drained() holds, polling for it without a notification."""
    worker = make_worker()
    outside = threading.Event()
    worker.drained = outside.is_set  # type: ignore[method-assign]
    worker.offer("a")
    assert worker.flush(timeout=0.2) is False
    threading.Timer(0.1, outside.set).start()
    assert worker.flush(timeout=10) is True
    assert worker.items == ["a"]


def test_flush_without_a_thread_reports_drained(make_worker: Callable[..., Recorder]) -> None:
    """Before any thread runs, flush() just answers drained()."""
    worker = make_worker()
    assert worker.flush(timeout=1) is True
    worker.drained = lambda: False  # type: ignore[method-assign]
    assert worker.flush(timeout=1) is False
    assert not worker.running


def test_stop_returns_what_was_not_taken(make_worker: Callable[..., Recorder]) -> None:
    """stop() ends the thread after its round and hands back the queued items it never took."""
    gate = threading.Event()
    worker = make_worker(gate=gate, batch_size=1)
    busy_with_first_item(worker)
    worker.offer("second")
    worker.offer("third")
    assert worker.stop(timeout=0.1) == ["second", "third"]
    assert worker.depth() == 0
    gate.set()
    assert worker._thread is not None
    worker._thread.join(5)
    assert not worker.running
    assert worker.items == ["first"], "the round under way finishes"


def test_stop_of_an_idle_worker(make_worker: Callable[..., Recorder]) -> None:
    """An idle thread stops promptly and nothing is left over; no new thread starts afterwards."""
    worker = make_worker()
    worker.offer("a")
    assert worker.flush(timeout=10)
    assert worker.stop(timeout=5) == []
    assert not worker.running
    worker.start()
    assert not worker.running


def test_a_failing_batch_does_not_end_the_thread(make_worker: Callable[..., Recorder]) -> None:
    """handle() raising is reported to failed(); the thread goes on and later items are handled."""
    failures: list[Exception] = []
    worker = make_worker(batch_size=1)
    original = worker.handle

    def handle(batch: list[str]) -> None:
        if batch == ["poison"]:
            raise RuntimeError("bad batch")
        original(batch)

    def failed(exc: Exception) -> None:
        failures.append(exc)

    worker.handle = handle  # type: ignore[method-assign]
    worker.failed = failed  # type: ignore[method-assign]
    worker.offer("poison")
    worker.offer("fine")
    assert worker.flush(timeout=10), "a failed batch still counts as finished"
    assert worker.running
    assert worker.items == ["fine"]
    assert [str(exc) for exc in failures] == ["bad batch"]


def test_the_default_failed_pauses_without_ending_the_thread(make_worker: Callable[..., Recorder]) -> None:
    """Without an override, failed() waits briefly and the thread handles what comes next."""
    worker = make_worker(batch_size=1)
    calls = 0
    original = worker.handle

    def handle(batch: list[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("once")
        original(batch)

    worker.handle = handle  # type: ignore[method-assign]
    worker.offer("lost-round")
    worker.offer("next")
    assert worker.flush(timeout=10)
    assert worker.items == ["next"]


def test_offer_returns_false_when_the_queue_is_full(make_worker: Callable[..., Recorder]) -> None:
    """A full queue refuses the item (the caller keeps it another way) and holds max_queue items."""
    gate = threading.Event()
    worker = make_worker(gate=gate, max_queue=2, batch_size=1)
    busy_with_first_item(worker)
    assert worker.offer("b")
    assert worker.offer("c")
    assert worker.offer("d") is False
    assert worker.depth() == 2
    gate.set()
    assert worker.flush(timeout=10)
    assert worker.items == ["first", "b", "c"]


def test_a_custom_round_ends_the_thread_by_returning_false() -> None:
    """run_once() returning False ends the thread."""
    rounds: list[int] = []
    offered = threading.Event()

    class Once(BackgroundWorker[int]):
        def run_once(self) -> bool:
            offered.wait(5)
            rounds.append(len(self.take(10, 0.0)))
            return False

    worker = Once("once", max_queue=10, batch_size=10)
    for item in range(3):
        worker.offer(item)
    offered.set()
    assert worker._thread is not None
    worker._thread.join(5)
    assert not worker.running
    assert rounds == [3], "one round, then the thread ended"


def test_wait_wakes_when_the_condition_holds_or_on_stop(make_worker: Callable[..., Recorder]) -> None:
    """wait() returns early once until() holds, and once stop() is called."""
    worker = make_worker()
    flag = threading.Event()
    threading.Timer(0.05, lambda: (flag.set(), worker.done(0))).start()
    started = time.monotonic()
    worker.wait(30, flag.is_set)
    assert flag.is_set()
    threading.Timer(0.05, lambda: worker.stop(timeout=1)).start()
    worker.wait(30, lambda: False)
    assert worker.stopping.is_set()
    assert time.monotonic() - started < 10, "both waits ended early"


@needs_fork
@multi_threaded_fork
def test_a_forked_child_gets_its_own_queue_and_thread(make_worker: Callable[..., Recorder]) -> None:
    """After fork the child starts empty with a thread of its own; the parent's items stay the parent's."""
    gate = threading.Event()
    worker = make_worker(gate=gate, batch_size=1)
    busy_with_first_item(worker)  # the parent's thread holds "first" at the gate
    worker.offer("parent-1")
    worker.offer("parent-2")

    def child() -> str:
        report = [
            worker.depth() == 0,
            not worker.running,
            worker.offer("child"),
            worker.flush(timeout=10),
            worker.batches == [["child"]],
            worker.running,
        ]
        return repr(report)

    assert in_forked_child(child) == repr([True] * 6)
    assert worker.depth() == 2, "the parent's queue is untouched by the child"
    gate.set()
    assert worker.flush(timeout=10)
    assert worker.items == ["first", "parent-1", "parent-2"]


class ForkHook:
    """An object whose bound method reports into a shared list when it runs."""

    calls: list[str] = []  # noqa: RUF012 - shared on purpose: what ran, in which process

    def __init__(self, name: str) -> None:
        self.name = name

    def after_fork(self) -> None:
        ForkHook.calls.append(self.name)


@needs_fork
@multi_threaded_fork
def test_fork_hooks_run_in_the_child_only_while_their_object_lives() -> None:
    """A hook runs in the child (never the parent) while its object lives, and not once it is collected."""
    ForkHook.calls = []
    alive = ForkHook("alive")
    gone = ForkHook("gone")
    after_fork_in_child(alive.after_fork)
    after_fork_in_child(gone.after_fork)
    del gone
    gc.collect()
    assert in_forked_child(lambda: ",".join(ForkHook.calls)) == "alive"
    assert ForkHook.calls == [], "the parent runs no hook"
    assert alive.name == "alive"  # keeps the object alive until after the fork


def test_fork_hooks_take_bound_methods_only() -> None:
    """A plain function cannot be held weakly by its object, so it is refused."""
    with pytest.raises(TypeError):
        after_fork_in_child(lambda: None)


def test_offer_after_stop_is_refused(make_worker: Callable[..., Recorder]) -> None:
    """Once stopped, offer() says no, so the caller keeps the item another way instead of losing it."""
    worker = make_worker()
    assert worker.stop(timeout=5) == []
    assert worker.offer("late") is False
    assert worker.depth() == 0


def race_offers_with_stop(
    worker: Recorder, producers: int, pause: float
) -> tuple[list[str], list[str], list[str]]:
    """Offer distinct items from ``producers`` threads, stop the worker after ``pause``; return
    (accepted, refused, kept: handled by the thread, handed back by stop() or still queued)."""
    accepted: list[str] = []
    refused: list[str] = []
    go = threading.Event()

    def produce(slot: int) -> None:
        go.wait(5)
        for n in range(100_000):
            item = f"{slot}-{n}"
            if not worker.offer(item):
                refused.append(item)
                return  # stopped: refused from here on
            accepted.append(item)

    threads = [threading.Thread(target=produce, args=(slot,)) for slot in range(producers)]
    for thread in threads:
        thread.start()
    go.set()
    assert wait_until(lambda: bool(accepted))  # the race starts with offers under way
    time.sleep(pause)
    left = worker.stop(timeout=5)
    for thread in threads:
        thread.join(10)
    return accepted, refused, worker.items + left + list(worker._queue)


@pytest.mark.parametrize("pause", [0.0, 0.002, 0.005, 0.01])
def test_offers_racing_stop_are_each_handled_once_or_refused(
    make_worker: Callable[..., Recorder], pause: float
) -> None:
    """An offer that races ``stop()`` is either accepted, and then handled by the thread or
    handed back by ``stop()``, or refused; never lost, never kept twice."""
    for _ in range(5):
        worker = make_worker(max_queue=100_000, batch_size=7, linger=0.0)
        accepted, refused, kept = race_offers_with_stop(worker, producers=4, pause=pause)
        assert sorted(kept) == sorted(accepted)
        assert not set(kept) & set(refused)
        assert worker.depth() == 0


class IdleCounter(Recorder):
    """Counts the idle rounds, and the queue depth seen in each."""

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        self.idle_depths: list[int] = []

    def idle(self) -> None:
        self.idle_depths.append(self.depth())


def test_an_idle_worker_is_told_so_and_a_busy_one_is_not():
    """With idle_every, the thread calls idle() each time the queue stayed empty that long;
    without it, never."""
    idle = IdleCounter(max_queue=10, batch_size=5, idle_every=0.05)
    sleeper = IdleCounter(max_queue=10, batch_size=5)
    for worker in (idle, sleeper):
        assert worker.offer("a")
        assert worker.flush(5)
    deadline = time.monotonic() + 5
    while len(idle.idle_depths) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(idle.idle_depths) >= 3
    assert set(idle.idle_depths) == {0}
    assert sleeper.idle_depths == []
    for worker in (idle, sleeper):
        assert worker.stop(5) == []
    assert idle.items == sleeper.items == ["a"]


def test_offers_while_the_thread_is_busy_wake_nobody_and_are_taken_next(make_worker):
    """A thread handling a batch is not notified of each offer (under load the queue stays
    past batch_size); it takes the waiting items when it is done, without lingering."""
    gate = threading.Event()
    worker = make_worker(batch_size=2, linger=30.0)
    worker.gate = gate
    notified: list[int] = []
    notify = worker._wake.notify

    def counting_notify(n: int = 1) -> None:
        notified.append(n)
        notify(n)

    worker._wake.notify = counting_notify  # type: ignore[method-assign]
    worker.offer("a")
    worker.offer("b")
    deadline = time.monotonic() + 10
    while worker.unfinished() == 2 and worker.depth() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.depth() == 0  # taken: the thread is held in handle() by the gate
    before = len(notified)
    for item in "cdefg":
        worker.offer(item)
    assert len(notified) == before  # busy: no offer notified it
    started = time.monotonic()
    gate.set()
    assert worker.flush(timeout=10)
    assert time.monotonic() - started < 5  # full batches were taken at once, not after the 30 s linger
    assert worker.items == list("abcdefg")


def test_a_thread_waiting_on_a_condition_is_woken_by_offers(make_worker):
    """wait(seconds, until) ends as soon as offers make ``until`` hold (the shipper's back-off
    ends when the queue fills up halfway), not after the whole pause."""
    woke: list[float] = []

    class Pausing(Recorder):
        def run_once(self) -> bool:
            started = time.monotonic()
            self.wait(10.0, lambda: self.depth() >= 50)
            woke.append(time.monotonic() - started)
            return False

    worker = Pausing(max_queue=100, batch_size=10, linger=1.0)
    worker.start()
    time.sleep(0.1)
    for item in range(60):
        worker.offer(str(item))
    assert worker._thread is not None
    worker._thread.join(10)
    assert len(woke) == 1
    assert woke[0] < 5
    worker.stop(timeout=1)


def test_offer_many_takes_what_fits_in_order_and_wakes_the_thread_once(
    make_worker: Callable[..., Recorder],
) -> None:
    """Items go in under one lock, as far as there is room; the thread takes them as one batch."""
    gate = threading.Event()
    worker = make_worker(gate=gate, max_queue=3, batch_size=10)
    busy_with_first_item(worker)
    assert worker.offer_many(["b", "c", "d", "e"]) == 3  # "e" finds no room: the caller keeps it
    assert worker.depth() == 3
    gate.set()
    assert worker.flush(timeout=10)
    assert worker.batches == [["first"], ["b", "c", "d"]]
    assert worker.offer_many([]) == 0
