"""The audit record model and its ECS document."""

from __future__ import annotations

import re
import uuid

import pytest

from audit_middleware import Actor, AuditEvent, AuditValidationError, ChangeSet, Resource, Scope, diff
from audit_middleware.model import actions
from audit_middleware.model import event as schema
from audit_middleware.model.encoding import dumps, loads
from audit_middleware.model.event import SYSTEM_ACTOR, RequestFacts, register_resource_type
from audit_middleware.model.ids import uuid7
from audit_middleware.model.timestamps import format_timestamp

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UNIX_MS = 1_732_550_400_123  # 2024-11-25T16:00:00.123Z


def rich_event(**overrides: object) -> AuditEvent:
    """An event using every part of the model."""
    fields: dict[str, object] = {
        "id": uuid7(UNIX_MS),
        "unix_ms": UNIX_MS,
        "action": actions.CATALOG.get("update"),
        "actor": Actor(
            id="42",
            name="Ana",
            email="ana@example.com",
            roles=("developer",),
            kind="user",
            impersonator=Actor(id="1", name="Root", email="root@example.com", roles=("admin", "support")),
        ),
        "outcome": "success",
        "resource": Resource("pod", "web-1", "Web 1"),
        "targets": (Resource("virtual_machine", "vm-9"), Resource("storage", "vol-3", "Data")),
        "changes": ChangeSet(
            {"spec": {"replicas": 2}, "labels": {"team": "a"}},
            {"spec": {"replicas": 3}, "labels": {"team": "b"}},
            ("labels.team", "spec.replicas"),
        ),
        "details": {"reason": "scale up", "ticket": 1234, "nested": {"list": [1, "two", None]}},
        "tenant": Scope("org-7", "Acme"),
        "project": Scope("proj-3", "Shop"),
        "request": RequestFacts(
            method="PATCH",
            path="/pods/web-1",
            route="/pods/<pod_id>",
            request_id="req-1",
            status_code=200,
            client_ip="198.51.100.7",
            forwarded_chain=("203.0.113.9", "198.51.100.7"),
            user_agent="curl/8.5.0",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        "service": "shop-api",
    }
    fields.update(overrides)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def test_document_uses_ecs_field_names():
    """The document puts each fact under its ECS name and product fields under audit.*."""
    doc = rich_event().to_document()
    assert doc["event"]["action"] == "update"
    assert doc["event"]["category"] == ["configuration"]
    assert doc["event"]["type"] == ["change"]
    assert doc["event"]["outcome"] == "success"
    assert doc["event"]["kind"] == "event"
    assert doc["ecs"]["version"] == "9.4.0"
    assert doc["http"] == {"request": {"method": "PATCH", "id": "req-1"}, "response": {"status_code": 200}}
    assert doc["url"] == {"path": "/pods/web-1"}
    assert doc["source"] == {"ip": "198.51.100.7"}
    assert doc["user_agent"] == {"original": "curl/8.5.0"}
    assert doc["trace"] == {"id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert doc["organization"] == {"id": "org-7", "name": "Acme"}
    assert doc["service"] == {"name": "shop-api"}
    audit = doc["audit"]
    assert audit["project"] == {"id": "proj-3", "name": "Shop"}
    assert audit["resource"] == {"type": "pod", "id": "web-1", "name": "Web 1"}
    assert audit["targets"] == [
        {"type": "virtual_machine", "id": "vm-9"},
        {"type": "storage", "id": "vol-3", "name": "Data"},
    ]
    assert audit["changes"]["fields"] == ["labels.team", "spec.replicas"]
    assert audit["changes"]["before"] == {"spec": {"replicas": 2}, "labels": {"team": "a"}}
    assert audit["source"] == {"forwarded": ["203.0.113.9", "198.51.100.7"]}
    assert audit["http"] == {"route": "/pods/<pod_id>"}
    assert audit["action"] == {"label": "Update", "group": "resource", "filter": "update"}


def test_event_id_is_a_uuid7():
    """event.id holds the event's UUIDv7."""
    event = rich_event()
    doc = event.to_document()
    assert doc["event"]["id"] == event.id
    assert uuid.UUID(doc["event"]["id"]).version == 7


def test_timestamp_is_utc_milliseconds_with_z():
    """@timestamp is ISO 8601 UTC with exactly three fraction digits and a Z."""
    doc = rich_event().to_document()
    assert doc["@timestamp"] == "2024-11-25T16:00:00.123Z"
    assert TIMESTAMP.match(doc["@timestamp"])
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1_000_000_000_007) == "2001-09-09T01:46:40.007Z"


def test_plain_actor_is_user():
    """Without impersonation user.* is the actor and there is no user.effective."""
    doc = rich_event(actor=Actor(id="42", name="Ana", email="ana@example.com", roles=("dev",))).to_document()
    assert doc["user"] == {"id": "42", "name": "Ana", "email": "ana@example.com", "roles": ["dev"]}
    assert doc["audit"]["actor"] == {"kind": "user"}


def test_impersonation_maps_real_person_to_user_and_acted_as_to_effective():
    """user.* is the real person (the impersonator); user.effective.* the identity acted as."""
    doc = rich_event().to_document()
    user = doc["user"]
    assert user["id"] == "1"
    assert user["name"] == "Root"
    assert user["email"] == "root@example.com"
    assert user["roles"] == ["admin", "support"]
    assert user["effective"] == {
        "id": "42",
        "name": "Ana",
        "email": "ana@example.com",
        "roles": ["developer"],
    }


def test_system_actor_document():
    """An event by the system actor says so in audit.actor.kind."""
    doc = rich_event(actor=SYSTEM_ACTOR, request=None).to_document()
    assert doc["user"] == {"id": "system", "name": "system"}
    assert doc["audit"]["actor"] == {"kind": "system"}
    assert "http" not in doc
    assert "source" not in doc


def test_round_trip_of_a_rich_event():
    """from_document(to_document(e)) gives back an equal event."""
    event = rich_event()
    assert AuditEvent.from_document(event.to_document()) == event


def test_round_trip_through_json():
    """The event survives encoding to JSON and back, as a store would keep it."""
    event = rich_event()
    assert AuditEvent.from_document(loads(dumps(event.to_document()))) == event


@pytest.mark.parametrize(
    "overrides",
    [
        {"actor": SYSTEM_ACTOR, "request": None, "service": None},
        {"actor": Actor(id="t-9", name="ci token", kind="api_token"), "outcome": "failure"},
        {"actor": Actor(name="billing", kind="service"), "resource": None, "targets": (), "changes": None},
        {"tenant": None, "project": None, "details": {}},
        {
            "action": actions.CATALOG.get("login_failed"),
            "outcome": "failure",
            "resource": Resource("session"),
        },
    ],
    ids=["system", "api-token-failure", "service-bare", "no-scopes", "login-failed"],
)
def test_round_trip_variants(overrides):
    """Round trips hold for every actor kind and with optional parts left out."""
    event = rich_event(**overrides)
    assert AuditEvent.from_document(loads(dumps(event.to_document()))) == event


def test_round_trip_of_an_unregistered_action():
    """A stored record whose action this process never registered still loads, label intact."""
    custom = actions.Action("legacy.thing", "Legacy Thing", ("iam",), ("change",), "legacy")
    doc = rich_event(action=custom).to_document()
    loaded = AuditEvent.from_document(doc)
    assert loaded.action == custom
    assert "legacy.thing" not in actions.CATALOG
    assert loaded.to_document() == doc


@pytest.mark.parametrize(
    ("action_id", "expected"),
    [
        ("delete", "delete"),
        ("restart", "start-stop"),
        ("ssh_key_added", "account"),
        ("member_removed", "team"),
    ],
)
def test_document_stores_the_action_type_filter(action_id, expected):
    """audit.action.filter holds the action-type filter the record falls under."""
    doc = rich_event(action=actions.CATALOG.get(action_id)).to_document()
    assert doc["audit"]["action"]["filter"] == expected


@pytest.mark.parametrize("bad", ["Pods", "pod type", "1pod", "", "x" * 65, "pöd", None, 7])
def test_bad_resource_type_is_refused(bad):
    """Resource types must be short lowercase identifiers; the error names the value."""
    with pytest.raises(AuditValidationError, match="resource type"):
        Resource(bad)


def test_app_resource_types_are_accepted_and_named(monkeypatch):
    """Any well-formed type works, and an app can give it a label."""
    monkeypatch.setattr(schema, "RESOURCE_TYPES", dict(schema.RESOURCE_TYPES))
    assert Resource("k8s.namespace", 7).id == "7"
    register_resource_type("k8s.namespace", "Namespace")
    assert schema.RESOURCE_TYPES["k8s.namespace"] == "Namespace"
    with pytest.raises(AuditValidationError):
        register_resource_type("Bad Type", "Bad")


def test_bad_actor_kind_is_refused():
    """The actor kind must be user, api_token, service or system."""
    with pytest.raises(AuditValidationError, match=r"actor kind 'robot' must be one of"):
        Actor(id="1", kind="robot")  # type: ignore[arg-type]


def test_roles_as_a_single_string_are_refused():
    """roles="admin" is a mistake (it would be five roles of one letter): clear error."""
    with pytest.raises(AuditValidationError, match="roles must be a sequence of names, not one string"):
        Actor(id="1", roles="admin")  # type: ignore[arg-type]


def test_roles_list_and_numeric_ids_are_normalised():
    """A roles list becomes a tuple; int ids become text."""
    actor = Actor(id=42, roles=["a", "b"])  # type: ignore[arg-type]
    assert actor.roles == ("a", "b")
    assert actor.id == "42"


def test_bytes_ids_are_refused():
    """Bytes are not text: an id given as bytes is an error, not b'...' in the record."""
    with pytest.raises(AuditValidationError, match="must be text"):
        Actor(id=b"42")  # type: ignore[arg-type]


def test_impersonator_must_be_an_actor():
    """An impersonator that is not an Actor is refused when the actor is built."""
    with pytest.raises(AuditValidationError, match="impersonator"):
        Actor(id="1", impersonator={"id": "2"})  # type: ignore[arg-type]


def test_long_ids_are_bounded():
    """An over-long id is cut so one field cannot bloat a record."""
    assert len(Resource("pod", 10**2000).id or "") == 1024


class Rocket:
    """An app id object whose text is 1,000 astral characters (2,000 UTF-16 code units)."""

    def __str__(self) -> str:
        return "\U0001f680" * 1000


def test_long_ids_stay_indexable():
    """Converted ids are bounded in UTF-16 code units, as OpenSearch counts its keyword limit."""
    resource_id = Resource("pod", Rocket()).id or ""
    assert len(resource_id.encode("utf-16-le")) // 2 == 1024
    assert resource_id == "\U0001f680" * 512
    assert Actor(id=7).id == "7"


def test_event_with_surrogates_encodes():
    """A whole record whose text came from broken UTF-8 still encodes."""
    event = rich_event(
        resource=Resource("pod", "bad\udcffid"),
        details={"header": "\udc80\udc81"},
        request=RequestFacts(method="POST", path="/p\udcff", user_agent="ua\ud800"),
    )
    doc = loads(dumps(event.to_document()))
    assert doc["audit"]["resource"]["id"] == "bad\ufffdid"
    assert doc["url"]["path"] == "/p\ufffd"


# -- the fields alert rules read -------------------------------------------------------------


def test_target_count_is_one_for_a_single_resource_and_the_targets_of_a_bulk_record():
    """audit.target_count: 1 for a record about one resource (or none), len(targets) for a bulk one."""
    single = rich_event(targets=())
    bulk = rich_event(targets=tuple(Resource("pod", str(n)) for n in range(50)))
    assert single.to_document()["audit"]["target_count"] == 1
    assert bulk.to_document()["audit"]["target_count"] == 50
    assert rich_event(resource=None, targets=()).to_document()["audit"]["target_count"] == 1


def test_permissions_changed_derives_granted_and_revoked_roles_from_a_roles_change():
    """A Permissions Changed record whose change is a roles list carries the roles added and removed."""
    change = diff({"roles": ["viewer", "billing"]}, {"roles": ["viewer", "admin", "owner"]})
    event = rich_event(action=actions.CATALOG.get("permissions_changed"), changes=change)
    assert event.to_document()["audit"]["permissions"] == {
        "added": ["admin", "owner"],
        "removed": ["billing"],
    }
    assert AuditEvent.from_document(event.to_document()).to_document() == event.to_document()


def test_explicit_permissions_win_and_other_actions_derive_nothing():
    """permissions= is stored as given; an Update record with a roles change carries no permissions."""
    explicit = rich_event(
        action=actions.CATALOG.get("permissions_changed"),
        permissions=schema.PermissionChange(added=("admin", "admin"), removed=("viewer",)),
    )
    assert explicit.to_document()["audit"]["permissions"] == {"added": ["admin"], "removed": ["viewer"]}
    update = rich_event(changes=ChangeSet({"roles": ["a"]}, {"roles": ["a", "b"]}, ("roles",)))
    assert "permissions" not in update.to_document()["audit"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param({"roles": "admin"}, {"roles": "owner"}, id="not-a-list"),
        pytest.param({"roles": ["a"]}, {"roles": ["a"]}, id="unchanged"),
        pytest.param({"level": 1}, {"level": 2}, id="no-roles"),
    ],
)
def test_changes_that_are_no_roles_list_give_no_permissions(before, after):
    """Only a roles list that changed yields added/removed roles."""
    change = ChangeSet(before, after, ("roles",))
    event = rich_event(action=actions.CATALOG.get("permissions_changed"), changes=change)
    assert "permissions" not in event.to_document()["audit"]


@pytest.mark.parametrize("bad", ["admin", [""], [b"x"], 5])
def test_bad_permission_names_are_refused(bad):
    """Role names are a sequence of non-empty names."""
    with pytest.raises(AuditValidationError):
        schema.PermissionChange(added=bad)
