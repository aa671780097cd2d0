"""Reading commands: ``search``, ``show``, ``export`` and ``tail``, over either store.

Each takes the same filters (``filter_options``) and a ``--store``; the stores are
imported when opened, so ``--help`` loads neither SQLite's nor OpenSearch's.

Every command is itself recorded, into the store it reads (``reads``): ``search`` and
``tail`` as one ``audit_viewed`` each (not one per poll), ``show`` as an
``audit_viewed`` of that entry, ``export`` as ``audit_exported``. Those records are
left out of what the commands show unless ``--include-reads`` is given (or ``--action``
names them), so reading the log does not fill it.
"""

from __future__ import annotations

import functools
import getpass
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from audit_middleware import env
from audit_middleware.cli.render import echo_events, event_details, table_header, terminal_json
from audit_middleware.cli.targets import NO_TENANT_OPTION, tenant_selector
from audit_middleware.errors import AuditError
from audit_middleware.model.event import OUTCOMES, Actor
from audit_middleware.model.tenancy import NO_PROJECT, ProjectSelector, TenantSelector
from audit_middleware.query.export import EXPORT_FORMATS, ExportFormat
from audit_middleware.query.model import DEFAULT_PAGE_SIZE, AuditQuery, QueryError
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.query.store import AuditStore
from audit_middleware.reads import export_audited, record_read, without_reads
from audit_middleware.sinks.base import Sink

__all__ = ["export", "filter_options", "open_store", "search", "show", "tail"]

F = TypeVar("F", bound=Callable[..., Any])

_FILTERS = (
    "tenant",
    "action",
    "resource_type",
    "user",
    "project",
    "outcome",
    "since",
    "start",
    "end",
    "timezone_name",
    "search",
    "page_size",
    "cursor",
    "include_reads",
)


def _project(option: str | None) -> ProjectSelector | None:
    return NO_PROJECT if option == NO_TENANT_OPTION else option


def _default_store_spec() -> str:
    if env.opensearch_configured():
        return "opensearch"
    return f"sqlite:{env.sqlite_path()}"


def open_store(spec: str | None, *, include_restored: bool = False) -> AuditStore:
    """The store named by ``--store`` (``sqlite:PATH`` or ``opensearch``), or the default one.

    ``include_restored`` (OpenSearch) also reads the archives restored from snapshots.
    """
    spec = spec or _default_store_spec()
    if include_restored and spec != "opensearch":
        raise click.BadParameter(
            "--include-restored reads restored OpenSearch archives; for SQLite, restore an archive into "
            "a file with `audit-middleware archive restore FILE --into PATH` and read that file",
            param_hint="--include-restored",
        )
    if spec == "opensearch":
        try:
            from audit_middleware.query.opensearch_store import OpenSearchStore  # noqa: PLC0415 - optional
        except ImportError as exc:
            raise click.ClickException(
                f"the OpenSearch store is not available in this installation ({exc}); use --store sqlite:PATH"
            ) from exc
        from audit_middleware.opensearch.connection import ConnectionSettings  # noqa: PLC0415

        return OpenSearchStore.from_settings(ConnectionSettings.from_env(), include_restored=include_restored)
    if spec.startswith("sqlite:") and len(spec) > len("sqlite:"):
        path = Path(spec.removeprefix("sqlite:"))
        if not path.is_file():
            raise click.BadParameter(f"no audit store at {str(path)!r}", param_hint="--store")
        from audit_middleware.query.sqlite_store import SQLiteStore  # noqa: PLC0415 - only when used

        return SQLiteStore(path)
    raise click.BadParameter(f"{spec!r}: use sqlite:PATH or opensearch", param_hint="--store")


@contextmanager
def _explained() -> Iterator[None]:
    """Bad filters are usage errors (exit 2); a failing store is an error (exit 1). No tracebacks."""
    try:
        yield
    except QueryError as exc:
        raise click.UsageError(str(exc)) from exc
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc


def _with_store(command: F) -> F:
    """Add ``--store``; the command receives the opened ``store`` and it is closed afterwards."""

    @click.option(
        "--store",
        "store_spec",
        metavar="sqlite:PATH|opensearch",
        help=f"Where the records are [default: opensearch if ${env.OPENSEARCH_URL} is set, "
        f"else sqlite:${env.SQLITE_PATH} or sqlite:{env.DEFAULT_SQLITE_PATH}].",
    )
    @click.option(
        "--include-restored",
        is_flag=True,
        help="Also read the archives restored from snapshots (OpenSearch; see `archive restore`).",
    )
    @functools.wraps(command)
    def run(*args: Any, store_spec: str | None, include_restored: bool, **kwargs: Any) -> Any:
        with _explained():
            store = open_store(store_spec, include_restored=include_restored)
            try:
                return command(*args, store=store, **kwargs)
            finally:
                store.close()

    return run  # type: ignore[return-value]


