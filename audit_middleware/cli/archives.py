"""Retention and archive commands: ``retention apply|move`` and ``archive list|restore|drop``.

On SQLite the commands do the work (``sqlite.retention``); on OpenSearch, ISM applies
retention by itself, and these commands move a tenant's history between tiers
(``opensearch.tiermove``) and list and restore the snapshots ISM made
(``opensearch.archive``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from audit_middleware.cli.targets import (
    connection_options,
    explained,
    opensearch_client,
    sqlite_path,
    sqlite_pool,
    store_option,
    when,
)

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

__all__ = ["archive", "retention"]


@click.group()
def retention() -> None:
    """Apply retention now (SQLite) or move a tenant's history to another tier (OpenSearch)."""


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key or not item:
            raise click.BadParameter(f"{value!r} is not like NAME=VALUE", param_hint=what)
        pairs[key] = item
    return pairs


@retention.command("apply")
@store_option
@click.option("--standard-days", type=click.FloatRange(min=0, min_open=True), default=90, show_default=True)
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    metavar="NAME=DAYS",
    help="An extended tier, e.g. extended=365. Repeatable.",
)
@click.option(
    "--tenant-tier", "tenant_tiers", multiple=True, metavar="TENANT=TIER", help="A tenant's tier. Repeatable."
)
@click.option(
    "--archive-dir", type=click.Path(file_okay=False, path_type=Path), help="[default: <store>.archive]"
)
@click.option("--no-archive", is_flag=True, help="Delete without archiving first.")
def apply(
    *,
    store_spec: str | None,
    standard_days: float,
    tiers: tuple[str, ...],
    tenant_tiers: tuple[str, ...],
    archive_dir: Path | None,
    no_archive: bool,
) -> None:
    """Archive, then delete, every record older than its tenant's tier keeps it (SQLite store).

    On OpenSearch, ISM applies retention by itself: `audit-middleware status` shows where each index is.
    """
    path = sqlite_path(store_spec)
    if path is None:
        raise click.UsageError(
            "on OpenSearch, ISM applies retention by itself (`audit-middleware status` shows each index's "
            "state); to change the tiers run `audit-middleware setup` again"
        )
    from audit_middleware.sqlite.retention import SQLiteRetention, apply_retention  # noqa: PLC0415

    extra = {name: float(days) for name, days in _pairs(tiers, "--tier").items()}
    with explained():
        policy = SQLiteRetention(
            tiers={"standard": standard_days, **extra},
            tenant_tiers=_pairs(tenant_tiers, "--tenant-tier"),
            archive_dir=archive_dir,
            archive=not no_archive,
        )
    from audit_middleware.sinks.chain import ChainPolicy  # noqa: PLC0415

    with explained():
        chain = ChainPolicy.from_environment()  # the retention checkpoints are signed with the app's key
    with sqlite_pool(path) as pool, pool.borrow() as conn, explained():
        report = apply_retention(conn, path, policy, removed=chain.record_removal)
    for tier, count in sorted(report.by_tier.items()):
        click.echo(f"{tier}: {count} records {'deleted' if no_archive else 'archived and deleted'}")
    for file in report.files:
        click.echo(f"archive: {file}")
    if not report.deleted:
        click.echo("nothing is older than its tier keeps it")


@retention.command("move")
@connection_options
@click.option("--tenant", required=True, help="The tenant (organization id) whose history moves.")
@click.option("--to", "to_tier", required=True, metavar="TIER", help="The tier it moves to, e.g. extended.")
@click.option("--tiers", default="standard,extended", show_default=True, help="The tiers setup installed.")
def move(*, url: str | None, prefix: str | None, tenant: str, to_tier: str, tiers: str) -> None:
    """Move a tenant's history into another tier's data stream, so it gets that tier's retention (OpenSearch).

    Route the tenant's new records there first (TierRouter); the move is safe to re-run.
    """
    from audit_middleware.opensearch.tiermove import move_tenant  # noqa: PLC0415

    with opensearch_client(url, prefix) as (client, name_prefix):
        report = move_tenant(
            client, name_prefix, tenant, to_tier, [t.strip() for t in tiers.split(",") if t.strip()]
        )
    click.echo(
        f"moved {report.copied} records of {tenant} to {to_tier} "
        f"({report.already_there} were there already); "
        f"deleted {report.deleted} from {', '.join(report.sources) or 'no other tier'}"
    )


# -- archives -----------------------------------------------------------------------------


@click.group()
def archive() -> None:
    """List archived records and restore them: SQLite archive files, or OpenSearch snapshots."""


def _repositories(client: OpenSearch, prefix: str, repository: str | None) -> list[str]:
    if repository:
        return [repository]
    from audit_middleware.opensearch.archive import policy_repositories  # noqa: PLC0415 - OpenSearch only

    found = policy_repositories(client, prefix)
    if not found:
        raise click.UsageError(
            "no tier of this prefix archives to a snapshot repository: give --repository NAME"
        )
    return found


