"""Archived audit indices: the snapshot repository, the snapshots ISM made, and restoring one.

Each tier's ISM policy snapshots a backing index into the tier's repository before it
deletes it (``retention``). ISM names the snapshot after the index and appends the
time: ``.ds-audit-standard-000001-2026.12.01-21:19:00.996``; the snapshot holds that one
backing index, not the data stream.

A restored index is named ``restored-<backing index without ".ds-">``, e.g.
``restored-audit-standard-000001``: outside the live ``{prefix}-*`` pattern, so it never
appears in searches of the live trail, in the alert monitors (which name the streams),
or under the index template that claims ``{prefix}-*`` for data streams; and outside the
ISM policies' patterns, so nothing deletes it but ``drop_restored``. It is restored
visible (``index.hidden`` false; backing indices are hidden), without the snapshot's
global state. ``OpenSearchStore(..., include_restored=True)`` searches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from opensearchpy import NotFoundError, OpenSearch

from audit_middleware.errors import AuditError
from audit_middleware.opensearch import errors
from audit_middleware.opensearch.steps import SetupError, Status, Step, explained
from audit_middleware.opensearch.tiers import validate_name

__all__ = [
    "RESTORED_PREFIX",
    "ArchiveError",
    "ArchivedIndex",
    "drop_restored",
    "list_archives",
    "list_restored",
    "plan_repository",
    "policy_repositories",
    "restore",
    "restored_name",
    "restored_pattern",
]

RESTORED_PREFIX = "restored-"
_BACKING_PREFIX = ".ds-"


class ArchiveError(AuditError):
    """An archive could not be listed or restored; the message says why."""


@dataclass(frozen=True)
class ArchivedIndex:
    """One archived backing index: the snapshot holding it, and where it is restored (if it is)."""

    repository: str
    snapshot: str
    index: str
    state: str
    start_ms: int
    end_ms: int
    restored_as: str | None = None


def restored_name(backing_index: str) -> str:
    """``.ds-audit-standard-000001`` -> ``restored-audit-standard-000001``."""
    return RESTORED_PREFIX + backing_index.removeprefix(_BACKING_PREFIX)


def restored_pattern(prefix: str) -> str:
    """The pattern of the restored indices of ``prefix``'s streams: ``restored-audit-*``."""
    return f"{RESTORED_PREFIX}{validate_name(prefix, 'prefix')}-*"


def plan_repository(client: OpenSearch, name: str, location: str) -> Step:
    """Register ``name`` as an ``fs`` snapshot repository at ``location``, or check it is there.

    A repository already registered elsewhere is an error, not an update: its snapshots
    stay where they are, and moving them is a decision for a person.
    """
    desired = {"type": "fs", "settings": {"location": location}}
    with explained(client, f"read snapshot repository {name}"):
        try:
            stored = client.snapshot.get_repository(repository=name).get(name)
        except NotFoundError:
            stored = None
    if stored is not None:
        settings = stored.get("settings", {})
        if stored.get("type") != "fs" or settings.get("location") != location:
            raise SetupError(
                f"snapshot repository {name!r} is registered as {stored.get('type')} at "
                f"{settings.get('location')!r}, not fs at {location!r}: its archives stay there; "
                "use that location, or another repository name"
            )
        return Step("snapshot repository", name, "unchanged")

    def run() -> Status:
        with explained(client, f"register snapshot repository {name} at {location}"):
            client.snapshot.create_repository(repository=name, body=desired)
        return "created"

    return Step("snapshot repository", name, "created", f"fs at {location}", run=run)


def _translated(client: OpenSearch, what: str) -> Any:
    return errors.explained(what, ArchiveError, client=client)


