"""The one mapping from a framework's user (or token claims) to an audit ``Actor``.

Each adapter knows where its framework keeps the id, name and roles (flask-login's
``get_id()``, Django's ``pk`` and ``get_username()``) and passes those; everything else
is read the same way everywhere. :func:`guarded` keeps an app's mapper bug from costing
the request or its record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from audit_middleware import logs
from audit_middleware.model.event import Actor

__all__ = ["UserMapper", "actor_from_user", "guarded"]

UserMapper = Callable[[Any], "Actor | None"]
_GIVEN_BY_ATTRIBUTE: Any = object()


def actor_from_user(
    user: Any,
    *,
    user_id: Any = _GIVEN_BY_ATTRIBUTE,
    name: Any = _GIVEN_BY_ATTRIBUTE,
    email: Any = _GIVEN_BY_ATTRIBUTE,
    roles: Any = _GIVEN_BY_ATTRIBUTE,
) -> Actor | None:
    """An ``Actor`` for a user object, a mapping of token claims, or an ``Actor`` (kept as is).

    Claims: ``sub`` (or ``id``), ``name`` (or ``preferred_username``), ``email``, ``roles``.
    Objects: ``id``, ``name`` (or ``username``), ``email``, ``roles``, unless the adapter
    passes a value it read the framework's way.

    >>> actor_from_user({"sub": "42", "email": "ann@example.com"})
    Actor(id='42', name=None, email='ann@example.com', roles=(), kind='user', impersonator=None)
    """
    if user is None or isinstance(user, Actor):
        return user
    if isinstance(user, Mapping):
        return Actor(
            id=user.get("sub") or user.get("id"),
            name=user.get("name") or user.get("preferred_username"),
            email=user.get("email"),
            roles=tuple(user.get("roles") or ()),
        )
    return Actor(
        id=getattr(user, "id", None) if user_id is _GIVEN_BY_ATTRIBUTE else user_id,
        name=(getattr(user, "name", None) or getattr(user, "username", None))
        if name is _GIVEN_BY_ATTRIBUTE
        else name,
        email=getattr(user, "email", None) if email is _GIVEN_BY_ATTRIBUTE else email,
        roles=tuple(getattr(user, "roles", None) or ()) if roles is _GIVEN_BY_ATTRIBUTE else tuple(roles),
    )


def guarded(lookup: Callable[..., Actor | None], *args: Any) -> Actor | None:
    """``lookup(*args)``, or None with one warning when the app's code raises."""
    try:
        return lookup(*args)
    except Exception as exc:  # noqa: BLE001 - the app's bug is logged, not raised
        logs.warn("audit actor lookup failed", error=f"{type(exc).__name__}: {exc}")
        return None
