"""The action catalog: built-in actions, ECS categorisation, registration and validation."""

from __future__ import annotations

import pytest

from audit_middleware import AuditValidationError
from audit_middleware.model import actions
from audit_middleware.model.actions import BUILTIN_ACTIONS, CATALOG, Action, ActionCatalog
from tests.conftest import ROOT, require_shared_file

ECS_YAML = ROOT.parent / "shared" / "reference" / "ecs_flat-9.4.0.yml"

# The product spec's 17 actions: (id, label, group).
PRODUCT_ACTIONS = [
    ("create", "Create", "resource"),
    ("update", "Update", "resource"),
    ("delete", "Delete", "resource"),
    ("start", "Start", "resource"),
    ("stop", "Stop", "resource"),
    ("restart", "Restart", "resource"),
    ("login", "Login", "account"),
    ("logout", "Logout", "account"),
    ("login_failed", "Login Failed", "account"),
    ("token_created", "Token Created", "account"),
    ("token_revoked", "Token Revoked", "account"),
    ("ssh_key_added", "SSH Key Added", "account"),
    ("ssh_key_deleted", "SSH Key Deleted", "account"),
    ("invite_sent", "Invite Sent", "team"),
    ("invite_accepted", "Invite Accepted", "team"),
    ("member_removed", "Member Removed", "team"),
    ("permissions_changed", "Permissions Changed", "team"),
]


@pytest.fixture
def catalog_restored(monkeypatch):
    """The process-wide catalog, put back as it was after the test."""
    monkeypatch.setattr(CATALOG, "_actions", dict(CATALOG._actions))
    return CATALOG


def test_the_product_groups_hold_exactly_the_spec_actions():
    """The catalog's resource, account and team groups are the spec's list, plus the generic read."""
    grouped = {(a.id, a.label, a.group) for a in CATALOG if a.group in ("resource", "account", "team")}
    assert grouped - {("read", "Read", "resource")} == set(PRODUCT_ACTIONS)


@pytest.mark.parametrize(
    ("action_id", "label", "group"), PRODUCT_ACTIONS, ids=[a[0] for a in PRODUCT_ACTIONS]
)
def test_product_action_is_built_in(action_id, label, group):
    """Each product action is registered with its stable id, human label, group and ECS values."""
    action = actions.CATALOG.get(action_id)
    assert action.id == action_id
    assert action.label == label
    assert action.group == group
    assert action.category
    assert action.type


def test_login_failed_defaults_to_failure():
    """Login Failed is recorded as a failure unless told otherwise; other actions as success."""
    assert actions.CATALOG.get("login_failed").default_outcome == "failure"
    assert actions.CATALOG.get("login").default_outcome == "success"


def test_builtins_fit_the_bundled_ecs_extract():
    """Every built-in's category/type pair passes the catalog's own ECS validation.

    The process-wide catalog skips that check at import (to spare reading the ECS list),
    so it is made here: a validating catalog accepts every built-in, and refuses a wrong one.
    """
    validated = ActionCatalog(BUILTIN_ACTIONS)
    assert [action.id for action in validated] == [action.id for action in BUILTIN_ACTIONS]
    with pytest.raises(AuditValidationError, match="does not fit"):
        ActionCatalog([*BUILTIN_ACTIONS, Action("odd", "Odd", ("iam",), ("start",))])


def test_builtins_fit_the_ecs_reference_file():
    """Every built-in's event.category and event.type are allowed by ecs_flat 9.4.0 itself."""
    require_shared_file(ECS_YAML)
    yaml = pytest.importorskip("yaml")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    fields = yaml.load(ECS_YAML.read_text("utf-8"), Loader=loader)
    expected = {
        entry["name"]: set(entry.get("expected_event_types", ()))
        for entry in fields["event.category"]["allowed_values"]
    }
    types = {entry["name"] for entry in fields["event.type"]["allowed_values"]}
    for action in BUILTIN_ACTIONS:
        for category in action.category:
            assert category in expected, (action.id, category)
        allowed = set().union(*(expected[c] for c in action.category))
        for kind in action.type:
            assert kind in types, (action.id, kind)
            assert kind in allowed, (action.id, kind, action.category)


def test_filter_groups_sort_every_builtin_action():
    """Resource actions fall under create/update/delete/start-stop; the rest keep their catalog group."""
    by_filter: dict[str, set[str]] = {}
    for action in BUILTIN_ACTIONS:
        by_filter.setdefault(action.filter_group, set()).add(action.id)
    assert by_filter["create"] == {"create"}
    assert by_filter["update"] == {"update"}
    assert by_filter["delete"] == {"delete"}
    assert by_filter["start-stop"] == {"start", "stop", "restart"}
    assert by_filter["account"] == {a.id for a in BUILTIN_ACTIONS if a.group == "account"}
    assert by_filter["team"] == {a.id for a in BUILTIN_ACTIONS if a.group == "team"}
    assert by_filter["resource"] == {"read"}
    assert by_filter["audit"] == {"audit_exported", "audit_viewed"}


