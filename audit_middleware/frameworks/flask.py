"""Flask integration: one extension gives a Flask app its audit trail.

    from flask import Flask
    from audit_middleware.frameworks.flask import AuditExtension

    app = Flask(__name__)
    audit = AuditExtension(app)        # or AuditExtension() + audit.init_app(app) in a factory

The extension wraps ``app.wsgi_app`` in :class:`audit_middleware.AuditMiddleware`, records
the matched URL rule (``/pods/<pod_id>/start``) as the route, hands the Flask request to
the resolvers given to ``configure()``, and finds the actor: flask-login's
``current_user`` when the app uses flask-login and the user is authenticated, else the
extension's ``actor_resolver`` callback, else the configured one.

With flask-login, ``login_user()`` and ``logout_user()`` are recorded as Login and Logout
(its signals), and a request ``login_required`` turned away is a ``failure``. flask-login
has no signal for a failed login: the login view says so in one line::

    audit_login_failed(form.username.data, reason="bad password")   # and audit_login(user)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from audit_middleware.errors import MissingDependencyError

try:
    import flask
except ImportError as exc:  # the one clear message this adapter's users need
    raise MissingDependencyError(
        "audit_middleware.frameworks.flask needs Flask, which is not installed: "
        "pip install opensearch-audit-middleware[flask]"
    ) from exc

try:
    import flask_login
except ImportError:  # optional: without it the actor comes from actor_resolver
    flask_login = None

from audit_middleware import logs
from audit_middleware.capture.context import (
    LazyContext,
    RequestContext,
    current,
    lazy_request,
)
from audit_middleware.capture.outcomes import LOGIN_REQUIRED
from audit_middleware.capture.recorder import finish_bound, may_record, record_detected, resolve_late
from audit_middleware.capture.wsgi import AuditMiddleware
from audit_middleware.frameworks import auth, users
from audit_middleware.frameworks.auth import SESSION, audit_login_failed
from audit_middleware.frameworks.users import UserMapper
from audit_middleware.model.event import Actor, AuditEvent

__all__ = [
    "AuditExtension",
    "FlaskActorResolver",
    "UserMapper",
    "actor_from_user",
    "audit_login",
    "audit_login_failed",
    "audit_logout",
]

FlaskActorResolver = Callable[[flask.Request], "Actor | None"]


def actor_from_user(user: Any) -> Actor | None:
    """Map a flask-login user to an audit ``Actor``: ``get_id()``, ``name`` (or
    ``username``), ``email`` and ``roles`` when the user has them.

    Pass your own mapper to ``AuditExtension(user_mapper=...)`` to read other attributes:

    >>> class User:
    ...     email = "ann@example.com"
    ...     def get_id(self):
    ...         return "42"
    >>> actor_from_user(User())
    Actor(id='42', name=None, email='ann@example.com', roles=(), kind='user', impersonator=None)
    """
    get_id = getattr(user, "get_id", None)
    if callable(get_id):
        return users.actor_from_user(user, user_id=get_id())
    return users.actor_from_user(user)  # an app's own user object (id, username, email)


class AuditExtension:
    """Audit a Flask app's requests; the Flask way to use :class:`~audit_middleware.AuditMiddleware`.

    ``actor_resolver(request)`` is called (inside the request context) when flask-login is
    not in use or nobody is logged in with it; it can read a bearer token, ``g`` or the
    session, and returns an ``Actor``, the app's user object, or None. ``user_mapper``
    turns a user object (flask-login's or the app's) into an ``Actor``.

    >>> from flask import Flask
    >>> from audit_middleware import Actor
    >>> app = Flask("pods")
    >>> audit = AuditExtension(app, actor_resolver=lambda request: Actor(id=request.headers.get("X-User")))
    >>> app.extensions["audit_middleware"] is audit
    True
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        actor_resolver: FlaskActorResolver | None = None,
        user_mapper: UserMapper = actor_from_user,
    ) -> None:
        self.actor_resolver = actor_resolver
        self.user_mapper = user_mapper
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Install the middleware and the request hooks on ``app`` (once per app)."""
        if app.extensions.get("audit_middleware") is not None:
            return
        # No before_request hook (each costs Flask's dispatch): if the view asks for the
        # context, _adopt runs then; if nothing does, after_request hands values over.
        app.wsgi_app = AuditMiddleware(app.wsgi_app, on_open=self._adopt)  # type: ignore[method-assign]
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)
        if flask_login is not None:
            flask_login.user_logged_in.connect(self._on_login, app)
            # logout_user() clears current_user before the response: the signal names who it was.
            flask_login.user_logged_out.connect(self._on_logout, app)
            flask_login.user_unauthorized.connect(self._on_unauthorized, app)
        app.extensions["audit_middleware"] = self

    def _adopt(self, context: RequestContext) -> None:
        # the context is being built on the request thread: inside Flask's request, if any
        if flask.has_request_context():
            _bind(context, flask.request._get_current_object())  # type: ignore[attr-defined]
            context.actor_lookup = self._lookup

    def _after_request(self, response: flask.Response) -> flask.Response:
        # Runs inside the request context, after the view and before start_response,
        # where the core resolves tenant and project with the configured resolvers.
        request = _audited_request()
        if request is None:
            return response
        # a generator streams; any other body is complete, so its record need not wait for close()
        request.complete = not inspect.isgenerator(response.response)
        login_path = _login_page() if 300 <= response.status_code < 400 else None
        if _stays_raw(request):
            self._hand_over(request, login_path)
        else:
            context = request.open()
            self._identify(context)
            context.login_path = login_path
        return response

    def _teardown_request(self, exc: BaseException | None) -> None:
        request = _audited_request()
        if request is None:
            return
        if exc is not None:
            # An exception that propagates (PROPAGATE_EXCEPTIONS, testing) skips after_request
            # and start_response: teardown is the last moment the request context is alive.
            if _stays_raw(request):
                self._hand_over(request, None)
            else:
                context = request.open()
                self._identify(context)
                resolve_late(context)
        if request.complete and request.status is not None:
            # The whole response is known: send the record now rather than when the server
            # closes the body (test clients that never read a body never close it).
            finish_bound(request)

    def _hand_over(self, request: LazyContext, login_path: str | None) -> None:
        # what the context would be told here, as values: the worker may be the one to build it
        rule = flask.request.url_rule
        route = None if rule is None else rule.rule
        actor = users.guarded(self._find_actor)

        def found(context: RequestContext) -> None:
            if route is not None:
                context.route = route
            if context.actor is None:
                context.actor = actor
                context.actor_lookup = None  # looked up: the answer (perhaps nobody) is known
            if login_path is not None:
                context.login_path = login_path

        request.hand_over(found)

    def _identify(self, context: RequestContext) -> None:
        request = flask.request._get_current_object()  # type: ignore[attr-defined]
        if context.native_request is not request:
            _bind(context, request)  # built outside Flask's request (a WSGI middleware's record())
        if context.actor is None and may_record(context):
            context.actor = users.guarded(self._find_actor)
            context.actor_lookup = None  # looked up: the answer (perhaps nobody) is known

    def _lookup(self) -> Actor | None:
        # for code that needs the actor before the response (a task queued by the view)
        return users.guarded(self._find_actor) if flask.has_request_context() else None

    def _find_actor(self) -> Actor | None:
        # the app itself, not the proxy: a proxy's missing attribute costs a raised exception
        app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
        if flask_login is not None and getattr(app, "login_manager", None) is not None:
            user = flask_login.current_user
            if user.is_authenticated:
                actor = self.user_mapper(user._get_current_object())
                if actor is not None:
                    return actor
        if self.actor_resolver is not None:
            found = self.actor_resolver(flask.request._get_current_object())  # type: ignore[attr-defined]
            # the callback may hand back the app's own user object (g.user, say): map it
            return found if found is None or isinstance(found, Actor) else self.user_mapper(found)
        return None

    def _on_login(self, _sender: flask.Flask, user: Any = None, **_extra: Any) -> None:
        actor = None if user is None else users.guarded(self.user_mapper, user)
        if actor is None:
            return
        context = current()
        if context is not None:
            context.actor = actor  # the request is theirs now
        _guarded_record("login", actor)

    def _on_logout(self, _sender: flask.Flask, user: Any = None, **_extra: Any) -> None:
        actor = None if user is None else users.guarded(self.user_mapper, user)
        context = current()
        if context is not None and context.actor is None and actor is not None:
            context.actor = actor
        _guarded_record("logout", actor)
        if context is not None:  # current_user is still the user: settle tenant and project now
            resolve_late(context)

    def _on_unauthorized(self, _sender: flask.Flask, **_extra: Any) -> None:
        context = current()
        if context is not None:
            context.denied = LOGIN_REQUIRED


def audit_login(user: Any, *, details: Any = None) -> AuditEvent:
    """Record that ``user`` logged in (mapped by the app's ``AuditExtension(user_mapper=...)``).

    With flask-login, ``login_user()`` records the login already; this is for apps
    without it. See :func:`audit_middleware.frameworks.auth.audit_login`.
    """
    return auth.audit_login(user, mapper=_mapper(), details=details)


def audit_logout(user: Any = None) -> AuditEvent:
    """Record a logout (flask-login's ``logout_user()`` does already)."""
    return auth.audit_logout(user, mapper=_mapper())


def _mapper() -> UserMapper:
    extension = flask.current_app.extensions.get("audit_middleware") if flask.has_app_context() else None
    mapper: UserMapper = extension.user_mapper if isinstance(extension, AuditExtension) else actor_from_user
    return mapper


def _guarded_record(action: str, actor: Actor | None) -> None:
    try:
        record_detected(action, resource=SESSION, actor=actor)
    except Exception as exc:  # noqa: BLE001 - a login must never fail because of auditing
        logs.warn("audit record of a flask-login signal failed", error=f"{type(exc).__name__}: {exc}")


def _login_page() -> str | None:
    manager = getattr(flask.current_app, "login_manager", None)
    view = getattr(manager, "login_view", None)
    if not view:
        return None
    try:
        return flask.url_for(view)
    except Exception:  # noqa: BLE001 - a login view that cannot be built leaves the path heuristics
        return None


def _audited_request() -> LazyContext | None:
    # the middleware's request, when it may be audited or something asked for its context
    request = lazy_request()
    if request is None or (request.context is None and not request.audited):
        return None
    return request


def _stays_raw(request: LazyContext) -> bool:
    # Nothing built its context, and no resolvers need it here: what the extension knows
    # is handed over as values, and the context is built where the record is derived.
    return request.context is None and not request.config.has_resolvers()


def _bind(context: RequestContext, request: flask.Request) -> None:
    # The real object, not the proxy: resolvers may run after the request context ends.
    context.native_request = request
    rule = request.url_rule
    if rule is not None:
        context.route = rule.rule
