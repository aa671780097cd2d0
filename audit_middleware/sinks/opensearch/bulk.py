"""One ``_bulk`` request, the reading of every item in its answer, and the check before a re-send.

A bulk answer is 200 even when items inside it failed, so each item is classified:
delivered (2xx, or 409 on create: already there), retryable (429, 5xx, cluster blocks),
or rejected (mapping and parse errors: dead-letter them with the reason).

Re-sending without duplicates. ``create`` with ``_id = event.id`` makes a second write
of an event a 409, but only within one backing index: after a rollover the same id
lands in the new write index as a second copy. So an item that may already be stored
(``Item.uncertain``: its request timed out, its connection broke, or it was replayed
from a spool a dead process left behind) is looked up before it is sent again:
``find_stored`` reads it, in real time (``_mget``), from each backing index of its
stream that was the write index at or after the event happened. Items found there
count as delivered and are not written again.

What remains possible: a request that timed out may still be running in the cluster
when the look-up is made; if it then completes, and the stream rolled over in between,
its event is stored twice (two backing indices, one ``_id``). Both steps must coincide
within the request timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from audit_middleware.model.timestamps import parse_timestamp
from audit_middleware.opensearch import errors

_RETRYABLE_ERROR_TYPES = frozenset(
    (
        "cluster_block_exception",
        "es_rejected_execution_exception",
        "opensearch_rejected_execution_exception",
        "unavailable_shards_exception",
        "process_cluster_event_timeout_exception",
        "circuit_breaking_exception",
        "node_closed_exception",
    )
)
_FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"
# The app's clock and the cluster's may differ: look in indices rolled over up to this long before the event.
_CLOCK_SLACK_MS = 3_600_000
_FRESH_MARK = b"\tnew"  # spool payload: the item was never sent (absent: it may have been)
_WRITE_PERMISSIONS = "the shipper needs the create_doc permission on the audit data streams"


@dataclass(slots=True)
class Item:
    """One document on its way: target data stream, id, encoded JSON, and its spool segment.

    ``uncertain`` is True once the item may be stored although no answer said so.
    """

    index: str
    id: str
    document: bytes
    segment: str | None = None
    uncertain: bool = False

    def spool_payload(self) -> bytes:
        """How the item is kept in the spool: the index (and whether it was ever sent), then the document."""
        return self.index.encode() + (b"" if self.uncertain else _FRESH_MARK) + b"\n" + self.document

    @classmethod
    def from_spool(cls, payload: bytes, segment: str, *, adopted: bool = False) -> Item:
        """Rebuild an item from its spool payload; one of a dead process's spool is uncertain.

        (That process may have delivered it and died before acknowledging it.)
        """
        first, _, document = payload.partition(b"\n")
        index, mark, _ = first.partition(b"\t")
        event_id = orjson.loads(document)["event"]["id"]
        fresh = mark == b"\t" and first.endswith(_FRESH_MARK)
        return cls(index.decode(), event_id, document, segment, uncertain=adopted or not fresh)

    def unix_ms(self) -> int:
        """The event's time, from its document."""
        return parse_timestamp(orjson.loads(self.document)["@timestamp"])


@dataclass(slots=True)
class Rejection:
    """An item OpenSearch refused for good, and why."""

    item: Item
    status: int | None
    reason: str


@dataclass(slots=True)
class BulkOutcome:
    """What became of each item of one bulk request."""

    delivered: list[Item] = field(default_factory=list)
    conflicts: list[Item] = field(default_factory=list)
    retry: list[Item] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    too_large: bool = False
    error: str | None = None  # set when the whole request failed


def encode(items: list[Item]) -> bytes:
    """The NDJSON body: a ``create`` action (``_id`` = event id) and the document, per item."""
    parts: list[bytes] = []
    for item in items:
        parts.append(orjson.dumps({"create": {"_index": item.index, "_id": item.id}}))
        parts.append(b"\n")
        parts.append(item.document)
        parts.append(b"\n")
    return b"".join(parts)