def test_app_action_filter_group_is_its_own_group(catalog_restored):
    """An application action is filtered under the group it was registered with."""
    action = actions.register("backup.restore", "Backup Restored", group="backup")
    assert action.filter_group == "backup"


def test_register_custom_action(catalog_restored):
    """An application action registers beside the built-ins and is found by id."""
    action = actions.register(
        "backup.restore", "Backup Restored", category=("configuration",), type=("change",), group="backup"
    )
    assert actions.CATALOG.get("backup.restore") is action
    assert "backup.restore" in catalog_restored
    assert catalog_restored.group("backup") == (action,)


def test_register_identical_action_twice_is_a_no_op(catalog_restored):
    """Registering the same action again (e.g. a module imported twice) is accepted."""
    first = actions.register("vm.resize", "VM Resized", category=("host",), type=("change",))
    second = actions.register("vm.resize", "VM Resized", category=("host",), type=("change",))
    assert first == second
    assert actions.CATALOG.get("vm.resize") == first


def test_conflicting_re_registration_is_refused(catalog_restored):
    """An id already registered with other settings raises a clear error and keeps the first."""
    actions.register("vm.resize", "VM Resized", category=("host",), type=("change",))
    with pytest.raises(AuditValidationError, match=r"'vm.resize' is already registered differently"):
        actions.register("vm.resize", "VM Scaled", category=("host",), type=("change",))
    assert actions.CATALOG.get("vm.resize").label == "VM Resized"


def test_builtin_cannot_be_redefined(catalog_restored):
    """A built-in id cannot be taken over by an application action."""
    with pytest.raises(AuditValidationError, match="already registered"):
        actions.register("delete", "Remove", category=("configuration",), type=("deletion",))


@pytest.mark.parametrize(
    "bad_id",
    ["", "Create", "1st", "has space", "semi;colon", "x" * 65, "ünicode", "-dash"],
)
def test_bad_action_id_is_refused(catalog_restored, bad_id):
    """Action ids must be 1-64 lowercase chars starting with a letter; the error says so."""
    with pytest.raises(AuditValidationError, match="must be 1-64 chars"):
        actions.register(bad_id, "Label")
    assert bad_id not in catalog_restored


def test_blank_label_is_refused(catalog_restored):
    """An action needs a label people can read."""
    with pytest.raises(AuditValidationError, match="needs a label"):
        actions.register("x.y", "   ")


def test_unknown_category_is_refused(catalog_restored):
    """A category ECS does not define is named in the error, with the allowed ones."""
    with pytest.raises(AuditValidationError, match=r"'kubernetes' is not an ECS event.category.*iam"):
        actions.register("x.y", "X", category=("kubernetes",), type=("change",))


def test_type_not_allowed_for_category_is_refused(catalog_restored):
    """A type ECS does not expect for the category is refused, listing the allowed types."""
    with pytest.raises(
        AuditValidationError, match=r"event.type 'creation' does not fit category authentication.*start"
    ):
        actions.register("x.y", "X", category=("authentication",), type=("creation",))


def test_empty_category_or_type_is_refused(catalog_restored):
    """An action needs at least one ECS category and one type."""
    with pytest.raises(AuditValidationError, match="at least one ECS category and type"):
        actions.register("x.y", "X", category=(), type=("change",))
    with pytest.raises(AuditValidationError, match="at least one ECS category and type"):
        actions.register("x.y", "X", category=("iam",), type=())


def test_bad_default_outcome_is_refused(catalog_restored):
    """The default outcome must be one ECS allows."""
    with pytest.raises(AuditValidationError, match="default outcome"):
        actions.register("x.y", "X", default_outcome="maybe")


def test_unknown_action_lookup_names_known_ones():
    """Looking up an unregistered id fails with the list of known ids."""
    with pytest.raises(AuditValidationError, match=r"unknown action 'nope'.*create"):
        actions.CATALOG.get("nope")


def test_resolving_a_new_action_object_registers_it(catalog_restored):
    """An Action instance handed to the catalog is registered on first use."""
    action = Action("report.generate", "Report Generated", ("configuration",), ("creation",), "reports")
    assert catalog_restored.resolve(action) == action
    assert catalog_restored.resolve("report.generate") == action


def test_start_stop_filter_group():
    """The "start-stop" filter selects Start, Stop and Restart."""
    assert {a.id for a in CATALOG.group("start-stop")} == {"start", "stop", "restart"}


def test_catalog_groups():
    """The account and team groups hold exactly the spec's actions; resource adds only Read."""
    for group in ("resource", "account", "team"):
        expected = {action_id for action_id, _, g in PRODUCT_ACTIONS if g == group}
        if group == "resource":
            expected.add("read")
        assert {a.id for a in CATALOG.group(group)} == expected


def test_single_string_category_and_type(catalog_restored):
    """A lone category or type string is one value, not a sequence of letters."""
    action = actions.register("vm.snapshot", "VM Snapshot", category="host", type="change")
    assert action.category == ("host",)
    assert action.type == ("change",)


def test_unknown_group_is_refused():
    """Asking for a group nobody uses is an error, not an empty filter."""
    with pytest.raises(AuditValidationError, match="unknown action group"):
        CATALOG.group("nothing-here")
