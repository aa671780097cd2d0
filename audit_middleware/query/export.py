"""Streaming export of audit events as CSV (RFC 4180) or NDJSON.

CSV: UTF-8 (``bom=True`` prepends a byte order mark so Excel reads it as UTF-8), a
header row, ``\\r\\n`` line ends, quoting by the ``csv`` module (fields with commas,
quotes or line breaks are quoted, quotes doubled). Times are UTC ISO 8601 with
milliseconds and ``Z``.

Formula injection (OWASP "CSV Injection"): a spreadsheet runs a cell that starts with
``=``, ``+``, ``-`` or ``@`` as a formula, so a resource named ``=HYPERLINK(...)`` could
act when the export is opened. Spreadsheets also skip leading white space and invisible
characters (no-break and ideographic spaces, a BOM, zero widths, line breaks, a double
quote read as the start of a quoted field) and read the full-width forms (U+FF1D, U+FF0B, U+FF0D, U+FF20)
as the ASCII ones; and a spreadsheet in a semicolon locale splits a line on ``;`` (losing
the quoting, so line breaks inside cells split too). So every text cell, the JSON columns
included, gets a leading ``'`` (which spreadsheets show as text) when it starts, after
such characters, with one of those signs, or with a tab or CR (OWASP's list); and the
same is done after every ``;`` and line break inside it. The value in the file is then
no longer byte-exact: use NDJSON when the export feeds a program.

NDJSON: each event's stored document, one per line.

A store that can read its stored documents directly streams them through
``document_chunks``: ``document_csv_row`` makes the same cells as ``csv_row`` from the
document alone (no ``AuditEvent`` in between), and NDJSON writes the documents as
stored. ``CSV_SOURCE_FIELDS`` names the parts of a document the CSV reads, so such a
store can fetch only those.

Formats only: recording that an export happened is the job of whoever serves it
(``audit_middleware.reads``), through a sink it holds.

Both stream in chunks of about 64 KiB, so memory stays constant however many events are
exported. Events are formatted one row at a time; stored documents ``_BATCH_ROWS`` rows at
a time, where one regex scan of the batch finds the few cells ``neutralise`` may change and
another the cells to quote (the csv module's quoting, written with str methods), which cut
the CPU of a CSV row from stored documents by about half; the tests hold both paths to the
same bytes.

This module is long because the two export paths (from events, from stored documents)
must write byte-identical files under one set of neutralising rules.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, Literal

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.encoding import dumps, loads
from audit_middleware.model.event import Actor, AuditEvent
from audit_middleware.model.timestamps import format_timestamp, parse_timestamp

ExportFormat = Literal["csv", "ndjson"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "ndjson")
CSV_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "user",
    "user_id",
    "action",
    "action_id",
    "resource_type",
    "resource_id",
    "resource_name",
    "project",
    "outcome",
    "ip",
    "user_agent",
    "modified_fields",
    "previous_values",
    "new_values",
    "details",
    "event_id",
    "tenant",
)
CSV_SOURCE_FIELDS: tuple[str, ...] = (
    "@timestamp",
    "event.id",
    "event.action",
    "event.outcome",
    "user.id",
    "user.name",
    "user.email",
    "user.effective.id",
    "user.effective.name",
    "user.effective.email",
    "audit.action.label",
    "audit.resource",
    "audit.project.id",
    "audit.project.original_id",
    "audit.changes",
    "audit.details",
    "audit.organization.original_id",
    "organization.id",
    "source.ip",
    "user_agent.original",
)
"""The fields of a stored document that ``document_csv_row`` reads (``_source`` includes)."""
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""OWASP's list: a cell starting with one of these is neutralised (see the module docstring)."""
UTF8_BOM = b"\xef\xbb\xbf"
_CHUNK_CHARS = 64 * 1024
_PROGRESS_EVERY = 500
_FORMULA_SIGNS = frozenset("=+-@")
# Where a spreadsheet may start a new cell inside ours: ';' (semicolon locales), line breaks.
_SPLITS = frozenset(";\r\n")
# A cell starting with one of these (printable ASCII, not skipped, not a sign) and holding no
# split character cannot be run: the common case (ids, emails, times, JSON) skips the scan.
_SAFE_FIRST = frozenset(chr(code) for code in range(0x21, 0x7F)) - _FORMULA_SIGNS - {'"'}
# How stored documents spell @timestamp (format_timestamp): such a value is copied as it is.
_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# Cells joined with NUL after a NUL each: where neutralise() may change a cell. A cell that
# starts with a character outside _SAFE_FIRST (empty cells do not match), or holds a split
# character followed, after plain spaces, by one outside it: neutralise() returns every other
# cell unchanged, so a scan of a batch finds the few it must look at. Three patterns, each
# with a literal first character, scan several times faster than one with a character set.
_SAFE_CLASS = "!#-*,.-<>?A-~"  # _SAFE_FIRST as a regex class
_UNSAFE_START = re.compile(rf"\x00[^\x00\x01{_SAFE_CLASS}]")
_UNSAFE_SEMICOLON = re.compile(rf"; *+(?:[^{_SAFE_CLASS}]|\Z)")
_UNSAFE_BREAK = re.compile(rf"[\r\n] *+(?:[^{_SAFE_CLASS}]|\Z)")
# A cell csv.writer quotes (QUOTE_MINIMAL: it holds the delimiter, the quote or a line end
# character), in the batch text of _write_block, where every cell follows a NUL.
_QUOTED_CELL = re.compile(r'\x00([^\x00\x01,"\r\n]*+[,"\r\n][^\x00\x01]*+)')
_QUOTED_LINE_CELL = re.compile(r'\x00([^\x00\x01,"]*+[,"][^\x00\x01]*+)')  # for text without line breaks
_BATCH_ROWS = 100  # rows formatted, checked and written at a time (about 60 KB of CSV)