def filter_options(command: F) -> F:
    """Add the shared filter options; the command receives them as one ``query``."""

    @click.option(
        "--tenant",
        required=True,
        help=f"Tenant (organization) id; {NO_TENANT_OPTION!r}: records without one.",
    )
    @click.option(
        "--action",
        multiple=True,
        metavar="ACTION",
        help="Action id or label, or a group: create, update, delete, start-stop, all. Repeatable.",
    )
    @click.option(
        "--resource-type", multiple=True, metavar="TYPE", help="Resource type, e.g. pod. Repeatable."
    )
    @click.option("--user", metavar="ID|EMAIL", help="A user id, or an email (any case).")
    @click.option(
        "--project", metavar="ID", help=f"Project id; {NO_TENANT_OPTION!r}: records outside any project."
    )
    @click.option("--outcome", type=click.Choice(sorted(OUTCOMES)), help="Outcome.")
    @click.option("--since", metavar="24h|7d|30d", help="The last 24h, 7d, 30d (or any <n>m|h|d|w).")
    @click.option("--from", "start", metavar="DATE", help="Start (inclusive), ISO 8601.")
    @click.option("--to", "end", metavar="DATE", help="End (exclusive; a date alone includes that day).")
    @click.option(
        "--timezone", "timezone_name", metavar="ZONE", help="IANA zone of --from/--to [default: UTC]."
    )
    @click.option("--search", metavar="TEXT", help="Words matching resource name, action or user email.")
    @click.option(
        "--limit",
        "--page-size",
        "page_size",
        default=DEFAULT_PAGE_SIZE,
        show_default=True,
        metavar="N",
        help="Events per page (search, tail).",
    )
    @click.option("--cursor", metavar="TOKEN", help="Continue after a previous page (its printed cursor).")
    @click.option(
        "--include-reads", is_flag=True, help="Also show the records of reads of the log (views, exports)."
    )
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        filters = {name: kwargs.pop(name) for name in _FILTERS}
        include_reads = filters.pop("include_reads")
        with _explained():
            query = AuditQuery.build(
                tenant_selector(filters.pop("tenant")),
                project=_project(filters.pop("project")),
                action=filters.pop("action"),
                resource_type=filters.pop("resource_type"),
                **filters,
            )
        return command(*args, query=query if include_reads else without_reads(query), **kwargs)

    return run  # type: ignore[return-value]


@click.command()
@filter_options
@_with_store
@click.option("--json", "as_json", is_flag=True, help="Print stored documents, one JSON object per line.")
def search(*, store: AuditStore, query: AuditQuery, as_json: bool) -> None:
    """Print one page of matching events, newest first, and the cursor of the next page."""
    with _explained():
        page = store.search(query)
        _record_view(
            store, query.tenant, {"filters": query.describe(), "view": "search", "rows": len(page.events)}
        )
    if not as_json:
        click.echo(table_header())
    echo_events(page.events, as_json=as_json)
    if not page.events:
        click.echo("no matching events", err=True)
    elif page.next_cursor or query.cursor:
        # beside a page that is not the whole answer: the total, exact up to 10,000 ("10,000+")
        with _explained():
            total = store.count_bounded(query)
        click.echo(f"{total} matching events", err=True)
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}", err=True)


@click.command()
@click.argument("event_id")
@click.option(
    "--tenant",
    required=True,
    help=f"Tenant (organization) id the event belongs to; {NO_TENANT_OPTION!r}: records without one.",
)
@_with_store
@click.option("--json", "as_json", is_flag=True, help="Print the stored document.")
def show(*, store: AuditStore, event_id: str, tenant: str, as_json: bool) -> None:
    """Print every detail of one event, including the change diff (field: old -> new)."""
    with _explained():
        event = store.get(tenant_selector(tenant), event_id)
        _record_view(
            store,
            tenant_selector(tenant),
            {"view": "entry", "found": event is not None},
            entry_id=event_id[:128] or None,
        )
    if event is None:
        raise click.ClickException(f"no event {event_id!r} in tenant {tenant!r}")
    if as_json:
        click.echo(terminal_json(event.to_document()))
    else:
        for line in event_details(event):
            click.echo(line)


