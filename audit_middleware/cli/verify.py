"""``audit-middleware verify``: prove that no record was changed, removed or slipped in.

::

    audit-middleware verify --store sqlite:audit.sqlite3 --public-key audit-chain.pub \\
        --anchor /mnt/anchor/audit-checkpoints.jsonl
    audit-middleware verify --file export.ndjson --public-key audit-chain.pub --json

Exit status: 0 every chain verified, 1 evidence of tampering (or a checkpoint that is
not sound), 2 the trail could not be read (no such store, a bad key file).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import click

from audit_middleware.errors import AuditError
from audit_middleware.model.checkpoints import Checkpoint, KeyRing
from audit_middleware.model.encoding import dumps
from audit_middleware.query.verify import RANGE_KINDS, ChainReport, Finding, VerifyReport, verify_chains
from audit_middleware.query.verify_sources import FileSource, OpenSearchSource, SQLiteSource, read_anchor

__all__ = ["render_report", "verify"]

EXIT_INTACT, EXIT_TAMPERED, EXIT_UNREADABLE = 0, 1, 2
_FINDING_ORDER = ("retention", "modified", "missing", "inserted", "reordered", "truncated", "rewritten")


@click.command()
@click.option(
    "--store",
    "store_spec",
    metavar="sqlite:PATH|opensearch",
    help="The store to verify [default: opensearch if $AUDIT_OPENSEARCH_URL is set, "
    "else sqlite:$AUDIT_SQLITE_PATH or sqlite:audit.sqlite3].",
)
@click.option(
    "--file",
    "file_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Verify an NDJSON file (stored documents and their checkpoint lines) instead of a store.",
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The external anchor file of checkpoints (repeatable); finds dropped newest records.",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM public key(s) the checkpoints must be signed with (repeatable, for rotated keys).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar [default: on a terminal].")
def verify(
    *,
    store_spec: str | None,
    file_path: Path | None,
    anchors: tuple[Path, ...],
    public_keys: tuple[Path, ...],
    as_json: bool,
    progress: bool | None,
) -> None:
    """Check the hash chains: verified, modified, missing, inserted, reordered or truncated records."""
    try:
        keys = KeyRing.from_pem([path.read_bytes() for path in public_keys]) if public_keys else None
        source = _source(store_spec, file_path)
        anchored = [checkpoint for path in anchors for checkpoint in _anchor(path)]
        retention = (
            source.retention(int(time.time() * 1000)) if isinstance(source, OpenSearchSource) else None
        )
        total = source.count()
        show_progress = sys.stderr.isatty() if progress is None else progress
        with click.progressbar(
            length=total, label="verifying", file=sys.stderr if show_progress else io.StringIO()
        ) as bar:
            done = 0

            def advance(read: int) -> None:
                nonlocal done
                bar.update(read - done)
                done = read

            entries = source.entries()
            report = verify_chains(
                entries,
                stored_checkpoints=_Deferred(source),
                anchored_checkpoints=anchored,
                keys=keys,
                progress=advance,
                retention=retention,
            )
    except (AuditError, OSError) as exc:
        click.echo(f"Error: cannot verify: {exc}", err=True)
        sys.exit(EXIT_UNREADABLE)
    except Exception as exc:
        if not type(exc).__module__.startswith("opensearchpy"):  # the node refused or is away: 2 too
            raise
        click.echo(f"Error: cannot verify: {exc}", err=True)
        sys.exit(EXIT_UNREADABLE)
    if as_json:
        click.echo(dumps(report.as_json()).decode("utf-8"))
    else:
        for line in render_report(report):
            click.echo(line)
    sys.exit(EXIT_INTACT if report.intact else EXIT_TAMPERED)


class _Deferred:
    """The source's checkpoints, read when the verifier asks (a file's are known after one pass)."""

    def __init__(self, source: SQLiteSource | FileSource | OpenSearchSource) -> None:
        self._source = source

    def __iter__(self) -> Iterator[Checkpoint | str]:
        return iter(self._source.checkpoints())


def _source(store_spec: str | None, file_path: Path | None) -> SQLiteSource | FileSource | OpenSearchSource:
    if file_path is not None and store_spec is not None:
        raise click.UsageError("give --store or --file, not both")
    if file_path is not None:
        if not file_path.is_file():
            raise AuditError(f"no file {str(file_path)!r}")
        return FileSource(file_path)
    from audit_middleware import env  # noqa: PLC0415

    spec = store_spec or ("opensearch" if env.opensearch_configured() else f"sqlite:{env.sqlite_path()}")
    if spec == "opensearch":
        from audit_middleware.opensearch.client import build_client  # noqa: PLC0415 - only for OpenSearch
        from audit_middleware.opensearch.connection import ConnectionSettings  # noqa: PLC0415

        settings = ConnectionSettings.from_env()
        return OpenSearchSource(build_client(settings), settings.prefix)
    if not spec.startswith("sqlite:") or len(spec) == len("sqlite:"):
        raise click.BadParameter(f"{spec!r}: use sqlite:PATH or opensearch (or --file)", param_hint="--store")
    return SQLiteSource(Path(spec.removeprefix("sqlite:")))


def _anchor(path: Path) -> list[Checkpoint | str]:
    if not path.is_file():
        raise AuditError(f"no anchor file {str(path)!r}")
    return list(read_anchor(path))


def _time(unix_ms: int) -> str:
    if not unix_ms:
        return "-"
    return datetime.fromtimestamp(unix_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finding_line(finding: Finding) -> str:
    seqs = (
        f"seq {finding.first_seq}"
        if finding.first_seq == finding.last_seq
        else f"seq {finding.first_seq}-{finding.last_seq}"
    )
    record = f" event {finding.event_id} ({finding.where})" if finding.event_id else ""
    detail = f": {finding.detail}" if finding.detail else ""
    return f"  {finding.kind:<10} {seqs}{record}{detail}"


def _chain_lines(chain: ChainReport) -> Iterator[str]:
    state = "intact" if chain.intact else "TAMPERED"
    yield (
        f"chain {chain.chain}  seq {chain.first_seq}..{chain.last_seq}  "
        f"{_time(chain.first_ms)} .. {_time(chain.last_ms)}  {state}"
    )
    yield f"  verified   {chain.verified} of {chain.records} records, {chain.checkpoints} checkpoints matched"
    if chain.removed_by_retention and not chain.counts.get("retention"):  # signed retention checkpoints
        yield f"  retention  {chain.removed_by_retention} records removed by retention (signed)"
    for kind in _FINDING_ORDER:
        listed = [finding for finding in chain.findings if finding.kind == kind]
        yield from (_finding_line(finding) for finding in listed)
        unnamed = chain.counts.get(kind, 0) - sum(
            f.last_seq - f.first_seq + 1 if kind in RANGE_KINDS else 1 for f in listed
        )
        if unnamed > 0:
            yield f"  {kind:<10} ... and {unnamed} more"


def render_report(report: VerifyReport) -> Iterator[str]:
    """The report as lines for a terminal."""
    for chain in report.chains:
        yield from _chain_lines(chain)
    if report.unchained_old:
        yield f"unchained  {report.unchained_old} records older than every chain (written before chains)"
    for finding in report.inserted:
        yield f"inserted   event {finding.event_id} ({finding.where}): {finding.detail}"
    if report.inserted_count > len(report.inserted):
        yield f"inserted   ... and {report.inserted_count - len(report.inserted)} more"
    for problem in report.checkpoint_problems:
        yield f"checkpoint {problem}"
    if not report.signatures_checked:
        yield "warning    checkpoint signatures not checked (give --public-key)"
    yield f"anchor     {report.anchored} checkpoints anchored outside the store"
    yield "result     " + ("INTACT" if report.intact else "TAMPERED")
