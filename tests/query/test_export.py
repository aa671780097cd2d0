"""CSV and NDJSON export: RFC 4180, formula neutralisation, UTF-8, streaming."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_middleware.model.encoding import dumps, loads
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts, Resource
from audit_middleware.query.export import (
    CSV_COLUMNS,
    CSV_SOURCE_FIELDS,
    FORMULA_PREFIXES,
    UTF8_BOM,
    csv_row,
    display_user,
    document_chunks,
    document_csv_row,
    export_chunks,
    neutralise,
    stored_document_chunks,
    write_documents,
    write_export,
)
from tests.query.conftest import NOW_MS, make_event

DANGEROUS = tuple(FORMULA_PREFIXES)


def _csv(events: list[AuditEvent], **options: object) -> tuple[bytes, list[dict[str, str]]]:
    out = io.BytesIO()
    count = write_export(events, out, "csv", **options)  # type: ignore[arg-type]
    data = out.getvalue()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert count == len(rows) == len(events)
    return data, rows


def test_header_and_line_ends() -> None:
    """The first line names the columns; lines end with CRLF."""
    data, _ = _csv([make_event("create")])
    assert data.split(b"\r\n")[0].decode() == ",".join(CSV_COLUMNS)
    assert data.endswith(b"\r\n")
    assert data.count(b"\r\n") == 2
    assert not data.startswith(UTF8_BOM)


def test_columns_of_a_full_event() -> None:
    """Every column is filled from the event, times in UTC ISO 8601 with Z and milliseconds."""
    event = make_event(
        "update",
        unix_ms=1_764_000_000_123,
        user=Actor(id="u1", email="ann@example.com"),
        resource=Resource("virtual_machine", "vm-7", "web, frontend"),
        project="p1",
        changes=ChangeSet({"cpus": 2, "name": "a"}, {"cpus": 4, "name": "b"}, ("cpus", "name")),
        details={"reason": "scale up"},
        request=RequestFacts(client_ip="203.0.113.9", user_agent="Mozilla/5.0 (X11)"),
    )
    _, [row] = _csv([event])
    assert row == {
        "timestamp": "2025-11-24T16:00:00.123Z",
        "user": "ann@example.com",
        "user_id": "u1",
        "action": "Update",
        "action_id": "update",
        "resource_type": "virtual_machine",
        "resource_id": "vm-7",
        "resource_name": "web, frontend",
        "project": "p1",
        "outcome": "success",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (X11)",
        "modified_fields": "cpus;name",
        "previous_values": '{"cpus":2,"name":"a"}',
        "new_values": '{"cpus":4,"name":"b"}',
        "details": '{"reason":"scale up"}',
        "event_id": event.id,
        "tenant": "acme",
    }


def test_an_event_with_nothing_optional() -> None:
    """Missing parts are empty cells, not 'None'."""
    event = make_event("login", tenant=None, user=Actor(name="anonymous"))
    _, [row] = _csv([event])
    assert row["user"] == "anonymous"
    assert all(
        row[column] == "" for column in ("resource_type", "project", "ip", "previous_values", "tenant")
    )


def test_impersonation_is_shown() -> None:
    """The person who acted comes first, the identity used after "as"."""
    actor = Actor(id="u4", email="erin@example.com", impersonator=Actor(id="u9", name="Support Sam"))
    assert display_user(actor) == "Support Sam (as erin@example.com)"
    _, [row] = _csv([make_event("update", user=actor)])
    assert (row["user"], row["user_id"]) == ("Support Sam (as erin@example.com)", "u9")


def test_rfc4180_quoting() -> None:
    """Commas, quotes and line breaks are quoted, quotes doubled, and read back intact."""
    name = 'a,b "quoted"\r\nline two\nline three'
    data, [row] = _csv([make_event("create", resource=Resource("pod", "p", name))])
    assert row["resource_name"] == name
    assert b'"a,b ""quoted""\r\nline two\nline three"' in data


@pytest.mark.parametrize("prefix", DANGEROUS)
def test_formula_cells_are_neutralised(prefix: str) -> None:
    """A cell starting with = + - @ tab or CR gets a leading quote, in every text column."""
    value = f"{prefix}HYPERLINK(1)"
    event = make_event(
        "update",
        user=Actor(id=value, name=value),
        resource=Resource("pod", value, value),
        project=value,
        changes=ChangeSet({}, {}, (value,)),
        request=RequestFacts(client_ip=value, user_agent=value),
    )
    _, [row] = _csv([event])
    for column in ("user", "user_id", "resource_id", "resource_name", "project", "ip", "user_agent"):
        assert row[column] == "'" + value, column
    assert row["modified_fields"] == "'" + value


def test_neutralise_leaves_ordinary_text() -> None:
    """Only text a spreadsheet would run is touched."""
    assert neutralise("web-1") == "web-1"
    assert neutralise("a=b; c") == "a=b; c"
    assert neutralise("") == ""
    assert neutralise("-1") == "'-1"
    assert neutralise("'=1") == "'=1"  # already text for a spreadsheet


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param(" =1+1", "' =1+1", id="space"),
        pytest.param("\n=1+1", "'\n'=1+1", id="newline, and the line it starts"),
        pytest.param("\u00a0+1", "'\u00a0+1", id="no-break space"),
        pytest.param("\u3000-1", "'\u3000-1", id="ideographic space"),
        pytest.param("\ufeff@SUM(1)", "'\ufeff@SUM(1)", id="byte order mark"),
        pytest.param("\u200b=1", "'\u200b=1", id="zero width space"),
        pytest.param('"=1', "'\"=1", id="quote, read as the start of a quoted field"),
        pytest.param("\uff1d1+1", "'\uff1d1+1", id="full-width equals"),
        pytest.param("\uff0b1", "'\uff0b1", id="full-width plus"),
        pytest.param("\uff0d1", "'\uff0d1", id="full-width minus"),
        pytest.param("\uff20SUM(1)", "'\uff20SUM(1)", id="full-width at"),
        pytest.param("a;=1+1", "a;'=1+1", id="semicolon locale"),
        pytest.param("a; \u00a0=1", "a;' \u00a0=1", id="semicolon then invisible"),
        pytest.param("a;b;+1", "a;b;'+1", id="second semicolon"),
        pytest.param("a\n=1", "a\n'=1", id="line break inside the cell"),
        pytest.param("=1;=2", "'=1;'=2", id="start and after a semicolon"),
    ],
)
def test_formulas_hidden_behind_invisible_characters_and_splits(cell: str, expected: str) -> None:
    """Leading white space or invisible characters, full-width forms and ; or line splits are neutralised."""
    assert neutralise(cell) == expected


def test_a_semicolon_locale_sees_no_formula_in_a_row() -> None:
    """A line split on ';' (a semicolon-locale spreadsheet) has no piece that starts a formula."""
    event = make_event(
        "update",
        resource=Resource("pod", "p", "web;=HYPERLINK(1)"),
        changes=ChangeSet({}, {}, ("name", "=cmd")),  # joined with ';' in modified_fields
    )
    data, _ = _csv([event])
    for piece in _spreadsheet_pieces(data.decode("utf-8")):
        assert not _starts_formula(piece), piece


_INVISIBLE = " \t\r\n\u00a0\u1680\u2000\u2007\u200b\u200e\u2028\u202e\u2060\u3000\ufeff\x0b\x0c\x85\x00"
_TRIGGERS = "=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b"


def _starts_formula(piece: str) -> bool:
    """Whether a spreadsheet could run ``piece``: a trigger after invisible characters or quotes.

    Written apart from the code under test: skip every character that is white space,
    a control, a format or separator character or a double quote, then look at the next.
    """
    if piece.startswith(("\t", "\r")):
        return True
    for char in piece:
        if char.isspace() or char == '"' or unicodedata.category(char)[0] in "CZ":
            continue
        return unicodedata.normalize("NFKC", char)[:1] in set("=+-@")
    return False


def _spreadsheet_pieces(text: str) -> list[str]:
    """Every cell a spreadsheet might see: each cell of a proper CSV parse, and every piece of
    the raw text split on ';' or a line break (a semicolon locale that loses the quoting)."""
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    return cells + re.split(r"[;\r\n]", text)


def hostile_event(
    name: str, user: str, user_agent: str, details: dict[str, object], fields: list[str]
) -> AuditEvent:
    """An event holding the given texts in every text column of the CSV."""
    return make_event(
        "update",
        user=Actor(id=user, name=user),
        resource=Resource("pod", name, name),
        changes=ChangeSet(dict.fromkeys(fields, 1), {}, tuple(fields)),
        details=details,
        request=RequestFacts(user_agent=user_agent),
    )


def assert_no_formula(text: str) -> None:
    """No cell of the CSV ``text``, parsed or split as a semicolon locale may, starts a formula."""
    for piece in _spreadsheet_pieces(text):
        assert not _starts_formula(piece), piece


_hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from(_INVISIBLE + _TRIGGERS + ";,\"'"),
    ),
    max_size=30,
)
_json_value = st.one_of(_hostile_text, st.integers(), st.none())


@given(
    name=_hostile_text,
    user=_hostile_text,
    user_agent=_hostile_text,
    details=st.dictionaries(_hostile_text, _json_value, max_size=3),
    fields=st.lists(_hostile_text, max_size=3),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_no_cell_starts_a_formula_after_any_split(
    name: str, user: str, user_agent: str, details: dict[str, object], fields: list[str]
) -> None:
    """Property: no parsed cell, and no piece of a line split on ';' or a line break, starts a formula."""
    event = hostile_event(name, user, user_agent, details, fields)
    data, [row] = _csv([event])
    assert_no_formula(data.decode("utf-8-sig"))
    # only quotes are added: without them the text reads back unchanged
    assert row["resource_name"].replace("'", "") == name.replace("'", "")


def test_utf8_without_and_with_bom() -> None:
    """Text is UTF-8; bom=True prefixes the byte order mark Excel looks for."""
    event = make_event("create", resource=Resource("pod", "p", "Zürich 東京 🚀"))
    data, [row] = _csv([event])
    assert "Zürich 東京 🚀".encode() in data
    assert row["resource_name"] == "Zürich 東京 🚀"
    with_bom, _ = _csv([event], bom=True)
    assert with_bom.startswith(UTF8_BOM)
    assert with_bom[len(UTF8_BOM) :] == data


def test_ndjson_is_one_document_per_line() -> None:
    """NDJSON holds each stored document, one per line, newline-terminated."""
    events = [make_event("create", ago_ms=1), make_event("delete", resource=Resource("pod", "p", "a\nb"))]
    out = io.BytesIO()
    assert write_export(events, out, "ndjson") == 2
    lines = out.getvalue().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == [event.to_document() for event in events]


def test_unknown_format() -> None:
    """Only csv and ndjson are written."""
    with pytest.raises(ValueError, match="csv, ndjson"):
        write_export([], io.BytesIO(), "xlsx")  # type: ignore[arg-type]


class _FirstWriteError(Exception):
    """Stops an export at its first write of event data."""


class _WatchingOutput(io.BytesIO):
    """Notes how many events the source had produced when event data was first written."""

    def __init__(self, source: _CountingSource) -> None:
        super().__init__()
        self.source = source
        self.produced_at_first_write: int | None = None

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.source.produced:
            self.produced_at_first_write = self.source.produced
            raise _FirstWriteError
        return super().write(data)


class _CountingSource:
    """A lazy stream of events that counts how far it was consumed."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.produced = 0

    def __iter__(self) -> Iterator[AuditEvent]:
        for index in range(self.total):
            self.produced += 1
            yield make_event("create", unix_ms=NOW_MS - index, resource=Resource("pod", str(index), "web"))


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_export_streams(fmt: str) -> None:
    """100k events are not materialised: output starts after a small part was read."""
    source = _CountingSource(100_000)
    out = _WatchingOutput(source)
    with pytest.raises(_FirstWriteError):
        write_export(source, out, fmt)  # type: ignore[arg-type]
    assert out.produced_at_first_write is not None
    assert out.produced_at_first_write < 1_000


