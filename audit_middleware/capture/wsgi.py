"""WSGI middleware: one line gives any WSGI app (Flask, Django, plain) its audit trail.

    app = AuditMiddleware(app)

For each request it binds a ``LazyContext`` (a copy of the environ, and the status
passed to ``start_response``); the ``RequestContext`` is built from it when something
asks (``record()``, an adapter, a resolver, an ORM change), else, for a method that may
be audited, on the background worker. When the response is closed it sends the
request's audit record: the explicit ``record()`` calls made while handling it, or one
automatic record for a state-changing request. An unaudited request whose app never
asked for its context costs a copy of the environ and a ContextVar set and reset. An
exception from the app is recorded as a 500 failure and re-raised untouched. A response
dropped without ``close()`` (a test client that never reads the body) sends its record
when it is garbage-collected; the Flask adapter sends it as soon as Flask has finished
the request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from audit_middleware.capture.active import current_settings
from audit_middleware.capture.context import LazyContext, RequestContext, bind, unbind_here
from audit_middleware.capture.headers import decode_header
from audit_middleware.capture.recorder import finish_bound, may_audit, response_begun

if TYPE_CHECKING:
    from audit_middleware.capture.settings import CaptureSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_MAX_PATH = 2048
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


def _text(value: str | None) -> str | None:
    # WSGI hands headers over as latin-1 decoded str; re-decode as UTF-8 without raising.
    if value is None or value.isascii():
        return value
    return decode_header(value)


def raw_environ(environ: WSGIEnvironment) -> dict[str, Any]:
    """What an audited request keeps of its environ: a copy of the keys its context reads
    (with the defaults :func:`context_from_environ` reads them with).

    Taken when the request comes in (an inner middleware rewriting the environ changes no
    record), and no more: the request may be queued as it is, and must not hold its body
    stream or the server's objects while it waits. Written out, not a loop over the keys:
    every audited request pays for it.
    """
    get = environ.get
    return {
        "REQUEST_METHOD": get("REQUEST_METHOD", "GET"),
        "SCRIPT_NAME": get("SCRIPT_NAME", ""),
        "PATH_INFO": get("PATH_INFO", ""),
        "REMOTE_ADDR": get("REMOTE_ADDR"),
        "HTTP_X_FORWARDED_FOR": get("HTTP_X_FORWARDED_FOR"),
        "HTTP_FORWARDED": get("HTTP_FORWARDED"),
        "HTTP_USER_AGENT": get("HTTP_USER_AGENT"),
        "HTTP_X_REQUEST_ID": get("HTTP_X_REQUEST_ID"),
        "HTTP_TRACEPARENT": get("HTTP_TRACEPARENT"),
    }


def context_from_environ(environ: WSGIEnvironment, config: CaptureSettings | None = None) -> RequestContext:
    """Read what the audit record needs from a WSGI environ (raw values, parsed later)."""
    config = config or current_settings()
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if not path.isascii():
        path = decode_header(path) or ""
    return RequestContext(
        method=environ.get("REQUEST_METHOD", "GET").upper(),
        path=path[:_MAX_PATH] or "/",
        peer=environ.get("REMOTE_ADDR"),
        x_forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
        forwarded=environ.get("HTTP_FORWARDED"),
        user_agent_raw=_text(environ.get("HTTP_USER_AGENT")),
        request_id_raw=environ.get("HTTP_X_REQUEST_ID"),
        traceparent=environ.get("HTTP_TRACEPARENT"),
        trust=config.trust,
        user_agent_limit=config.user_agent_limit,
        native_request=environ,
    )


class EnvironRequest(LazyContext):
    """The request as the server handed it over: its context is built from it on first use."""

    __slots__ = ()

    def build(self) -> RequestContext:
        """The context, read from the environ as it was when the request came in."""
        context = context_from_environ(self.kept, self.config)
        context.native_request = self.native
        return context

    def apply_start(self, context: RequestContext) -> None:
        """The status and redirect target of the ``start_response`` kept so far."""
        response_started(context, self.status, self.headers)


def response_started(context: RequestContext, status: str, headers: list[tuple[str, str]]) -> None:
    """Note the status ``start_response`` was given, and where a redirect sends the client."""
    try:
        code = context.status_code = int(status[:3])
    except ValueError:
        context.status_code = None
    else:
        if 300 <= code < 400:  # where it sends the client, for the outcome rules
            context.location = next((v for k, v in headers if k.lower() == "location"), None)


class AuditMiddleware:
    """Wrap a WSGI application so its requests produce audit records.

    >>> def app(environ, start_response):
    ...     start_response("204 No Content", [])
    ...     return []
    >>> wrapped = AuditMiddleware(app)

    ``on_open`` is for framework adapters: it runs on each request's context when the
    context is built on the request thread (never on the worker), to hand over what the
    framework knows there (its request object, how to find the user).
    """

    __slots__ = ("app", "on_open")

    def __init__(
        self, app: WSGIApplication, *, on_open: Callable[[RequestContext], None] | None = None
    ) -> None:
        self.app = app
        self.on_open = on_open

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request."""
        config = current_settings()
        audited = may_audit(environ.get("REQUEST_METHOD", "GET"), config)
        # a copy to read later: an inner middleware rewriting the environ (ProxyFix) changes no
        # record; a request that is not audited is never queued, and a whole copy is cheaper
        kept = raw_environ(environ) if audited else environ.copy()
        request = EnvironRequest(environ, kept, config, audited)
        if self.on_open is not None:
            request.hooks = [self.on_open]
        token = bind(request)

        def audited_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            # first the raw values, then read context: see LazyContext.open
            request.status, request.headers = status, headers
            # The app's authentication has run; the framework's request is still alive.
            response_begun(request)
            return start_response(status, headers, exc_info)

        try:
            response = self.app(environ, audited_start_response)
        except BaseException:
            finish_bound(request, failed=True)
            raise
        finally:
            unbind_here(token)  # bound in this very call: the fallback of unbind() is never needed
        if request.context is None and type(response) is list:
            # Nothing asked for the context and no app code runs from here: the response is
            # known in full, so its record (if its method is audited) is handed over now.
            finish_bound(request, failed=False)
            return response
        return AuditedResponse(response, request)


