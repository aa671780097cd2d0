"""How row changes read as a record: one row as is, several rows as targets with keyed changes."""

from __future__ import annotations

from audit_middleware import Resource
from audit_middleware.capture.change_records import describe
from audit_middleware.capture.changes import row_change


def _row(kind, row_type, row_id, before=None, after=None):
    row = row_change(kind, Resource(row_type, row_id, f"{row_type} {row_id}"), before, after)
    assert row is not None
    return row


def test_one_row_is_the_resource_with_its_change():
    """A single row: its action, the row as resource, the change unkeyed, no targets."""
    row = _row("update", "post", "3", {"title": "a"}, {"title": "b"})
    description = describe([row], total=1)
    assert description.action == "update"
    assert description.resource == Resource("post", "3", "post 3")
    assert description.targets == ()
    assert description.changes.fields == ("title",)
    assert description.details == {}


def test_rows_of_one_type_are_targets_of_that_type():
    """A bulk delete of three posts: action delete, resource type post, three targets, keyed changes."""
    rows = [_row("delete", "post", str(i), {"title": f"t{i}"}) for i in (1, 2, 3)]
    description = describe(rows, total=3)
    assert description.action == "delete"
    assert description.resource == Resource("post")
    assert [t.id for t in description.targets] == ["1", "2", "3"]
    assert description.details == {"count": 3}
    assert description.changes.before["post:2"] == {"title": "t2"}
    assert "post:2.title" in description.changes.fields


def test_the_row_the_path_names_is_the_resource():
    """Deleting an author with its books: the author the URL names is the resource."""
    rows = [_row("delete", "book", "9", {"title": "b"}), _row("delete", "author", "5", {"name": "a"})]
    description = describe(rows, total=2, path="/authors/5/delete")
    assert description.resource == Resource("author", "5", "author 5")
    assert len(description.targets) == 2


def test_mixed_actions_take_the_main_rows_and_are_counted():
    """A create with a side update: the main (first) row's action, and a count per action."""
    rows = [
        _row("create", "comment", "1", None, {"text": "hi"}),
        _row("update", "post", "3", {"n": 1}, {"n": 2}),
    ]
    description = describe(rows, total=2)
    assert description.action == "create"
    assert description.resource == Resource("comment", "1", "comment 1")
    assert description.details == {"count": 2, "actions": {"create": 1, "update": 1}}


def test_primary_row_given_by_the_orm_wins():
    """The row a cascade started from is the resource, whatever the path says."""
    rows = [_row("delete", "book", "9", {"t": 1}), _row("delete", "author", "5", {"n": 1})]
    assert describe(rows, total=2, primary=rows[1], path="/books/9").resource.type == "author"


def test_a_bulk_statement_of_one_captured_row_still_counts_the_rest():
    """One row captured of many touched: described as several, with the full count."""
    description = describe([_row("update", "post", "1", {"a": 1}, {"a": 2})], total=1500)
    assert description.details == {"count": 1500}
    assert description.targets == (Resource("post", "1", "post 1"),)
