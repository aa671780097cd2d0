"""Move a tenant's history to another retention tier: ``audit-middleware retention move``.

A tier is a data stream, and a record stays in the stream it was written to: when a
tenant's tier changes (``TierRouter``), its new records go to the new stream, while its
history keeps the old tier's retention. That is the default, and often right (records
written under a contract keep that contract's terms). To give the history the new
tier's retention, ``move_tenant`` copies it, page by page, into the target stream
(``op_type=create``, same ``_id``; ``audit.tier`` rewritten) and then deletes exactly
the copies it made from the backing indices they came from.

Safe to re-run: a copy already there is a 409 (already moved), and only records whose
copy exists are deleted, so a record arriving in the old stream during the move is
never lost (the next run moves it). While a page is between its copy and its delete,
a search can show its records twice. The moved records count their retention from the
target stream's current write index, so they are kept at least the new tier's time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opensearchpy import NotFoundError, OpenSearch

from audit_middleware.errors import AuditError
from audit_middleware.model.tenancy import scope_key
from audit_middleware.opensearch import errors
from audit_middleware.opensearch.tiers import data_stream_name

__all__ = ["MoveError", "MoveReport", "move_tenant"]

_PAGE = 500
# event.id is unique per record; a duplicate across backing indices (same id) may be skipped
# by search_after and is then moved by the next run.
_SORT = [{"@timestamp": "asc"}, {"event.id": "asc"}]


class MoveError(AuditError):
    """A tenant's history could not be moved; what was moved so far stays moved."""


@dataclass
class MoveReport:
    """How many records were copied, were there already, and were deleted from the old tiers."""

    copied: int = 0
    already_there: int = 0
    deleted: int = 0
    sources: list[str] = field(default_factory=list)


def _translated(client: OpenSearch, what: str) -> Any:
    return errors.explained(what, MoveError, client=client)


def _pages(client: OpenSearch, stream: str, tenant: str) -> Iterator[list[dict[str, Any]]]:
    """The tenant's records in ``stream``, in pages, through a point in time."""
    with _translated(client, f"open a point in time on {stream}"):
        pit = client.transport.perform_request(
            "POST", f"/{stream}/_search/point_in_time", params={"keep_alive": "2m"}
        )
    pit_id = pit["pit_id"]
    try:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": _PAGE,
                # the stored key (model.tenancy): an over-long id is stored hashed
                "query": {"bool": {"filter": [{"term": {"organization.id": scope_key(tenant)}}]}},
                "sort": _SORT,
                "pit": {"id": pit_id, "keep_alive": "2m"},
            }
            if after is not None:
                body["search_after"] = after
            with _translated(client, f"read {tenant}'s records in {stream}"):
                hits = client.search(body=body)["hits"]["hits"]
            if not hits:
                return
            yield hits
            after = hits[-1]["sort"]
    finally:
        with _translated(client, "close the point in time"):
            client.transport.perform_request("DELETE", "/_search/point_in_time", body={"pit_id": [pit_id]})


def _bulk(client: OpenSearch, lines: Sequence[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    with _translated(client, what):
        answer = client.transport.perform_request(
            "POST",
            "/_bulk",
            params={"refresh": "true"},
            body=body,
            headers={"content-type": "application/x-ndjson"},
        )
    return [next(iter(item.values())) for item in answer["items"]]


def move_tenant(
    client: OpenSearch, prefix: str, tenant: str, to_tier: str, tiers: Sequence[str]
) -> MoveReport:
    """Move ``tenant``'s records from every other tier's stream into ``to_tier``'s stream."""
    target = data_stream_name(prefix, to_tier)
    if to_tier not in tiers:
        raise MoveError(f"{to_tier!r} is not one of the tiers {sorted(tiers)}")
    with _translated(client, f"read data stream {target}"):
        try:
            client.indices.get_data_stream(name=target)
        except NotFoundError:
            raise MoveError(
                f"data stream {target!r} does not exist: run `audit-middleware setup` first"
            ) from None
    report = MoveReport()
    for tier in tiers:
        source = data_stream_name(prefix, tier)
        if tier == to_tier or not client.indices.exists(index=source):
            continue
        report.sources.append(source)
        for hits in _pages(client, source, tenant):
            copies = []
            for hit in hits:
                document = dict(hit["_source"])
                document["audit"] = {**document.get("audit", {}), "tier": to_tier}
                copies += [{"create": {"_index": target, "_id": hit["_id"]}}, document]
            answers = _bulk(client, copies, f"copy {tenant}'s records into {target}")
            copied = []
            for hit, answer in zip(hits, answers, strict=True):
                status = int(answer.get("status", 0))
                if 200 <= status < 300:
                    report.copied += 1
                elif status == 409:
                    report.already_there += 1
                else:
                    continue  # not copied: it stays where it is
                copied.append(hit)
            if copied:
                deletes = [{"delete": {"_index": hit["_index"], "_id": hit["_id"]}} for hit in copied]
                results = _bulk(client, deletes, f"delete the moved records from {source}")
                report.deleted += sum(1 for result in results if result.get("result") == "deleted")
            if len(copied) < len(hits):
                failed = [
                    answer
                    for answer in answers
                    if int(answer.get("status", 0)) >= 300 and answer.get("status") != 409
                ]
                raise MoveError(
                    f"{len(failed)} of {tenant}'s records could not be copied into {target} "
                    f"(first: {failed[0].get('error')}); they stay in {source}: fix the cause and run again"
                )
    return report
