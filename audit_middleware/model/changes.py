r"""Field-level changes between two versions of a resource, for ``audit.changes``.

Pure: no framework imports, no I/O. :func:`diff` returns the previous and the new
values of only what changed, plus the sorted dotted paths of the changed fields.

Leaves and branches: a non-empty mapping is a *branch* and is compared key by key;
anything else (a scalar, a list, an empty mapping, any other object) is a *leaf* and
is compared as a whole value. ``fields`` holds every leaf path that exists on one side
only, or on both sides with different values. So a changed list is one field, a key
added with a nested mapping lists each new leaf, and a mapping replaced by a scalar
lists the scalar's path and each removed leaf below it.

Paths: segments are joined with ``.``; inside a key, ``\`` is written ``\\`` and
``.`` is written ``\.``. So ``{"a.b": 1}`` gives ``a\.b`` and never collides with
``{"a": {"b": 1}}`` (``a.b``), and a key is recovered by splitting on unescaped dots.
Non-string keys are written with ``str()``.

Equality: values compare with ``==``, except that a bool never equals a number
(Python says ``True == 1``; a reader of the record sees a change), lists and tuples
compare element by element (both serialise as arrays), NaN equals NaN (no phantom
change), and a value whose ``==`` raises counts as changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from audit_middleware.model.event import ChangeSet

__all__ = ["ABSENT", "MAX_DEPTH", "diff", "join_path", "split_path", "value_at"]

MAX_DEPTH: Final = 32
"""Deepest container nesting :func:`diff` walks; the top-level mapping is level 1."""

# Stand for "no key" in error locations and for an absent value, since None is a valid key and value.
_NO_KEY: Final = object()
_MISSING: Final = object()

# Exact types whose ``==`` is cheap and well-behaved: the common case skips the generic path.
_PLAIN: Final = frozenset({str, int, type(None), bytes})


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> ChangeSet:
    r"""Compare two versions of a resource; ``None`` stands for "did not exist".

    Raises ``ValueError`` when a walked part nests deeper than :data:`MAX_DEPTH` or
    contains itself; identical objects are not walked, so ``diff(x, x)`` never raises.

    >>> changes = diff({"labels": {"team": "a"}, "n": 1}, {"labels": {"team": "b"}, "n": 1, "tags": ["x"]})
    >>> changes.before, changes.after
    ({'labels': {'team': 'a'}}, {'labels': {'team': 'b'}, 'tags': ['x']})
    >>> changes.fields
    ('labels.team', 'tags')
    >>> diff(None, {"spec": {"cpu": 1, "mem": 2}}).fields
    ('spec.cpu', 'spec.mem')
    >>> diff({"a.b": 1}, {}).fields
    ('a\\.b',)
    """
    old: Mapping[str, Any] = {} if before is None else before
    new: Mapping[str, Any] = {} if after is None else after
    if old is new or not (old or new):
        return ChangeSet({}, {}, ())
    differ = _Differ()
    old_changed, new_changed = differ.mappings(old, new, "", 1)
    differ.fields.sort()
    return ChangeSet(old_changed, new_changed, tuple(differ.fields))


class _Differ:
    """One comparison: collects changed leaf paths and tracks the containers being walked."""

    __slots__ = ("fields", "new_walked", "old_walked")

    def __init__(self) -> None:
        self.fields: list[str] = []
        # ids of the containers on the current path, per side: tells a cycle from deep nesting.
        self.old_walked: list[int] = []
        self.new_walked: list[int] = []

    def mappings(
        self, old: Mapping[Any, Any], new: Mapping[Any, Any], path: str, depth: int
    ) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """Diff two branches at ``path``; returns their changed parts."""
        old_walked, new_walked = self.old_walked, self.new_walked
        # _enter's checks inlined (this runs once per branch); on failure _enter raises the error.
        if depth > MAX_DEPTH or id(old) in old_walked or id(new) in new_walked:
            _enter(old_walked, old, depth, path)
            _enter(new_walked, new, depth, path)
        old_walked.append(id(old))
        new_walked.append(id(new))
        before: dict[Any, Any] = {}
        after: dict[Any, Any] = {}
        shared = 0
        for key, old_value in old.items():
            new_value = new.get(key, _MISSING)
            if new_value is _MISSING:
                before[key] = old_value
                self.leaves(old_value, _join(path, key), depth + 1, old_walked)
                continue
            shared += 1
            if old_value is new_value:
                continue
            kind = type(old_value)
            if kind is type(new_value) and kind in _PLAIN:  # the common case, without further calls
                if old_value != new_value:
                    before[key] = old_value
                    after[key] = new_value
                    self.fields.append(_join(path, key))
            else:
                old_part, new_part = self.compare(key, old_value, new_value, path, depth + 1)
                if old_part is not _MISSING:
                    before[key] = old_part
                if new_part is not _MISSING:
                    after[key] = new_part
        if shared < len(new):  # some keys are new: only then is a second pass needed
            for key, new_value in new.items():
                if key not in old:
                    after[key] = new_value
                    self.leaves(new_value, _join(path, key), depth + 1, new_walked)
        old_walked.pop()
        new_walked.pop()
        return before, after

    def compare(self, key: Any, old_value: Any, new_value: Any, path: str, depth: int) -> tuple[Any, Any]:
        """The changed parts of the values both sides hold under ``key``; ``_MISSING`` for none."""
        if _is_branch(old_value) and _is_branch(new_value):
            old_part, new_part = self.mappings(old_value, new_value, _join(path, key), depth)
            return old_part or _MISSING, new_part or _MISSING
        if self.same(old_value, new_value, depth, path, key):
            return _MISSING, _MISSING
        key_path = _join(path, key)
        self.leaves(old_value, key_path, depth, self.old_walked)
        # Two leaves at one path are one field; a branch on either side adds its own leaves.
        if _is_branch(old_value) or _is_branch(new_value):
            self.leaves(new_value, key_path, depth, self.new_walked)
        return old_value, new_value

    def leaves(self, value: Any, path: str, depth: int, walked: list[int]) -> None:
        """Record every leaf path of a value that exists on one side only."""
        if not _is_branch(value):
            self.fields.append(path)
            return
        _enter(walked, value, depth, path)
        for key, child in value.items():
            self.leaves(child, _join(path, key), depth + 1, walked)
        walked.pop()

    def same(self, old: Any, new: Any, depth: int, path: str, key: Any) -> bool:
        """Whether two leaf values are equal; ``path`` and ``key`` only name them in errors."""
        if old is new:
            return True
        old_type, new_type = type(old), type(new)
        if old_type is new_type and old_type in _PLAIN:
            return bool(old == new)
        if old_type is float and new_type is float:
            return old == new or (math.isnan(old) and math.isnan(new))
        if (old_type is bool) is not (new_type is bool):
            return False
        if isinstance(old, (list, tuple, Mapping)):
            return self.same_container(old, new, depth, path, key)
        return _equal(old, new)

    def same_container(self, old: Any, new: Any, depth: int, path: str, key: Any) -> bool:
        """Compare a list, tuple or mapping nested in a leaf, item by item."""
        pairs: Iterator[tuple[Any, Any]]
        if isinstance(old, Mapping):
            if not isinstance(new, Mapping) or old.keys() != new.keys():
                return False
            pairs = ((value, new[name]) for name, value in old.items())
        elif isinstance(new, (list, tuple)) and len(old) == len(new):
            pairs = zip(old, new, strict=True)
        else:
            return False
        _enter(self.old_walked, old, depth, path, key)
        equal = True
        for old_item, new_item in pairs:
            kind = type(old_item)
            if kind is type(new_item) and kind in _PLAIN:  # the common case, without a call
                equal = old_item == new_item
            else:
                equal = self.same(old_item, new_item, depth + 1, path, key)
            if not equal:
                break
        self.old_walked.pop()
        return equal


def _equal(old: Any, new: Any) -> bool:
    """``old == new`` for arbitrary objects, counting a comparison that fails as a change."""
    try:
        return bool(old == new)
    except Exception:  # noqa: BLE001 - e.g. an array's ambiguous truth value: never crash the audit
        return False


def _is_branch(value: Any) -> bool:
    """Whether a value is a non-empty mapping, compared key by key."""
    kind = type(value)
    if kind is dict:
        return bool(value)
    if kind in _PLAIN:  # skips the slower abstract-class check for the common scalars
        return False
    return isinstance(value, Mapping) and bool(value)


def _enter(walked: list[int], container: object, depth: int, path: str, key: object = _NO_KEY) -> None:
    """Push a container on the walked path, refusing deep nesting and cycles."""
    if depth > MAX_DEPTH:
        raise ValueError(f"diff: {_where(path, key)} is nested deeper than {MAX_DEPTH} levels")
    if id(container) in walked:
        raise ValueError(f"diff: {_where(path, key)} contains itself (a cycle); audit values must be trees")
    walked.append(id(container))


def _where(path: str, key: object) -> str:
    """A path for an error message."""
    full = path if key is _NO_KEY else _join(path, key)
    return repr(full) if full else "the top-level mapping"


def _join(path: str, key: object) -> str:
    """Append one key to a dotted path, escaping ``\\`` and ``.`` inside the key."""
    segment = key if isinstance(key, str) else str(key)
    if "\\" in segment or "." in segment:
        segment = segment.replace("\\", "\\\\").replace(".", "\\.")
    return f"{path}.{segment}" if path else segment


def join_path(keys: Iterable[object]) -> str:
    r"""The changed-field path of a sequence of keys: the inverse of :func:`split_path`.

    >>> join_path(["spec", "app.kubernetes.io/name"])
    'spec.app\\.kubernetes\\.io/name'
    """
    path = ""
    for key in keys:
        path = _join(path, key)
    return path


def split_path(path: str) -> list[str]:
    """The keys of a changed-field path, undoing the escaping of ``.`` and ``\\`` in keys.

    >>> split_path(r"spec.labels.app\\.kubernetes\\.io/name")
    ['spec', 'labels', 'app.kubernetes.io/name']
    """
    keys: list[str] = []
    current: list[str] = []
    escaped = False
    for char in path:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            keys.append("".join(current))
            current = []
        else:
            current.append(char)
    keys.append("".join(current))
    return keys


_ABSENT: Final = object()


def value_at(data: Mapping[str, Any], path: str) -> Any:
    """The value a changed-field path points to in a before/after mapping, or ``ABSENT``."""
    node: Any = data
    for key in split_path(path):
        if not isinstance(node, Mapping) or key not in node:
            return ABSENT
        node = node[key]
    return node


ABSENT: Final = _ABSENT
