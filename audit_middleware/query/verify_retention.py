"""What ISM may have removed from the OpenSearch chains: read from the cluster for ``verify``.

ISM deletes a tier's backing indices whole, oldest first, with no library code running,
so nothing in the store says what it removed. ``read_retention`` derives it per data
stream (``query.verify.StreamRetention``) from what the cluster holds:

* the installed ISM policy ``<stream>-retention``: its delete age, its rollover age and,
  when it archives, its snapshot repository;
* the stream's backing indices: those gone are the generations below the oldest one
  left (``.ds-<stream>-<generation>``), and the oldest one left was created at a known
  time, so records written after it cannot have been in a gone index;
* the repository's snapshots: a gone index that no successful snapshot holds was not
  deleted by a policy that snapshots first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from audit_middleware.opensearch.archive import ArchiveError, list_archives
from audit_middleware.query.verify import StreamRetention

__all__ = ["read_retention"]


def read_retention(client: Any, prefix: str, now_ms: int) -> dict[str, StreamRetention]:
    """Data stream of ``prefix`` -> what its ISM policy may have removed by ``now_ms``."""
    found: dict[str, StreamRetention] = {}
    try:
        streams = client.indices.get_data_stream(name=f"{prefix}-*")["data_streams"]
    except Exception:  # noqa: BLE001 - no streams, no ISM: nothing is expected to be gone
        return found
    for stream in streams:
        name = str(stream["name"])
        try:
            policy = client.transport.perform_request("GET", f"/_plugins/_ism/policies/{name}-retention")[
                "policy"
            ]
        except Exception:  # noqa: BLE001, S112 - a stream without a policy keeps everything
            continue
        ages = _policy_ages(policy)
        if ages.delete_ms is None:
            continue
        backing = sorted(str(index["index_name"]) for index in stream.get("indices", ()))
        gone = _gone(backing, int(stream.get("generation", 0)), name)
        oldest = backing[0] if backing else None
        archived = _archived(client, prefix, ages.repository) if ages.repository and gone else set()
        found[name] = StreamRetention(
            horizon_ms=now_ms - ages.delete_ms + (ages.rollover_ms or 0),
            delete_age=ages.delete_age,
            oldest_index=oldest,
            oldest_created_ms=_created_ms(client, oldest) if oldest else None,
            gone=gone,
            repository=ages.repository,
            unarchived=tuple(index for index in gone if ages.repository and index not in archived),
        )
    return found


def _created_ms(client: Any, index: str) -> int:
    settings = client.indices.get_settings(index=index, name="index.creation_date")
    return int(settings[index]["settings"]["index"]["creation_date"])


def _archived(client: Any, prefix: str, repository: str) -> set[str]:
    """The backing indices a successful snapshot of ``repository`` holds (none if it is not there)."""
    try:
        archives = list_archives(client, repository, prefix)
    except ArchiveError:
        return set()
    return {archive.index for archive in archives if archive.state == "SUCCESS"}


def _gone(backing: list[str], generation: int, stream: str) -> tuple[str, ...]:
    """The backing indices of ``stream`` older than every one left (``.ds-<stream>-<generation>``)."""
    generations = [_generation(index) for index in backing]
    oldest = min((g for g in generations if g is not None), default=generation + 1)
    return tuple(f".ds-{stream}-{number:06d}" for number in range(1, min(oldest, generation + 1)))


def _generation(index: str) -> int | None:
    number = index.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else None


_AGE = re.compile(r"(\d+)(ms|s|m|h|d)")
_AGE_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _age_ms(text: object) -> int | None:
    match = _AGE.fullmatch(str(text))
    return int(match.group(1)) * _AGE_MS[match.group(2)] if match else None


@dataclass(frozen=True)
class _PolicyAges:
    delete_ms: int | None = None
    delete_age: str = ""
    rollover_ms: int | None = None
    repository: str | None = None


def _policy_ages(policy: dict[str, Any]) -> _PolicyAges:
    """The age at which an ISM policy deletes an index, its rollover age and its snapshot repository."""
    delete_ms = rollover_ms = None
    delete_age = ""
    repository = None
    for state in policy.get("states", []):
        for action in state.get("actions", []):
            rollover = action.get("rollover")
            if isinstance(rollover, dict) and "min_index_age" in rollover:
                rollover_ms = _age_ms(rollover["min_index_age"])
            snapshot = action.get("snapshot")
            if isinstance(snapshot, dict) and snapshot.get("repository"):
                repository = str(snapshot["repository"])
        for transition in state.get("transitions", []):
            text = transition.get("conditions", {}).get("min_index_age")
            age = _age_ms(text)
            if age is not None and (delete_ms is None or age > delete_ms):
                delete_ms, delete_age = age, str(text)
    return _PolicyAges(delete_ms, delete_age, rollover_ms, repository)
