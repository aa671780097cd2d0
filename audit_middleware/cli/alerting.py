"""The ``alerts`` commands: list the alerts of the four rules, or evaluate them now on SQLite.

On OpenSearch the monitors run every minute and ``alerts list`` reads the Alerting API
(``opensearch.monitors``); on SQLite it reads the store's alert table, and ``alerts check``
evaluates the rules at once (``sinks.housekeeping``), as a writing app does every few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

import click

from audit_middleware.cli.targets import (
    NO_TENANT_OPTION,
    connection_options,
    explained,
    opensearch_client,
    sqlite_path,
    sqlite_pool,
    store_option,
    tenant_selector,
)
from audit_middleware.model.alerts import Alert, apply_overrides, default_rules, parse_override

__all__ = ["alerts"]


@click.group()
def alerts() -> None:
    """The alerts of the four rules: list them, or evaluate the rules now (SQLite)."""


def _echo_alerts(found: Sequence[Alert], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([alert.to_json() for alert in found], indent=2))
        return
    if not found:
        click.echo("no alerts", err=True)
    for alert in found:
        started = datetime.fromtimestamp(alert.started_ms / 1000, tz=timezone.utc).isoformat(
            timespec="seconds"
        )
        click.echo(f"{started.replace('+00:00', 'Z')}  {alert.describe()}  id={alert.id}")


@alerts.command("list")
@store_option
@connection_options
@click.option("--tenant", help=f"Only this tenant's alerts; {NO_TENANT_OPTION!r}: records without one.")
@click.option(
    "--state",
    type=click.Choice(["ACTIVE", "COMPLETED", "ACKNOWLEDGED", "ERROR", "ALL"]),
    default="ACTIVE",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True)
def list_alerts(
    *,
    store_spec: str | None,
    url: str | None,
    prefix: str | None,
    tenant: str | None,
    state: str,
    as_json: bool,
) -> None:
    """List alerts, newest first: from the SQLite store's alert table, or from OpenSearch Alerting."""
    selected = None if tenant is None else tenant_selector(tenant)
    path = sqlite_path(store_spec) if url is None else None
    if path is not None:
        from audit_middleware.sqlite.alerts import list_alerts as stored  # noqa: PLC0415

        with sqlite_pool(path) as pool, pool.borrow() as conn:
            found = stored(conn, state=state, tenant=selected, rules=default_rules())
    else:
        from audit_middleware.opensearch.monitors import list_alerts as raised  # noqa: PLC0415

        with opensearch_client(url, prefix) as (client, name_prefix):
            found = raised(client, name_prefix, state=state, tenant=selected)
    _echo_alerts(found, as_json)


@alerts.command("check")
@store_option
@click.option(
    "--alert", "alert_settings", multiple=True, metavar="RULE=N/WINDOW", help="As for `setup --alert`."
)
@click.option("--webhook", metavar="URL", help="Also POST each new alert to this webhook.")
@click.option("--json", "as_json", is_flag=True)
def check(
    *, store_spec: str | None, alert_settings: tuple[str, ...], webhook: str | None, as_json: bool
) -> None:
    """Evaluate the alert rules on the SQLite store now; print (and POST) the alerts to notify.

    A writing app evaluates them by itself every few seconds; this is for a cron job or a look now.
    """
    path = sqlite_path(store_spec)
    if path is None:
        raise click.UsageError("on OpenSearch the monitors run every minute by themselves: use `alerts list`")
    from audit_middleware.sinks.housekeeping import Housekeeping  # noqa: PLC0415
    from audit_middleware.sinks.notify import WebhookNotifier  # noqa: PLC0415

    with explained():
        rules = apply_overrides(default_rules(), (parse_override(text) for text in alert_settings))
        notifiers = [WebhookNotifier(webhook)] if webhook else []
    with sqlite_pool(path) as pool, explained():
        evaluation = Housekeeping(pool, alert_rules=rules, notifiers=notifiers).evaluate_alerts()
    _echo_alerts(evaluation.to_notify, as_json)
