"""One translation of opensearch-py errors into sentences a person can act on.

Set-up, the store, ``status`` and the shipper all talk to the same cluster and fail in
the same ways (bad credentials, missing privileges, TLS, unreachable); they say so in
the same words, naming what they were trying to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConflictError,
    ConnectionError,
    ConnectionTimeout,
    NotFoundError,
    SSLError,
    TransportError,
)

from audit_middleware import env
from audit_middleware.errors import AuditError

__all__ = [
    "describe",
    "explained",
    "plugin_index_starting",
    "reason",
    "retry_while_plugin_index_starts",
    "where",
]

T = TypeVar("T")


def reason(exc: TransportError) -> str:
    """The server's own reason (``type: reason``), or the client's error text."""
    info = exc.info
    if isinstance(info, Mapping):
        error = info.get("error")
        if isinstance(error, Mapping):
            return f"{error.get('type', exc.error)}: {error.get('reason', '')}".rstrip(": ")
        if error:
            return str(error)
    return str(exc.error)


def where(client: Any) -> str:
    """The URLs a client talks to, for messages."""
    hosts = getattr(getattr(client, "transport", None), "hosts", None) or []
    urls = [
        "{}://{}:{}{}".format(
            "https" if host.get("use_ssl") else "http",
            host.get("host"),
            host.get("port"),
            host.get("url_prefix", ""),
        )
        for host in hosts
    ]
    return ", ".join(urls) or "the configured hosts"


def describe(  # noqa: PLR0911 - one sentence per kind of failure
    exc: TransportError, what: str, *, client: Any = None, permissions: str | None = None
) -> str:
    """One sentence for an error raised while trying to ``what``.

    ``permissions`` names what the operation needs, for a 403.
    """
    at = f" at {where(client)}" if client is not None else ""
    if isinstance(exc, AuthenticationException):
        return (
            f"OpenSearch{at} rejected the credentials (401) when trying to {what}: check "
            f"{env.OPENSEARCH_USERNAME} / {env.OPENSEARCH_PASSWORD}, "
            "or the AWS credentials when signing with SigV4"
        )
    if isinstance(exc, AuthorizationException):
        needs = f": {permissions}" if permissions else ""
        return f"the OpenSearch user may not {what} (403 {reason(exc)}){needs}"
    if isinstance(exc, ConflictError):
        return f"could not {what}: it was changed by someone else meanwhile ({reason(exc)}); try again"
    if isinstance(exc, SSLError):
        return (
            f"TLS handshake with OpenSearch{at} failed when trying to {what}: {exc.error}; set "
            f"{env.OPENSEARCH_CA_CERTS} to the CA bundle that signed the server certificate"
        )
    if isinstance(exc, ConnectionTimeout):
        return f"OpenSearch{at} did not answer in time when trying to {what}"
    if isinstance(exc, ConnectionError):
        return f"cannot connect to OpenSearch{at} to {what}: {exc.error}"
    if isinstance(exc, NotFoundError):
        return f"OpenSearch could not {what}: {reason(exc)}"
    return f"OpenSearch refused to {what}: HTTP {exc.status_code} {reason(exc)}"


@contextmanager
def explained(
    what: str,
    error: type[AuditError],
    *,
    client: Any = None,
    permissions: str | None = None,
) -> Iterator[None]:
    """Raise ``error(describe(...))`` for any client error inside the block; other errors pass."""
    try:
        yield
    except TransportError as exc:
        raise error(describe(exc, what, client=client, permissions=permissions)) from exc


def plugin_index_starting(exc: TransportError) -> bool:
    """A plugin's own index (ISM's or Alerting's config) is being made on first use.

    Two set-ups making it at once (two app processes at first start) get 409 "index
    [.opendistro-...] already exists"; until its shard has started, requests that read it
    get 503. Neither is a conflict over what was asked, so the request may be repeated.
    """
    if exc.status_code == 503:
        return True
    text = reason(exc)
    return exc.status_code == 409 and "[.opendistro-" in text and "already exists" in text


def retry_while_plugin_index_starts(call: Callable[[], T], *, attempts: int = 8, pause: float = 0.5) -> T:
    """``call()``, repeated with a growing pause while :func:`plugin_index_starting` says so."""
    for attempt in range(1, attempts):
        try:
            return call()
        except TransportError as exc:  # noqa: PERF203 - a few attempts of a network call
            if not plugin_index_starting(exc):
                raise
            time.sleep(pause * attempt)
    return call()
