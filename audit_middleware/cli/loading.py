"""``audit-middleware import FILE.ndjson``: bulk-load stored documents into the SQLite store.

The input is NDJSON, one stored document per line, plain or gzip-compressed (detected
from the file, not its name): an NDJSON export (``export --format ndjson``), a
retention archive (``*.ndjson.gz``), or another store's dump (OpenSearch ``_source``
documents). Each document is stored as it is, byte for byte. Into an empty store the
indexes and full-text search are built after the rows (``sqlite.bulk``); records the
store holds already (same tenant and id) are skipped, so an import can be run again.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, cast

import click

from audit_middleware.cli.targets import sqlite_path, sqlite_pool, store_option

__all__ = ["import_"]

_GZIP_MAGIC = b"\x1f\x8b"


def _open(name: str, stack: ExitStack) -> IO[str]:
    """The text of ``name`` ('-': standard input), decompressed when it is gzip."""
    raw: IO[bytes] = sys.stdin.buffer if name == "-" else stack.enter_context(Path(name).open("rb"))  # noqa: SIM115 - closed by the stack
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, raw))
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        return stack.enter_context(gzip.open(buffered, "rt", encoding="utf-8"))
    return io.TextIOWrapper(buffered, encoding="utf-8")


def _lines(names: tuple[str, ...], stack: ExitStack) -> Iterator[str]:
    for name in names:
        yield from _open(name, stack)


@click.command("import")
@store_option
@click.argument("files", nargs=-1, required=True, metavar="FILE.ndjson[.gz]...")
def import_(*, store_spec: str | None, files: tuple[str, ...]) -> None:
    """Load NDJSON documents (an export, an archive, another store's dump) into the SQLite store.

    Documents are stored as they are; records already stored are skipped, so a second
    run adds nothing. Into an empty store the indexes are built after the rows, which
    is several times faster than storing them one transaction at a time. Lines that are
    not audit records are refused and named (exit status 1); the others are imported.
    """
    from audit_middleware.sqlite.bulk import import_lines  # noqa: PLC0415 - loaded when the command runs

    path = sqlite_path(store_spec, create=True)
    if path is None:
        raise click.UsageError("import loads into the SQLite store: give --store sqlite:PATH")
    for name in files:
        if name != "-" and not Path(name).is_file():
            raise click.BadParameter(f"{name!r} is not a file", param_hint="FILE")
    with sqlite_pool(path) as pool, pool.borrow() as conn, ExitStack() as stack:
        try:
            report = import_lines(conn, _lines(files, stack))
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise click.ClickException(
                f"cannot read the input: {exc}; an empty store stays empty, otherwise what was "
                "stored is kept (run the import again to finish: stored records are skipped)"
            ) from exc
    click.echo(
        f"imported {report.inserted:,} records into {path} "
        f"({report.read:,} read, {report.duplicates:,} already stored, {report.rejected:,} refused)",
        err=True,
    )
    if report.rejected:
        for example in report.examples:
            click.echo(f"  refused {example}", err=True)
        raise SystemExit(1)


# "import" is a keyword; the command group looks a command up by its name
globals()["import"] = import_
