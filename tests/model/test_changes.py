"""Tests for audit_middleware.model.changes: changed branches, leaf paths, guards."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit_middleware.model.changes import MAX_DEPTH, diff
from audit_middleware.model.event import ChangeSet

WHEN = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("before", "after", "want_before", "want_after", "want_fields"),
    [
        pytest.param({"a": 1}, {"a": 2}, {"a": 1}, {"a": 2}, ("a",), id="scalar-changed"),
        pytest.param(
            {"spec": {"replicas": 2, "image": "x"}, "name": "web"},
            {"spec": {"replicas": 3, "image": "x"}, "name": "web"},
            {"spec": {"replicas": 2}},
            {"spec": {"replicas": 3}},
            ("spec.replicas",),
            id="nested-changed-keeps-only-changed-branch",
        ),
        pytest.param(
            {"a": {"b": {"c": 1, "d": 1}}},
            {"a": {"b": {"c": 2, "d": 1}}},
            {"a": {"b": {"c": 1}}},
            {"a": {"b": {"c": 2}}},
            ("a.b.c",),
            id="deep-nested-changed",
        ),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, {}, {"b": 2}, ("b",), id="key-added"),
        pytest.param({"a": 1, "b": 2}, {"a": 1}, {"b": 2}, {}, ("b",), id="key-removed"),
        pytest.param(
            {"labels": {"team": "a"}},
            {"labels": {"team": "a", "env": "prod"}},
            {},
            {"labels": {"env": "prod"}},
            ("labels.env",),
            id="nested-key-added",
        ),
        pytest.param(
            {},
            {"spec": {"cpu": 1, "disk": {"size": 10}}},
            {},
            {"spec": {"cpu": 1, "disk": {"size": 10}}},
            ("spec.cpu", "spec.disk.size"),
            id="branch-added-lists-each-leaf",
        ),
        pytest.param(
            {"spec": {"cpu": 1, "mem": 2}},
            {},
            {"spec": {"cpu": 1, "mem": 2}},
            {},
            ("spec.cpu", "spec.mem"),
            id="branch-removed-lists-each-leaf",
        ),
        pytest.param({"t": [1, 2]}, {"t": [1, 3]}, {"t": [1, 2]}, {"t": [1, 3]}, ("t",), id="list-changed"),
        pytest.param({"t": [1, 2]}, {"t": [2, 1]}, {"t": [1, 2]}, {"t": [2, 1]}, ("t",), id="list-reordered"),
        pytest.param(
            {"t": [{"a": 1}]},
            {"t": [{"a": 2}]},
            {"t": [{"a": 1}]},
            {"t": [{"a": 2}]},
            ("t",),
            id="list-of-dicts-is-one-field",
        ),
        pytest.param({"t": [1, [2]]}, {"t": (1, (2,))}, {}, {}, (), id="list-equals-tuple"),
        pytest.param(
            {"a": {"b": 1, "c": 2}},
            {"a": 5},
            {"a": {"b": 1, "c": 2}},
            {"a": 5},
            ("a", "a.b", "a.c"),
            id="dict-to-scalar",
        ),
        pytest.param(
            {"a": "x"}, {"a": {"b": 1}}, {"a": "x"}, {"a": {"b": 1}}, ("a", "a.b"), id="scalar-to-dict"
        ),
        pytest.param(
            {"a": [1]}, {"a": {"0": 1}}, {"a": [1]}, {"a": {"0": 1}}, ("a", "a.0"), id="list-to-dict"
        ),
        pytest.param(
            {"a": {}}, {"a": {"b": 1}}, {"a": {}}, {"a": {"b": 1}}, ("a", "a.b"), id="empty-to-dict"
        ),
        pytest.param({"a": {}}, {}, {"a": {}}, {}, ("a",), id="empty-dict-removed"),
        pytest.param({"a": {}}, {"a": {}}, {}, {}, (), id="empty-dicts-equal"),
        pytest.param({"a": None}, {}, {"a": None}, {}, ("a",), id="none-value-removed"),
        pytest.param({"a": None}, {"a": 0}, {"a": None}, {"a": 0}, ("a",), id="none-to-zero"),
        pytest.param({"a": 1}, {"a": True}, {"a": 1}, {"a": True}, ("a",), id="int-to-bool"),
        pytest.param({"a": [0]}, {"a": [False]}, {"a": [0]}, {"a": [False]}, ("a",), id="bool-in-list"),
        pytest.param({"a": 1}, {"a": 1.0}, {}, {}, (), id="int-equals-float"),
        pytest.param({"a": "1"}, {"a": 1}, {"a": "1"}, {"a": 1}, ("a",), id="str-to-int"),
        pytest.param({"a": float("nan")}, {"a": float("nan")}, {}, {}, (), id="nan-equals-nan"),
        pytest.param(None, {"a": 1, "b": {"c": 2}}, {}, {"a": 1, "b": {"c": 2}}, ("a", "b.c"), id="creation"),
        pytest.param({"a": 1, "b": {"c": 2}}, None, {"a": 1, "b": {"c": 2}}, {}, ("a", "b.c"), id="deletion"),
        pytest.param(None, None, {}, {}, (), id="both-none"),
        pytest.param(None, {}, {}, {}, (), id="none-and-empty"),
        pytest.param({"a.b": 1}, {"a.b": 2}, {"a.b": 1}, {"a.b": 2}, ("a\\.b",), id="dot-in-key-escaped"),
        pytest.param(
            {"x": {"a.b": {"c": 1}}},
            {"x": {"a.b": {"c": 2}}},
            {"x": {"a.b": {"c": 1}}},
            {"x": {"a.b": {"c": 2}}},
            ("x.a\\.b.c",),
            id="dotted-key-nested",
        ),
        pytest.param({"a\\": 1}, {}, {"a\\": 1}, {}, ("a\\\\",), id="backslash-in-key-escaped"),
        pytest.param({1: "a"}, {1: "b"}, {1: "a"}, {1: "b"}, ("1",), id="non-string-key"),
        pytest.param(
            {"at": WHEN},
            {"at": WHEN + dt.timedelta(seconds=1)},
            {"at": WHEN},
            {"at": WHEN + dt.timedelta(seconds=1)},
            ("at",),
            id="datetime-changed",
        ),
        pytest.param({"at": WHEN}, {"at": WHEN.replace()}, {}, {}, (), id="datetime-equal"),
        pytest.param({"p": Decimal("1.10")}, {"p": Decimal("1.1")}, {}, {}, (), id="decimal-equal"),
        pytest.param(
            {"p": Decimal("1.1")},
            {"p": Decimal("1.2")},
            {"p": Decimal("1.1")},
            {"p": Decimal("1.2")},
            ("p",),
            id="decimal-changed",
        ),
        pytest.param({"id": ID}, {"id": uuid.UUID(str(ID))}, {}, {}, (), id="uuid-equal"),
        pytest.param({"s": {1, 2}}, {"s": {2, 3}}, {"s": {1, 2}}, {"s": {2, 3}}, ("s",), id="set-changed"),
        pytest.param(
            {"b": b"\x00"}, {"b": b"\x01"}, {"b": b"\x00"}, {"b": b"\x01"}, ("b",), id="bytes-changed"
        ),
    ],
)
def test_diff_table(
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    want_before: dict[str, Any],
    want_after: dict[str, Any],
    want_fields: tuple[str, ...],
) -> None:
    """diff returns only the changed branches on each side and the sorted changed leaf paths."""
    changes = diff(before, after)
    assert changes == ChangeSet(want_before, want_after, want_fields)
    assert changes.is_empty is (want_fields == ())


def test_dotted_key_and_nested_keys_give_different_paths() -> None:
    """A key containing a dot never produces the same path as the nested keys it looks like."""
    assert diff({}, {"a.b": 1}).fields == ("a\\.b",)
    assert diff({}, {"a": {"b": 1}}).fields == ("a.b",)


def test_equal_copies_give_empty_changes() -> None:
    """Equal but distinct inputs give empty Changes."""
    value = {"a": 1, "b": {"c": [1, {"d": 2}], "e": None}, "f": WHEN}
    changes = diff(value, copy.deepcopy(value))
    assert changes == ChangeSet({}, {}, ())
    assert changes.is_empty


def test_changes_is_frozen() -> None:
    """Changes cannot be reassigned after creation."""
    changes = diff({"a": 1}, {"a": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        changes.fields = ()  # type: ignore[misc]


def test_values_are_not_copied() -> None:
    """Changed and added values are the caller's objects, not copies."""
    added = {"x": [1, 2]}
    old_list, new_list = [1], [2]
    changes = diff({"l": old_list}, {"l": new_list, "added": added})
    assert changes.after["added"] is added
    assert changes.before["l"] is old_list
    assert changes.after["l"] is new_list


