"""The action catalog: every auditable action has a stable id, a label and ECS categorisation.

Applications add their own actions beside the built-in ones::

    import audit_middleware
    audit_middleware.register("backup.restore", "Backup Restored", category="configuration", type="change")
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.ecs import expected_event_types
from audit_middleware.model.ids import check_identifier


@dataclass(frozen=True, slots=True)
class Action:
    """One kind of auditable action.

    ``id`` is stored in ``event.action`` and never changes; ``label`` is what people read;
    ``category`` and ``type`` are ECS ``event.category`` / ``event.type`` values; ``group``
    gathers actions for filters ("resource", "account", "team", or an app's own).
    """

    id: str
    label: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    group: str = "custom"
    default_outcome: str = "success"

    @property
    def filter_group(self) -> str:
        """The action-type filter it falls under, stored as ``audit.action.filter``.

        One of the product's filter groups (``create``, ``update``, ``delete``,
        ``start-stop``) when the action is in one, else its catalog group (``account``,
        ``team``, ``resource`` for a read, ``audit``, ``custom`` or an app's own).

        >>> CATALOG.get("restart").filter_group, CATALOG.get("login").filter_group
        ('start-stop', 'account')
        """
        return _FILTER_GROUP_OF.get(self.id, self.group)


class ActionCatalog:
    """A thread-safe registry of actions, keyed by id."""

    __slots__ = ("_actions", "_lock")

    def __init__(self, actions: Iterable[Action] = (), *, validate: bool = True) -> None:
        self._actions: dict[str, Action] = {}
        self._lock = threading.Lock()
        for action in actions:
            if validate:
                self.add(action)
            else:
                self._actions[action.id] = action

    def add(self, action: Action) -> Action:
        """Register ``action``; re-registering an identical action is a no-op."""
        validate_action(action)
        with self._lock:
            existing = self._actions.get(action.id)
            if existing is not None and existing != action:
                raise AuditValidationError(f"action {action.id!r} is already registered differently")
            self._actions[action.id] = action
        return action

    def get(self, action_id: str) -> Action:
        """The action with this id, or AuditValidationError naming the known ones."""
        try:
            return self._actions[action_id]
        except KeyError:
            known = ", ".join(sorted(self._actions))
            raise AuditValidationError(f"unknown action {action_id!r}; known actions: {known}") from None

    def resolve(self, action: Action | str) -> Action:
        """Accept an Action or an action id."""
        if isinstance(action, Action):
            return action if self._actions.get(action.id) == action else self.add(action)
        return self.get(action)

    def group(self, name: str) -> tuple[Action, ...]:
        """Every action in a group, or in a filter group such as ``"start-stop"``."""
        ids = FILTER_GROUPS.get(name)
        if ids is not None:
            return tuple(self._actions[i] for i in ids)
        members = tuple(a for a in self._actions.values() if a.group == name)
        if not members:
            raise AuditValidationError(f"unknown action group {name!r}")
        return members

    def __iter__(self) -> Iterator[Action]:
        return iter(list(self._actions.values()))

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._actions


def validate_action(action: Action) -> None:
    """Raise AuditValidationError unless the action's id, label and ECS values are valid."""
    check_identifier(action.id, "action id")
    if not action.label.strip():
        raise AuditValidationError(f"action {action.id!r} needs a label")
    if not action.category or not action.type:
        raise AuditValidationError(f"action {action.id!r} needs at least one ECS category and type")
    # ECS allows only these event.type values per event.category (the ECS field list's
    # event.category allowed_values[].expected_event_types): records stay valid ECS.
    allowed = expected_event_types()
    for category in action.category:
        if category not in allowed:
            raise AuditValidationError(
                f"action {action.id!r}: {category!r} is not an ECS event.category "
                f"({', '.join(sorted(allowed))})"
            )
    permitted = frozenset().union(*(allowed[c] for c in action.category))
    for kind in action.type:
        if kind not in permitted:
            raise AuditValidationError(
                f"action {action.id!r}: ECS event.type {kind!r} does not fit category "
                f"{'/'.join(action.category)} (allowed: {', '.join(sorted(permitted))})"
            )
    if action.default_outcome not in ("success", "failure", "unknown"):
        raise AuditValidationError(
            f"action {action.id!r}: default outcome must be success, failure or unknown"
        )


BUILTIN_ACTIONS: tuple[Action, ...] = (
    Action("create", "Create", ("configuration",), ("creation",), "resource"),
    Action("update", "Update", ("configuration",), ("change",), "resource"),
    Action("delete", "Delete", ("configuration",), ("deletion",), "resource"),
    Action("start", "Start", ("host",), ("start",), "resource"),
    Action("stop", "Stop", ("host",), ("end",), "resource"),
    Action("restart", "Restart", ("host",), ("change",), "resource"),
    Action("read", "Read", ("configuration",), ("access",), "resource"),
    Action("login", "Login", ("authentication",), ("start",), "account"),
    Action("logout", "Logout", ("authentication",), ("end",), "account"),
    Action("login_failed", "Login Failed", ("authentication",), ("start",), "account", "failure"),
    Action("token_created", "Token Created", ("iam",), ("creation",), "account"),
    Action("token_revoked", "Token Revoked", ("iam",), ("deletion",), "account"),
    Action("ssh_key_added", "SSH Key Added", ("iam",), ("creation",), "account"),
    Action("ssh_key_deleted", "SSH Key Deleted", ("iam",), ("deletion",), "account"),
    Action("invite_sent", "Invite Sent", ("iam",), ("user", "creation"), "team"),
    Action("invite_accepted", "Invite Accepted", ("iam",), ("user", "change"), "team"),
    Action("member_removed", "Member Removed", ("iam",), ("user", "deletion"), "team"),
    Action("permissions_changed", "Permissions Changed", ("iam",), ("change", "admin"), "team"),
    Action("audit_exported", "Audit Log Exported", ("configuration",), ("access",), "audit"),
    Action("audit_viewed", "Audit Log Viewed", ("configuration",), ("access",), "audit"),
)

# The product's filter choices, beside the catalog's own groups.
FILTER_GROUPS: dict[str, tuple[str, ...]] = {
    "create": ("create",),
    "update": ("update",),
    "delete": ("delete",),
    "start-stop": ("start", "stop", "restart"),
}
_FILTER_GROUP_OF: dict[str, str] = {action: name for name, ids in FILTER_GROUPS.items() for action in ids}

# The built-ins are checked against the ECS field list by the test suite, so importing the
# package does not have to read that list.
CATALOG = ActionCatalog(BUILTIN_ACTIONS, validate=False)


def register(
    action_id: str,
    label: str,
    *,
    category: tuple[str, ...] | str = ("configuration",),
    type: tuple[str, ...] | str = ("change",),
    group: str = "custom",
    default_outcome: str = "success",
) -> Action:
    """Register an application action in the process-wide catalog and return it.

    ``category`` and ``type`` take ECS values: a tuple, or one value as a string.
    """
    # tuple("iam") would be ("i", "a", "m"): take a lone string as one value
    categories = (category,) if isinstance(category, str) else tuple(category)
    types = (type,) if isinstance(type, str) else tuple(type)
    return CATALOG.add(Action(action_id, label, categories, types, group, default_outcome))
