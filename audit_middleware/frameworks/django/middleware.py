"""The Django middleware: binds the audit context, finds route and actor, sends the record.

Like the WSGI and ASGI middlewares it binds a lazy stand-in (``DjangoRequest``): a request
whose method may be audited gets its context at once; any other gets one only if something
asks (a ``record()``, an ORM change), so an unaudited GET costs a copy of ``request.META``
and a ContextVar set and reset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import Token
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.middleware.common import CommonMiddleware
from django.shortcuts import resolve_url

from audit_middleware.capture.active import current_settings
from audit_middleware.capture.changes import settle
from audit_middleware.capture.context import (
    Bound,
    LazyContext,
    RequestContext,
    bind,
    in_request,
    opened,
    unbind,
    when_open,
)
from audit_middleware.capture.recorder import finish_request, may_audit, may_record, resolve_late
from audit_middleware.capture.settings import CaptureSettings
from audit_middleware.capture.wsgi import context_from_environ
from audit_middleware.frameworks import users
from audit_middleware.frameworks.django.apps import APP_NAMES
from audit_middleware.frameworks.django.auth import actor_from_user, connect_auth_signals
from audit_middleware.frameworks.django.conf import ADAPTER_KEYS, SETTING, option, raw_options
from audit_middleware.frameworks.users import UserMapper
from audit_middleware.model.event import Actor

__all__ = ["AuditMiddleware", "UserMapper", "actor_from_user"]

# What the response tells a record: status, redirect target, login page, route.
Outcome = tuple[int | None, str | None, str | None, str | None]


class DjangoRequest(LazyContext):
    """A request this middleware owns; its context is built from ``request.META`` on first use.

    ``status`` holds the ``Outcome`` once the response is known, for a context built later.
    """

    __slots__ = ("lookup",)

    def __init__(
        self, request: Any, kept: Any, config: CaptureSettings, lookup: Callable[[], Actor | None]
    ) -> None:
        super().__init__(request, kept, config)
        self.lookup = lookup

    def build(self) -> RequestContext:
        """The context, read from the request's META as it was when the request came in."""
        # Under ASGI Django fills request.META like a WSGI environ, so one reader serves both.
        context = context_from_environ(self.kept, self.config)
        _adopt(self.native, self.lookup, context)
        return context

    def apply_start(self, context: RequestContext) -> None:
        """The outcome of the response, kept by ``_settle`` before anything asked for the context."""
        _apply(self.status, context)


def _adopt(request: Any, lookup: Callable[[], Actor | None], context: RequestContext) -> None:
    context.native_request = request
    # for code that needs the actor before the response (a task queued by the view)
    context.actor_lookup = lookup


def _apply(outcome: Outcome, context: RequestContext, *, status: bool = True) -> None:
    """Put what ``outcome`` knows on ``context``, keeping what it already holds for the rest.

    ``status=False`` for an outer middleware's context: its own ``start_response`` tells the status.
    """
    code, location, login_path, route = outcome
    if route is not None:
        context.route = route
    if status and code is not None:
        context.status_code = code
    context.location = location or context.location
    context.login_path = login_path or context.login_path


