"""The vocabulary of ``audit-middleware setup``: a step, what it did, and the one error it raises.

Every object setup manages (a policy, a template, a stream, a monitor...) is planned as a
``Step`` that says whether applying it will create, update, remove or leave the object
unchanged, and carries the function that makes the change. ``provisioning`` orders the
steps; the modules that know one kind of object (``monitors``, ``archive``) plan theirs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opensearchpy import NotFoundError, OpenSearch

from audit_middleware.errors import AuditError
from audit_middleware.opensearch import errors

__all__ = ["SetupError", "Status", "Step", "StepResult", "contains", "explained", "get_or_none", "has_plugin"]

Status = Literal["created", "updated", "removed", "unchanged"]


class SetupError(AuditError):
    """Setup could not finish; the message says what failed and what to do.

    ``completed`` lists the steps applied before the failure.
    """

    def __init__(self, message: str, completed: Sequence[StepResult] = ()) -> None:
        super().__init__(message)
        self.completed: tuple[StepResult, ...] = tuple(completed)


@dataclass(frozen=True)
class Step:
    """One object setup manages, and what applying the plan will do to it."""

    kind: str
    """``ism policy``, ``component template``, ``index template``, ``data stream``,
    ``mappings``, ``rollover``, ``ism attachment``, ``snapshot repository``, ``alert monitor``,
    ``notification channel``."""
    name: str
    status: Status
    detail: str = ""
    run: Callable[[], Status] | None = field(default=None, repr=False, compare=False)
    """Makes the change and returns what it did; ``None`` when there is nothing to do."""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class StepResult:
    """What applying a step did (or, in a dry run, would do)."""

    step: Step
    status: Status

    def __str__(self) -> str:
        return f"{self.status:<9}  {self.step}"


_SETUP_PERMISSIONS = (
    "setup needs the cluster permissions to manage index templates, component templates, data "
    "streams, ISM policies, snapshot repositories and alerting monitors"
)


def explained(client: OpenSearch, what: str) -> contextlib.AbstractContextManager[None]:
    """Turn client errors raised while doing ``what`` into one ``SetupError`` a person can act on."""
    return errors.explained(what, SetupError, client=client, permissions=_SETUP_PERMISSIONS)


def get_or_none(client: OpenSearch, what: str, call: Callable[[], Any]) -> Any:
    """``call()``, or None when the object is not there (404)."""
    with explained(client, what):
        try:
            return call()
        except NotFoundError:
            return None


def contains(stored: Any, desired: Any) -> bool:
    """Whether ``stored`` holds everything in ``desired`` (extra keys added by the server are fine)."""
    if isinstance(desired, Mapping):
        return isinstance(stored, Mapping) and all(
            key in stored and contains(stored[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(desired)
            and all(contains(s, d) for s, d in zip(stored, desired, strict=True))
        )
    return bool(stored == desired)


def has_plugin(client: OpenSearch, *names: str) -> bool:
    """Whether the cluster runs one of the plugins ``names`` (``_cat/plugins`` components)."""
    with explained(client, "list the installed plugins"):
        rows = client.cat.plugins(format="json")
    return any(row.get("component") in names for row in rows)
