"""The ``audit-middleware`` command line.

::

    audit-middleware setup                                   # local node, defaults
    audit-middleware setup --url https://search.example:9200 --extended-days 2555 \\
        --snapshot-repository audit-archive --dry-run

    audit-middleware search --tenant acme --action start-stop --since 7d --search "web"
    audit-middleware show --tenant acme 0192c1a0-...
    audit-middleware export --tenant acme --since 30d --format csv -o audit.csv
    audit-middleware tail --tenant acme -f

Connection settings come from the ``AUDIT_OPENSEARCH_*`` environment variables
(``audit_middleware.opensearch.connection``); options given here win over them.

The reading commands use ``--store sqlite:PATH`` or ``--store opensearch``; by default
OpenSearch when ``AUDIT_OPENSEARCH_URL`` is set, else the SQLite file at
``AUDIT_SQLITE_PATH`` (``./audit.sqlite3``). Every command takes the same filters.

``export`` is itself audited: it records an ``audit_exported`` event (filters, format,
row count) into the store it read (for OpenSearch, through an ``OpenSearchSink``), since
an exported file leaves the system's access control. ``search``, ``show`` and ``tail``
record nothing: whoever runs them already holds the store's own credentials (the
database file, or OpenSearch access, which has its own audit log), so a record would
not be a control, and it would land in the very list being read, changing what the
next search shows. The embeddable viewer page, where access is granted by the
application, is where reads are recorded.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import sys
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from audit_middleware.changes import ABSENT, value_at
from audit_middleware.config import DEFAULT_SQLITE_PATH, AuditConfig, use_config
from audit_middleware.errors import AuditError
from audit_middleware.opensearch.connection import (
    DEFAULT_URL,
    ENV_PREFIX,
    ENV_URL,
    ConnectionSettings,
    build_client,
)
from audit_middleware.opensearch.retention import EXTENDED_DAYS, STANDARD_DAYS, default_tiers
from audit_middleware.opensearch.setup import SetupConfig, SetupError, StepResult, apply
from audit_middleware.query.export import display_user, export_with_audit
from audit_middleware.query.model import DEFAULT_PAGE_SIZE, NO_TENANT, AuditQuery, QueryError
from audit_middleware.query.store import EXPORT_FORMATS, AuditStore, ExportFormat
from audit_middleware.schema import OUTCOMES, Actor, AuditEvent, Scope, format_timestamp
from audit_middleware.serialization import dumps
from audit_middleware.sinks.base import Sink

if TYPE_CHECKING:
    from audit_middleware.opensearch.sink import OpenSearchSink

F = TypeVar("F", bound=Callable[..., Any])

_DRY_RUN_STATUS = {"created": "would create", "updated": "would update", "unchanged": "unchanged"}


@click.group()
def main() -> None:
    """Set up OpenSearch for the audit trail, and search, show, export and tail audit records."""


def _connection_settings(url: str | None, prefix: str | None) -> ConnectionSettings:
    env = dict(os.environ)
    if url:
        env[ENV_URL] = url
    if prefix:
        env[ENV_PREFIX] = prefix
    return ConnectionSettings.from_env(env)


def _echo_results(results: Sequence[StepResult], *, dry_run: bool) -> None:
    width = 12 if dry_run else 9
    for result in results:
        status = _DRY_RUN_STATUS[result.status] if dry_run else result.status
        click.echo(f"{status:<{width}}  {result.step}")


@main.command()
@click.option(
    "--url", metavar="URL[,URL...]", help=f"OpenSearch URL(s) [default: ${ENV_URL} or {DEFAULT_URL}]"
)
@click.option(
    "--prefix", help=f"Prefix of template, policy and data stream names [default: ${ENV_PREFIX} or audit]"
)
@click.option(
    "--extended-days",
    type=click.IntRange(min=1),
    default=EXTENDED_DAYS,
    show_default=True,
    help=f"Days the extended tier keeps records (the standard tier keeps {STANDARD_DAYS}).",
)
@click.option(
    "--snapshot-repository",
    metavar="NAME",
    help="Registered snapshot repository: each backing index is snapshotted there before it is deleted.",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Replicas of each backing index.",
)
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option(
    "--skip-ism",
    is_flag=True,
    help="If the ISM plugin is missing, install the rest and warn that retention is not managed "
    "(default: fail).",
)
def setup(
    *,
    url: str | None,
    prefix: str | None,
    extended_days: int,
    snapshot_repository: str | None,
    replicas: int,
    dry_run: bool,
    skip_ism: bool,
) -> None:
    """Install or update the ISM retention policies, index templates and data streams.

    Safe to re-run: every object is reported as created, updated or unchanged.
    """
    try:
        settings = _connection_settings(url, prefix)
        config = SetupConfig(
            prefix=settings.prefix,
            tiers=default_tiers(extended_days, snapshot_repository),
            replicas=replicas,
            require_ism=not skip_ism,
        )
        client = build_client(settings)
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = apply(client, config, dry_run=dry_run)
        except SetupError as exc:
            _echo_results(exc.completed, dry_run=False)
            raise click.ClickException(str(exc)) from exc
        finally:
            client.close()
            # UserWarnings are meant for people (retention unmanaged, TLS unverified).
            for warning in caught:
                if issubclass(warning.category, UserWarning):
                    click.echo(f"warning: {warning.message}", err=True)
    _echo_results(results, dry_run=dry_run)
    if dry_run:
        click.echo("dry run: nothing was changed")


@main.command()
@click.option("--url", help="OpenSearch URL(s), comma-separated (default: AUDIT_OPENSEARCH_URL).")
@click.option("--prefix", help="Name prefix of the data streams (default: AUDIT_OPENSEARCH_PREFIX or audit).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the spool and dead-letter file live (default: AUDIT_SPOOL_DIR or the XDG state dir).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(url: str | None, prefix: str | None, state_dir: Path | None, as_json: bool) -> None:
    """Can records be delivered to OpenSearch, and what waits in the spool? Exit 1 when not."""
    from audit_middleware.opensearch.sink import default_state_dir  # noqa: PLC0415 - only this command
    from audit_middleware.opensearch.status import delivery_status  # noqa: PLC0415

    try:
        settings = _connection_settings(url, prefix)
    except AuditError as exc:
        raise click.UsageError(str(exc)) from exc
    report = delivery_status(settings, state_dir or default_state_dir())
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        spool = report["spool"]
        oldest = spool["oldest_undelivered_seconds"]
        version = report.get("opensearch_version") or "unreachable"
        click.echo(f"OpenSearch:    {', '.join(report['urls'])} ({version})")
        click.echo(f"Delivery:      {'ok' if report['error'] is None else 'BLOCKED: ' + report['error']}")
        click.echo(
            f"Spool:         {spool['records']} records, {spool['bytes']} bytes in {report['state_dir']}"
        )
        if oldest is not None:
            click.echo(f"Oldest record: waiting {oldest:.0f} s")
        click.echo(f"Dead letters:  {report['dead_letters']}")
    if report["error"] is not None:
        sys.exit(1)


# -- reading: store selection, shared filters, output ----------------------------------------

ENV_SQLITE_PATH = "AUDIT_SQLITE_PATH"
_TABLE = (("TIME", 24), ("USER", 32), ("ACTION", 20), ("RESOURCE", 36), ("OUTCOME", 7), ("IP", 39))
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
)


def _default_store_spec() -> str:
    if os.environ.get(ENV_URL):
        return "opensearch"
    return "sqlite:" + (os.environ.get(ENV_SQLITE_PATH) or DEFAULT_SQLITE_PATH)


def open_store(spec: str | None) -> AuditStore:
    """The store named by ``--store`` (``sqlite:PATH`` or ``opensearch``), or the default one."""
    spec = spec or _default_store_spec()
    if spec == "opensearch":
        try:
            from audit_middleware.query.opensearch_store import OpenSearchStore  # noqa: PLC0415 - optional
        except ImportError as exc:
            raise click.ClickException(
                f"the OpenSearch store is not available in this installation ({exc}); use --store sqlite:PATH"
            ) from exc
        return OpenSearchStore.from_settings(ConnectionSettings.from_env())
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
        help=f"Where the records are [default: opensearch if ${ENV_URL} is set, "
        f"else sqlite:${ENV_SQLITE_PATH} or sqlite:{DEFAULT_SQLITE_PATH}].",
    )
    @functools.wraps(command)
    def run(*args: Any, store_spec: str | None, **kwargs: Any) -> Any:
        with _explained():
            store = open_store(store_spec)
            try:
                return command(*args, store=store, **kwargs)
            finally:
                store.close()

    return run  # type: ignore[return-value]


def filter_options(command: F) -> F:
    """Add the shared filter options; the command receives them as one ``query``."""

    @click.option(
        "--tenant", required=True, help=f"Tenant (organization) id; {NO_TENANT!r}: records without one."
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
    @click.option("--project", metavar="ID", help="Project id.")
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
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        filters = {name: kwargs.pop(name) for name in _FILTERS}
        with _explained():
            query = AuditQuery.build(
                filters.pop("tenant"),
                action=filters.pop("action"),
                resource_type=filters.pop("resource_type"),
                **filters,
            )
        return command(*args, query=query, **kwargs)

    return run  # type: ignore[return-value]


def _printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters (escape sequences,
    bidi overrides) are shown as ``\\u....`` escapes instead of acting on the terminal."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or unicodedata.category(char) == "Zs" else f"\\u{ord(char):04x}"
        for char in text
    )


def _fit(text: str, width: int) -> str:
    text = _printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _resource_text(event: AuditEvent) -> str:
    resource = event.resource
    if resource is None:
        return ""
    return " ".join(part for part in (resource.type, resource.name or resource.id) if part)


def table_header() -> str:
    """The header line of the event table."""
    return "  ".join(f"{name:<{width}}" for name, width in _TABLE).rstrip()


def table_row(event: AuditEvent) -> str:
    """One event as a line of the table (time, user, action, resource, outcome, ip)."""
    ip = event.request.client_ip if event.request and event.request.client_ip else ""
    cells = (
        format_timestamp(event.unix_ms),
        display_user(event.actor),
        event.action.label,
        _resource_text(event),
        event.outcome,
        ip,
    )
    return "  ".join(
        f"{_fit(cell, width):<{width}}" for cell, (_, width) in zip(cells, _TABLE, strict=True)
    ).rstrip()


def _echo_events(events: Iterable[AuditEvent], *, as_json: bool) -> None:
    for event in events:
        click.echo(dumps(event.to_document()).decode("utf-8") if as_json else table_row(event))


def _json_value(value: Any) -> str:
    return dumps(value).decode("utf-8")


def event_details(event: AuditEvent) -> list[str]:
    """Every detail of ``event`` as ``label: value`` lines, the change diff as ``field: old -> new``."""
    lines: list[tuple[str, str]] = [
        ("Event", event.id),
        ("Time", format_timestamp(event.unix_ms)),
        ("Tenant", _scope_text(event.tenant)),
        ("Project", _scope_text(event.project)),
        ("User", f"{display_user(event.actor)} [{event.actor.kind}]"),
        ("User id", (event.actor.impersonator or event.actor).id or ""),
        ("Roles", ", ".join(event.actor.roles)),
        ("Action", f"{event.action.label} ({event.action.id})"),
        ("Outcome", event.outcome),
        ("Resource type", event.resource.type if event.resource else ""),
        ("Resource id", (event.resource.id or "") if event.resource else ""),
        ("Resource name", (event.resource.name or "") if event.resource else ""),
        ("Targets", "; ".join(f"{t.type} {t.name or t.id or ''}".strip() for t in event.targets)),
        ("Service", event.service or ""),
    ]
    request = event.request
    if request is not None:
        status = f" -> {request.status_code}" if request.status_code is not None else ""
        lines += [
            ("IP address", request.client_ip or ""),
            ("Forwarded", ", ".join(request.forwarded_chain)),
            ("User agent", request.user_agent or ""),
            ("Request", f"{request.method or ''} {request.path or ''}{status}".strip()),
            ("Route", request.route or ""),
            ("Request id", request.request_id or ""),
            ("Trace id", request.trace_id or ""),
        ]
    width = max(len(label) for label, _ in lines)
    out = [f"{label + ':':<{width + 1}} {_printable(value)}" for label, value in lines if value]
    if event.changes is not None:
        out.append("Changes:")
        before, after = event.changes.before, event.changes.after
        for field in event.changes.fields or sorted({*before, *after}):
            old_value, new_value = value_at(before, field), value_at(after, field)
            old = "(absent)" if old_value is ABSENT else _json_value(old_value)
            new = "(absent)" if new_value is ABSENT else _json_value(new_value)
            out.append(f"  {_printable(field)}: {_printable(old)} -> {_printable(new)}")
    if event.details:
        out.append("Details:")
        out.extend(
            f"  {_printable(str(key))}: {_printable(_json_value(value))}"
            for key, value in event.details.items()
        )
    return out


def _scope_text(scope: Scope | None) -> str:
    if scope is None:
        return ""
    return f"{scope.id} ({scope.name})" if scope.name else str(scope.id)


@main.command()
@filter_options
@_with_store
@click.option("--json", "as_json", is_flag=True, help="Print stored documents, one JSON object per line.")
def search(*, store: AuditStore, query: AuditQuery, as_json: bool) -> None:
    """Print one page of matching events, newest first, and the cursor of the next page."""
    with _explained():
        page = store.search(query)
    if not as_json:
        click.echo(table_header())
    _echo_events(page.events, as_json=as_json)
    if not page.events:
        click.echo("no matching events", err=True)
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}", err=True)


@main.command()
@click.argument("event_id")
@click.option("--tenant", required=True, help="Tenant (organization) id the event belongs to.")
@_with_store
@click.option("--json", "as_json", is_flag=True, help="Print the stored document.")
def show(*, store: AuditStore, event_id: str, tenant: str, as_json: bool) -> None:
    """Print every detail of one event, including the change diff (field: old -> new)."""
    with _explained():
        event = store.get(tenant, event_id)
    if event is None:
        raise click.ClickException(f"no event {event_id!r} in tenant {tenant!r}")
    if as_json:
        click.echo(dumps(event.to_document()).decode("utf-8"))
    else:
        for line in event_details(event):
            click.echo(line)


@main.command()
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
def export(*, store: AuditStore, query: AuditQuery, export_format: str, output: str, bom: bool) -> None:
    """Write every matching event (not one page) to FILE; the export itself is audited.

    A progress bar shows on a terminal. CSV cells starting with = + - @ (or tab, CR)
    get a leading ' so spreadsheets show them as text instead of running them.
    """
    fmt: ExportFormat = "ndjson" if export_format == "ndjson" else "csv"
    show_progress = sys.stderr.isatty() and output != "-"
    with _explained(), _recording_into(store), click.open_file(output, "wb") as out:
        if show_progress:
            total = store.count(query)
            with click.progressbar(length=total, label="Exporting", file=sys.stderr) as bar:
                rows = export_with_audit(store, query, out, fmt, _cli_actor(), bom=bom, progress=bar.update)
        else:
            rows = export_with_audit(store, query, out, fmt, _cli_actor(), bom=bom)
    if output != "-":
        click.echo(f"exported {rows} events to {output}", err=True)


@main.command()
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
        if not as_json:
            click.echo(table_header())
        _echo_events(reversed(latest), as_json=as_json)
        if live is None:
            return
        # an event stored between tail() and search() is in both: print it once
        shown = {event.id for event in latest}
        if timer is not None:
            timer.start()
        try:
            for batch in live:
                _echo_events((e for e in reversed(batch) if e.id not in shown), as_json=as_json)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            if timer is not None:
                timer.cancel()


@contextmanager
def _recording_into(store: AuditStore) -> Iterator[None]:
    """Send this command's own audit records to ``store`` (or, for OpenSearch, an OpenSearchSink)."""
    sink: Sink
    owned: OpenSearchSink | None = None
    if isinstance(store, Sink):
        sink = store
    else:
        from audit_middleware.opensearch.sink import OpenSearchSink  # noqa: PLC0415 - only for OpenSearch

        sink = owned = OpenSearchSink(settings=ConnectionSettings.from_env())
    previous = use_config(AuditConfig(sink=sink))
    try:
        yield
    finally:
        use_config(previous)
        sink.flush(timeout=10.0)
        if owned is not None:
            owned.close(timeout=10.0)


def _cli_actor() -> Actor:
    """Who runs the CLI: the operating-system user on this host."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return Actor(id=f"cli:{user}@{socket.gethostname()}", name=user)
