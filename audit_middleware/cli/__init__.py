"""The ``audit-middleware`` command line.

::

    audit-middleware setup                                   # local node, defaults
    audit-middleware setup --url https://search.example:9200 --extended-days 2555 \\
        --snapshot-repository audit-archive --dry-run
    audit-middleware setup --dashboards-url https://dashboards.example:5601 --dashboards-tenant global

    audit-middleware search --tenant acme --action start-stop --since 7d --search "web"
    audit-middleware show --tenant acme 0192c1a0-...
    audit-middleware export --tenant acme --since 30d --format csv -o audit.csv
    audit-middleware tail --tenant acme -f

    audit-middleware retention apply --store sqlite:audit.sqlite3 --tier extended=365 \\
        --tenant-tier acme=extended
    audit-middleware retention move --tenant acme --to extended      # OpenSearch: move its history
    audit-middleware archive list                                     # archive files or snapshots
    audit-middleware archive restore .ds-audit-standard-000001-2026.12.01-21:19:00.996
    audit-middleware alerts list --tenant acme
    audit-middleware import --store sqlite:audit.sqlite3 export.ndjson archive-0001.ndjson.gz
    audit-middleware verify --store sqlite:audit.sqlite3 --public-key chain.pub --anchor /mnt/anchor/a.jsonl

Connection settings come from the ``AUDIT_OPENSEARCH_*`` environment variables
(listed in ``audit_middleware.env``); options given here win over them.

The commands live in ``cli.admin`` (setup, status), ``cli.read`` (search, show,
export, tail) and ``cli.archives`` (retention, archive), ``cli.alerting`` (alerts), ``cli.loading``
(import), ``cli.verify`` (verify), with ``cli.targets`` choosing their store; ``cli.render`` formats
events for the terminal.

The reading commands use ``--store sqlite:PATH`` or ``--store opensearch``; by default
OpenSearch when ``AUDIT_OPENSEARCH_URL`` is set, else the SQLite file at
``AUDIT_SQLITE_PATH`` (``./audit.sqlite3``). Every command takes the same filters.

``export`` is itself audited: it records an ``audit_exported`` event (filters, format,
row count) into the store it read, through a sink it opens for that (``reads``), since
an exported file leaves the system's access control. ``search``, ``show`` and ``tail``
record nothing: whoever runs them already holds the store's own credentials (the
database file, or OpenSearch access, which has its own audit log), so a record would
not be a control, and it would land in the very list being read, changing what the
next search shows. The embeddable viewer page, where access is granted by the
application, is where reads are recorded.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["COMMANDS", "main"]

# name -> (module, one-line help). The modules are imported when their command runs, so
# ``audit-middleware --help`` loads click and nothing else; a test keeps the help in step
# with each command's own docstring.
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": (
        "audit_middleware.cli.admin",
        "Install or update the ISM retention policies, index templates, data streams, alerts and dashboards.",
    ),
    "status": (
        "audit_middleware.cli.admin",
        "Can records be delivered to OpenSearch, what waits in the spool, where is each index in ISM?",
    ),
    "search": (
        "audit_middleware.cli.read",
        "Print one page of matching events, newest first, and the cursor of the next page.",
    ),
    "show": (
        "audit_middleware.cli.read",
        "Print every detail of one event, including the change diff (field: old -> new).",
    ),
    "export": (
        "audit_middleware.cli.read",
        "Write every matching event (not one page) to FILE; the export itself is audited.",
    ),
    "tail": (
        "audit_middleware.cli.read",
        "Print the latest events, oldest first; with -f keep printing new ones below them.",
    ),
    "retention": (
        "audit_middleware.cli.archives",
        "Apply retention now (SQLite) or move a tenant's history to another tier (OpenSearch).",
    ),
    "archive": (
        "audit_middleware.cli.archives",
        "List archived records and restore them: SQLite archive files, or OpenSearch snapshots.",
    ),
    "alerts": (
        "audit_middleware.cli.alerting",
        "The alerts of the four rules: list them, or evaluate the rules now (SQLite).",
    ),
    "import": (
        "audit_middleware.cli.loading",
        "Load NDJSON documents (an export, an archive, another store's dump) into the SQLite store.",
    ),
    "verify": (
        "audit_middleware.cli.verify",
        "Check the hash chains: verified, modified, missing, inserted, reordered or truncated records.",
    ),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when used (see ``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        command: click.Command = getattr(importlib.import_module(entry[0]), cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: ARG002 - click passes it
        rows = [(name, help_line) for name, (_, help_line) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup)
@click.version_option(
    package_name="opensearch-audit-middleware", prog_name="audit-middleware", message="%(prog)s %(version)s"
)
def main(**_: Any) -> None:
    """Set up the audit trail, search, show, export and tail records, and run retention, archives, alerts."""
