"""The reading commands of the CLI: search, show, export, tail; their filters and errors."""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
import time
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from audit_middleware.cli import main
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts, Resource
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.reads import without_reads
from audit_middleware.sinks.sqlite import SQLiteSink
from tests.query.conftest import HOUR, MINUTE, make_event


@pytest.fixture(autouse=True)
def _no_opensearch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store is decided by the environment: start from a clean one."""
    monkeypatch.delenv("AUDIT_OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("AUDIT_SQLITE_PATH", raising=False)


@pytest.fixture
def events() -> dict[str, AuditEvent]:
    """A few acme events, newest first, and one of globex."""
    return {
        "update": make_event(
            "update",
            ago_ms=MINUTE,
            user=Actor(id="u1", email="ann@example.com"),
            resource=Resource("virtual_machine", "vm-1", "web-frontend"),
            changes=ChangeSet({"cpus": 2, "note": "old"}, {"cpus": 4}, ("cpus", "note")),
            details={"ticket": "OPS-7"},
            request=RequestFacts(
                method="PATCH", path="/vms/vm-1", status_code=200, client_ip="10.0.0.2", user_agent="curl/8.5"
            ),
        ),
        "delete": make_event(
            "delete",
            ago_ms=HOUR,
            user=Actor(id="u2", email="bob@example.com"),
            resource=Resource("pod", "p", "db-1"),
        ),
        "login": make_event("login_failed", ago_ms=2 * HOUR, user=Actor(email="eve@example.com")),
        "hostile": make_event(
            "create",
            ago_ms=3 * HOUR,
            resource=Resource("pod", "x", "\x1b[2J\x1b[31mowned\u202e\x9b2J\x7f\u2028\U000e0041"),
            user=Actor(id="u1"),
        ),
        "globex": make_event("delete", tenant="globex", resource=Resource("pod", "p", "db-1")),
    }


@pytest.fixture
def db(tmp_path: Path, events: dict[str, AuditEvent]) -> Path:
    """A SQLite store file holding ``events``."""
    path = tmp_path / "audit.sqlite3"
    with SQLiteSink(path) as sink:
        sink.write(events.values())
    return path


def run(db: Path, *args: str) -> Result:
    """Run the CLI against ``db``."""
    return CliRunner().invoke(main, [args[0], "--store", f"sqlite:{db}", *args[1:]])


def _stored(db: Path, **filters: str) -> list[AuditEvent]:
    """What the store holds for acme, without the records of reads unless ``action`` asks for them."""
    with SQLiteStore(db) as store:
        return store.search(without_reads(AuditQuery.build("acme", **filters))).events  # type: ignore[arg-type]


# -- search --------------------------------------------------------------------------------


def test_search_prints_a_table(db: Path, events: dict[str, AuditEvent]) -> None:
    """search prints a header and one line per event, newest first, only the tenant's."""
    result = run(db, "search", "--tenant", "acme")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "USER", "ACTION", "RESOURCE", "OUTCOME", "IP"]
    assert len(lines) == 5
    assert lines[1].split() == [
        events["update"].to_document()["@timestamp"],
        "ann@example.com",
        "Update",
        "virtual_machine",
        "web-frontend",
        "success",
        "10.0.0.2",
    ]
    assert "Login Failed" in lines[3]
    assert "failure" in lines[3]


def test_search_json(db: Path, events: dict[str, AuditEvent]) -> None:
    """--json prints the stored documents, one per line."""
    result = run(db, "search", "--tenant", "acme", "--json", "--action", "delete")
    assert result.exit_code == 0, result.output
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert documents == [events["delete"].to_document()]


def test_search_filters_and_text(db: Path, events: dict[str, AuditEvent]) -> None:
    """Filters and free text reach the store."""
    result = run(
        db, "search", "--tenant", "acme", "--json", "--user", "ANN@example.com", "--search", "web fr"
    )
    ids = [json.loads(line)["event"]["id"] for line in result.stdout.splitlines()]
    assert ids == [events["update"].id]
    result = run(db, "search", "--tenant", "acme", "--json", "--since", "24h", "--outcome", "failure")
    assert [json.loads(line)["event"]["id"] for line in result.stdout.splitlines()] == [events["login"].id]