@archive.command("list")
@store_option
@connection_options
@click.option(
    "--repository", metavar="NAME", help="Snapshot repository [default: the ones the tiers' policies use]."
)
@click.option("--json", "as_json", is_flag=True)
def list_(
    *, store_spec: str | None, url: str | None, prefix: str | None, repository: str | None, as_json: bool
) -> None:
    """List the archives: files retention wrote (SQLite), or snapshots of backing indices (OpenSearch)."""
    path = sqlite_path(store_spec) if url is None else None
    if path is not None:
        rows = _archive_files(path)
    else:
        with opensearch_client(url, prefix) as (client, name_prefix):
            rows = _snapshots(client, name_prefix, _repositories(client, name_prefix, repository))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no archives", err=True)
    for row in rows:
        click.echo("  ".join(f"{key}={value}" for key, value in row.items() if value is not None))


def _archive_files(path: Path) -> list[dict[str, Any]]:
    from audit_middleware.sqlite.retention import list_archives  # noqa: PLC0415 - only for SQLite

    def state(file: Any) -> str:
        if not file.path.exists():
            return "missing"
        return "complete" if file.complete else "incomplete"

    with sqlite_pool(path) as pool, pool.borrow() as conn:
        return [
            {
                "archive": str(file.path),
                "tier": file.tier,
                "records": file.records,
                "from": when(file.first_ms),
                "to": when(file.last_ms),
                "state": state(file),
            }
            for file in list_archives(conn)
        ]


def _snapshots(client: OpenSearch, prefix: str, repositories: Sequence[str]) -> list[dict[str, Any]]:
    from audit_middleware.opensearch.archive import list_archives  # noqa: PLC0415 - only for OpenSearch

    return [
        {
            "archive": item.snapshot,
            "repository": item.repository,
            "index": item.index,
            "state": item.state,
            "taken": when(item.end_ms or item.start_ms),
            "restored_as": item.restored_as,
        }
        for name in repositories
        for item in list_archives(client, name, prefix)
    ]


@archive.command("restore")
@click.argument("archive_name", metavar="ARCHIVE")
@store_option
@connection_options
@click.option(
    "--into", type=click.Path(dir_okay=False, path_type=Path), help="SQLite: the store file to load into."
)
@click.option(
    "--repository", metavar="NAME", help="OpenSearch: the snapshot repository [default: the tiers']."
)
@click.option(
    "--index", "indices", multiple=True, help="OpenSearch: only this backing index of the snapshot."
)
def restore(
    *,
    archive_name: str,
    store_spec: str | None,
    url: str | None,
    prefix: str | None,
    into: Path | None,
    repository: str | None,
    indices: tuple[str, ...],
) -> None:
    """Load an archive back: a SQLite archive FILE into a store, or a snapshot as restored-* indices.

    A restored OpenSearch index is read with `search --include-restored`, never by the live trail.
    Records loaded into a store retention runs on are archived again at its next run.
    """
    if url is None and _sqlite_path_or_none(store_spec, into) is not None:
        _restore_file(Path(archive_name), into)
        return
    from audit_middleware.opensearch.archive import restore as restore_snapshot  # noqa: PLC0415

    with opensearch_client(url, prefix) as (client, name_prefix):
        repositories = _repositories(client, name_prefix, repository)
        if len(repositories) > 1:
            raise click.UsageError(f"the tiers archive to {repositories}: give --repository NAME")
        names = restore_snapshot(client, repositories[0], archive_name, indices)
    for name in names:
        click.echo(
            f"restored {name}: read it with "
            "`audit-middleware search --store opensearch --include-restored ...`"
        )


def _sqlite_path_or_none(spec: str | None, into: Path | None) -> Path | None:
    if into is not None:
        return into
    return sqlite_path(spec)


def _restore_file(file: Path, into: Path | None) -> None:
    if not file.is_file():
        raise click.BadParameter(f"no archive file {str(file)!r}", param_hint="ARCHIVE")
    if into is None:
        raise click.UsageError("give --into PATH: the SQLite store to load the archive into (created if new)")
    from audit_middleware.sqlite.retention import restore_archive  # noqa: PLC0415

    with sqlite_pool(into) as pool, pool.borrow() as conn, explained():
        report = restore_archive(conn, file)
    click.echo(
        f"restored {report.inserted} of {report.read} records into {into} "
        f"({report.read - report.inserted} were there)"
    )
    if report.damaged:
        raise click.ClickException(
            f"{file} is damaged after {report.read} records ({report.damaged}); those were restored"
        )


@archive.command("drop")
@click.argument("index")
@connection_options
def drop(*, index: str, url: str | None, prefix: str | None) -> None:
    """Delete a restored OpenSearch index (never a live one); its snapshot stays."""
    from audit_middleware.opensearch.archive import drop_restored  # noqa: PLC0415

    with opensearch_client(url, prefix) as (client, name_prefix):
        drop_restored(client, name_prefix, index)
    click.echo(f"dropped {index}")
