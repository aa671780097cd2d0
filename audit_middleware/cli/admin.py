"""Administration commands: ``setup`` (templates, retention, data streams) and ``status``.

opensearch-py is imported inside the commands, so ``--help`` does not load it.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from audit_middleware import env
from audit_middleware.cli.render import printable
from audit_middleware.errors import AuditError
from audit_middleware.opensearch.connection import DEFAULT_URL, ConnectionSettings
from audit_middleware.opensearch.retention import EXTENDED_DAYS, STANDARD_DAYS, default_tiers

if TYPE_CHECKING:
    from audit_middleware.opensearch.provisioning import StepResult

__all__ = ["setup", "status"]

_DRY_RUN_STATUS = {"created": "would create", "updated": "would update", "unchanged": "unchanged"}


def _connection_settings(url: str | None, prefix: str | None) -> ConnectionSettings:
    variables = dict(os.environ)
    if url:
        variables[env.OPENSEARCH_URL] = url
    if prefix:
        variables[env.OPENSEARCH_PREFIX] = prefix
    return ConnectionSettings.from_env(variables)


def _echo_results(results: Sequence[StepResult], *, dry_run: bool) -> None:
    width = 12 if dry_run else 9
    for result in results:
        status = _DRY_RUN_STATUS[result.status] if dry_run else result.status
        click.echo(f"{status:<{width}}  {result.step}")


@click.command()
@click.option(
    "--url",
    metavar="URL[,URL...]",
    help=f"OpenSearch URL(s) [default: ${env.OPENSEARCH_URL} or {DEFAULT_URL}]",
)
@click.option(
    "--prefix",
    help=f"Prefix of template, policy and data stream names [default: ${env.OPENSEARCH_PREFIX} or audit]",
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
    from audit_middleware.opensearch.client import build_client  # noqa: PLC0415 - see the module docstring
    from audit_middleware.opensearch.provisioning import SetupConfig, SetupError, apply  # noqa: PLC0415

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


@click.command()
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
    from audit_middleware.opensearch.status import cluster_status  # noqa: PLC0415 - see the module docstring
    from audit_middleware.sinks.opensearch.backlog import backlog  # noqa: PLC0415
    from audit_middleware.sinks.opensearch.sink import fallback_directory  # noqa: PLC0415

    try:
        settings = _connection_settings(url, prefix)
    except AuditError as exc:
        raise click.UsageError(str(exc)) from exc
    report = {
        **cluster_status(settings),
        **backlog(state_dir or env.state_dir(), fallback_directory(settings)),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))  # ensure_ascii: every control character escaped
    else:
        spool = report["spool"]
        oldest = spool["oldest_undelivered_seconds"]
        version = report.get("opensearch_version") or "unreachable"
        lines = [
            f"OpenSearch:    {', '.join(report['urls'])} ({version})",
            f"Delivery:      {'ok' if report['error'] is None else 'BLOCKED: ' + report['error']}",
            f"Spool:         {spool['records']} records, {spool['bytes']} bytes in {report['state_dir']}",
        ]
        if oldest is not None:
            lines.append(f"Oldest record: waiting {oldest:.0f} s")
        last_resort = report["last_resort"]
        if last_resort["records"]:
            lines.append(f"Last resort:   {last_resort['records']} records in {last_resort['directory']}")
        lines.append(f"Dead letters:  {report['dead_letters']}")
        for line in lines:  # the error text comes from the server and may quote stored values
            click.echo(printable(line))
    if report["error"] is not None:
        sys.exit(1)