def test_dash_selects_records_without_a_tenant_or_project(tmp_path: Path) -> None:
    """--tenant - and --project - name the records without one, never a tenant or project called "-"."""
    path = tmp_path / "audit.sqlite3"
    loose = make_event("create", tenant=None, ago_ms=MINUTE)
    dash_tenant = make_event("create", tenant="-", ago_ms=2 * MINUTE)
    in_dash = make_event("create", ago_ms=3 * MINUTE, project="-")
    outside = make_event("create", ago_ms=4 * MINUTE)
    with SQLiteSink(path) as sink:
        sink.write([loose, dash_tenant, in_dash, outside])

    def found(*args: str) -> list[str]:
        result = run(path, "search", "--json", *args)
        assert result.exit_code == 0, result.output
        return [json.loads(line)["event"]["id"] for line in result.stdout.splitlines()]

    assert found("--tenant", "-") == [loose.id]
    assert found("--tenant", "acme", "--project", "-") == [outside.id]


def test_search_pages_with_the_printed_cursor(db: Path) -> None:
    """The total and the next cursor are printed (on stderr); the cursor continues the listing."""
    first = run(db, "search", "--tenant", "acme", "--json", "--limit", "3")
    assert first.exit_code == 0
    assert len(first.stdout.splitlines()) == 3
    total, next_page = first.stderr.strip().splitlines()
    assert total == "4 matching events"
    cursor = next_page.removeprefix("next page: --cursor ")
    second = run(db, "search", "--tenant", "acme", "--json", "--page-size", "3", "--cursor", cursor)
    assert len(second.stdout.splitlines()) == 1
    assert second.stderr.strip() == "4 matching events", "a later page still says how many match"
    ids = [json.loads(line)["event"]["id"] for line in (first.stdout + second.stdout).splitlines()]
    assert ids == [event.id for event in _stored(db)]


def test_search_nothing_found(db: Path) -> None:
    """An unknown tenant finds nothing and says so, successfully."""
    result = run(db, "search", "--tenant", "initech")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1:] == []
    assert "no matching events" in result.stderr


def test_terminal_control_characters_are_shown_not_run(db: Path) -> None:
    """Escape sequences and bidi overrides in stored text cannot drive the terminal."""
    result = run(db, "search", "--tenant", "acme", "--resource-type", "pod", "--action", "create")
    assert "\x1b" not in result.stdout
    assert "\u202e" not in result.stdout
    assert "\\u001b[2J" in result.stdout


