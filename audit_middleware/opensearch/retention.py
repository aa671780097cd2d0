"""Retention tiers as ISM policies: roll over, optionally snapshot, then delete.

Each tier's policy manages the backing indices of the tier's data stream::

    hot (rollover by age / primary shard size)
      -- index age >= retention --> archive (snapshot, then delete; with a repository)
                                    or delete (without one)

The snapshot and the delete are two actions of one state, in that order: ISM runs the
delete only once the snapshot action has completed (the snapshot succeeded), and a
state less saves one ISM job interval. A snapshot that fails leaves the index in place
(``audit-middleware status`` shows the failed step) instead of deleting unarchived data.

The policy finds its indices through ``ism_template``. For a data stream backing index
(``.ds-audit-standard-000001``) ISM matches the template's ``index_patterns`` against
the *data stream name*, not the hidden backing index name: index-management's
``ManagedIndexCoordinator.findIndexLookupName`` returns ``parentDataStream.name`` for
backing indices and skips other hidden indices. So the pattern is the stream name
itself (``audit-standard``); a ``.ds-*`` pattern would never match. ISM also attaches a
policy only to indices created after the policy, which is why setup installs policies
before it creates the data streams.

Retention counts from a backing index's creation (``min_index_age``), so a record lives
between ``retention - rollover_max_age`` and ``retention`` (plus up to one ISM job
interval): choose the rollover age small against the retention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.tiers import EXTENDED_TIER, STANDARD_TIER, data_stream_name, validate_name

STANDARD_DAYS = 90
EXTENDED_DAYS = 365
# ISM rejects two policies whose ism_templates overlap at the same priority; ours match
# exact stream names, and a higher priority wins over catch-all policies like "*".
ISM_TEMPLATE_PRIORITY = 200
# ISM renders this per index; it appends "-<UTC date and time>" to the snapshot name.
SNAPSHOT_NAME = "{{ctx.index}}"

_TIME = re.compile(r"[1-9][0-9]*(d|h|m|s)")
_SIZE = re.compile(r"[1-9][0-9]*(b|kb|mb|gb|tb|pb)")
_REPOSITORY = re.compile(r"[^\s,\"*\\<>|?/#]+")


@dataclass(frozen=True)
class RetentionTier:
    """A retention tier: how long its records are kept and how its indices roll over.

    ``delete_after`` replaces ``delete_after_days`` with any ISM time value; it exists
    for tests that watch retention act in minutes::

        RetentionTier("standard", 90)                      # production
        RetentionTier("standard", 0, rollover_max_age="1m", delete_after="3m")

    With ``snapshot_repository`` (a registered snapshot repository), each backing
    index is snapshotted there before it is deleted.
    """

    name: str
    delete_after_days: int
    rollover_max_age: str = "1d"
    rollover_max_size: str = "30gb"
    snapshot_repository: str | None = None
    delete_after: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name, "tier name")
        if self.delete_after is None:
            if isinstance(self.delete_after_days, bool) or not isinstance(self.delete_after_days, int):
                raise AuditValidationError(f"tier {self.name}: delete_after_days must be an integer")
            if self.delete_after_days < 1:
                raise AuditValidationError(f"tier {self.name}: delete_after_days must be at least 1")
        elif not _TIME.fullmatch(self.delete_after):
            raise AuditValidationError(
                f"tier {self.name}: delete_after {self.delete_after!r} is not like '2m' or '90d'"
            )
        if not _TIME.fullmatch(self.rollover_max_age):
            raise AuditValidationError(
                f"tier {self.name}: rollover_max_age {self.rollover_max_age!r} is not like '1d' or '1m'"
            )
        if not _SIZE.fullmatch(self.rollover_max_size):
            raise AuditValidationError(
                f"tier {self.name}: rollover_max_size {self.rollover_max_size!r} is not like '30gb'"
            )
        if self.snapshot_repository is not None and not _REPOSITORY.fullmatch(self.snapshot_repository):
            raise AuditValidationError(
                f"tier {self.name}: snapshot_repository {self.snapshot_repository!r} is not a repository name"
            )

    @property
    def min_index_age(self) -> str:
        """The ISM ``min_index_age`` after which a backing index is archived and deleted."""
        return self.delete_after if self.delete_after is not None else f"{self.delete_after_days}d"


def default_tiers(
    extended_days: int = EXTENDED_DAYS, snapshot_repository: str | None = None
) -> tuple[RetentionTier, RetentionTier]:
    """The standard (90 days) and extended (``extended_days``) tiers."""
    return (
        RetentionTier(STANDARD_TIER, STANDARD_DAYS, snapshot_repository=snapshot_repository),
        RetentionTier(EXTENDED_TIER, extended_days, snapshot_repository=snapshot_repository),
    )


def policy_id(prefix: str, tier: str) -> str:
    """The ISM policy id of a tier, e.g. ``audit-standard-retention``."""
    return f"{data_stream_name(prefix, tier)}-retention"


def build_policy(prefix: str, tier: RetentionTier) -> dict[str, Any]:
    """The body of ``PUT _plugins/_ism/policies/<policy_id>`` for one tier."""
    stream = data_stream_name(prefix, tier.name)
    final = "archive" if tier.snapshot_repository else "delete"
    states: list[dict[str, Any]] = [
        {
            "name": "hot",
            "actions": [
                # A data stream needs no rollover_alias: ISM rolls the stream itself over.
                {
                    "rollover": {
                        "min_index_age": tier.rollover_max_age,
                        "min_primary_shard_size": tier.rollover_max_size,
                    }
                }
            ],
            "transitions": [{"state_name": final, "conditions": {"min_index_age": tier.min_index_age}}],
        }
    ]
    actions: list[dict[str, Any]] = []
    if tier.snapshot_repository:
        # The snapshot action completes only when the snapshot has, so the delete comes after.
        actions.append({"snapshot": {"repository": tier.snapshot_repository, "snapshot": SNAPSHOT_NAME}})
    actions.append({"delete": {}})
    states.append({"name": final, "actions": actions, "transitions": []})
    archive = f"snapshot to {tier.snapshot_repository}, then " if tier.snapshot_repository else ""
    return {
        "policy": {
            "description": (
                f"audit-middleware retention tier {tier.name}: roll over at {tier.rollover_max_age} or "
                f"{tier.rollover_max_size} per primary shard; "
                f"{archive}delete {tier.min_index_age} after creation"
            ),
            "default_state": "hot",
            "states": states,
            "ism_template": [{"index_patterns": [stream], "priority": ISM_TEMPLATE_PRIORITY}],
        }
    }
