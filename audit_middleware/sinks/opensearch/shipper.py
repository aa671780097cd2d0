"""The background thread that moves records from memory and the spool into OpenSearch.

Batches close at about 5 MiB, 1,000 documents or 1 s, whichever comes first. Items that
fail for a retryable reason are retried with jittered exponential backoff; if they still
fail they go to the disk spool (memory stays bounded) and are replayed, oldest first,
once OpenSearch answers again. Rejected items go to the dead-letter file with the reason.

Before an item that may already be stored is sent again (its request timed out, or a
dead process spooled it), it is looked up in the backing indices of its stream
(``bulk.find_stored``), so a rollover in between does not make a second copy. When the
look-up cannot be made, the item waits for the next attempt rather than risk a copy.

The thread never waits on its own spool (only it frees space there): what the spool or
the dead-letter file cannot take goes to the last resort (``sinks.lastresort``), and is
moved back into the spool once it can be written again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from audit_middleware.model.event import AuditEvent
from audit_middleware.sinks.lastresort import LastResort
from audit_middleware.sinks.opensearch import bulk
from audit_middleware.sinks.opensearch.bulk import BulkOutcome, Item
from audit_middleware.sinks.opensearch.deadletter import DeadLetterFile
from audit_middleware.sinks.opensearch.metrics import DeliveryMetrics
from audit_middleware.sinks.opensearch.spool import Spool
from audit_middleware.sinks.worker import BackgroundWorker


@dataclass(frozen=True, slots=True)
class ShipperOptions:
    """Batching, retry and queue limits."""

    batch_docs: int = 1000
    batch_bytes: int = 5 << 20
    flush_interval: float = 1.0
    max_queue: int = 10_000
    quick_retries: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 30.0
    request_timeout: float = 30.0
    check_before_resend: bool = True
    """Look up items that may be stored already before re-sending them (see the module docstring)."""


class Shipper(BackgroundWorker[AuditEvent]):
    """The queue and the delivery thread of one process (see ``sinks.worker``)."""

    def __init__(
        self,
        client: OpenSearch,
        *,
        encode: Callable[[AuditEvent], Item],
        spool: Spool,
        dead_letters: DeadLetterFile,
        metrics: DeliveryMetrics,
        options: ShipperOptions,
        readiness: Callable[[OpenSearch], str | None],
        fallback: LastResort,
        durable: bool = False,
        extra: Callable[[bool], list[Item]] | None = None,
        checkpoint_index: str | None = None,
    ) -> None:
        super().__init__(
            "audit-middleware-shipper",
            max_queue=options.max_queue,
            batch_size=options.batch_docs,
            linger=options.flush_interval,
        )
        self._client = client
        self._encode = encode
        self._spool = spool
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._options = options
        self._readiness = readiness
        self._fallback = fallback
        self._durable = durable
        # more items to send with each batch (the chains' checkpoints); True: the process is ending
        self._extra = extra or (lambda _final: [])
        # items sent there are checkpoints: counted apart, so "delivered" counts audit records
        self._checkpoint_index = checkpoint_index
        self._ready_error: str | None = "not checked yet"
        self._failures = 0
        self._in_flight: list[Item] = []
        self._next_orphan_scan = 0.0

    @property
    def ready_error(self) -> str | None:
        """Why delivery cannot start (bad URL, credentials, missing set-up), or None."""
        return self._ready_error

    def drained(self) -> bool:
        """``flush`` also waits for this process's spool to empty."""
        return self._spool.stats().records == 0

    def spool_queue(self) -> None:
        """Move what is queued, a copy of the batch in flight and the chains' final checkpoints
        to the spool now (the process is ending; a copy that lands after all is a harmless 409
        on replay)."""
        self._spool_fresh_batch()
        in_flight = list(self._in_flight)
        if in_flight:
            self._spool_items(in_flight)
        self.spool_final()

    def spool_final(self) -> None:
        """Spool the chains' final checkpoints (after the records they cover), if there are any."""
        final = self._extra(True)
        if final:
            self._spool_items(final)

    def shutdown(self, timeout: float) -> None:
        """Stop within ``timeout``; whatever is left in memory is spooled.

        The chains' final checkpoints are sent at once when nothing else is left and the
        node answered; otherwise they are spooled after the records they cover.
        """
        started = time.monotonic()
        leftover = [self._encode(e) for e in self.stop(timeout)]
        if self.running:
            # still blocked on the network: keep a copy of the batch in flight too; if it
            # lands after all, its replay is a harmless 409 (op_type=create, _id=event.id)
            leftover.extend(self._in_flight)
            for item in self._in_flight:
                item.uncertain = True
        final = self._extra(True)  # after the leftovers were linked: the chains' ends
        if final and not leftover and not self.running and self._ready_error is None:
            final = self._deliver(final, attempts=1, timeout=max(0.1, timeout - (time.monotonic() - started)))
        leftover.extend(final)
        if leftover:
            self._spool_items(leftover)
        self._spool.sync()

    # -- delivery thread ------------------------------------------------------------

    def failed(self, exc: Exception) -> None:
        """A round raised: report it and back off; the thread and the records survive."""
        self._metrics.degraded(f"shipper error: {type(exc).__name__}: {exc}")
        self._pause()

    def run_once(self) -> bool:
        """One round: check readiness, replay the spool, ship one fresh batch. False to exit."""
        if self._fallback.pending():
            self._fallback.replay(self._respool_events)
        if self._ready_error is not None and not self._check_ready():
            return self._hold_back()
        if not self._replay_spool():
            return self._hold_back()
        batch = self.take(self._options.batch_docs, self._options.flush_interval)
        if batch:
            try:
                items = [self._encode(event) for event in batch]
                self._ship(items + self._extra(False))
            finally:
                self.done(len(batch))
        elif extra := self._extra(False):
            self._ship(extra)
        elif self.stopping.is_set():
            return False
        return True

    def _hold_back(self) -> bool:
        """OpenSearch is away: move the queue to disk and wait before the next round."""
        self._spool_fresh_batch()
        if self.stopping.is_set():
            return False
        self._pause()
        return True

    def _check_ready(self) -> bool:
        try:
            problem = self._readiness(self._client)
        except (OSConnectionError, TransportError) as exc:
            problem = f"cannot reach OpenSearch: {exc}"
        self._ready_error = problem
        if problem is not None:
            self._failures += 1
            self._metrics.degraded(problem)
            return False
        self._failures = 0
        return True

    def _spool_fresh_batch(self) -> None:
        """While OpenSearch is away, move everything queued to disk so memory stays bounded
        and request threads keep finding room in the queue (spooling there costs more)."""
        batch = self.take_all()
        if batch:
            try:
                items = [self._encode(event) for event in batch]
                self._spool_items(items + self._extra(False))
            finally:
                self.done(len(batch))

    def _replay_spool(self) -> bool:
        """Deliver spooled batches, oldest first; False when delivery failed again."""
        now = time.monotonic()
        if now >= self._next_orphan_scan:
            self._next_orphan_scan = now + 10.0
            self._spool.adopt_orphans()
        if self._spool.stats().records == 0:
            return True
        self._spool.seal_active()  # only sealed segments are replayed
        for spooled in self._spool.replay(
            limit_records=self._options.batch_docs, limit_bytes=self._options.batch_bytes
        ):
            items = [
                Item.from_spool(payload, spooled.segment_id, adopted=spooled.adopted)
                for payload in spooled.records
            ]
            left = self._deliver(items, attempts=1)
            if left:
                # keep the undelivered ones (any position in the batch) before the
                # segment is acked as a whole; they are replayed from the newest segment
                self._keep(left)
            self._spool.ack(spooled.segment_id, len(items))
            if not self._durable:
                self._metrics.add("replayed", len(items) - len(left))
            if left:
                return False
        return True

    def _ship(self, items: list[Item]) -> None:
        self._in_flight = items
        try:
            left = self._deliver(items, attempts=self._options.quick_retries)
        finally:
            self._in_flight = []
        if left:
            self._spool_items(left)

    def _spool_items(self, items: list[Item]) -> None:
        if self._keep(items):
            self._metrics.add("spooled", len(items))

    def _keep(self, items: list[Item]) -> bool:
        """Spool ``items`` without waiting (the cap frees only when this thread acks); what
        the spool cannot take goes to the last resort. True when spooled."""
        try:
            self._spool.append([item.spool_payload() for item in items], block_timeout=0)
        except Exception as exc:  # noqa: BLE001 - SpoolFullError, a full disk, a closed spool: keep them
            self._fallback.keep_documents([item.document for item in items], exc)
            self._metrics.add("fallback", len(items))
            return False
        return True

    def _respool_events(self, events: list[AuditEvent]) -> None:
        """Move records back from the last resort into the spool (raises while it still fails)."""
        self._spool.append([self._encode(event).spool_payload() for event in events], block_timeout=0)

    def _deliver(self, items: list[Item], *, attempts: int, timeout: float | None = None) -> list[Item]:
        """Send with retries; return the items still undelivered after ``attempts`` tries.

        ``timeout`` bounds each request (default: the options' request timeout).
        """
        pending = items
        for attempt in range(attempts):
            if attempt:
                self._metrics.add("retried", len(pending))
                if self._sleep(self._backoff(attempt)):
                    break
            unstored = self._without_stored(pending)
            if unstored is None:
                continue  # could not look them up: try again later rather than write a second copy
            pending = self._send_splitting(unstored, timeout) if unstored else []
            if not pending:
                self._failures = 0
                self._metrics.recovered()
                return []
        self._failures += 1
        return pending

    def _without_stored(self, items: list[Item]) -> list[Item] | None:
        """``items`` less those found stored already; None when the look-up failed."""
        uncertain = [item for item in items if item.uncertain]
        if not uncertain or not self._options.check_before_resend:
            return items
        try:
            stored = bulk.find_stored(self._client, uncertain, timeout=self._options.request_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure: keep the records, try again later
            self._metrics.degraded(f"cannot check re-sent records: {type(exc).__name__}: {exc}")
            return None
        if not stored:
            return items
        found = [item for item in items if item.uncertain and item.id in stored]
        self._count_delivered(found)
        self._metrics.add("already_stored", len(found))
        return [item for item in items if not (item.uncertain and item.id in stored)]

    def _count_delivered(self, items: list[Item]) -> None:
        checkpoints = sum(1 for item in items if item.index == self._checkpoint_index)
        self._metrics.add("delivered", len(items) - checkpoints)
        self._metrics.add("checkpoints_delivered", checkpoints)

    def _send_splitting(self, items: list[Item], timeout: float | None = None) -> list[Item]:
        """One bulk request; a 413 splits the batch in halves. Returns items to retry."""
        limit = self._options.request_timeout
        outcome: BulkOutcome = bulk.send(
            self._client, items, timeout=limit if timeout is None else min(timeout, limit)
        )
        if outcome.too_large:
            if len(items) == 1:
                self._dead_letter(items[0], 413, outcome.error or "request entity too large")
                return []
            middle = len(items) // 2
            halves = items[:middle], items[middle:]
            return self._send_splitting(halves[0], timeout) + self._send_splitting(halves[1], timeout)
        self._count_delivered(outcome.delivered)
        self._count_delivered(outcome.conflicts)
        self._metrics.add("conflicts", len(outcome.conflicts))
        for rejection in outcome.rejected:
            self._dead_letter(rejection.item, rejection.status, rejection.reason)
        if outcome.retry:
            self._metrics.degraded(outcome.error or "retryable bulk failure")
        return outcome.retry

    def _dead_letter(self, item: Item, status: int | None, reason: str) -> None:
        try:
            self._dead_letters.write(item.document, reason=reason, status=status)
        except Exception as exc:  # noqa: BLE001 - a full disk must not cost the rejected record
            self._fallback.keep_documents([item.document], exc)
            self._metrics.add("fallback")
            return
        self._metrics.add("dead_lettered")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._options.backoff_max, self._options.backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    def _pause(self) -> None:
        """Back off before the next try, but wake early when the queue fills up halfway."""
        half = self._options.max_queue // 2
        self.wait(self._backoff(min(self._failures + 1, 8)), lambda: self.depth() >= half)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when stopping."""
        return self.stopping.wait(seconds)
