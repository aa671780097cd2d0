"""Administration commands: ``setup`` (retention, templates, data streams, alerts, dashboards), ``status``.

opensearch-py is imported inside the commands, so ``--help`` does not load it.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from audit_middleware import env
from audit_middleware.cli.render import printable
from audit_middleware.cli.targets import connection_settings
from audit_middleware.errors import AuditError
from audit_middleware.model.alerts import apply_overrides, default_rules, parse_override
from audit_middleware.opensearch.connection import DEFAULT_URL
from audit_middleware.opensearch.retention import EXTENDED_DAYS, STANDARD_DAYS, default_tiers

if TYPE_CHECKING:
    from audit_middleware.opensearch.dashboards.settings import DashboardsSettings
    from audit_middleware.opensearch.provisioning import StepResult

__all__ = ["setup", "status"]

_DRY_RUN_STATUS = {
    "created": "would create",
    "updated": "would update",
    "removed": "would remove",
    "unchanged": "unchanged",
}
_RULE_IDS = ", ".join(rule.id for rule in default_rules())


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
    help="Snapshot repository: each backing index is snapshotted there before it is deleted.",
)
@click.option(
    "--snapshot-location",
    metavar="PATH",
    help="Register --snapshot-repository as an fs repository at PATH (under the nodes' path.repo); "
    "without it the repository must be registered already.",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Primary shards of each new backing index (every tier); a change rolls the streams over.",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Replicas of each backing index.",
)
@click.option(
    "--alert",
    "alert_settings",
    multiple=True,
    metavar="RULE=N/WINDOW",
    help=f"Threshold and window of an alert rule, e.g. mass_deletion=50/5m, or RULE=off. Rules: {_RULE_IDS}. "
    "Repeatable.",
)
@click.option(
    "--no-alerts", is_flag=True, help="Install no alert monitors and leave existing ones as they are."
)
@click.option(
    "--alert-webhook",
    metavar="URL",
    help="Send new alerts to this webhook (creates a Notifications channel: needs the Notifications plugin).",
)
@click.option(
    "--alert-channel",
    metavar="ID",
    help="Send new alerts to this existing Notifications channel (needs the Notifications plugin).",
)
@click.option(
    "--dashboards-url",
    metavar="URL",
    help="OpenSearch Dashboards URL (with its base path): also install the bundled saved objects there "
    f"[default: ${env.DASHBOARDS_URL}; none: skip]",
)
@click.option(
    "--dashboards-tenant",
    metavar="TENANT",
    help="Dashboards tenant (security plugin): global, private or a tenant's name "
    f"[default: ${env.DASHBOARDS_TENANT}]",
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
    snapshot_location: str | None,
    shards: int,
    replicas: int,
    alert_settings: tuple[str, ...],
    no_alerts: bool,
    alert_webhook: str | None,
    alert_channel: str | None,
    dashboards_url: str | None,
    dashboards_tenant: str | None,
    dry_run: bool,
    skip_ism: bool,
) -> None:
    """Install or update the ISM retention policies, index templates, data streams, alerts and dashboards.

    Safe to re-run: every object is reported as created, updated, removed or unchanged. The
    Dashboards saved objects are installed when a Dashboards URL is given; its
    credentials and TLS settings default to the OpenSearch ones (AUDIT_DASHBOARDS_*).
    """
    from audit_middleware.opensearch.client import build_client  # noqa: PLC0415 - see the module docstring
    from audit_middleware.opensearch.dashboards.settings import DashboardsSettings  # noqa: PLC0415
    from audit_middleware.opensearch.provisioning import SetupConfig, SetupError, apply  # noqa: PLC0415

    if snapshot_location is not None and snapshot_repository is None:
        raise click.UsageError("--snapshot-location needs --snapshot-repository NAME")
    try:
        settings = connection_settings(url, prefix)
        dashboards = DashboardsSettings.from_env(
            url=dashboards_url, tenant=dashboards_tenant, opensearch=settings
        )
        rules = apply_overrides(default_rules(), (parse_override(text) for text in alert_settings))
        config = SetupConfig(
            prefix=settings.prefix,
            tiers=default_tiers(extended_days, snapshot_repository),
            shards=shards,
            replicas=replicas,
            require_ism=not skip_ism,
            snapshot_location=snapshot_location,
            alert_rules=() if no_alerts else rules,
            manage_alerts=not no_alerts,
            alert_webhook=alert_webhook,
            alert_channel=alert_channel,
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
    if dashboards is not None:
        _install_dashboards(dashboards, config.prefix, dry_run=dry_run)
    if dry_run:
        click.echo("dry run: nothing was changed")


def _install_dashboards(settings: DashboardsSettings, prefix: str, *, dry_run: bool) -> None:
    """Import the bundled saved objects into Dashboards and print what each became."""
    from audit_middleware.opensearch.dashboards.bundle import saved_objects  # noqa: PLC0415
    from audit_middleware.opensearch.dashboards.importer import install  # noqa: PLC0415
    from audit_middleware.opensearch.provisioning import SetupError  # noqa: PLC0415

    try:
        results = install(settings, saved_objects(prefix), dry_run=dry_run)
    except SetupError as exc:
        _echo_results(exc.completed, dry_run=False)
        raise click.ClickException(str(exc)) from exc
    _echo_results(results, dry_run=dry_run)


def _ism_lines(indices: list[dict[str, Any]] | None) -> list[str]:
    if indices is None:
        return ["Retention:     not managed (no ISM plugin)"]
    lines = [f"Retention:     {len(indices)} backing indices"]
    for row in indices:
        if row["policy"] is None:
            where = "NOT MANAGED by ISM"
        elif row["state"] is None:
            where = f"{row['policy']}: waiting for ISM to initialise"
        else:
            step = "/".join(str(part) for part in (row["state"], row["action"], row["step"]) if part)
            where = f"{row['policy']}: {step}" + (f" ({row['step_status']})" if row["step_status"] else "")
        if row["failed"]:
            where += " FAILED"
        message = f": {row['message']}" if row["message"] else ""
        lines.append(f"  {row['index']:<40} {where}{message}")
    return lines


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
    """Can records be delivered to OpenSearch, what waits in the spool, where is each index in ISM?

    Exit 1 when records cannot be delivered.
    """
    from audit_middleware.opensearch.status import cluster_status  # noqa: PLC0415 - see the module docstring
    from audit_middleware.sinks.opensearch.backlog import backlog  # noqa: PLC0415
    from audit_middleware.sinks.opensearch.sink import fallback_directory  # noqa: PLC0415

    try:
        settings = connection_settings(url, prefix)
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
        lines.extend(_ism_lines(report["indices"]))
        for line in lines:  # error texts and ISM messages come from the server and may quote stored values
            click.echo(printable(line))
    if report["error"] is not None:
        sys.exit(1)