def _skipped(char: str) -> bool:
    """Characters a spreadsheet may skip before it looks for a formula sign."""
    return char.isspace() or char == '"' or unicodedata.category(char)[0] in "CZ"


def _is_sign(char: str) -> bool:
    """``=``, ``+``, ``-``, ``@`` or a compatibility form of one (full-width, small)."""
    if char in _FORMULA_SIGNS:
        return True
    return not char.isascii() and unicodedata.normalize("NFKC", char)[:1] in _FORMULA_SIGNS


def _runs_from(cell: str, start: int) -> bool:
    """Whether the text of ``cell`` from ``start`` would be run as a formula."""
    for index in range(start, len(cell)):
        char = cell[index]
        if not _skipped(char):
            return _is_sign(char)
    return False


def _starts_formula(cell: str, start: int) -> bool:
    """Whether a cell a spreadsheet begins at ``start`` would be run (or start with tab / CR)."""
    return cell.startswith(FORMULA_PREFIXES, start) or _runs_from(cell, start)


def neutralise(cell: str) -> str:
    """``cell`` made safe to open in a spreadsheet: formula-like text gets a leading ``'``,
    at the start and after every ``;`` or line break (see the module docstring).

    >>> neutralise("=1+1"), neutralise("web-1"), neutralise(" \u00a0=1"), neutralise("a;=1")
    ("'=1+1", 'web-1', "' \xa0=1", "a;'=1")
    """
    if cell[:1] in _SAFE_FIRST and ";" not in cell and "\n" not in cell and "\r" not in cell:
        return cell  # the common case: ids, names, emails, times, JSON
    out = "'" + cell if _starts_formula(cell, 0) else cell
    if not _SPLITS.isdisjoint(cell):
        pieces: list[str] = []
        last = 0
        for index, char in enumerate(out):
            if char in _SPLITS and _starts_formula(out, index + 1):
                pieces.append(out[last : index + 1])
                pieces.append("'")
                last = index + 1
        pieces.append(out[last:])
        out = "".join(pieces)
    return out


def display_user(actor: Actor) -> str:
    """Who acted, as people read it: email, else name, else id; ``(as X)`` when impersonating.

    >>> display_user(Actor(email="ann@example.com", impersonator=Actor(email="root@example.com")))
    'root@example.com (as ann@example.com)'
    """
    if actor.impersonator is None:
        return _identity(actor)
    return f"{_identity(actor.impersonator)} (as {_identity(actor)})"


def _identity(actor: Actor) -> str:
    return actor.email or actor.name or actor.id or ""


def _json_cell(value: Mapping[str, Any] | None) -> str:
    return dumps(dict(value)).decode("utf-8") if value else ""


