"""Draining the sinks that buffer, at every way a process ends.

Buffering sinks (the SQLite writer's queue, the OpenSearch shipper's) keep records in
memory for a moment. Each documented way a server ends a process gets them out:

* ``atexit``: :func:`watch` registers one handler per process that closes every watched
  sink (deliver within its deadline, then spool or store the rest);
* SIGTERM and SIGINT: uvicorn re-raises the signal after its graceful shutdown, so the
  process dies by it and ``atexit`` never runs. :func:`watch` chains a handler in front
  of the one installed before it (uvicorn's, gunicorn's, Python's own): it switches the
  sinks to writing through (records finished during the graceful shutdown are stored
  before their response ends), moves what is queued to disk (:meth:`Sink.persist`),
  then calls the previous handler, or, if there was none, dies of the signal as it
  would have;
* ASGI ``lifespan.shutdown`` and gunicorn's ``worker_exit`` hook: they call :func:`drain`
  (through ``audit_middleware.drain()``), which persists and then delivers within a
  deadline.

Signal handlers can only be installed from the main thread; :func:`watch` is called
again when a sink starts in a process (a forked gunicorn worker replaces the handlers
its parent had), and tries again then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import weakref
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Final

from audit_middleware.sinks.base import Sink

__all__ = ["SIGNALS", "before_sinks", "drain", "guard_process", "persist_all", "watch"]

SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
PERSIST_TIMEOUT: Final = 5.0
"""Seconds a signal handler lets each sink move its queue to disk."""
CLOSE_TIMEOUT: Final = 10.0
"""Seconds each sink gets to deliver at exit (the rest is spooled)."""

_lock = threading.RLock()
_watched: weakref.WeakSet[Sink] = weakref.WeakSet()
_signalled: weakref.WeakSet[Sink] = weakref.WeakSet()
_atexit_pid: int | None = None
_previous: dict[int, object] = {}
_handler_pid: int | None = None
_first: list[Callable[[float | None], object]] = []


def before_sinks(hook: Callable[[float | None], object]) -> None:
    """Run ``hook(timeout)`` before the sinks are persisted or closed (the delivery pipeline,
    which still holds records on their way to a sink)."""
    _first.append(hook)


def _run_first(timeout: float | None) -> None:
    for hook in _first:
        with contextlib.suppress(Exception):  # the sinks' own records must still be saved
            hook(timeout)


def watch(sink: Sink, *, signals: bool = True) -> None:
    """Drain ``sink`` at exit and, with ``signals``, on SIGTERM/SIGINT; idempotent, per process."""
    with _lock:
        _watched.add(sink)
        if signals:
            _signalled.add(sink)
        _register_atexit()
    if signals:
        _install_handlers()


def guard_process() -> None:
    """Run the :func:`before_sinks` hooks at exit and on SIGTERM/SIGINT in this process
    too when no sink is watched (idempotent; the delivery pipeline calls it when it starts)."""
    with _lock:
        _register_atexit()
    _install_handlers()


def _register_atexit() -> None:
    global _atexit_pid  # noqa: PLW0603 - one registration per process
    if _atexit_pid != os.getpid():
        _atexit_pid = os.getpid()
        atexit.register(_close_all)


def persist_all(timeout: float = PERSIST_TIMEOUT, sinks: Iterable[Sink] | None = None) -> None:
    """Make every watched sink (or ``sinks``) write through and move what it buffers to disk."""
    _run_first(timeout)
    for sink in list(_watched if sinks is None else sinks):
        with contextlib.suppress(Exception):  # one failing sink must not keep the others' records
            sink.persist(timeout)


def drain(timeout: float | None = None) -> bool:
    """Persist, then deliver what every watched sink holds, within ``timeout`` each; True when done."""
    persist_all(PERSIST_TIMEOUT if timeout is None else timeout)
    results = [_flushed(sink, timeout) for sink in list(_watched)]  # every sink, no short circuit
    return all(results)


def _flushed(sink: Sink, timeout: float | None) -> bool:
    try:
        return sink.flush(timeout)
    except Exception:  # noqa: BLE001 - report "not done", never raise into a server hook
        return False


def _close_all() -> None:
    _run_first(CLOSE_TIMEOUT)
    for sink in list(_watched):
        with contextlib.suppress(Exception):
            sink.close(timeout=CLOSE_TIMEOUT)


def _install_handlers() -> None:
    """Chain our handler in front of the current one, once per process, from the main thread."""
    global _handler_pid  # noqa: PLW0603 - installed once per process
    if threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        if _handler_pid == os.getpid() and all(signal.getsignal(s) is _on_signal for s in SIGNALS):
            return
        _handler_pid = os.getpid()
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current is _on_signal:
                continue
            with contextlib.suppress(ValueError, OSError):  # not the main interpreter, say
                signal.signal(signum, _on_signal)
                _previous[signum] = current


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Persist every sink watched for signals, then hand the signal to whoever had it before."""
    persist_all(PERSIST_TIMEOUT, list(_signalled))
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # the default action: end as the signal would have ended us
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