class AuditMiddleware:
    """Audit each request: put ``"audit_middleware.frameworks.django.AuditMiddleware"`` in
    ``MIDDLEWARE`` after ``AuthenticationMiddleware``.

    Sync and async capable: under ASGI it runs on the event loop and moves only the
    user lookup and the app's resolvers (which may query the database) to a thread.
    When the app is also wrapped in :class:`audit_middleware.AuditMiddleware` (or the ASGI
    one), that outer middleware owns the request and this one only adds what Django
    knows (route, actor, the Django request for the resolvers).

    >>> MIDDLEWARE = [
    ...     "django.contrib.sessions.middleware.SessionMiddleware",
    ...     "django.contrib.auth.middleware.AuthenticationMiddleware",
    ...     "audit_middleware.frameworks.django.AuditMiddleware",
    ... ]
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        if set(raw_options()) - ADAPTER_KEYS and not any(apps.is_installed(name) for name in APP_NAMES):
            raise ImproperlyConfigured(
                f"{SETTING} is applied at start-up by the app 'audit_middleware.frameworks.django': "
                "add it to INSTALLED_APPS"
            )
        self.get_response = get_response
        self.user_mapper: UserMapper = option("user_mapper", actor_from_user)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            # Tells Django (and asgiref) that calling this instance returns a coroutine.
            markcoroutinefunction(self)
        connect_auth_signals()
        # CommonMiddleware placed before this one turns a 404 into its APPEND_SLASH redirect
        # after this one has seen the response
        self._slash_outside = _listed_before("django.middleware.common.CommonMiddleware")

    def __call__(self, request: Any) -> Any:
        """Handle one request (returns a coroutine when the chain is async)."""
        if self._async:
            return self._acall(request)
        lazy, token = self._begin(request)
        try:
            response = self.get_response(request)
        except BaseException:
            self._settle(request, lazy, failed=True)
            raise
        else:
            self._settle(request, lazy, response=response)
            return response
        finally:
            if token is not None:
                unbind(token)

    async def _acall(self, request: Any) -> Any:
        lazy, token = self._begin(request)
        try:
            response = await self.get_response(request)
        except BaseException:  # CancelledError too: a client that left still leaves a record
            await self._asettle(request, lazy, failed=True)
            raise
        else:
            await self._asettle(request, lazy, response=response)
            return response
        finally:
            if token is not None:
                unbind(token)

    async def _asettle(self, request: Any, lazy: DjangoRequest | None, **outcome: Any) -> None:
        settle()  # reads only connection state, no query: fine on the loop
        context = lazy.context if lazy is not None else opened()
        if context is not None and may_record(context):
            # request.user and the app's resolvers may query the database: not on the loop.
            await sync_to_async(self._settle)(request, lazy, **outcome)
        else:
            self._settle(request, lazy, **outcome)  # touches neither user nor resolvers

    def _outcome(self, request: Any, response: Any) -> Outcome:
        """Status, redirect target and login page (for the outcome rules) and route of the response."""
        match = getattr(request, "resolver_match", None)
        route = None
        if match is not None and match.route:
            route = match.route if match.route.startswith("/") else "/" + match.route
        if response is None:
            return None, None, None, route
        status, location, login_path = response.status_code, None, None
        if status == 404 and self._slash_outside:
            target = _slash_redirect(request)
            if target is not None:  # what the client will get: a redirect that adds a slash
                status, location = 301, target
        elif 300 <= status < 400:
            location, login_path = response.get("Location"), _login_path()
        return status, location, login_path, route

    def _settle(
        self, request: Any, lazy: DjangoRequest | None, *, response: Any = None, failed: bool = False
    ) -> None:
        outcome = self._outcome(request, response)
        settle()  # changes made in a test case's transaction join the request before it is judged
        context = lazy.context if lazy is not None else opened()
        if context is None:  # nothing asked for it: nothing to record, unless something asks later
            if lazy is None:
                when_open(partial(_apply, outcome, status=False))
            else:
                lazy.status = outcome
                lazy.end(failed=failed)
            return
        _apply(outcome, context)
        if may_record(context):
            if context.actor is None:
                context.actor = self._guarded(getattr(request, "user", None))
                context.actor_lookup = None  # looked up: the answer (perhaps nobody) is known
            resolve_late(context)
        if lazy is None:  # the outer middleware finishes the request
            return
        if response is not None and response.streaming:
            _finish_when_closed(response, context)
        else:
            finish_request(context, failed=failed)

    def _begin(self, request: Any) -> tuple[DjangoRequest | None, Token[Bound] | None]:
        lookup = partial(self._user_actor, request)
        if in_request():  # an outer audit middleware binds, finishes and unbinds
            when_open(partial(_adopt, request, lookup))
            return None, None
        config = current_settings()
        if may_audit(request.method or "GET", config):
            # built now, from META as it comes in: nothing else can see it yet
            lazy = DjangoRequest(request, request.META, config, lookup)
            lazy.context = lazy.build()
        else:
            # a copy to read later: a middleware after this one rewriting META changes no record
            lazy = DjangoRequest(request, dict(request.META), config, lookup)
        return lazy, bind(lazy)

    def _user_actor(self, request: Any) -> Actor | None:
        return self._guarded(getattr(request, "user", None))

    def _guarded(self, user: Any) -> Actor | None:
        # An app's mapper bug (or a failing user query) must cost neither the request nor its record.
        return None if user is None else users.guarded(self.user_mapper, user)


_OWN_NAMES = (
    "audit_middleware.frameworks.django.AuditMiddleware",
    "audit_middleware.frameworks.django.middleware.AuditMiddleware",
    "audit_middleware.django.AuditMiddleware",
)


def _listed_before(name: str) -> bool:
    """Whether middleware ``name`` comes before this one in ``settings.MIDDLEWARE`` (is outside it)."""
    listed = list(getattr(settings, "MIDDLEWARE", None) or ())
    own = next((listed.index(entry) for entry in _OWN_NAMES if entry in listed), None)
    return name in listed and own is not None and listed.index(name) < own


def _slash_redirect(request: Any) -> str | None:
    """Where CommonMiddleware will send a request it redirects to append a slash, or None."""
    try:
        if settings.DEBUG and request.method in ("POST", "PUT", "PATCH"):
            return None  # Django raises there instead of redirecting
        if CommonMiddleware(lambda _: None).should_redirect_with_slash(request):
            return str(request.get_full_path(force_append_slash=True))
    except Exception:  # noqa: BLE001 - the record keeps the status this middleware saw
        return None
    return None


def _login_path() -> str | None:
    try:
        return str(resolve_url(settings.LOGIN_URL))
    except Exception:  # noqa: BLE001 - an unresolvable LOGIN_URL leaves the path heuristics
        return None


class _StreamEnd:
    """Sends a streamed response's record once: when its content fails, or when it is closed."""

    __slots__ = ("_context", "_done")

    def __init__(self, context: RequestContext) -> None:
        self._context = context
        self._done = False

    def __call__(self, failed: bool = False) -> None:
        if not self._done:
            self._done = True
            finish_request(self._context, failed=failed)

    def watch(self, content: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from content
        except Exception:
            self(failed=True)
            raise

    async def awatch(self, content: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in content:
                yield chunk
        except Exception:
            await sync_to_async(self)(failed=True)
            raise


def _finish_when_closed(response: Any, context: RequestContext) -> None:
    # The record waits for the end of the stream, via HttpResponseBase.close(), which
    # runs response._resource_closers. Both handlers call close() when the response is
    # done: the WSGI server when the body is sent or the client has gone, the ASGI
    # handler after sending (a disconnect included), and close() runs whether or not
    # the content was ever iterated. Wrapping streaming_content alone would not do: an
    # unstarted generator's close() runs no code. The wrapper is there to record a
    # failure: a generator that raises mid-stream ends the ASGI handler before close().
    end = _StreamEnd(context)
    if (
        getattr(response, "file_to_stream", None) is None
    ):  # re-setting a FileResponse's content loses sendfile
        content = response.streaming_content
        response.streaming_content = end.awatch(content) if response.is_async else end.watch(content)
    response._resource_closers.append(end)