def send(client: OpenSearch, items: list[Item], *, timeout: float = 30.0) -> BulkOutcome:
    """Send one bulk request and classify every item; never raises for delivery problems."""
    outcome = BulkOutcome()
    try:
        response = client.transport.perform_request(
            "POST",
            "/_bulk",
            body=encode(items),
            params={"filter_path": _FILTER_PATH, "request_timeout": timeout},
            headers={"content-type": "application/x-ndjson"},
        )
    except OSConnectionError as exc:  # includes timeouts: the batch may have landed
        outcome.retry = _uncertain(items)
        outcome.error = f"connection: {exc.__class__.__name__}: {exc.info if hasattr(exc, 'info') else exc}"
        return outcome
    except TransportError as exc:
        return _request_failed(items, exc, outcome)
    if not isinstance(response, dict) or len(response.get("items", ())) != len(items):
        outcome.retry = _uncertain(items)
        outcome.error = "bulk answer did not list every item"
        return outcome
    for item, answer in zip(items, response["items"], strict=True):
        _classify(item, next(iter(answer.values())), outcome)
    return outcome


def _classify(item: Item, answer: dict[str, Any], outcome: BulkOutcome) -> None:
    status = int(answer.get("status", 0))
    error = answer.get("error") or {}
    error_type = error.get("type", "") if isinstance(error, dict) else ""
    if 200 <= status < 300:
        outcome.delivered.append(item)
    elif status == 409 and error_type in ("version_conflict_engine_exception", ""):
        outcome.conflicts.append(item)
    elif status == 429 or status >= 500 or error_type in _RETRYABLE_ERROR_TYPES:
        outcome.retry.append(item)
        outcome.error = f"item {status} {error_type}".strip()
    else:
        reason = error.get("reason", "") if isinstance(error, dict) else str(error)
        outcome.rejected.append(Rejection(item, status, f"{error_type}: {reason}".strip(": ")))


def _request_failed(items: list[Item], exc: TransportError, outcome: BulkOutcome) -> BulkOutcome:
    status = exc.status_code if isinstance(exc.status_code, int) else None
    outcome.error = f"bulk request failed: {status} {exc.error}"
    if status == 413:
        outcome.too_large = True
    elif status in (401, 403):
        # Bad credentials or missing privileges: keep the records (spooled) and say so.
        outcome.retry = list(items)
        outcome.error = errors.describe(exc, "deliver audit records", permissions=_WRITE_PERMISSIONS)
    elif status == 400 and len(items) > 1:
        outcome.too_large = True  # a malformed body: split to find the one bad document
    elif status == 400:
        outcome.rejected.append(Rejection(items[0], status, f"{exc.error}: {exc.info}"))
    elif status is None or status >= 500:
        outcome.retry = _uncertain(items)  # a 5xx for the whole request: it may have been applied
    else:
        outcome.retry = list(items)  # 429 and the like: refused, nothing was written
    return outcome


def _uncertain(items: list[Item]) -> list[Item]:
    for item in items:
        item.uncertain = True
    return items


def _backing_to_search(client: OpenSearch, stream: str, oldest_ms: int, timeout: float) -> list[str]:
    """The backing indices of ``stream`` that were its write index at or after ``oldest_ms``."""
    try:
        found = client.indices.get_data_stream(name=stream, params={"request_timeout": timeout})
    except TransportError as exc:
        if exc.status_code == 404:
            return []
        raise
    backing = [index["index_name"] for index in found["data_streams"][0]["indices"]]
    settings = client.indices.get_settings(
        index=",".join(backing), name="index.creation_date", params={"request_timeout": timeout}
    )
    created = [int(settings[name]["settings"]["index"]["creation_date"]) for name in backing]
    # index i took writes until index i + 1 was created; the last one takes them now
    return [
        name
        for i, name in enumerate(backing)
        if i == len(backing) - 1 or created[i + 1] >= oldest_ms - _CLOCK_SLACK_MS
    ]


def find_stored(client: OpenSearch, items: Sequence[Item], *, timeout: float = 30.0) -> set[str]:
    """The ids of ``items`` already stored in their stream (any backing index it wrote to since)."""
    by_stream: dict[str, list[Item]] = {}
    for item in items:
        by_stream.setdefault(item.index, []).append(item)
    stored: set[str] = set()
    for stream, group in by_stream.items():
        indices = _backing_to_search(client, stream, min(item.unix_ms() for item in group), timeout)
        if not indices:
            continue
        docs = [{"_index": index, "_id": item.id} for index in indices for item in group]
        answer = client.transport.perform_request(
            "POST",
            "/_mget",
            body={"docs": docs},
            params={"_source": "false", "realtime": "true", "request_timeout": timeout},
        )
        stored.update(str(doc["_id"]) for doc in answer.get("docs", ()) if doc.get("found"))
    return stored
