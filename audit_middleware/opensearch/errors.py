"""One translation of opensearch-py errors into sentences a person can act on.

Set-up, the store, ``status`` and the shipper all talk to the same cluster and fail in
the same ways (bad credentials, missing privileges, TLS, unreachable); they say so in
the same words, naming what they were trying to do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

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

__all__ = ["describe", "explained", "reason", "where"]


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