def list_archives(client: OpenSearch, repository: str, prefix: str) -> list[ArchivedIndex]:
    """The backing indices of ``prefix``'s streams archived in ``repository``, oldest first."""
    stream_prefix = f"{_BACKING_PREFIX}{validate_name(prefix, 'prefix')}-"
    with _translated(client, f"list the snapshots of {repository}"):
        try:
            snapshots = client.snapshot.get(repository=repository, snapshot="_all")["snapshots"]
        except NotFoundError:
            raise ArchiveError(f"snapshot repository {repository!r} is not registered") from None
    restored = set(list_restored(client, prefix))
    found = []
    for snapshot in snapshots:
        for index in snapshot.get("indices", ()):
            if index.startswith(stream_prefix):
                name = restored_name(index)
                found.append(
                    ArchivedIndex(
                        repository=repository,
                        snapshot=snapshot["snapshot"],
                        index=index,
                        state=snapshot.get("state", "UNKNOWN"),
                        start_ms=int(snapshot.get("start_time_in_millis", 0)),
                        end_ms=int(snapshot.get("end_time_in_millis", 0)),
                        restored_as=name if name in restored else None,
                    )
                )
    found.sort(key=lambda archived: (archived.start_ms, archived.index))
    return found


def policy_repositories(client: OpenSearch, prefix: str) -> list[str]:
    """The snapshot repositories the retention policies of ``prefix``'s tiers archive to."""
    start = f"{validate_name(prefix, 'prefix')}-"
    with _translated(client, "read the ISM policies"):
        try:
            answer = client.transport.perform_request("GET", "/_plugins/_ism/policies", params={"size": 1000})
        except NotFoundError:
            return []
    found = set()
    for entry in answer.get("policies", ()):
        if not (str(entry.get("_id", "")).startswith(start) and str(entry["_id"]).endswith("-retention")):
            continue
        for state in entry.get("policy", {}).get("states", ()):
            for action in state.get("actions", ()):
                repository = (action.get("snapshot") or {}).get("repository")
                if repository:
                    found.add(str(repository))
    return sorted(found)


def list_restored(client: OpenSearch, prefix: str) -> list[str]:
    """The restored indices of ``prefix``'s streams."""
    with _translated(client, "list the restored indices"):
        rows = client.cat.indices(
            index=restored_pattern(prefix), format="json", h="index", params={"expand_wildcards": "all"}
        )
    return sorted(str(row["index"]) for row in rows)


def restore(client: OpenSearch, repository: str, snapshot: str, indices: Sequence[str] = ()) -> list[str]:
    """Restore archived backing indices of ``snapshot`` (all of them by default); returns their names.

    Waits for the restore to finish. An index restored before is an error naming it.
    """
    with _translated(client, f"read snapshot {snapshot} in {repository}"):
        try:
            (info,) = client.snapshot.get(repository=repository, snapshot=snapshot)["snapshots"]
        except NotFoundError:
            raise ArchiveError(f"no snapshot {snapshot!r} in repository {repository!r}") from None
    available = [index for index in info.get("indices", ()) if index.startswith(_BACKING_PREFIX)]
    chosen = list(indices) or available
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ArchiveError(f"snapshot {snapshot!r} holds {available}, not {missing}")
    targets = [restored_name(index) for index in chosen]
    with _translated(client, "check for restored indices"):
        present = [name for name in targets if client.indices.exists(index=name)]
    if present:
        raise ArchiveError(f"already restored as {', '.join(present)}: drop it first to restore it again")
    body = {
        "indices": ",".join(chosen),
        "include_global_state": False,  # ISM snapshots carry templates and settings: never those
        "include_aliases": False,
        "rename_pattern": r"^\.ds-(.+)$",
        "rename_replacement": f"{RESTORED_PREFIX}$1",
        "index_settings": {"index.hidden": False},
    }
    path = f"/_snapshot/{quote(repository, safe='')}/{quote(snapshot, safe='')}/_restore"
    with _translated(client, f"restore {', '.join(chosen)} from {snapshot}"):
        answer = client.transport.perform_request(
            "POST", path, params={"wait_for_completion": "true"}, body=body
        )
    shards = answer.get("snapshot", {}).get("shards", {})
    if shards.get("failed"):
        raise ArchiveError(f"restoring {snapshot} failed on {shards['failed']} shard(s): {answer}")
    return targets


def drop_restored(client: OpenSearch, prefix: str, name: str) -> None:
    """Delete a restored index (never a live one: the name must start with ``restored-{prefix}-``)."""
    start = restored_pattern(prefix)[:-1]
    if not name.startswith(start):
        raise ArchiveError(f"{name!r} is not a restored index of {prefix!r} (they start with {start!r})")
    with _translated(client, f"delete restored index {name}"):
        try:
            client.indices.delete(index=name)
        except NotFoundError:
            raise ArchiveError(f"no restored index {name!r}") from None
