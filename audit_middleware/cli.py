"""The ``audit-middleware`` command line.

::

    audit-middleware setup                                   # local node, defaults
    audit-middleware setup --url https://search.example:9200 --extended-days 2555 \\
        --snapshot-repository audit-archive --dry-run

Connection settings come from the ``AUDIT_OPENSEARCH_*`` environment variables
(``audit_middleware.opensearch.connection``); options given here win over them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import click

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

_DRY_RUN_STATUS = {"created": "would create", "updated": "would update", "unchanged": "unchanged"}


@click.group()
def main() -> None:
    """Operate the audit trail's OpenSearch side."""


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
