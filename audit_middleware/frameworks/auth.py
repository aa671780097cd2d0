"""One-liners for login endpoints that no framework signal covers (Flask without a failure
signal, FastAPI/Starlette token endpoints, any custom login view)::

    user = authenticate(form.username, form.password)
    if user is None:
        audit_login_failed(form.username, reason="bad password")
        raise HTTPException(400, "Incorrect username or password")
    audit_login(user)

Each records one Login, Login Failed or Logout on the ``session`` resource. Inside a
request it is the request's record (no generic one beside it) and ``audit_login`` makes
the request the user's. A password is never taken, so it cannot be recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit_middleware.capture.context import current
from audit_middleware.capture.recorder import record
from audit_middleware.errors import AuditValidationError
from audit_middleware.frameworks import users
from audit_middleware.frameworks.users import UserMapper
from audit_middleware.model.event import Actor, AuditEvent, Resource

__all__ = ["SESSION", "USERNAME_LIMIT", "audit_login", "audit_login_failed", "audit_logout"]

SESSION = Resource("session")
"""The resource of login and logout records."""
USERNAME_LIMIT = 256
"""Characters of an attempted username kept (a client chooses it)."""


def audit_login(
    user: Any, *, mapper: UserMapper = users.actor_from_user, details: Mapping[str, Any] | None = None
) -> AuditEvent:
    """Record that ``user`` (an ``Actor``, a user object or token claims) logged in.

    The request becomes the user's: its other records (and tasks it queues) name them.

    >>> from audit_middleware import Actor
    >>> audit_login(Actor(id="7", name="ann")).action.id  # doctest: +SKIP
    'login'
    """
    actor = mapper(user)
    if actor is None:
        raise AuditValidationError("audit_login() needs the user who logged in")
    context = current()
    if context is not None:
        context.actor = actor
    return record("login", resource=SESSION, actor=actor, details=details)


def audit_login_failed(
    username: str | None, *, reason: str | None = None, details: Mapping[str, Any] | None = None
) -> AuditEvent:
    """Record a failed login attempt for ``username`` (as typed, never authenticated).

    The record's user is the attempted name, so alerts can group failures by account.

    >>> audit_login_failed("ann", reason="bad password").outcome  # doctest: +SKIP
    'failure'
    """
    name = attempted(username)
    values: dict[str, Any] = {**(details or {}), "username": name}
    if reason is not None:
        values["reason"] = str(reason)[:USERNAME_LIMIT]
    return record("login_failed", resource=SESSION, actor=Actor(name=name) if name else None, details=values)


def audit_logout(user: Any = None, *, mapper: UserMapper = users.actor_from_user) -> AuditEvent:
    """Record a logout (by ``user``, else by the request's actor)."""
    return record("logout", resource=SESSION, actor=None if user is None else mapper(user))


def attempted(username: object) -> str | None:
    """An attempted username fit to store: text, bounded, or None."""
    if username is None:
        return None
    text = str(username).strip()
    return text[:USERNAME_LIMIT] or None
