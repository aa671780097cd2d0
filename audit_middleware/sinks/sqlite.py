"""``SQLiteSink``: the embedded default destination, writing records into one SQLite file.

``emit`` (on the request path) puts the event on a bounded queue and returns; the
process's background writer stores batches, one transaction each. When the queue is
full the caller writes its event itself (back-pressure, never a dropped record).
``write`` stores events now (batched transactions); ``load`` is the bulk load, which into
an empty store builds the indexes after the rows (``sqlite.bulk``). The database runs in WAL mode, so readers
(``query.sqlite_store.SQLiteStore``) never wait for the writer, and several processes
(gunicorn workers) can share one file.

A batch the store refuses even after retries (a disk full, locked for long, failing)
goes to the last resort (``sinks.lastresort``: a private file), and is replayed into the
store by the writer once a batch succeeds again. One event whose row cannot be built
never costs the rest of its batch.

When the disk cannot keep up, the policy is back-pressure, never loss: the queue holds
``queue_size`` events; once it is full, ``emit`` stores its event itself on the calling
thread (blocking that request for one transaction). A store that refuses writes (locked,
full, failing) sends them to the last resort instead. ``benchmarks/sqlite_writer.py``
shows what a slow disk does to ``emit`` latency.

Every batch is written by ``_write_transaction``, one function holding the transaction: a
step that must happen atomically with a batch's rows (such as extending a hash chain)
goes there.

With ``alert_rules`` and ``retention`` the sink also runs the store's periodic jobs
(``sinks.housekeeping``): the alert rules as windowed queries on the shared file, calling
``on_alert`` and/or ``alert_webhook``, and retention with archiving. One worker of many
runs each job at a time. When the process ends (``persist``, ``close``) that thread is
stopped too, after the job in progress finishes its chunk.

Every record joins the store's hash chain inside the transaction that inserts it
(``sinks.chain``; ``chain=ChainPolicy(...)`` sets the signing key, the checkpoint
frequency and the external anchor, by default from the ``AUDIT_CHAIN_*`` variables).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from audit_middleware import logs
from audit_middleware.errors import AuditDeliveryError
from audit_middleware.model.alerts import AlertRule
from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks import shutdown
from audit_middleware.sinks.base import Sink, hold, release
from audit_middleware.sinks.chain import ChainPolicy, PendingRow, Row, SQLiteChain, pending_row, row_key
from audit_middleware.sinks.housekeeping import Housekeeping
from audit_middleware.sinks.lastresort import LastResort, destination_directory
from audit_middleware.sinks.notify import AlertNotifier, WebhookNotifier
from audit_middleware.sinks.worker import BackgroundWorker
from audit_middleware.sqlite.bulk import load_rows
from audit_middleware.sqlite.connection import ConnectionPool
from audit_middleware.sqlite.retention import SQLiteRetention
from audit_middleware.sqlite.schema import insert_only

__all__ = ["SQLiteSink"]

T = TypeVar("T")

_WRITE_BATCH = 1000  # rows per transaction
_IDLE_EVERY = 1.0  # seconds without records before the writer asks whether a checkpoint is due
_WRITE_RETRIES = (0.05, 0.25, 1.0)  # seconds between attempts before a batch is reported undeliverable


class SQLiteSink(Sink):
    """Store records in the SQLite audit file at ``path`` (created if new).

    ``busy_timeout`` is how long a statement waits for another writer's lock;
    ``durable=True`` syncs every transaction to disk (``synchronous=FULL``; the default
    ``NORMAL`` survives a crash of the process, not of the machine) and makes
    ``store()`` (an explicit ``record()``) write at once, raising ``AuditDeliveryError``
    when it cannot; ``queue_size`` bounds the events waiting for the background writer;
    ``fallback_dir`` is this store's last-resort directory (default: below
    ``AUDIT_FALLBACK_DIR``, see ``sinks.lastresort``). The queue is written at exit,
    and on SIGTERM/SIGINT before the signal goes on to the previous handler
    (``sinks.shutdown``; ``install_signal_handlers=False`` leaves signals alone).

    ``alert_rules`` (e.g. ``model.alerts.default_rules()``) are evaluated every
    ``alert_interval`` seconds; each new alert is passed to ``on_alert`` (a callable, or
    several) and POSTed to ``alert_webhook``. ``retention`` archives and deletes old
    records every ``retention.interval`` seconds.

    >>> sink = SQLiteSink("audit.sqlite3")  # doctest: +SKIP
    >>> sink = SQLiteSink("audit.sqlite3", alert_rules=default_rules(), on_alert=page_on_call,
    ...                   retention=SQLiteRetention(tenant_tiers={"acme": "extended"}))  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        durable: bool = False,
        queue_size: int = 10_000,
        alert_rules: Sequence[AlertRule] = (),
        on_alert: AlertNotifier | Sequence[AlertNotifier] | None = None,
        alert_webhook: str | None = None,
        alert_interval: float = 15.0,
        retention: SQLiteRetention | None = None,
        fallback_dir: str | os.PathLike[str] | None = None,
        install_signal_handlers: bool = True,
        chain: ChainPolicy | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        notifiers: list[AlertNotifier] = []
        if callable(on_alert):
            notifiers.append(on_alert)
        elif on_alert is not None:
            notifiers.extend(on_alert)
        if alert_webhook is not None:
            notifiers.append(WebhookNotifier(alert_webhook))
        self._pool = ConnectionPool(
            path, busy_timeout=busy_timeout, synchronous="FULL" if durable else "NORMAL", defer_when_busy=True
        )
        self.path = self._pool.path
        self.chain = SQLiteChain(ChainPolicy.from_environment() if chain is None else chain)
        """The store's hash chain, extended by every write of this process."""
        self.housekeeping = Housekeeping(
            self._pool,
            alert_rules=alert_rules,
            notifiers=notifiers,
            alert_interval=alert_interval,
            retention=retention,
        )
        self.housekeeping.on_removal = self.chain.policy.record_removal
        self.durable = durable
        self.fallback = LastResort(
            Path(fallback_dir)
            if fallback_dir is not None
            else destination_directory("sqlite", str(self.path.resolve())),
            name=f"the audit store {self.path}",
        )
        """Where records go that the store refused, until they are replayed into it."""
        self._closed = False
        self._pool_closed = False
        self._signals = install_signal_handlers
        self._writer = _Writer(self, queue_size)
        self.written = 0
        """Events this process's background writer stored (replays included)."""
        self.undelivered = 0
        """Events this process could not store at first, kept by the last resort instead."""
        shutdown.watch(self, signals=install_signal_handlers)

    def write(self, events: Iterable[AuditEvent]) -> int:
        """Store ``events`` now, in batched transactions; returns how many were new.

        Events already stored (same tenant and id) are skipped.
        """
        inserted = 0
        batch: list[PendingRow] = []
        with self._pool.borrow() as conn:
            for event in events:
                batch.append(pending_row(event))
                if len(batch) >= _WRITE_BATCH:
                    inserted += _write_transaction(conn, batch, self.chain)
                    batch.clear()
            if batch:
                inserted += _write_transaction(conn, batch, self.chain)
        return inserted

    def load(self, events: Iterable[AuditEvent]) -> int:
        """Bulk-load ``events`` (many at once); returns how many were new.

        Into an empty store the indexes and full-text search are built after the rows,
        in one transaction (``sqlite.bulk``); otherwise this is ``write``. Either way the
        records join the store's hash chain.
        """
        with self._pool.borrow() as conn:
            try:
                inserted = load_rows(
                    conn,
                    map(pending_row, events),
                    insert=self.chain.insert,
                    load=partial(self.chain.insert, store=insert_only),
                )
            except BaseException:
                self.chain.rolled_back()
                raise
        self.chain.committed()
        return inserted

    def emit(self, event: AuditEvent) -> None:
        """Queue ``event`` for the background writer; never raises, never drops it.

        With a full queue (the disk cannot keep up), or once closed, the caller stores
        the event itself.
        """
        if not self._closed and hold(self, event, self._offer_held):
            return  # the delivery worker's batch: handed to the writer when it ends, at once
        self._offer_held([event])

    def _offer_held(self, events: list[AuditEvent]) -> None:
        # one hand-over (one wake-up of the writer) for the events; what finds no room is written here
        rest = events
        try:
            if not self._closed:
                taken = self._writer.offer_many(events)
                rest = events[taken:]
                if taken:
                    self.housekeeping.start()
            if rest:
                self.write(rest)
        except Exception as exc:  # noqa: BLE001 - a sink must not raise into the request
            self._report_undelivered(rest, exc)

    def store(self, event: AuditEvent) -> None:
        """Durable: write ``event`` now, or raise ``AuditDeliveryError``. Otherwise ``emit``."""
        if not self.durable:
            self.emit(event)
            return
        try:
            self.write([event])
        except Exception as exc:
            raise AuditDeliveryError(f"the audit store {self.path} could not keep the record: {exc}") from exc

    def _store_batch(self, batch: list[AuditEvent]) -> None:
        rows = [row for row in map(self._row, batch) if row is not None]
        if not rows:
            return
        try:
            with self._pool.borrow() as conn:
                for pause in (*_WRITE_RETRIES, None):
                    try:
                        _write_transaction(conn, rows, self.chain)
                        break
                    except sqlite3.OperationalError:  # locked beyond busy_timeout, disk full, I/O error
                        if pause is None:
                            raise
                        time.sleep(pause)
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive a bad batch
            stored = {row_key(row)[1] for row in rows}
            self._report_undelivered([event for event in batch if event.id in stored], exc)
            return
        self.written += len(rows)
        if self.fallback.pending():  # the store works again: take back what it refused
            self.written += self.fallback.replay(self.write)

    def _row(self, event: AuditEvent) -> PendingRow | None:
        try:
            return pending_row(event)
        except Exception as exc:  # noqa: BLE001 - one bad event must not cost its batch
            self._report_undelivered([event], exc)
            return None

    def _report_undelivered(self, events: Sequence[AuditEvent], exc: BaseException) -> None:
        self.undelivered += len(events)
        self.fallback.keep(events, exc)

    def persist(self, timeout: float | None = None) -> bool:
        """Write what is queued, and every later record at once (the process is ending).

        The housekeeping thread is stopped as well: no job starts any more, and the one
        in progress finishes its chunk within ``timeout``.
        """
        self._closed = True  # emit() now writes synchronously
        drained = self.flush(timeout)
        self._final_checkpoint()
        self.housekeeping.stop(timeout)
        return drained

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event is stored; False if ``timeout`` ran out first."""
        held = release(self)  # flushed from the delivery worker itself, mid-batch
        if held:
            self._offer_held(held)
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Store what is queued, stop the writer and close connections.

        Later events are written synchronously, so the sink never loses one.
        """
        drained = self.flush(timeout)
        self._closed = True
        self.housekeeping.stop(timeout)
        left = self._writer.stop(timeout)
        if left:
            self._store_batch(left)
        if not drained:
            sys.stderr.write(
                f"audit-middleware: {self._writer.depth()} audit events were still being written to "
                f"{self.path} when the store closed\n"
            )
        self._final_checkpoint()
        self.fallback.close()
        self._pool.close(optimize=True)
        self._pool_closed = True

    def _final_checkpoint(self) -> None:
        """Checkpoint the records since the last checkpoint, so the chain's end is signed too."""
        try:
            self._checkpoint(force=True)
        except Exception as exc:  # noqa: BLE001 - closing must not fail on a checkpoint; the next one covers it
            sys.stderr.write(f"audit-middleware: no final checkpoint for {self.path}: {exc}\n")

    def _idle_checkpoint(self) -> None:
        """The writer is idle: checkpoint what waited the policy's interval (the writer's thread)."""
        if not self.chain.idle_checkpoint_due():
            return
        try:
            self._checkpoint(force=False)
        except Exception as exc:  # noqa: BLE001 - the next write or the close checkpoints instead
            logs.warn(
                "audit-middleware: could not write an idle checkpoint", store=str(self.path), error=repr(exc)
            )

    def _checkpoint(self, *, force: bool) -> None:
        if self._pool_closed:
            return
        with self._pool.borrow() as conn:
            _chain_transaction(conn, self.chain, lambda: self.chain.checkpoint(conn, force=force))

    def __enter__(self) -> SQLiteSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Writer(BackgroundWorker[AuditEvent]):
    """The sink's background writer: one transaction per batch."""

    def __init__(self, sink: SQLiteSink, queue_size: int) -> None:
        super().__init__(
            "audit-sqlite-writer", max_queue=queue_size, batch_size=_WRITE_BATCH, idle_every=_IDLE_EVERY
        )
        self._sink = sink

    def handle(self, batch: list[AuditEvent]) -> None:
        self._sink._store_batch(batch)

    def idle(self) -> None:
        self._sink._idle_checkpoint()

    def started(self) -> None:
        # a forked worker (gunicorn) replaced the signal handlers its parent had: chain again
        shutdown.watch(self._sink, signals=self._sink._signals)


def _write_transaction(conn: sqlite3.Connection, rows: Sequence[Row], chain: SQLiteChain) -> int:
    """Store one batch in one transaction, linked to the store's hash chain; returns how
    many rows were new.

    The only place the writer opens a transaction for rows: work that must commit or roll
    back with a batch belongs here, between the insert and the commit.
    """
    # links the rows to the chain in this transaction
    return _chain_transaction(conn, chain, lambda: chain.insert(conn, rows))


def _chain_transaction(conn: sqlite3.Connection, chain: SQLiteChain, work: Callable[[], T]) -> T:
    """Run ``work`` in one write transaction; the chain's checkpoints of it are published
    after the commit, or forgotten when it rolls back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        chain.rolled_back()
        raise
    chain.committed()
    return result