def test_progress_adds_up() -> None:
    """The progress callback's increments sum to the number of rows."""
    increments: list[int] = []
    events = [make_event("create", ago_ms=index) for index in range(1234)]
    assert write_export(events, io.BytesIO(), "csv", progress=increments.append) == 1234
    assert sum(increments) == 1234


def _projected(document: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """``document`` reduced to ``fields`` (dotted paths), as a ``_source`` includes list returns it."""
    out: dict[str, Any] = {}
    for path in fields:
        *parents, leaf = path.split(".")
        source: Any = document
        for part in parents:
            source = source.get(part) if isinstance(source, Mapping) else None
        if not isinstance(source, Mapping) or leaf not in source:
            continue
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = source[leaf]
    return out


def _varied_events() -> list[AuditEvent]:
    impersonation = Actor(id="u4", email="erin@example.com", impersonator=Actor(id="u9", name="Support Sam"))
    return [
        make_event("login", tenant=None, user=Actor(name="anonymous")),
        make_event("update", user=impersonation, project="p1"),
        make_event(
            "update",
            unix_ms=1_764_000_000_123,
            resource=Resource("virtual_machine", "vm-7", "=web, frontend"),
            changes=ChangeSet({"cpus": 2}, {"cpus": 4, "note": "a;=b"}, ("cpus", "note")),
            details={"reason": "scale up", "nested": {"k": [1, 2]}},
            request=RequestFacts(client_ip="203.0.113.9", user_agent="Mozilla/5.0 (X11)", path="/vm"),
        ),
        make_event("delete", tenant="t" * 300, project="p" * 300, resource=Resource("pod")),
        make_event("create", user=Actor(id="only-id")),
    ]


@pytest.mark.parametrize("event", _varied_events())
def test_document_rows_equal_event_rows(event: AuditEvent) -> None:
    """document_csv_row of a stored document (full, or only CSV_SOURCE_FIELDS) equals csv_row of its event."""
    stored = json.loads(json.dumps(event.to_document()))
    assert document_csv_row(stored) == csv_row(event)
    assert document_csv_row(_projected(stored, CSV_SOURCE_FIELDS)) == csv_row(event)


def test_an_action_unknown_to_this_process_shows_its_stored_label() -> None:
    """An action this process never registered shows its stored label, as from_document reads it."""
    document = make_event("create").to_document()
    document["event"]["action"] = "reticulate_splines"
    document["audit"]["action"] = {"label": "Reticulate Splines"}
    assert document_csv_row(document)[3:5] == ["Reticulate Splines", "reticulate_splines"]
    assert document_csv_row(document) == csv_row(AuditEvent.from_document(document))


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_document_chunks_match_the_event_export(fmt: str) -> None:
    """document_chunks writes the same bytes as write_export for the same records; NDJSON as stored."""
    events = _varied_events()
    written = io.BytesIO()
    write_export(events, written, fmt)  # type: ignore[arg-type]
    documents = [event.to_document() for event in events]
    increments: list[int] = []
    chunks = b"".join(document_chunks(documents, fmt, progress=increments.append))  # type: ignore[arg-type]
    assert chunks == written.getvalue()
    assert sum(increments) == len(events)
    if fmt == "ndjson":
        assert [json.loads(line) for line in chunks.splitlines()] == documents


def test_document_chunks_reject_an_unknown_format() -> None:
    """An unknown format is a ValueError before anything is read."""
    with pytest.raises(ValueError, match="export format"):
        document_chunks(iter(()), "xml")  # type: ignore[arg-type]


def test_progress_reports_the_rows_written_before_a_failure() -> None:
    """An export that breaks off still reports the rows it formatted (the audit record says how far)."""

    def broken() -> Iterator[AuditEvent]:
        yield from (make_event("create", ago_ms=index) for index in range(3))
        raise OSError("disk full")

    increments: list[int] = []
    with pytest.raises(OSError, match="disk full"):
        b"".join(export_chunks(broken(), "csv", progress=increments.append))
    assert sum(increments) == 3


def test_a_stored_time_with_an_offset_is_written_in_utc() -> None:
    """document_csv_row writes a @timestamp stored with an offset as UTC with Z, as csv_row does."""
    document = make_event("create").to_document()
    document["@timestamp"] = "2025-11-24T17:00:00.123+01:00"
    assert document_csv_row(document)[0] == "2025-11-24T16:00:00.123Z"


# -- from stored documents -------------------------------------------------------------------


def _varied_documents() -> list[str]:
    """Stored documents of every shape: full, impersonation, no tenant, hashed tenant, unknown action."""
    full = make_event(
        "update",
        resource=Resource("pod", "p-1", "=web;-1"),
        project="platform",
        changes=ChangeSet({"replicas": 1}, {"replicas": 2}, ("replicas",)),
        details={"reason": "scale", "nested": {"a": [1, 2]}},
        request=RequestFacts(method="PATCH", path="/pods/p-1", client_ip="203.0.113.9", user_agent="curl/8"),
    )
    acting = make_event("delete", user=Actor(id="7", email="ann@x", impersonator=Actor(name="Root")))
    bare = make_event("login", tenant=None, user=Actor())
    hashed = make_event("create", tenant="t" * 300, project="p" * 300)
    unknown = make_event("create").to_document()
    unknown["event"]["action"] = "never_registered_here"
    unknown["audit"]["action"]["label"] = "Never Registered"
    unknown["@timestamp"] = "2025-06-01T00:00:00Z"  # another writer's spelling of the time
    return [dumps(e.to_document()).decode() for e in (full, acting, bare, hashed)] + [dumps(unknown).decode()]


def test_a_csv_row_from_the_stored_document_equals_the_events_row() -> None:
    """document_csv_row gives the same cells as csv_row of the rebuilt event, for every kind of record."""
    for text in _varied_documents():
        document = loads(text)
        assert document_csv_row(document) == csv_row(AuditEvent.from_document(document)), text


def test_document_exports_match_event_exports() -> None:
    """CSV from documents is byte-identical to CSV from events; NDJSON writes each document as given."""
    documents = _varied_documents()
    documents[0] = documents[0].replace('{"', '{ "', 1)  # stored with other spacing: kept as stored
    from_events, from_documents = io.BytesIO(), io.BytesIO()
    write_export([AuditEvent.from_document(loads(d)) for d in documents], from_events, "csv")
    assert write_documents(documents, from_documents, "csv") == len(documents)
    assert from_documents.getvalue() == from_events.getvalue()
    ndjson = io.BytesIO()
    write_documents(documents, ndjson, "ndjson")
    assert ndjson.getvalue().decode().splitlines() == documents


def test_parsed_documents_export_like_their_json_text() -> None:
    """A store handing out parsed documents (OpenSearch _source) exports the same bytes as from JSON text."""
    texts = _varied_documents()
    for fmt in ("csv", "ndjson"):
        from_texts = io.BytesIO()
        write_documents(texts, from_texts, fmt)  # type: ignore[arg-type]
        from_parsed = b"".join(document_chunks([loads(text) for text in texts], fmt))  # type: ignore[arg-type]
        if fmt == "ndjson":  # as stored: the same documents, whatever spacing the text had
            assert [loads(line) for line in from_parsed.splitlines()] == [loads(t) for t in texts]
        else:
            assert from_parsed == from_texts.getvalue(), fmt


# -- the batch path: rows formatted, neutralised and written a batch at a time ---------------


def _per_row_export(documents: list[Mapping[str, Any]]) -> bytes:
    """A CSV export as the per-row path writes it: ``document_csv_row``, one ``csv.writer`` line
    each, encoded as ``_chunked`` encodes (written apart from the batch path it checks)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for document in documents:
        writer.writerow(document_csv_row(document))
    return out.getvalue().encode("utf-8", errors="replace")


_TRICKY = _INVISIBLE + _TRIGGERS + ";,\"' \x01\ud800\u00e9\u6771\U0001f680"
_tricky_text = st.text(
    alphabet=st.one_of(st.sampled_from(_TRICKY), st.characters(blacklist_categories=("Cs",))), max_size=12
)
_scope = st.fixed_dictionaries({"id": _tricky_text}, optional={"original_id": _tricky_text})
_user = st.fixed_dictionaries({}, optional={"id": _tricky_text, "name": _tricky_text, "email": _tricky_text})
_json_object = st.dictionaries(_tricky_text, st.one_of(_tricky_text, st.integers(), st.none()), max_size=2)
_documents = st.fixed_dictionaries(
    {
        "@timestamp": st.sampled_from(["2025-11-24T16:00:00.123Z", "2025-06-01T00:00:00+02:00"]),
        "event": st.fixed_dictionaries(
            {"id": _tricky_text, "action": st.one_of(st.sampled_from(["update", "login"]), _tricky_text)},
            optional={"outcome": _tricky_text},
        ),
    },
    optional={
        "user": st.one_of(_user, st.builds(lambda u, acting: {**u, "effective": acting}, _user, _user)),
        "organization": _scope,
        "source": st.fixed_dictionaries({"ip": _tricky_text}),
        "user_agent": st.fixed_dictionaries({"original": _tricky_text}),
        "audit": st.fixed_dictionaries(
            {},
            optional={
                "action": st.fixed_dictionaries({"label": _tricky_text}),
                "resource": st.fixed_dictionaries(
                    {}, optional={"type": _tricky_text, "id": _tricky_text, "name": _tricky_text}
                ),
                "project": _scope,
                "organization": st.fixed_dictionaries({"original_id": _tricky_text}),
                "changes": st.fixed_dictionaries(
                    {},
                    optional={
                        "fields": st.lists(_tricky_text, max_size=3),
                        "before": _json_object,
                        "after": _json_object,
                    },
                ),
                "details": st.dictionaries(_tricky_text, st.one_of(_tricky_text, _json_object), max_size=2),
            },
        ),
    },
)


@given(documents=st.lists(_documents, min_size=1, max_size=4), copies=st.sampled_from([1, 60]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_batches_write_what_the_per_row_path_writes(documents: list[dict[str, Any]], copies: int) -> None:
    """Property: CSV from stored text and from parsed documents (batches of rows, one scan for
    the cells to neutralise, one for the cells to quote) is byte for byte the per-row export,
    for documents with missing parts, formula-like, invisible, non-ASCII and control text, NUL
    and lone surrogates (in parsed documents; stored text holds U+FFFD) in every CSV field."""
    documents = documents * copies  # 60 copies: several batches, some cells quoted in each
    assert b"".join(document_chunks(documents, "csv")) == _per_row_export(documents)
    texts = [dumps(document).decode("utf-8") for document in documents]
    stored = b"".join(stored_document_chunks(texts, "csv", bom=True))
    assert stored == UTF8_BOM + _per_row_export([loads(text) for text in texts])


def _tricky_events() -> list[AuditEvent]:
    """Events with missing parts, nested details, non-ASCII, formula-like and CSV-special text."""
    return [
        *_varied_events(),
        make_event("login", tenant=None, user=Actor()),
        make_event(
            "update",
            user=Actor(id="-u1", name="=cmd|' /C calc'!A0", email="ann@example.com"),
            resource=Resource("pod", "@p", 'a,b "quoted"\r\nline two\nline three'),
            project="Zürich 東京 🚀",
            changes=ChangeSet({"a": {"b": [1, {"c": "=1"}]}}, {"a": None, "é": "\u3000+1"}, ("é", "\n-1")),
            details={"nested": {"deeper": {"list": [1, 2.5, True, None, "x;=y"]}}, "emoji": "🚀"},
            request=RequestFacts(client_ip="\t203.0.113.9", user_agent="Mozilla/5.0 (X11; =Linux)"),
        ),
        make_event("delete", resource=Resource("pod", "p;+1", "\ufeff@SUM(1)"), details={"k": ""}),
        make_event("create", resource=Resource("pod", "", ""), details={"": {}}),
    ]


def test_stored_documents_export_like_their_events_in_many_batches() -> None:
    """600 copies of tricky records: CSV from their stored text equals CSV from the events
    (``csv_row``), and the progress and chunks add up."""
    events = _tricky_events() * 60
    from_events = io.BytesIO()
    write_export(events, from_events, "csv")
    texts = [dumps(event.to_document()).decode("utf-8") for event in events]
    increments: list[int] = []
    chunks = list(stored_document_chunks(texts, "csv", progress=increments.append))
    assert b"".join(chunks) == from_events.getvalue()
    assert chunks[0] == ",".join(CSV_COLUMNS).encode() + b"\r\n"  # the header alone, first
    assert len(chunks) > 2
    assert sum(increments) == len(events)


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param({"resource": {"name": 5}}, id="a number where text belongs"),
        pytest.param({"resource": {"type": ["pod"]}}, id="a list where text belongs"),
        pytest.param({"resource": {"id": True}}, id="true where text belongs"),
    ],
)
def test_a_value_that_is_not_text_fails_as_the_per_row_path_does(odd: dict[str, Any]) -> None:
    """Such a record stops the export with the per-row path's TypeError; progress counts the rows
    before it."""
    good = make_event("create").to_document()
    bad = make_event("create").to_document()
    bad["audit"].update(odd)
    documents = [good] * 150 + [bad] + [good] * 5
    with pytest.raises(TypeError) as expected:
        _per_row_export(documents)
    increments: list[int] = []
    with pytest.raises(TypeError) as raised:
        b"".join(document_chunks(documents, "csv", progress=increments.append))
    assert str(raised.value) == str(expected.value)
    assert sum(increments) == 150


def test_stored_text_that_is_not_json_fails_as_before() -> None:
    """A stored document orjson refuses (an escaped lone surrogate) raises its error; progress
    counts the rows before it."""
    good = dumps(make_event("create").to_document()).decode("utf-8")
    bad = good.replace('"acme"', '"\\ud800"', 1)
    with pytest.raises(ValueError, match="surrogate") as expected:
        loads(bad)
    increments: list[int] = []
    with pytest.raises(type(expected.value)):
        b"".join(stored_document_chunks([good] * 3 + [bad], "csv", progress=increments.append))
    assert sum(increments) == 3


@pytest.mark.parametrize(
    "cell",
    [
        "a\r=1",
        "a\r",
        "a;\t1",
        "a; =1",
        "a;  b",
        ";",
        "a;",
        "a;;=1",
        "\x00=1",
        "x\x01=1",
        "",
        "=",
        '"',
        "é=1",
        "-",
    ],
)
def test_each_edge_of_the_batch_scan(cell: str) -> None:
    """One cell at each edge of the scans (alone in its batch: no other line break or NUL), in
    every text column a document feeds, writes what the per-row path writes."""
    document = make_event("create").to_document()
    document["audit"]["resource"] = {"type": cell, "id": cell, "name": cell}
    document["user"] = {"id": cell, "email": cell}
    document["user_agent"] = {"original": cell}
    documents = [document, make_event("create").to_document()]
    assert b"".join(document_chunks(documents, "csv")) == _per_row_export(documents)