def csv_row(event: AuditEvent) -> list[str]:
    """One event as the cells of ``CSV_COLUMNS``, already neutralised."""
    performer = event.actor.impersonator or event.actor
    resource = event.resource
    request = event.request
    changes = event.changes
    cells = [
        format_timestamp(event.unix_ms),
        display_user(event.actor),
        performer.id or "",
        event.action.label,
        event.action.id,
        resource.type if resource else "",
        (resource.id or "") if resource else "",
        (resource.name or "") if resource else "",
        event.project.id if event.project else "",
        event.outcome,
        (request.client_ip or "") if request else "",
        (request.user_agent or "") if request else "",
        ";".join(changes.fields) if changes else "",
        _json_cell(changes.before if changes else None),
        _json_cell(changes.after if changes else None),
        _json_cell(event.details),
        event.id,
        event.tenant.id if event.tenant else "",
    ]
    return [neutralise(cell) for cell in cells]


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """The header line, then one RFC 4180 line (``\\r\\n``-terminated) per event."""
    return _csv_text(map(csv_row, events))


def _csv_text(rows: Iterable[list[str]]) -> Iterator[str]:
    """The header line, then each row of cells as one RFC 4180 line."""
    line = io.StringIO()
    writer = csv.writer(line, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield line.getvalue()
    for row in rows:
        line.seek(0)
        line.truncate()
        writer.writerow(row)
        yield line.getvalue()


class RowTally:
    """A ``progress`` callback that adds up the rows and passes each increment on.

    >>> tally = RowTally(); tally(500); tally(12); tally.rows
    512
    """

    __slots__ = ("_progress", "rows")

    def __init__(self, progress: Callable[[int], None] | None = None) -> None:
        self.rows = 0
        self._progress = progress

    def __call__(self, done: int) -> None:
        self.rows += done
        if self._progress is not None:
            self._progress(done)


def ndjson_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    """Each event's stored document as one line of JSON."""
    for event in events:
        yield dumps(event.to_document()).decode("utf-8") + "\n"


def write_export(
    events: Iterable[AuditEvent],
    out: IO[bytes],
    format: ExportFormat = "csv",
    *,
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``events`` to ``out`` as CSV or NDJSON and return how many were written.

    ``progress`` is called now and then with the number of rows written since its last
    call (a progress bar's ``update``).

    >>> import io; out = io.BytesIO()
    >>> write_export([], out, "ndjson"), out.getvalue()
    (0, b'')
    """
    return write_chunks(out, lambda tally: export_chunks(events, format, bom=bom, progress=tally), progress)


def export_chunks(
    events: Iterable[AuditEvent],
    format: ExportFormat = "csv",
    *,
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The export of ``events`` as UTF-8 chunks of about 64 KiB, for a streamed HTTP response.

    The CSV header comes first, on its own, so a client sees the download start at once.
    ``progress`` is called as in ``write_export``, and once more with the rows formatted
    so far when the export fails or is closed early.

    >>> b"".join(export_chunks([], "csv")).decode()[:20]
    'timestamp,user,user_'
    """
    _check_format(format)
    lines = csv_lines(events) if format == "csv" else ndjson_lines(events)
    return _chunked(lines, format, bom, progress)


def document_csv_row(document: Mapping[str, Any]) -> list[str]:
    """One stored document as the cells of ``CSV_COLUMNS``, already neutralised.

    The same cells as ``csv_row(AuditEvent.from_document(document))``, read straight from
    the document (only ``CSV_SOURCE_FIELDS``).
    """
    return [neutralise(cell) for cell in _document_cells(document, {})]


def _document_cells(document: Mapping[str, Any], labels: dict[Any, str]) -> list[str]:
    """The cells of ``document_csv_row`` before ``neutralise``; ``labels`` caches catalog labels.

    Written out inline (no helper per cell): this runs once per exported row.
    """
    event = document["event"]
    audit = document.get("audit") or {}
    user = document.get("user") or {}
    effective = user.get("effective")
    who = user.get("email") or user.get("name") or user.get("id") or ""
    if effective:
        who = f"{who} (as {effective.get('email') or effective.get('name') or effective.get('id') or ''})"
    action_id = event["action"]
    label = labels.get(action_id)
    if label is None and action_id in CATALOG:
        # a label never changes once registered (ActionCatalog.add refuses another)
        label = labels[action_id] = CATALOG.get(action_id).label
    resource = audit.get("resource") or {}
    project = audit.get("project")
    organization = document.get("organization")
    changes = audit.get("changes")
    stamp = document["@timestamp"]
    return [
        stamp if _CANONICAL_TIME.fullmatch(stamp) else format_timestamp(parse_timestamp(stamp)),
        who,
        user.get("id") or "",
        label or (audit.get("action") or {}).get("label") or action_id,
        action_id,
        resource.get("type") or "",
        resource.get("id") or "",
        resource.get("name") or "",
        _original_id(project, project) if project else "",
        event.get("outcome", "unknown"),
        (document.get("source") or {}).get("ip") or "",
        (document.get("user_agent") or {}).get("original") or "",
        ";".join(changes.get("fields", ())) if changes else "",
        _json_cell(changes.get("before")) if changes else "",
        _json_cell(changes.get("after")) if changes else "",
        _json_cell(audit.get("details")),
        event["id"],
        _original_id(organization, audit.get("organization")) if organization else "",
    ]


def _write_block(
    rows: list[list[str]], buffer: io.StringIO, writerows: Callable[[list[list[str]]], object]
) -> None:
    """``neutralise`` every cell of ``rows`` and write them to ``buffer`` as ``writerows`` would.

    The batch is joined into one text (a NUL before every cell, \\x01 after every row) that
    regexes scan in C: for the few cells neutralise may change (``_UNSAFE_*``), and for the
    cells to quote, which are quoted and joined with str methods: several times faster
    than the csv module, which looks at every character of every cell twice. Rows whose
    cells are not all text, or hold a NUL or \\x01, go through ``neutralise`` cell by cell
    and ``writerows``: for a cell that is not text this raises as the per-row path does, and
    the rows from the failing one on are dropped from ``rows`` (the caller counts the rest).
    """
    if not rows:
        return
    width = len(CSV_COLUMNS)
    try:
        text = "\x00" + "\x01\x00".join(map("\x00".join, rows)) + "\x01"
    except TypeError:
        text = ""
    if text.count("\x00") != len(rows) * width or text.count("\x01") != len(rows):
        done = 0
        try:
            for row in rows:
                row[:] = [neutralise(cell) for cell in row]
                done += 1
        except TypeError:
            del rows[done:]
            raise
        writerows(rows)
        return
    breaks = "\n" in text or "\r" in text
    if _neutralise_found(rows, text, breaks):
        text = "\x00" + "\x01\x00".join(map("\x00".join, rows)) + "\x01"
    quoted = (_QUOTED_CELL if breaks else _QUOTED_LINE_CELL).sub(_quote_cell, text)
    buffer.write(quoted[1:].replace("\x01\x00", "\x01").replace("\x00", ",").replace("\x01", "\r\n"))


def _quote_cell(match: re.Match[str]) -> str:
    return '\x00"' + match[1].replace('"', '""') + '"'


def _neutralise_found(rows: list[list[str]], text: str, breaks: bool) -> bool:
    """``neutralise`` the cells of ``rows`` that ``text`` (see ``_write_block``; ``breaks``: it
    holds a line break) shows it may change. Returns whether any cell changed.
    """
    starts = [match.start() for match in _UNSAFE_START.finditer(text)]
    starts += [match.start() for match in _UNSAFE_SEMICOLON.finditer(text)]
    if breaks:
        starts += [match.start() for match in _UNSAFE_BREAK.finditer(text)]
    width = len(CSV_COLUMNS)
    changed = False
    cell, at, done = 0, 0, -1  # a cell's index, the position of the NUL before it, the last one seen
    for start in sorted(starts):
        cell += text.count("\x00", at + 1, start + 1)
        at = text.rfind("\x00", 0, start + 1)
        if cell != done:
            row = rows[cell // width]
            before = row[cell % width]
            row[cell % width] = after = neutralise(before)
            changed = changed or after != before
            done = cell
    return changed


def _document_csv(
    documents: Iterable[Mapping[str, Any]], bom: bool, progress: Callable[[int], None] | None
) -> Iterator[bytes]:
    """The CSV export of ``documents`` as ``_chunked`` would make it from ``document_csv_row``
    lines, byte for byte, formatted and written ``_BATCH_ROWS`` rows at a time."""
    yield (UTF8_BOM if bom else b"") + next(_csv_text(())).encode("utf-8")
    yield from _joined(_csv_blocks(documents), progress)


def _csv_blocks(documents: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, int]]:
    """The CSV text of ``documents`` ``_BATCH_ROWS`` rows at a time, with its row count.

    On a failure the rows formatted before it are counted (with no text), as ``_chunked``
    counts the lines made before one fails.
    """
    buffer = io.StringIO()
    writerows = csv.writer(buffer, lineterminator="\r\n").writerows
    labels: dict[Any, str] = {}
    batch: list[list[str]] = []
    try:
        for document in documents:
            batch.append(_document_cells(document, labels))
            if len(batch) >= _BATCH_ROWS:
                yield _block(batch, buffer, writerows), len(batch)
                batch.clear()
        if batch:
            yield _block(batch, buffer, writerows), len(batch)
    except Exception:
        yield "", len(batch)  # _write_block left the rows done before the failing one
        raise


def _block(rows: list[list[str]], buffer: io.StringIO, writerows: Callable[[list[list[str]]], object]) -> str:
    """``rows`` written as CSV (``_write_block``), and the buffer emptied."""
    _write_block(rows, buffer, writerows)
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def document_chunks(
    documents: Iterable[Mapping[str, Any]],
    format: ExportFormat = "csv",
    *,
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Like ``export_chunks``, from stored documents: CSV by ``document_csv_row``, NDJSON as stored.

    >>> b"".join(document_chunks([{"event": {"id": "e1"}}], "ndjson"))
    b'{"event":{"id":"e1"}}\\n'
    """
    _check_format(format)
    if format == "csv":
        return _document_csv(documents, bom, progress)
    lines = (dumps(document).decode("utf-8") + "\n" for document in documents)
    return _chunked(lines, format, bom, progress)


def stored_document_chunks(
    documents: Iterable[str],
    format: ExportFormat = "csv",
    *,
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Like ``document_chunks``, from stored JSON text (``AuditStore.documents``).

    NDJSON writes each document as stored, byte for byte; CSV parses each one once.
    """
    _check_format(format)
    if format == "csv":
        return _document_csv(map(loads, documents), bom, progress)
    return _chunked((document + "\n" for document in documents), format, bom, progress)


def write_documents(
    documents: Iterable[str],
    out: IO[bytes],
    format: ExportFormat = "csv",
    *,
    bom: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """``write_export`` of stored JSON text (``AuditStore.documents``); returns the row count."""
    return write_chunks(
        out, lambda tally: stored_document_chunks(documents, format, bom=bom, progress=tally), progress
    )


def write_chunks(
    out: IO[bytes],
    chunks_of: Callable[[RowTally], Iterable[bytes]],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the chunks ``chunks_of(tally)`` makes to ``out``; returns the rows the tally counted."""
    tally = RowTally(progress)
    for chunk in chunks_of(tally):
        out.write(chunk)
    return tally.rows


def _original_id(stored: Mapping[str, Any] | None, originals: Mapping[str, Any] | None) -> str:
    """A scope's id as the app named it (as ``AuditEvent.from_document`` reads it), or ""."""
    if not stored:
        return ""
    original = (originals or {}).get("original_id")
    return original if isinstance(original, str) else str(stored["id"])


def _check_format(format: str) -> None:
    if format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")


def _chunked(
    lines: Iterator[str], format: ExportFormat, bom: bool, progress: Callable[[int], None] | None
) -> Iterator[bytes]:
    """``lines`` (the CSV header first) joined into chunks of about ``_CHUNK_CHARS``."""
    if format == "csv":
        yield (UTF8_BOM if bom else b"") + next(lines).encode("utf-8")
    yield from _joined(((line, 1) for line in lines), progress)


def _joined(pieces: Iterable[tuple[str, int]], progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """Texts, each with the rows it holds, joined into chunks of about ``_CHUNK_CHARS``;
    ``progress`` is told of the rows every ``_PROGRESS_EVERY``."""
    rows = 0
    reported = 0
    chunk: list[str] = []
    size = 0
    try:
        for text, count in pieces:
            chunk.append(text)
            size += len(text)
            rows += count
            if size >= _CHUNK_CHARS:
                yield "".join(chunk).encode("utf-8", errors="replace")
                chunk.clear()
                size = 0
            if progress is not None and rows - reported >= _PROGRESS_EVERY:
                progress(rows - reported)
                reported = rows
        if chunk:
            yield "".join(chunk).encode("utf-8", errors="replace")
    finally:
        # also on failure or an early close: whoever counts knows how far the export got
        if progress is not None and rows > reported:
            progress(rows - reported)
