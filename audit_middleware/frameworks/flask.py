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

from audit_middleware.capture.context import RequestContext, current, set_route
from audit_middleware.capture.recorder import finish_request, may_record, resolve_late
from audit_middleware.capture.wsgi import AuditMiddleware
from audit_middleware.frameworks import users
from audit_middleware.frameworks.users import UserMapper
from audit_middleware.model.event import Actor

__all__ = ["AuditExtension", "FlaskActorResolver", "UserMapper", "actor_from_user"]

FlaskActorResolver = Callable[[flask.Request], "Actor | None"]
# Set on the environ by after_request: a streamed body is recorded when it ends, as before.
_STREAMED = "audit_middleware.streamed"


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
    return users.actor_from_user(user, user_id=user.get_id())


class AuditExtension:
    """Audit a Flask app's requests; the Flask way to use :class:`~audit_middleware.AuditMiddleware`.

    ``actor_resolver(request)`` is called (inside the request context) when flask-login is
    not in use or nobody is logged in with it; it can read a bearer token, ``g`` or the
    session, and returns an ``Actor`` or None. ``user_mapper`` turns a flask-login user
    into an ``Actor``.

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
        app.wsgi_app = AuditMiddleware(app.wsgi_app)  # type: ignore[method-assign]
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        app.teardown_request(self._teardown_request)
        if flask_login is not None:
            # logout_user() clears current_user before the response: catch who it was.
            flask_login.user_logged_out.connect(self._on_logout, app)
        app.extensions["audit_middleware"] = self

    def _before_request(self) -> None:
        context = current()
        if context is not None:
            _bind(context)

    def _after_request(self, response: flask.Response) -> flask.Response:
        # Runs inside the request context, after the view and before start_response,
        # where the core resolves tenant and project with the configured resolvers.
        context = current()
        if context is not None:
            self._identify(context)
            # a generator body may still fail while it is sent; any other body is built by now
            flask.request.environ[_STREAMED] = inspect.isgenerator(response.response)
        return response

    def _teardown_request(self, exc: BaseException | None) -> None:
        context = current()
        if context is None:
            return
        if exc is not None:
            # An exception that propagates (PROPAGATE_EXCEPTIONS, testing) skips after_request
            # and start_response: teardown is the last moment the request context is alive.
            self._identify(context)
            resolve_late(context)
        if context.status_code is not None and not flask.request.environ.get(_STREAMED, False):
            # Flask has finished the request and the whole body is built: send the record
            # now rather than when the server closes the response, which a test client
            # that never reads the body never does. (No status: the exception propagates
            # and the middleware records it as a failure.)
            finish_request(context)

    def _identify(self, context: RequestContext) -> None:
        if context.native_request is not flask.request._get_current_object():  # type: ignore[attr-defined]
            _bind(context)  # an earlier before_request hook answered before ours ran
        if context.actor is None and may_record(context):
            context.actor = users.guarded(self._find_actor)

    def _find_actor(self) -> Actor | None:
        if flask_login is not None and hasattr(flask.current_app, "login_manager"):
            user = flask_login.current_user
            if user.is_authenticated:
                actor = self.user_mapper(user._get_current_object())
                if actor is not None:
                    return actor
        if self.actor_resolver is not None:
            return self.actor_resolver(flask.request._get_current_object())  # type: ignore[attr-defined]
        return None

    def _on_logout(self, _sender: flask.Flask, user: Any = None, **_extra: Any) -> None:
        context = current()
        if context is not None and context.actor is None and user is not None:
            context.actor = users.guarded(self.user_mapper, user)


def _bind(context: RequestContext) -> None:
    request = flask.request._get_current_object()  # type: ignore[attr-defined]
    # The real object, not the proxy: resolvers may run after the request context ends.
    context.native_request = request
    rule = request.url_rule
    if rule is not None:
        set_route(rule.rule)
