"""Which store an operating command works on, and how it opens it.

The operating commands (``cli.archives``: retention and archives; ``cli.alerting``:
alerts) work on the store ``--store`` names (``sqlite:PATH`` or ``opensearch``, the same
default as the reading commands), or on OpenSearch with ``--url``/``--prefix``.
opensearch-py and the SQLite layout are imported only when a command uses them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from audit_middleware import env
from audit_middleware.errors import AuditError
from audit_middleware.model.tenancy import NO_TENANT, TenantSelector
from audit_middleware.model.timestamps import format_timestamp

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

    from audit_middleware.opensearch.connection import ConnectionSettings
    from audit_middleware.sqlite.connection import ConnectionPool

__all__ = [
    "NO_TENANT_OPTION",
    "connection_options",
    "connection_settings",
    "explained",
    "opensearch_client",
    "sqlite_path",
    "sqlite_pool",
    "store_option",
    "tenant_selector",
    "when",
]

NO_TENANT_OPTION = "-"
"""What ``--tenant`` (and ``--project``) take for the records made without one."""


def tenant_selector(option: str) -> TenantSelector:
    """A ``--tenant`` value as a query names it: ``'-'`` is ``NO_TENANT``, anything else a tenant id."""
    # On the command line '-' names the records without a tenant; in Python, NO_TENANT does.
    return NO_TENANT if option == NO_TENANT_OPTION else option


def store_option(command: Any) -> Any:
    """Add ``--store`` (the command receives ``store_spec``)."""
    return click.option(
        "--store",
        "store_spec",
        metavar="sqlite:PATH|opensearch",
        help=f"The store [default: opensearch if ${env.OPENSEARCH_URL} is set, "
        f"else sqlite:${env.SQLITE_PATH} or sqlite:{env.DEFAULT_SQLITE_PATH}].",
    )(command)


def sqlite_path(spec: str | None, *, create: bool = False) -> Path | None:
    """The SQLite file ``spec`` names, or None for OpenSearch; it must exist unless ``create``."""
    spec = spec or ("opensearch" if env.opensearch_configured() else f"sqlite:{env.sqlite_path()}")
    if spec == "opensearch":
        return None
    if spec.startswith("sqlite:") and len(spec) > len("sqlite:"):
        path = Path(spec.removeprefix("sqlite:"))
        if not create and not path.is_file():
            raise click.BadParameter(f"no audit store at {str(path)!r}", param_hint="--store")
        return path
    raise click.BadParameter(f"{spec!r}: use sqlite:PATH or opensearch", param_hint="--store")


@contextmanager
def explained() -> Iterator[None]:
    """The library's errors as one line and exit status 1, no traceback."""
    try:
        yield
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def sqlite_pool(path: Path) -> Iterator[ConnectionPool]:
    """Connections to the SQLite store at ``path`` (created, or upgraded, if need be)."""
    from audit_middleware.sqlite.connection import ConnectionPool  # noqa: PLC0415 - only for SQLite

    with explained():
        pool = ConnectionPool(path, busy_timeout=30.0, synchronous="NORMAL")
    try:
        yield pool
    finally:
        pool.close()


def connection_settings(url: str | None, prefix: str | None) -> ConnectionSettings:
    """OpenSearch settings from the environment, with ``--url`` and ``--prefix`` winning."""
    from audit_middleware.opensearch.connection import ConnectionSettings  # noqa: PLC0415 - only for OpenSearch

    variables = dict(os.environ)
    if url:
        variables[env.OPENSEARCH_URL] = url
    if prefix:
        variables[env.OPENSEARCH_PREFIX] = prefix
    return ConnectionSettings.from_env(variables)


@contextmanager
def opensearch_client(url: str | None, prefix: str | None) -> Iterator[tuple[OpenSearch, str]]:
    """A client and the name prefix, from the options or the environment."""
    from audit_middleware.opensearch.client import build_client  # noqa: PLC0415 - only for OpenSearch

    with explained():
        settings = connection_settings(url, prefix)
    client = build_client(settings)
    try:
        with explained():
            yield client, settings.prefix
    finally:
        client.close()


def when(unix_ms: int | None) -> str:
    """A time for people (``-`` when unknown)."""
    return "-" if not unix_ms else format_timestamp(unix_ms)


def connection_options(command: Any) -> Any:
    """Add ``--url`` and ``--prefix`` (OpenSearch)."""
    command = click.option(
        "--prefix", help="Name prefix of the data streams [default: $AUDIT_OPENSEARCH_PREFIX or audit]."
    )(command)
    return click.option(
        "--url", metavar="URL[,URL...]", help="OpenSearch URL(s) [default: $AUDIT_OPENSEARCH_URL]."
    )(command)
