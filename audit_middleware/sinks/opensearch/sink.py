"""``OpenSearchSink``: the request path hands events to a bounded queue, and returns.

A background shipper (one per process, started lazily so that it is born in each
gunicorn worker after fork, even with ``--preload``) serializes and sends them; the
disk spool takes what memory or OpenSearch cannot. ``durable=True`` writes each record
to the spool, fsynced, before ``emit`` returns: nothing acknowledged is lost, even on
SIGKILL.

Durable mode on a full (or failing) disk: an explicit ``record()`` (``store``) raises
``AuditDeliveryError`` and the caller knows the record is not kept; a record the
middleware finishes while the response closes must not raise into the server, so it
retries for up to ``durable_wait`` seconds, then goes to the last resort
(``sinks.lastresort``: a private file in the fallback directory, which should be on
another file system), counted as ``fallback`` and warned once, and is moved back into
the spool when it can be written again. Records the spool cannot take in other modes
take the same way.

The state directory is checked when the sink is built: one that cannot be used (it
lies under a regular file, it is read-only) raises ``SinkSetupError`` at start-up,
never inside a request.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_middleware import env
from audit_middleware.errors import AuditDeliveryError, SinkSetupError
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent
from audit_middleware.opensearch.chains import checkpoints_stream, find_chain_head
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.status import check_ready
from audit_middleware.opensearch.tiers import TierRouter
from audit_middleware.sinks import shutdown
from audit_middleware.sinks.base import Sink
from audit_middleware.sinks.chain import ChainPolicy
from audit_middleware.sinks.lastresort import LastResort, destination_directory
from audit_middleware.sinks.opensearch.bulk import Item
from audit_middleware.sinks.opensearch.chain import ShipperChains
from audit_middleware.sinks.opensearch.deadletter import DeadLetterFile
from audit_middleware.sinks.opensearch.metrics import DeliveryMetrics
from audit_middleware.sinks.opensearch.shipper import Shipper, ShipperOptions
from audit_middleware.sinks.opensearch.spool import OnFull, Spool
from audit_middleware.sinks.private import writable_directory
from audit_middleware.sinks.worker import after_fork_in_child


@dataclass(slots=True)
class _ProcessState:
    shipper: Shipper
    spool: Spool


class OpenSearchSink(Sink):
    """Deliver audit records to OpenSearch data streams, losing none.

    >>> sink = OpenSearchSink(settings=ConnectionSettings(urls=("http://127.0.0.1:9200",)))  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        settings: ConnectionSettings | None = None,
        client_factory: Any = None,
        router: TierRouter | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        durable: bool = False,
        options: ShipperOptions | None = None,
        spool_max_bytes: int = 1 << 30,
        on_full: OnFull = "block",
        shutdown_timeout: float = 10.0,
        install_signal_handlers: bool = True,
        fallback_dir: str | os.PathLike[str] | None = None,
        durable_wait: float = 2.0,
        chain: ChainPolicy | None = None,
    ) -> None:
        self.settings = settings or ConnectionSettings.from_env()
        self.router = router or TierRouter(prefix=self.settings.prefix)
        self._client_factory = client_factory or (lambda: build_client(self.settings, max_retries=0))
        self.state_dir = Path(state_dir) if state_dir is not None else env.state_dir()
        self.durable = durable
        self.durable_wait = durable_wait
        self.options = options or ShipperOptions()
        self._spool_max_bytes = spool_max_bytes
        self._on_full: OnFull = on_full
        self.shutdown_timeout = shutdown_timeout
        self._install_signal_handlers = install_signal_handlers
        self.metrics = DeliveryMetrics()
        self.chains = ShipperChains(
            self.state_dir,
            ChainPolicy.from_environment() if chain is None else chain,
            checkpoints_stream(self.settings.prefix),
            find_head=lambda chain_id: find_chain_head(
                self._client_factory(), self.settings.prefix, chain_id
            ),
        )
        """This process's hash chains (one per tier), linked as documents are encoded."""
        try:  # at start-up, not at the first record inside a request
            writable_directory(env.spool_dir(self.state_dir))
            self.dead_letters = DeadLetterFile(env.dead_letter_path(self.state_dir))
        except OSError as exc:
            raise SinkSetupError(
                f"the OpenSearch sink cannot use its state directory {str(self.state_dir)!r} ({exc}); "
                f"set {env.SPOOL_DIR} to a writable directory"
            ) from exc
        self.fallback = LastResort(
            Path(fallback_dir) if fallback_dir is not None else fallback_directory(self.settings),
            name=f"the OpenSearch spool in {self.state_dir}",
        )
        """Where records go that the spool could not take, until they are moved back into it."""
        self._state: _ProcessState | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._write_through = False
        after_fork_in_child(self._after_fork)
        shutdown.watch(self, signals=install_signal_handlers)

    # -- per-process start ----------------------------------------------------------

    def _after_fork(self) -> None:
        # A forked worker starts over lazily: its own client, spool owner and thread.
        self._state = None
        self._lock = threading.Lock()
        self._closed = False
        self._write_through = False

    def _process_state(self) -> _ProcessState:
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                self._state = self._start()
            return self._state

    def _start(self) -> _ProcessState:
        self.metrics = DeliveryMetrics()
        spool = Spool(env.spool_dir(self.state_dir), max_bytes=self._spool_max_bytes, on_full=self._on_full)
        shipper = Shipper(
            self._client_factory(),
            encode=self.encode,
            spool=spool,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            options=self.options,
            readiness=lambda client: check_ready(client, self.settings.prefix),
            fallback=self.fallback,
            durable=self.durable,
            extra=lambda final: self.chains.take_items(final=final),
            checkpoint_index=checkpoints_stream(self.settings.prefix),
        )
        shipper.start()
        # a forked worker (gunicorn) replaced the signal handlers its parent had: chain again
        shutdown.watch(self, signals=self._install_signal_handlers)
        return _ProcessState(shipper, spool)

    # -- Sink -----------------------------------------------------------------------

    def encode(self, event: AuditEvent) -> Item:
        """The document for ``event``, routed to its tenant's tier."""
        document = event.to_document()
        tenant = event.tenant.id if event.tenant is not None else None
        tier = self.router.tier_for(tenant)
        document["audit"]["tier"] = tier
        stream = self.router.data_stream_for(tier)
        # after redaction, on the shipper (see sinks.opensearch.chain)
        document = self.chains.link(document, stream, tier)
        return Item(stream, event.id, dumps(document))

    def emit(self, event: AuditEvent) -> None:
        """Queue the event (or, when durable or the queue is full, spool it); never raises.

        Durable: the record is fsynced in the spool before this returns; if the disk
        refuses it for ``durable_wait`` seconds, it goes to the last resort instead.
        """
        try:
            state = self._process_state()
            self.metrics.add("enqueued")
            if self.durable:
                self._append_durably(state, event)
            elif self._write_through or self._closed:
                # shutting down: straight to disk, which outlives the process, with the chain's
                # end checkpointed after it (no later close may run: a signal ends the process)
                ending = [self.encode(event), *self.chains.take_items(final=True)]
                state.spool.append([item.spool_payload() for item in ending])
                self.metrics.add("spooled")
            elif not state.shipper.offer(event):
                state.spool.append([self.encode(event).spool_payload()])  # the queue is full: to disk
                self.metrics.add("spooled")
        except Exception as exc:  # noqa: BLE001 - the request path never raises; the record is kept
            self._fall_back(event, exc)

    def store(self, event: AuditEvent) -> None:
        """Durable: the record is fsynced in the spool, or ``AuditDeliveryError`` is raised and
        it is not kept (counted ``refused``). Otherwise ``emit``."""
        if not self.durable:
            self.emit(event)
            return
        try:
            state = self._process_state()
            payload = [self.encode(event).spool_payload()]
            state.spool.append(payload, durable=True, block_timeout=self.durable_wait)
        except Exception as exc:
            self.metrics.add("refused")
            raise AuditDeliveryError(
                f"the audit record could not be written to the spool in {self.state_dir}: {exc}"
            ) from exc
        self.metrics.add("enqueued")

    def _append_durably(self, state: _ProcessState, event: AuditEvent) -> None:
        """Spool ``event`` fsynced, retrying a failing disk for up to ``durable_wait`` seconds."""
        payload = [self.encode(event).spool_payload()]
        if self._write_through or self._closed:  # the process is ending: its chain's end too
            payload.extend(item.spool_payload() for item in self.chains.take_items(final=True))
        deadline = time.monotonic() + self.durable_wait
        pause = 0.05
        while not _appended(state.spool, payload, deadline):
            if time.monotonic() + pause > deadline:
                # the last try, whose error goes to the caller (and the record to the last resort)
                state.spool.append(payload, durable=True, block_timeout=0)
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _fall_back(self, event: AuditEvent, exc: BaseException) -> None:
        self.fallback.keep([event], exc)
        self.metrics.add("fallback")

    def persist(self, timeout: float | None = None) -> bool:  # noqa: ARG002 - spooling takes no waiting
        """Spool what is queued (and a copy of the batch in flight) and the chains' final
        checkpoints, fsync, and spool later records at once: the process is ending, and the
        next one delivers them."""
        self._write_through = True
        state = self._state
        if state is None:
            return True
        state.shipper.spool_queue()
        self.chains.save()
        state.spool.sync()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything pending; True when memory and spool are empty."""
        state = self._state
        if state is None:
            return True
        return state.shipper.flush(self.shutdown_timeout if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain within the deadline (default 10 s), then checkpoint every chain's end; what is
        left stays in the spool."""
        state = self._state
        if state is None or self._closed:
            return
        self._closed = True
        deadline = self.shutdown_timeout if timeout is None else timeout
        started = time.monotonic()
        state.shipper.flush(deadline)
        # stops the thread, checkpoints the chains' ends and sends (or spools) those checkpoints
        state.shipper.shutdown(max(0.1, deadline - (time.monotonic() - started)))
        self.chains.release()  # the next process (or sink) continues the chains from here
        state.spool.close()
        self.fallback.close()

    # -- observability --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counters, gauges and the start-up error, if any (see ``audit-middleware status``)."""
        data = self.metrics.snapshot()
        data["last_resort"] = dataclasses.asdict(self.fallback.stats())
        state = self._state
        if state is None:
            data.update(queue_depth=0, spool_bytes=0, oldest_undelivered_seconds=None, error=None)
            return data
        stats = state.spool.stats()
        oldest = stats.oldest_unix_ms
        data.update(
            queue_depth=state.shipper.depth(),
            spool_bytes=stats.bytes,
            spool_records=stats.records,
            oldest_undelivered_seconds=None if oldest is None else round(time.time() - oldest / 1000, 3),
            error=state.shipper.ready_error,
            urls=list(self.settings.urls),
        )
        return data


def fallback_directory(settings: ConnectionSettings) -> Path:
    """The default last-resort directory of the sink for ``settings`` (one per prefix and cluster)."""
    return destination_directory("opensearch", f"{settings.prefix} {','.join(settings.urls)}")


def _appended(spool: Spool, payload: list[bytes], deadline: float) -> bool:
    """One durable append; False when the disk refused it (to be retried)."""
    try:
        spool.append(payload, durable=True, block_timeout=max(0.0, deadline - time.monotonic()))
    except OSError:
        return False
    return True
