"""Django's auth signals as audit records: Login, Logout and Login Failed, with no rule needed.

``user_logged_in`` and ``user_logged_out`` name the user (mapped by
``AUDIT_MIDDLEWARE["user_mapper"]``, default :func:`actor_from_user`);
``user_login_failed`` names the attempted username, read from the credentials Django
passes (the password is never read). The test client's ``login()`` sends the same
signals outside any request: then the record is made at once.

Inside a request the record is the request's (no generic record beside it) unless the
view records the same action itself, which then wins.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from audit_middleware.capture.context import current
from audit_middleware.capture.recorder import record_detected, resolve_late
from audit_middleware.frameworks import users
from audit_middleware.frameworks.auth import SESSION, attempted
from audit_middleware.frameworks.django.conf import option
from audit_middleware.logs import warn
from audit_middleware.model.event import Actor

__all__ = ["actor_from_user", "connect_auth_signals"]


def actor_from_user(user: Any) -> Actor | None:
    """Map an authenticated Django user to an audit ``Actor`` (None for anonymous users).

    Reads ``pk``, ``get_username()``, the model's email field and the ``superuser`` /
    ``staff`` flags as roles: attributes only, never a query. Name your own mapper in
    ``settings.AUDIT_MIDDLEWARE["user_mapper"]`` to add groups or an impersonator.

    >>> from django.contrib.auth.models import User  # doctest: +SKIP
    >>> actor_from_user(User(pk=7, username="ann", email="ann@example.com"))  # doctest: +SKIP
    Actor(id='7', name='ann', email='ann@example.com', roles=(), kind='user', impersonator=None)
    """
    if not getattr(user, "is_authenticated", False):
        return None
    flags = (("superuser", getattr(user, "is_superuser", False)), ("staff", getattr(user, "is_staff", False)))
    return users.actor_from_user(
        user,
        user_id=user.pk,
        name=user.get_username(),
        email=getattr(user, user.get_email_field_name(), None) or None,
        roles=[role for role, flag in flags if flag],
    )


def connect_auth_signals() -> None:
    """Listen to Django's auth signals (once, however often called)."""
    user_logged_in.connect(_on_login, dispatch_uid="audit_middleware:user_logged_in")
    user_logged_out.connect(_on_logout, dispatch_uid="audit_middleware:user_logged_out")
    user_login_failed.connect(_on_login_failed, dispatch_uid="audit_middleware:user_login_failed")


def _actor(user: Any) -> Actor | None:
    if user is None:
        return None
    mapper = option("user_mapper", actor_from_user)
    return users.guarded(mapper, user)


def _on_login(*, user: Any = None, **_signal: Any) -> None:
    actor = _actor(user)
    if actor is None:
        return
    context = current()
    if context is not None:
        context.actor = actor  # the request is theirs now
    backend = getattr(user, "backend", None)
    _guard(
        record_detected,
        "login",
        actor=actor,
        details={"backend": backend} if isinstance(backend, str) else None,
    )


def _on_logout(*, user: Any = None, **_signal: Any) -> None:
    # logout() replaces request.user before the response: the signal is the last sight of
    # it, so the actor, tenant and project are settled now
    actor = _actor(user)
    context = current()
    if context is not None and context.actor is None and actor is not None:
        context.actor = actor
    _guard(record_detected, "logout", actor=actor)
    if context is not None:
        resolve_late(context)


def _on_login_failed(*, credentials: Any = None, **_signal: Any) -> None:
    values = credentials if isinstance(credentials, dict) else {}
    try:
        key = get_user_model().USERNAME_FIELD
    except Exception:  # noqa: BLE001 - a misconfigured user model costs the name, not the record
        key = "username"
    name = attempted(values.get(key, values.get("username")))
    _guard(
        record_detected,
        "login_failed",
        actor=Actor(name=name) if name else None,
        details={"username": name} if name else None,
    )


def _guard(recorder: Any, action: str, **kwargs: Any) -> None:
    try:
        recorder(action, resource=SESSION, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a login must never fail because of auditing
        warn("audit record of a Django auth signal failed", error=f"{type(exc).__name__}: {exc}")
