"""The ORM-neutral half of ORM capture: registry, plain snapshots, row changes and their merging."""

from __future__ import annotations

import enum

import pytest

from audit_middleware import AuditValidationError, Resource
from audit_middleware.capture.changes import (
    REGISTRY,
    ChangeGroup,
    ChangeLog,
    ChangeRegistry,
    Tracking,
    add_settle_hook,
    default_resource_type,
    name_of,
    row_change,
    settle,
    tracking,
)
from audit_middleware.model.event import RESOURCE_TYPES


class Color(enum.Enum):
    RED = "red"


class Base: ...


class Child(Base): ...


def test_registry_finds_a_model_and_its_subclasses():
    """A registration covers subclasses; a subclass's own registration wins."""
    registry = ChangeRegistry()
    assert not registry.active
    base = registry.add(Base, Tracking("base"))
    assert registry.active
    assert registry.tracking_for(Child) is base
    own = registry.add(Child, Tracking("child"))
    assert registry.tracking_for(Child) is own
    assert registry.tracking_for(int) is None


def test_registry_snapshot_and_restore():
    """restore() puts back exactly the registrations a snapshot took, lookups included."""
    registry = ChangeRegistry()
    registry.add(Base, Tracking("base"))
    saved = registry.snapshot()
    registry.clear()
    assert registry.tracking_for(Child) is None
    registry.restore(saved)
    assert registry.tracking_for(Child) == Tracking("base")


def test_tests_start_with_orm_capture_off():
    """The shared fixture clears the process-wide registry for each test."""
    assert not REGISTRY.active


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Post", "post"), ("BookInstance", "book_instance"), ("HTTPSProxy", "https_proxy"), ("_Odd1", "odd1")],
)
def test_default_resource_type_is_snake_case(name, expected):
    """Class names become snake-case resource types."""
    assert default_resource_type(name) == expected


def test_tracking_checks_options_and_names_the_type():
    """A registration gets a valid type id and a label; a bare string is refused."""
    options = tracking(Child, exclude=["secret"], name_field="title", label="Child Thing")
    assert options == Tracking("child", None, frozenset({"secret"}), "title")
    assert RESOURCE_TYPES["child"] == "Child Thing"
    assert not options.tracks("secret")
    assert options.tracks("other")
    assert not tracking(Child, fields=["a"]).tracks("b")
    with pytest.raises(AuditValidationError, match="not one string"):
        tracking(Child, exclude="secret")
    with pytest.raises(AuditValidationError, match="resource type"):
        tracking(Child, resource_type="Bad Type")


def test_name_of_prefers_the_name_field_then_common_names():
    """The row's name: the given field, a callable, else name/title/... from the snapshot."""
    assert name_of(Tracking("t"), {"title": "Hello", "email": "a@x"}, None) == "Hello"
    assert name_of(Tracking("t", name_field="email"), {"title": "Hello", "email": "a@x"}, None) == "a@x"
    assert name_of(Tracking("t", name_field=lambda row: f"#{row}"), {}, 7) == "#7"
    assert name_of(Tracking("t", name_field=lambda row: 1 / 0), {}, 7) is None
    assert name_of(Tracking("t", name_field=lambda row: "x"), {}, None) is None  # a bulk row: no object
    assert name_of(Tracking("t"), {"id": 3}, None) is None


def _row(kind, before=None, after=None, row_id="1"):
    change = row_change(kind, Resource("post", row_id, "p"), before, after)
    assert change is not None
    return change


def test_row_change_keeps_only_what_changed():
    """An update holds the changed values and their paths; one that changed nothing is None."""
    change = _row(
        "update", {"title": "a", "n": 1, "spec": {"cpu": 1}}, {"title": "b", "n": 1, "spec": {"cpu": 2}}
    )
    assert (change.before, change.after, change.fields) == (
        {"title": "a", "spec": {"cpu": 1}},
        {"title": "b", "spec": {"cpu": 2}},
        ("spec.cpu", "title"),
    )
    assert row_change("update", Resource("post", "1"), {"a": 1}, {"a": 1}) is None
    created = _row("create", None, {"title": "a", "body": None})
    assert created.fields == ("body", "title")


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param(
            ("create", None, {"title": "a"}),
            ("update", {"title": "a"}, {"title": "b"}),
            ("create", {}, {"title": "b"}),
            id="create-then-update-is-a-create",
        ),
        pytest.param(
            ("update", {"title": "a"}, {"title": "b"}),
            ("update", {"title": "b", "n": 1}, {"title": "c", "n": 2}),
            ("update", {"title": "a", "n": 1}, {"title": "c", "n": 2}),
            id="updates-fold-first-before-last-after",
        ),
        pytest.param(
            ("update", {"title": "a"}, {"title": "b"}),
            ("delete", {"title": "b", "n": 1}, None),
            ("delete", {"title": "a", "n": 1}, {}),
            id="update-then-delete-shows-the-original-values",
        ),
        pytest.param(
            ("create", None, {"title": "a"}),
            ("delete", {"title": "a"}, None),
            ("delete", {"title": "a"}, {}),
            id="create-then-delete-is-a-delete",
        ),
    ],
)
def test_change_log_merges_a_row_changed_twice(first, second, expected):
    """One row changed several times in a request is one net change."""
    log = ChangeLog()
    log.add(ChangeGroup([_row(*first)]))
    log.add(ChangeGroup([_row(*second)]))
    (row,) = log.rows()
    assert (row.kind, row.before, row.after) == expected


def test_change_log_drops_a_row_changed_back():
    """A value changed and changed back leaves no change."""
    log = ChangeLog()
    log.add(ChangeGroup([_row("update", {"title": "a"}, {"title": "b"})]))
    log.add(ChangeGroup([_row("update", {"title": "b"}, {"title": "a"})]))
    assert not log
    assert log.rows() == []


def test_change_log_counts_rows_beyond_the_captured_ones():
    """A bulk statement's uncaptured rows count in the total."""
    log = ChangeLog()
    log.add(ChangeGroup([_row("delete", {"a": 1}, None, "1"), _row("delete", {"a": 2}, None, "2")], count=10))
    assert log.total == 10
    assert len(log.rows()) == 2


def test_settle_runs_each_hook_once_per_call():
    """A hook added twice runs once per settle()."""
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)

    add_settle_hook(hook)
    add_settle_hook(hook)
    settle()
    assert calls == [1]
