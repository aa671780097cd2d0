"""``OpenSearchSink``: the request path hands events to a bounded queue, and returns.

A background shipper (one per process, started lazily so that it is born in each
gunicorn worker after fork, even with ``--preload``) serializes and sends them; the
disk spool takes what memory or OpenSearch cannot. ``durable=True`` writes each record
to the spool, fsynced, before ``emit`` returns: nothing acknowledged is lost, even on
SIGKILL.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from opensearchpy import OpenSearch

from audit_middleware.deadletter import DeadLetterFile
from audit_middleware.metrics import DeliveryMetrics
from audit_middleware.opensearch.bulk import Item
from audit_middleware.opensearch.connection import ConnectionSettings, build_client
from audit_middleware.opensearch.shipper import Shipper, ShipperOptions
from audit_middleware.opensearch.templates import index_template_name
from audit_middleware.opensearch.tiers import TierRouter
from audit_middleware.schema import AuditEvent
from audit_middleware.serialization import dumps
from audit_middleware.sinks.base import Sink
from audit_middleware.spool import OnFull, Spool


def default_state_dir() -> Path:
    """Where the spool and dead-letter file live: ``AUDIT_SPOOL_DIR``, else the XDG state dir."""
    configured = os.environ.get("AUDIT_SPOOL_DIR")
    if configured:
        return Path(configured)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "audit-middleware"


def check_ready(client: OpenSearch, prefix: str) -> str | None:
    """Why records cannot be delivered yet (unreachable, refused, not set up), or None."""
    name = index_template_name(prefix)
    if not client.indices.exists_index_template(name=name):
        return f"index template {name!r} is missing in OpenSearch: run `audit-middleware setup`"
    return None


@dataclass(slots=True)
class _ProcessState:
    pid: int
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
        install_signal_handlers: bool = False,
    ) -> None:
        self.settings = settings or ConnectionSettings.from_env()
        self.router = router or TierRouter(prefix=self.settings.prefix)
        self._client_factory = client_factory or (lambda: build_client(self.settings, max_retries=0))
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.durable = durable
        self.options = options or ShipperOptions()
        self._spool_max_bytes = spool_max_bytes
        self._on_full: OnFull = on_full
        self.shutdown_timeout = shutdown_timeout
        self._install_signal_handlers = install_signal_handlers
        self.metrics = DeliveryMetrics()
        self.dead_letters = DeadLetterFile(self.state_dir / "dead-letter.jsonl")
        self._state: _ProcessState | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- per-process start ----------------------------------------------------------

    def _process_state(self) -> _ProcessState:
        state = self._state
        if state is not None and state.pid == os.getpid():
            return state
        with self._lock:
            state = self._state
            if state is None or state.pid != os.getpid():
                state = self._start()
                self._state = state
        return state

    def _start(self) -> _ProcessState:
        # A fresh process (or a forked worker): new client, spool owner and thread.
        self.metrics = DeliveryMetrics()
        spool = Spool(self.state_dir / "spool", max_bytes=self._spool_max_bytes, on_full=self._on_full)
        shipper = Shipper(
            self._client_factory(),
            encode=self.encode,
            spool=spool,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            options=self.options,
            readiness=lambda client: check_ready(client, self.settings.prefix),
            durable=self.durable,
        )
        shipper.start()
        atexit.register(self.close)
        if self._install_signal_handlers:
            _chain_sigterm(self.close)
        return _ProcessState(os.getpid(), shipper, spool)

    # -- Sink -----------------------------------------------------------------------

    def encode(self, event: AuditEvent) -> Item:
        """The document for ``event``, routed to its tenant's tier."""
        document = event.to_document()
        tenant = event.tenant.id if event.tenant is not None else None
        tier = self.router.tier_for(tenant)
        document["audit"]["tier"] = tier
        return Item(self.router.data_stream_for(tier), event.id, dumps(document))

    def emit(self, event: AuditEvent) -> None:
        """Queue the event (or, when durable or the queue is full, spool it)."""
        state = self._process_state()
        self.metrics.add("enqueued")
        if self.durable:
            state.spool.append([self.encode(event).spool_payload()], durable=True)
        elif not state.shipper.offer(event):
            state.spool.append([self.encode(event).spool_payload()])
            self.metrics.add("spooled")

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything pending; True when memory and spool are empty."""
        state = self._state
        if state is None or state.pid != os.getpid():
            return True
        return state.shipper.flush(self.shutdown_timeout if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> None:
        """Drain within the deadline (default 10 s); what is left stays in the spool."""
        state = self._state
        if state is None or state.pid != os.getpid() or self._closed:
            return
        self._closed = True
        deadline = self.shutdown_timeout if timeout is None else timeout
        started = time.monotonic()
        state.shipper.flush(deadline)
        state.shipper.stop(max(0.1, deadline - (time.monotonic() - started)))
        state.spool.close()
        atexit.unregister(self.close)

    # -- observability --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counters, gauges and the start-up error, if any (see ``audit-middleware status``)."""
        data = self.metrics.snapshot()
        state = self._state
        if state is None or state.pid != os.getpid():
            data.update(queue_depth=0, spool_bytes=0, oldest_undelivered_seconds=None, error=None)
            return data
        stats = state.spool.stats()
        oldest = stats.oldest_unix_ms
        data.update(
            queue_depth=state.shipper.queue_depth(),
            spool_bytes=stats.bytes,
            spool_records=stats.records,
            oldest_undelivered_seconds=None if oldest is None else round(time.time() - oldest / 1000, 3),
            error=state.shipper.ready_error,
            urls=list(self.settings.urls),
        )
        return data


def _chain_sigterm(close: Any) -> None:
    """Flush on SIGTERM, then let the previous handler (or the default exit) run."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        close()
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
