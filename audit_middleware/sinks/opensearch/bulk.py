"""One ``_bulk`` request and the reading of every item in its answer.

A bulk answer is 200 even when items inside it failed, so each item is classified:
delivered (2xx, or 409 on create: already there), retryable (429, 5xx, cluster blocks),
or rejected (mapping and parse errors: dead-letter them with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

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
_WRITE_PERMISSIONS = "the shipper needs the create_doc permission on the audit data streams"


@dataclass(slots=True)
class Item:
    """One document on its way: target data stream, id, encoded JSON, and its spool segment."""

    index: str
    id: str
    document: bytes
    segment: str | None = None

    def spool_payload(self) -> bytes:
        """How the item is kept in the spool: the index on the first line, then the document."""
        return self.index.encode() + b"\n" + self.document

    @classmethod
    def from_spool(cls, payload: bytes, segment: str) -> Item:
        """Rebuild an item from its spool payload."""
        index, _, document = payload.partition(b"\n")
        event_id = orjson.loads(document)["event"]["id"]
        return cls(index.decode(), event_id, document, segment)


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
    except OSConnectionError as exc:  # includes timeouts: the batch may have landed; 409s will tell
        outcome.retry = list(items)
        outcome.error = f"connection: {exc.__class__.__name__}: {exc.info if hasattr(exc, 'info') else exc}"
        return outcome
    except TransportError as exc:
        return _request_failed(items, exc, outcome)
    if not isinstance(response, dict) or len(response.get("items", ())) != len(items):
        outcome.retry = list(items)
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
    else:
        outcome.retry = list(items)
    return outcome