def _raw_controls(text: str) -> list[str]:
    """The characters of ``text`` that a terminal may act on (controls, format, line separators)."""
    return [char for char in text if unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"} and char != "\n"]


@pytest.mark.parametrize(
    "command",
    [
        ["search", "--tenant", "acme", "--json", "--action", "create"],
        ["tail", "--tenant", "acme", "--json", "--action", "create"],
    ],
)
def test_json_output_escapes_terminal_control_characters(
    db: Path, events: dict[str, AuditEvent], command: list[str]
) -> None:
    """--json escapes C0/C1 controls, DEL, bidi and format characters; the JSON decodes the same."""
    result = run(db, *command)
    assert result.exit_code == 0, result.output
    assert _raw_controls(result.stdout) == []
    assert [json.loads(line) for line in result.stdout.splitlines()] == [events["hostile"].to_document()]


def test_show_json_escapes_terminal_control_characters(db: Path, events: dict[str, AuditEvent]) -> None:
    """show --json escapes what a terminal would act on, and decodes to the stored document."""
    result = run(db, "show", events["hostile"].id, "--tenant", "acme", "--json")
    assert result.exit_code == 0, result.output
    assert _raw_controls(result.stdout) == []
    assert json.loads(result.stdout) == events["hostile"].to_document()


@pytest.mark.parametrize("text", ["*", "OR", '"', "\\", "field:value", "a AND b", ")", "x" * 200, "🚀"])
def test_hostile_search_text(db: Path, text: str) -> None:
    """Query syntax in --search is harmless."""
    result = run(db, "search", "--tenant", "acme", "--search", text)
    assert result.exit_code == 0, result.output


# -- show ----------------------------------------------------------------------------------


def test_show_prints_every_detail_and_the_diff(db: Path, events: dict[str, AuditEvent]) -> None:
    """show prints the event's details, request facts and the change as field: old -> new."""
    event = events["update"]
    result = run(db, "show", "--tenant", "acme", event.id)
    assert result.exit_code == 0, result.output
    text = result.stdout
    for expected in (
        f"Event:         {event.id}",
        "User:          ann@example.com [user]",
        "Action:        Update (update)",
        "Resource type: virtual_machine",
        "Resource name: web-frontend",
        "IP address:    10.0.0.2",
        "User agent:    curl/8.5",
        "Request:       PATCH /vms/vm-1 -> 200",
        "  cpus: 2 -> 4",
        '  note: "old" -> (absent)',
        '  ticket: "OPS-7"',
    ):
        assert expected in text.splitlines(), expected


def test_show_json(db: Path, events: dict[str, AuditEvent]) -> None:
    """show --json prints the stored document."""
    result = run(db, "show", "--tenant", "acme", "--json", events["delete"].id)
    assert json.loads(result.stdout) == events["delete"].to_document()


def test_show_of_another_tenants_event(db: Path, events: dict[str, AuditEvent]) -> None:
    """Another tenant's event is not shown: a clear error, exit code 1."""
    result = run(db, "show", "--tenant", "acme", events["globex"].id)
    assert result.exit_code == 1
    assert "no event" in result.stderr
    assert "db-1" not in result.output


# -- export --------------------------------------------------------------------------------


def test_export_csv_to_a_file(db: Path, tmp_path: Path) -> None:
    """export writes every match (not one page) and reports the row count; it is audited."""
    target = tmp_path / "out.csv"
    result = run(db, "export", "--tenant", "acme", "--format", "csv", "-o", str(target), "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "exported 4 events" in result.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text("utf-8"), newline="")))
    assert len(rows) == 4
    assert {row["tenant"] for row in rows} == {"acme"}
    [audit] = _stored(db, action="audit_exported")
    assert audit.details["rows"] == 4
    assert audit.details["format"] == "csv"
    assert audit.actor.id is not None
    assert audit.actor.id.startswith("cli:")


def test_export_ndjson_filtered(db: Path, tmp_path: Path, events: dict[str, AuditEvent]) -> None:
    """NDJSON export honours the filters."""
    target = tmp_path / "out.ndjson"
    result = run(
        db, "export", "--tenant", "acme", "--format", "ndjson", "-o", str(target), "--action", "delete"
    )
    assert result.exit_code == 0, result.output
    [document] = [json.loads(line) for line in target.read_text().splitlines()]
    assert document["audit"].pop("chain")["seq"] >= 1, "the stored document carries its chain link"
    assert document == events["delete"].to_document()
    [audit] = _stored(db, action="audit_exported")
    assert audit.details["filters"] == {"tenant": "acme", "actions": ["delete"]}


def test_export_to_stdout_with_bom(db: Path) -> None:
    """-o - writes to standard output; --bom starts the CSV with a byte order mark."""
    result = run(db, "export", "--tenant", "acme", "-o", "-", "--bom")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes.startswith(b"\xef\xbb\xbftimestamp,")


def test_export_shows_progress_on_a_terminal(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal, export counts first and draws a progress bar on stderr."""
    runner = CliRunner()
    with runner.isolation() as streams:
        err = streams[1]  # (stdout, stderr, ...): the captured standard error
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        with pytest.raises(SystemExit) as exited:
            main(
                ["export", "--store", f"sqlite:{db}", "--tenant", "acme", "-o", str(tmp_path / "a.csv")], "x"
            )
        progress = err.getvalue().decode()
    assert exited.value.code == 0
    assert "Exporting" in progress
    assert "100%" in progress


# -- tail ----------------------------------------------------------------------------------


def test_tail_prints_the_latest_events_oldest_first(db: Path, events: dict[str, AuditEvent]) -> None:
    """Without -f, tail prints the latest page in reading order (newest last) and ends."""
    result = run(db, "tail", "--tenant", "acme", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["event"]["id"] for line in result.stdout.splitlines()]
    assert ids == [events["delete"].id, events["update"].id]


def test_tail_follow_prints_new_events(db: Path) -> None:
    """With -f, events stored while it runs are printed as they arrive."""
    arrived = make_event(
        "restart", unix_ms=int(time.time() * 1000), resource=Resource("pod", "p", "fresh-pod")
    )

    def store_later() -> None:
        time.sleep(0.5)
        with SQLiteSink(db) as sink:
            sink.emit(arrived)

    writer = threading.Thread(target=store_later)
    writer.start()
    result = run(
        db, "tail", "--tenant", "acme", "-f", "--interval", "0.05", "--stop-after", "2", "--limit", "1"
    )
    writer.join()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "fresh-pod" in lines[-1]
    assert "web-frontend" in lines[-2]


# -- reads are recorded ---------------------------------------------------------------------


def test_search_show_and_tail_record_their_reads(db: Path, events: dict[str, AuditEvent]) -> None:
    """Each reading command leaves one audit_viewed record naming its filters or entry."""
    assert run(db, "search", "--tenant", "acme", "--action", "delete").exit_code == 0
    assert run(db, "show", events["update"].id, "--tenant", "acme").exit_code == 0
    assert run(db, "show", events["globex"].id, "--tenant", "acme").exit_code == 1
    assert run(db, "tail", "--tenant", "acme", "--limit", "2").exit_code == 0
    tail, missing, shown, search = _stored(db, action="audit_viewed")
    assert search.details == {
        "filters": {"tenant": "acme", "actions": ["delete"]},
        "view": "search",
        "rows": 1,
    }
    assert search.actor.id is not None
    assert search.actor.id.startswith("cli:")
    assert (shown.resource, shown.details) == (
        Resource("audit_log", events["update"].id),
        {"view": "entry", "found": True},
    )
    assert missing.details["found"] is False
    assert tail.details["view"] == "tail"
    assert tail.details["follow"] is False


def test_reads_are_hidden_unless_asked_for(db: Path) -> None:
    """search leaves the records of reads out by default; --include-reads shows them."""
    run(db, "search", "--tenant", "acme")
    plain = run(db, "search", "--tenant", "acme", "--json")
    assert "audit_viewed" not in plain.stdout
    with_reads = run(db, "search", "--tenant", "acme", "--json", "--include-reads")
    actions = [json.loads(line)["event"]["action"] for line in with_reads.stdout.splitlines()]
    assert actions.count("audit_viewed") == 2


# -- errors and store selection ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-13-45"], "invalid --from date"),
        (["--to", "tomorrow"], "invalid --to date"),
        (["--from", "2026-01-01", "--timezone", "Mars/Olympus_Mons"], "unknown timezone"),
        (["--action", "frobnicate"], "unknown action 'frobnicate'"),
        (["--limit", str(10**9)], "page size must be between 1 and 500"),
        (["--limit", "many"], "'many' is not a valid integer"),
        (["--since", "5 years"], "invalid --since"),
        (["--since", "7d", "--from", "2026-01-01"], "not both"),
        (["--cursor", "not-a-cursor!"], "invalid cursor"),
        (["--outcome", "maybe"], "'maybe' is not one of"),
        (["--search", "x" * 201], "200 characters"),
    ],
)
@pytest.mark.parametrize("command", ["search", "export", "tail"])
def test_bad_filters_are_usage_errors(
    db: Path, tmp_path: Path, command: str, args: list[str], message: str
) -> None:
    """A bad filter gives a clear message on stderr and exit code 2, never a traceback."""
    extra = ["-o", str(tmp_path / "x.csv")] if command == "export" else []
    result = run(db, command, "--tenant", "acme", *extra, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "x.csv").exists()


def test_tenant_is_required(db: Path) -> None:
    """Every reading command needs --tenant."""
    result = run(db, "search")
    assert result.exit_code == 2
    assert "--tenant" in result.stderr


@pytest.mark.parametrize(
    ("store", "message"),
    [("sqlite:/nonexistent/a.sqlite3", "no audit store"), ("mysql:x", "use sqlite:PATH")],
)
def test_bad_store(store: str, message: str) -> None:
    """An unknown store or a missing file is a usage error naming it."""
    result = CliRunner().invoke(main, ["search", "--tenant", "acme", "--store", store])
    assert result.exit_code == 2
    assert message in result.stderr


def test_default_store_from_the_environment(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --store, AUDIT_SQLITE_PATH names the SQLite file."""
    monkeypatch.setenv("AUDIT_SQLITE_PATH", str(db))
    result = CliRunner().invoke(main, ["search", "--tenant", "acme", "--json"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4


def test_opensearch_store_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the OpenSearch store module, --store opensearch is a clear error."""
    monkeypatch.setitem(sys.modules, "audit_middleware.query.opensearch_store", None)
    result = CliRunner().invoke(main, ["search", "--tenant", "acme", "--store", "opensearch"])
    assert result.exit_code == 1
    assert "OpenSearch store is not available" in result.stderr


def test_a_broken_store_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    """A file that is not an audit store gives a message and exit code 1."""
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = CliRunner().invoke(main, ["search", "--tenant", "acme", "--store", f"sqlite:{path}"])
    assert result.exit_code == 1
    assert "cannot open the audit store" in result.stderr


def test_export_with_chain_writes_links_and_checkpoints_and_refuses_csv(db: Path, tmp_path: Path) -> None:
    """--with-chain writes chained NDJSON (records, then checkpoint lines); with CSV it is a usage error."""
    target = tmp_path / "chained.ndjson"
    result = run(db, "export", "--tenant", "acme", "--format", "ndjson", "--with-chain", "-o", str(target))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in target.read_text().split("\n") if line]  # not at U+2028
    records = [line for line in lines if "event" in line]
    assert records
    assert all(record["audit"]["chain"]["seq"] >= 1 for record in records)
    assert all(record["organization"]["id"] == "acme" for record in records)
    refused = run(db, "export", "--tenant", "acme", "--with-chain", "-o", str(tmp_path / "x.csv"))
    assert refused.exit_code == 2
    assert "--with-chain writes NDJSON" in refused.output
