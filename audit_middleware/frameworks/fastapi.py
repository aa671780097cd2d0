"""FastAPI and Starlette integration: the ASGI middleware, the route template, and the
hand-over of the user an authentication dependency found.

    from fastapi import Depends, FastAPI
    from audit_middleware.frameworks.fastapi import audit_actor, install

    app = FastAPI()
    install(app)                                   # or install(app, sink=..., rules=...)
    CurrentUser = Depends(audit_actor(get_current_user))

    @app.post("/pods/{pod_id}/start")
    def start(pod_id: str, user: User = CurrentUser): ...

``install`` works for a plain Starlette app too; only ``audit_actor`` needs FastAPI.

A token endpoint authenticates with a form, not with a dependency: it names the user
(and the failures) in one line each::

    @app.post("/token")
    def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]):
        user = authenticate(form.username, form.password)
        if user is None:
            audit_login_failed(form.username, reason="bad password")
            raise HTTPException(400, "Incorrect username or password")
        audit_login(user)
        return {"access_token": ..., "token_type": "bearer"}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from audit_middleware.errors import MissingDependencyError

try:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # the one clear message this adapter's users need
    raise MissingDependencyError(
        "audit_middleware.frameworks.fastapi needs Starlette (FastAPI's base), which is not installed: "
        "install opensearch-audit-middleware[fastapi]"
    ) from exc

from audit_middleware.capture.asgi import ASGIAuditMiddleware
from audit_middleware.capture.context import RequestContext, in_request, set_actor, when_open
from audit_middleware.config import configure
from audit_middleware.frameworks import users
from audit_middleware.frameworks.auth import audit_login, audit_login_failed, audit_logout
from audit_middleware.frameworks.users import UserMapper
from audit_middleware.model.event import Actor

_INSTALL_HINT = "install opensearch-audit-middleware[fastapi]"

__all__ = [
    "RouteTemplate",
    "UserMapper",
    "actor_from_user",
    "audit_actor",
    "audit_login",
    "audit_login_failed",
    "audit_logout",
    "install",
]


def install(app: Starlette, **configure_kwargs: Any) -> None:
    """Audit a FastAPI or Starlette app; keyword arguments go to :func:`~audit_middleware.configure`.

    Without keyword arguments the current configuration is kept. Call it before the
    app starts serving (Starlette refuses new middleware after that).

    >>> from starlette.applications import Starlette
    >>> from audit_middleware.sinks import MemorySink
    >>> app = Starlette()
    >>> install(app, sink=MemorySink())
    """
    if configure_kwargs:
        configure(**configure_kwargs)
    # add_middleware puts each new one outermost: the audit middleware binds the context,
    # and inside it RouteTemplate reports the route the router matched.
    app.add_middleware(RouteTemplate)
    app.add_middleware(ASGIAuditMiddleware)


class RouteTemplate:
    """Reports the matched route's template (``/pods/{pod_id}``) to the audit context.

    The router stores the route in ``scope["route"]``, on the same scope dict, once it
    matched; this reads it when the response starts or the app raises. ``install`` adds
    it; add it yourself inside :class:`~audit_middleware.ASGIAuditMiddleware` otherwise:

    >>> from starlette.applications import Starlette
    >>> from audit_middleware import ASGIAuditMiddleware
    >>> app = Starlette()
    >>> app.add_middleware(RouteTemplate)        # inner: added first
    >>> app.add_middleware(ASGIAuditMiddleware)  # outer: binds the context
    """

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; note its route template on the way back."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_route(message: Message) -> None:
            if message["type"] == "http.response.start":
                _note_route(scope)
            await send(message)

        try:
            await self.app(scope, receive, send_with_route)
        finally:
            _note_route(scope)  # an exception skipped the response start


def _note_route(scope: Scope) -> None:
    path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return

    def note(context: RequestContext) -> None:
        if context.route is None:
            context.route = path

    when_open(note)  # builds no context: an unaudited request may never need one


def actor_from_user(user: Any) -> Actor | None:
    """Map what an authentication dependency returned to an audit ``Actor``.

    Takes an ``Actor`` as is; reads a mapping of token claims (``sub``, ``name`` or
    ``preferred_username``, ``email``, ``roles``) or a user object (``id``, ``name`` or
    ``username``, ``email``, ``roles``).

    >>> actor_from_user({"sub": "42", "email": "ann@example.com"})
    Actor(id='42', name=None, email='ann@example.com', roles=(), kind='user', impersonator=None)
    """
    return users.actor_from_user(user)


def audit_actor(
    dependency: Callable[..., Any], *, mapper: UserMapper = actor_from_user
) -> Callable[..., Awaitable[Any]]:
    """Wrap an authentication dependency: the user it returns becomes the request's actor.

    The new dependency returns the same user, so routes use it in place of the original.
    It works whether ``dependency`` is ``async def`` or ``def`` (FastAPI runs those in a
    thread, on a copy of the context): the actor is stored on the request's shared
    context object, not in a ContextVar of its own, so the middleware sees it.

    >>> from fastapi import Depends
    >>> def current_user() -> dict[str, str]:
    ...     return {"sub": "42"}
    >>> CurrentUser = Depends(audit_actor(current_user))
    """
    try:
        from fastapi import Depends  # noqa: PLC0415 - optional: install() also serves plain Starlette
    except ImportError as exc:
        raise MissingDependencyError(
            f"audit_actor needs FastAPI, which is not installed: {_INSTALL_HINT}"
        ) from exc

    async def audited_user(user: Any = Depends(dependency)) -> Any:  # noqa: B008 - FastAPI's idiom
        if user is not None and in_request():  # an app run without install() is left alone
            actor = users.guarded(mapper, user)
            if actor is not None:
                set_actor(actor)
        return user

    audited_user.__name__ = f"audited_{getattr(dependency, '__name__', 'user')}"
    return audited_user