@click.command()
@filter_options
@_with_store
@click.option(
    "--format",
    "export_format",
    type=click.Choice(EXPORT_FORMATS),
    default="csv",
    show_default=True,
    help="CSV (RFC 4180, UTF-8) or NDJSON (the stored documents).",
)
@click.option(
    "-o", "--output", required=True, metavar="FILE", help="Where to write ('-' for standard output)."
)
@click.option("--bom", is_flag=True, help="Start the CSV with a UTF-8 byte order mark (for Excel).")
@click.option(
    "--with-chain",
    is_flag=True,
    help="NDJSON that `verify --file` checks on its own: the records, link lines (no content) "
    "for the other records of their chains, and the checkpoints (SQLite store).",
)
def export(
    *, store: AuditStore, query: AuditQuery, export_format: str, output: str, bom: bool, with_chain: bool
) -> None:
    """Write every matching event (not one page) to FILE; the export itself is audited.

    A progress bar shows on a terminal. CSV cells a spreadsheet would run as a formula
    (= + - @, tab, CR, also after invisible characters or a ';') get a leading ' so
    spreadsheets show them as text.
    """
    fmt: ExportFormat = "ndjson" if export_format == "ndjson" else "csv"
    if with_chain and fmt != "ndjson":
        raise click.UsageError("--with-chain writes NDJSON: add --format ndjson (a CSV is not verified)")
    show_progress = sys.stderr.isatty() and output != "-"
    with _explained(), _record_sink(store) as sink, click.open_file(output, "wb") as out:
        run = functools.partial(
            export_audited,
            store,
            query,
            out,
            sink,
            actor=_cli_actor(),
            format=fmt,
            bom=bom,
            with_chain=with_chain,
        )
        if show_progress:
            total = store.count(query)
            with click.progressbar(length=total, label="Exporting", file=sys.stderr) as bar:
                rows = run(progress=bar.update)
        else:
            rows = run()
    if output != "-":
        click.echo(f"exported {rows} events to {output}", err=True)


@click.command()
@filter_options
@_with_store
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they arrive (Ctrl-C ends).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@click.option(
    "--stop-after", type=click.FloatRange(min=0), metavar="SECONDS", help="Stop following after SECONDS."
)
@click.option("--json", "as_json", is_flag=True, help="Print stored documents, one JSON object per line.")
def tail(
    *,
    store: AuditStore,
    query: AuditQuery,
    follow: bool,
    interval: float,
    stop_after: float | None,
    as_json: bool,
) -> None:
    """Print the latest events, oldest first; with -f keep printing new ones below them."""
    stop = threading.Event()
    timer = threading.Timer(stop_after, stop.set) if stop_after is not None else None
    with _explained():
        live = store.tail(query.next_page(None), poll_interval=interval, stop=stop) if follow else None
        latest = store.search(query.next_page(None)).events
        _record_view(store, query.tenant, {"filters": query.describe(), "view": "tail", "follow": follow})
        if not as_json:
            click.echo(table_header())
        echo_events(reversed(latest), as_json=as_json)
        if live is None:
            return
        # an event stored between tail() and search() is in both: print it once
        shown = {event.id for event in latest}
        if timer is not None:
            timer.start()
        try:
            for batch in live:
                echo_events((e for e in reversed(batch) if e.id not in shown), as_json=as_json)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            if timer is not None:
                timer.cancel()


@contextmanager
def _record_sink(store: AuditStore) -> Iterator[Sink]:
    """A sink into the store being read, for this command's own audit record."""
    sink: Sink
    if isinstance(store, SQLiteStore):
        from audit_middleware.sinks.sqlite import SQLiteSink  # noqa: PLC0415 - only when exporting

        sink = SQLiteSink(store.path)
    else:
        from audit_middleware.opensearch.connection import ConnectionSettings  # noqa: PLC0415
        from audit_middleware.sinks.opensearch.sink import OpenSearchSink  # noqa: PLC0415

        sink = OpenSearchSink(settings=ConnectionSettings.from_env())
    try:
        yield sink
    finally:
        sink.close(timeout=10.0)


def _record_view(
    store: AuditStore, tenant: TenantSelector, details: dict[str, Any], entry_id: str | None = None
) -> None:
    """Record this command's read as an ``audit_viewed`` event in the store it read."""
    with _record_sink(store) as sink:
        record_read(
            sink, "audit_viewed", actor=_cli_actor(), tenant=tenant, details=details, entry_id=entry_id
        )


def _cli_actor() -> Actor:
    """Who runs the CLI: the operating-system user on this host."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return Actor(id=f"cli:{user}@{socket.gethostname()}", name=user)
