"""How events look in a terminal: fixed-width table cells, the detail lines, control characters escaped."""

from __future__ import annotations

import json

import pytest

from audit_middleware.cli.render import echo_events, event_details, table_header, table_row
from audit_middleware.model.event import Actor, ChangeSet, RequestFacts, Resource, Scope
from tests.query.conftest import make_event


def test_the_header_names_the_columns() -> None:
    """The table header has the six columns, without trailing spaces."""
    header = table_header()
    assert header.split() == ["TIME", "USER", "ACTION", "RESOURCE", "OUTCOME", "IP"]
    assert header == header.rstrip()


def test_a_row_lines_up_under_the_header() -> None:
    """Each cell starts where its column's title does."""
    event = make_event(
        "create",
        resource=Resource("pod", "p-1", "web"),
        request=RequestFacts(client_ip="10.0.0.2"),
    )
    header, row = table_header(), table_row(event)
    for title, cell in (
        ("USER", "ann@example.com"),
        ("ACTION", "Create"),
        ("RESOURCE", "pod web"),
        ("IP", "10.0.0.2"),
    ):
        assert row.index(cell) == header.index(title), title


def test_a_long_cell_is_cut_with_an_ellipsis() -> None:
    """A value wider than its column is shortened to the column width, ending in '…'."""
    event = make_event("create", resource=Resource("pod", None, "n" * 100))
    row = table_row(event)
    resource_cell = row[table_header().index("RESOURCE") :].split("  ")[0]
    assert len(resource_cell) == 36
    assert resource_cell.endswith("…")


def test_cells_are_empty_when_nothing_is_known() -> None:
    """Without a resource or request, those cells are blank rather than 'None'."""
    row = table_row(make_event("create"))
    assert "None" not in row
    assert row.split()[-1] == "success"


@pytest.mark.parametrize(
    ("text", "shown"),
    [("\x1b[2Jname", "\\u001b[2Jname"), ("a\u202eb", "a\\u202eb"), ("tab\there", "tab\\u0009here")],
    ids=["escape", "bidi", "tab"],
)
def test_control_characters_are_shown_as_escapes(text: str, shown: str) -> None:
    """Escape sequences, bidi overrides and tabs from stored text are printed as \\u escapes."""
    event = make_event("create", resource=Resource("pod", None, text))
    assert shown in table_row(event)
    assert text not in table_row(event)


def test_details_name_the_real_person_and_the_targets() -> None:
    """With impersonation the user id shown is the real person's; targets, scopes and service appear."""
    event = make_event(
        "update",
        user=Actor(id="u2", name="bob", impersonator=Actor(id="admin-1", name="root")),
        project="p1",
    )
    event.targets = (Resource("pod", "p-2", "db"), Resource("volume", "v-1"))
    event.tenant = Scope("acme", "Acme Inc")
    event.service = "billing"
    lines = event_details(event)
    assert "User id:       admin-1" in lines
    assert "Targets:       pod db; volume v-1" in lines
    assert "Tenant:        acme (Acme Inc)" in lines
    assert "Project:       p1" in lines
    assert "Service:       billing" in lines
    assert not any(line.startswith("IP address") for line in lines), "no request, no request lines"


def test_the_diff_lists_the_changed_fields() -> None:
    """The change shows each field as old -> new, (absent) for a side without it, in fields order."""
    event = make_event(
        "update",
        changes=ChangeSet({"cpus": 2, "note": "x"}, {"cpus": 4, "tags": ["a"]}, ("cpus", "note", "tags")),
    )
    lines = event_details(event)
    start = lines.index("Changes:")
    assert lines[start + 1 : start + 4] == [
        "  cpus: 2 -> 4",
        '  note: "x" -> (absent)',
        '  tags: (absent) -> ["a"]',
    ]


def test_echo_events_prints_rows_or_documents(capsys: pytest.CaptureFixture[str]) -> None:
    """echo_events prints a table row per event, or one JSON document per line with as_json."""
    events = [make_event("create"), make_event("delete")]
    echo_events(events, as_json=False)
    assert capsys.readouterr().out.splitlines() == [table_row(event) for event in events]
    echo_events(events, as_json=True)
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [
        e.to_document() for e in events
    ]