def test_inputs_are_not_mutated() -> None:
    """diff leaves both inputs as they were."""
    before = {"a": {"b": 1, "c": [1]}, "d": 1}
    after = {"a": {"b": 2, "c": [1]}, "e": 1}
    before_copy, after_copy = copy.deepcopy(before), copy.deepcopy(after)
    diff(before, after)
    assert (before, after) == (before_copy, after_copy)


def test_failing_equality_counts_as_changed() -> None:
    """A value whose == raises is reported as changed instead of crashing."""

    class Unequal:
        def __eq__(self, other: object) -> bool:
            raise TypeError("ambiguous")

        __hash__ = object.__hash__

    changes = diff({"v": Unequal()}, {"v": Unequal()})
    assert changes.fields == ("v",)


def nested(levels: int, leaf: Any = 1) -> dict[str, Any]:
    """A chain of ``levels`` mappings, the top-level one included."""
    value: dict[str, Any] = {"k": leaf}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def nested_lists(levels: int) -> list[Any]:
    """A chain of ``levels`` lists."""
    value: list[Any] = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


def test_depth_limit_allows_max_depth() -> None:
    """Nesting of exactly MAX_DEPTH mappings is diffed."""
    changes = diff(nested(MAX_DEPTH, 1), nested(MAX_DEPTH, 2))
    assert changes.fields == (".".join(["k"] * MAX_DEPTH),)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(nested(MAX_DEPTH + 1, 1), nested(MAX_DEPTH + 1, 2), id="both-sides"),
        pytest.param(None, nested(MAX_DEPTH + 1), id="added-branch"),
        pytest.param(nested(MAX_DEPTH + 1), None, id="removed-branch"),
        pytest.param(
            {"l": nested_lists(MAX_DEPTH)}, {"l": nested_lists(MAX_DEPTH + 1)}, id="lists-in-a-leaf"
        ),
    ],
)
def test_depth_limit_raises(before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    """Nesting deeper than MAX_DEPTH raises a ValueError that says so."""
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        diff(before, after)


def cyclic_dict() -> dict[str, Any]:
    """A mapping that contains itself."""
    value: dict[str, Any] = {"n": 1}
    value["self"] = value
    return value


def cyclic_list() -> list[Any]:
    """A list that contains itself."""
    value: list[Any] = [1]
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(cyclic_dict(), cyclic_dict(), id="both-sides"),
        pytest.param(None, cyclic_dict(), id="added"),
        pytest.param({"x": cyclic_dict()}, {}, id="removed"),
        pytest.param({"x": cyclic_list()}, {"x": cyclic_list()}, id="lists"),
        pytest.param({"x": 1}, {"x": {"n": 2, "y": cyclic_dict()}}, id="type-change-to-cycle"),
    ],
)
def test_cycle_raises(before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    """A structure that contains itself raises a ValueError naming the cycle."""
    with pytest.raises(ValueError, match="cycle"):
        diff(before, after)


def test_identical_cyclic_input_is_not_walked() -> None:
    """diff(x, x) is empty even for a cyclic x, because identical objects are not walked."""
    value = cyclic_dict()
    assert diff(value, value).is_empty
    assert diff({"a": value}, {"a": value}).is_empty


def test_shared_subtree_is_not_a_cycle() -> None:
    """The same object reached twice without containing itself is diffed normally."""
    shared = {"x": 1}
    assert diff({"a": shared, "b": shared}, {"a": shared, "b": {"x": 2}}).fields == ("b.x",)


# --- properties -----------------------------------------------------------------------

# Few keys and values, so that two drawn documents overlap and differ in many ways.
KEYS = st.sampled_from(["a", "b", "c.d", "e\\", "f"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-1, 2), st.sampled_from([0.0, 1.0, 1.5]), st.sampled_from(["", "x"])
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=5)


def canonical(value: Any) -> Any:
    """A comparable form where bools differ from numbers and lists equal tuples."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, (list, tuple)):
        return ("array", tuple(canonical(item) for item in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, canonical(v)) for k, v in value.items())))
    return ("other", value)


def flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every leaf of a document by its key path; non-empty dicts are not leaves."""
    if isinstance(value, dict) and value:
        leaves: dict[tuple[str, ...], Any] = {}
        for key, child in value.items():
            leaves.update(flatten(child, (*prefix, key)))
        return leaves
    return {prefix: value}


def leaves(document: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """The leaves of a document; an empty document has none (the root is not a field)."""
    return flatten(document) if document else {}


def render(path: tuple[str, ...]) -> str:
    """A key path in diff's dotted form."""
    return ".".join(key.replace("\\", "\\\\").replace(".", "\\.") for key in path)


def reference_fields(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """The slow definition: leaf paths on one side only, or on both with different values."""
    old, new = leaves(before), leaves(after)
    return {
        render(path)
        for path in old.keys() | new.keys()
        if path not in old or path not in new or canonical(old[path]) != canonical(new[path])
    }


@given(DOCUMENTS, DOCUMENTS)
def test_fields_match_reference(before: dict[str, Any], after: dict[str, Any]) -> None:
    """diff's fields are exactly the leaf paths where the two documents differ."""
    changes = diff(before, after)
    assert list(changes.fields) == sorted(reference_fields(before, after))


@given(DOCUMENTS, DOCUMENTS)
def test_before_and_after_hold_exactly_the_changed_leaves(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Each side's leaves are the changed fields present on that side, with that side's values."""
    changes = diff(before, after)
    fields = set(changes.fields)
    for side, part in ((before, changes.before), (after, changes.after)):
        want = {render(p): canonical(v) for p, v in leaves(side).items() if render(p) in fields}
        assert {render(p): canonical(v) for p, v in leaves(part).items()} == want


@given(DOCUMENTS)
def test_diff_with_itself_is_empty(document: dict[str, Any]) -> None:
    """diff(a, a) and diff(a, deepcopy(a)) are empty."""
    assert diff(document, document) == ChangeSet({}, {}, ())
    assert diff(document, copy.deepcopy(document)) == ChangeSet({}, {}, ())


@given(DOCUMENTS)
def test_creation_and_deletion_list_every_leaf(document: dict[str, Any]) -> None:
    """diff(None, a) lists every leaf of a as added, and diff(a, None) as removed."""
    want = sorted(render(path) for path in leaves(document))
    assert list(diff(None, document).fields) == want
    assert list(diff(document, None).fields) == want