_END: Any = object()  # what next() answers at the end of the app's iterable, instead of raising


class AuditedResponse:
    """The app's response iterable, re-binding the request while it is iterated and
    sending the audit record once, when the server closes it (or iteration fails)."""

    __slots__ = ("_finished", "_request", "_response")

    def __init__(self, response: Iterable[bytes], request: LazyContext) -> None:
        self._response = response
        self._request = request
        self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        if type(self._response) is list:
            # a list runs no app code while iterated: no context to bind, the record is sent at close()
            return iter(self._response)
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        # A generator, and next() with a default: the end of the body raises no StopIteration
        # through Python code (a raise and a catch per response cost about 2 µs).
        request, iterator = self._request, None
        while True:
            token = bind(request)  # app code (a generator's) may run for each chunk
            try:
                if iterator is None:
                    iterator = iter(self._response)
                chunk = next(iterator, _END)
            except BaseException:
                self._finish(failed=True)
                raise
            finally:
                unbind_here(token)
            if chunk is _END:
                return
            yield chunk

    def close(self) -> None:
        """Close the app's iterable (PEP 3333) and send the record."""
        token = bind(self._request)
        try:
            close = getattr(self._response, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._finish(failed=True)
            raise
        finally:
            unbind_here(token)
        self._finish(failed=False)

    def _finish(self, *, failed: bool) -> None:
        if not self._finished:
            self._finished = True
            finish_bound(self._request, failed=failed)

    def __getattr__(self, name: str) -> Any:
        # Servers look for extras such as file_wrapper's attributes on the iterable.
        return getattr(self._response, name)

    def __del__(self) -> None:
        # A server or test client that drops the response without close() (PEP 3333 asks
        # for it) still sends its record.
        if not self._finished:
            with contextlib.suppress(Exception):
                self._finish(failed=False)
