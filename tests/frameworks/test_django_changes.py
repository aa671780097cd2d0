"""Django model changes: signals of the example's registered Pod and Label models.

Through the example's API (in requests) and directly (outside requests), in autocommit
mode, in ``atomic`` blocks, and inside a real ``django.test.TestCase``, whose
transactions never commit.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.db import transaction  # noqa: E402
from django.test import Client, TestCase  # noqa: E402

from audit_middleware import Resource  # noqa: E402
from audit_middleware.capture.changes import REGISTRY, Tracking  # noqa: E402
from audit_middleware.frameworks.django import register  # noqa: E402
from audit_middleware.frameworks.django.changes import settle  # noqa: E402
from audit_middleware.model.event import SYSTEM_ACTOR  # noqa: E402
from audit_middleware.testing import CapturedEvents, capture_events  # noqa: E402
from tests.frameworks.support import ALICE_TOKEN, only  # noqa: E402


@pytest.fixture
def app(django_project: dict[type, Tracking]) -> None:
    """The example's models registered, as at start-up."""
    REGISTRY.restore(django_project)


def api(method: str, url: str, body: Any = None) -> Any:
    client = Client()
    kwargs: dict[str, Any] = {"headers": ALICE_TOKEN}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    return getattr(client, method)(url, **kwargs)


def new_pod(name: str = "web", **extra: Any) -> str:
    response = api("post", "/pods", {"name": name, "image": "nginx:1.27", **extra})
    assert response.status_code == 201, response.content
    pod_id: str = response.json()["id"]
    return pod_id


def create_then_fail(name: str) -> None:
    """Create a pod in an atomic block that then fails (and so rolls back)."""
    from integrations.django_app.models import Pod  # noqa: PLC0415 - needs the app registry

    with transaction.atomic():
        Pod.objects.create(org="acme", name=name)
        raise RuntimeError("undo")


def test_create_names_the_row_and_holds_its_values(app: None, events: CapturedEvents) -> None:
    """POST /pods: one create record of the new pod, with its values; the excluded field nowhere."""
    pod_id = new_pod(env={"DB_URL": "postgres://user:pw@db"})
    document = only(events)
    assert document["event"]["action"] == "create"
    assert document["audit"]["resource"] == {"type": "pod", "id": pod_id, "name": "web"}
    assert document["audit"]["changes"]["after"]["spec"] == {"image": "nginx:1.27", "cpu": 1}
    assert "secret_env" not in document["audit"]["changes"]["fields"]
    assert "postgres://" not in json.dumps(document)


def test_update_with_labels_is_one_record_of_the_pod(app: None, events: CapturedEvents) -> None:
    """A save and a many-to-many change of one pod in one request: one update, both fields."""
    from integrations.django_app.models import Label  # noqa: PLC0415 - needs the app registry

    for name in ("team=web", "tier=front"):
        Label.objects.get_or_create(name=name)
    pod_id = new_pod()
    events.clear()
    response = api("patch", f"/pods/{pod_id}", {"name": "web-2", "labels": ["team=web", "tier=front"]})
    assert response.status_code == 200
    document = only(events)
    assert document["event"]["action"] == "update"
    assert document["audit"]["resource"]["name"] == "web-2"
    changes = document["audit"]["changes"]
    assert changes["fields"] == ["labels", "name"]
    assert changes["before"] == {"name": "web", "labels": []}
    assert changes["after"]["name"] == "web-2"
    assert len(changes["after"]["labels"]) == 2


def test_new_labels_and_the_pod_are_one_record_with_targets(app: None, events: CapturedEvents) -> None:
    """Labels created while changing a pod: one record about the pod the URL names, every row a target."""
    pod_id = new_pod()
    events.clear()
    api("patch", f"/pods/{pod_id}", {"labels": ["new=1"]})
    document = only(events)
    assert document["audit"]["resource"]["id"] == pod_id
    assert document["event"]["action"] == "update"
    assert {target["type"] for target in document["audit"]["targets"]} == {"pod", "label"}
    assert document["audit"]["details"]["actions"] == {"create": 1, "update": 1}


def test_delete_names_the_row(app: None, events: CapturedEvents) -> None:
    """DELETE /pods/<id>: a delete record of that pod with the values it had."""
    pod_id = new_pod()
    events.clear()
    assert api("delete", f"/pods/{pod_id}").status_code == 204
    document = only(events)
    assert document["event"]["action"] == "delete"
    assert document["audit"]["resource"] == {"type": "pod", "id": pod_id, "name": "web"}
    assert document["audit"]["changes"]["before"]["status"] == "stopped"


def test_bulk_delete_is_one_record_with_targets(app: None, events: CapturedEvents) -> None:
    """QuerySet.delete() of three pods in one request: one delete record, three targets."""
    for name in ("a", "b", "c"):
        new_pod(name)
    events.clear()
    response = api("delete", "/pods?status=stopped")
    assert response.json()["deleted"] >= 3
    document = only(events)
    assert document["event"]["action"] == "delete"
    assert document["audit"]["resource"] == {"type": "pod"}
    assert {"a", "b", "c"} <= {target["name"] for target in document["audit"]["targets"]}
    assert document["audit"]["details"]["count"] == len(document["audit"]["targets"])


def test_rolled_back_change_is_not_recorded_as_done(app: None, events: CapturedEvents) -> None:
    """A resize over quota is saved, then rolled back: the record is the refused PATCH, no change."""
    pod_id = new_pod()
    events.clear()
    assert api("patch", f"/pods/{pod_id}", {"spec": {"cpu": 64}}).status_code == 409
    document = only(events)
    assert document["event"]["action"] == "update"  # the generic PATCH record
    assert document["event"]["outcome"] == "failure"
    assert "changes" not in document["audit"]
    assert api("get", f"/pods/{pod_id}").json()["spec"]["cpu"] == 1


def test_changes_outside_a_request_are_their_own_records(app: None, events: CapturedEvents) -> None:
    """A job creating and deleting a pod: two records, by the system actor, no request facts."""
    from integrations.django_app.models import Pod  # noqa: PLC0415 - needs the app registry

    pod = Pod.objects.create(org="acme", name="batch", spec={"image": "busybox"})
    pod_id = pod.pk
    pod.delete()
    create, delete = events
    assert (create.action.id, delete.action.id) == ("create", "delete")
    assert create.actor == SYSTEM_ACTOR
    assert create.request is None
    assert delete.resource == Resource("pod", pod_id, "batch")


def test_atomic_block_records_at_commit_and_never_on_rollback(app: None, events: CapturedEvents) -> None:
    """Inside atomic() the record waits for the commit; a rolled-back block leaves none."""
    from integrations.django_app.models import Pod  # noqa: PLC0415

    with transaction.atomic():
        Pod.objects.create(org="acme", name="kept")
        assert list(events) == []  # not before the commit
    assert [e.resource.name for e in events if e.resource] == ["kept"]
    with pytest.raises(RuntimeError):
        create_then_fail("rolled back")
    with transaction.atomic():
        Pod.objects.create(org="acme", name="outer")
        with pytest.raises(RuntimeError):
            create_then_fail("inner rolled back")  # a savepoint
    assert [e.resource.name for e in events if e.resource] == ["kept", "outer"]


def test_update_reads_the_row_as_it_was_even_from_a_stale_instance(app: None, events: CapturedEvents) -> None:
    """Before values come from the database, not from what a stale instance holds."""
    from integrations.django_app.models import Pod  # noqa: PLC0415

    pod = Pod.objects.create(org="acme", name="one")
    Pod.objects.filter(pk=pod.pk).update(name="two")  # not captured: no signal (documented)
    pod.name = "three"
    pod.save()
    change = events[-1]
    assert change.changes is not None
    assert (change.changes.before, change.changes.after) == ({"name": "two"}, {"name": "three"})


def test_saving_unchanged_and_excluded_fields_records_nothing(app: None, events: CapturedEvents) -> None:
    """A save that changed no tracked field is not an update."""
    from integrations.django_app.models import Pod  # noqa: PLC0415

    pod = Pod.objects.create(org="acme", name="same")
    events.clear()
    pod.save()
    pod.secret_env = {"TOKEN": "x"}
    pod.save()
    assert list(events) == []


def test_unregistered_models_keep_django_fast_delete(app: None) -> None:
    """Receivers are per registered model: deleting sessions (not registered) stays a fast delete."""
    from django.contrib.sessions.models import Session  # noqa: PLC0415
    from django.db.models.deletion import Collector  # noqa: PLC0415

    from integrations.django_app.models import Pod  # noqa: PLC0415

    assert Collector(using="default", origin=None).can_fast_delete(Session.objects.none())
    assert not Collector(using="default", origin=None).can_fast_delete(Pod.objects.none())


def test_settings_register_models(app: None, events: CapturedEvents) -> None:
    """AUDIT_MIDDLEWARE["models"] registers by label, with options."""
    from django.contrib.auth.models import Group  # noqa: PLC0415

    from audit_middleware.frameworks.django.changes import register_from_settings  # noqa: PLC0415

    register_from_settings({"auth.Group": {"resource_type": "team"}})
    group = Group.objects.create(name="ops")
    group_id = str(group.pk)
    group.delete()
    assert [(e.action.id, e.resource) for e in events] == [
        ("create", Resource("team", group_id, "ops")),
        ("delete", Resource("team", group_id, "ops")),
    ]


@pytest.mark.usefixtures("django_project")
class TestInsideDjangoTestCase(TestCase):
    """Django's TestCase wraps each test in transactions that are rolled back, never committed."""

    def setUp(self) -> None:
        from integrations.django_app.models import Label, Pod  # noqa: PLC0415

        for model in (Pod, Label):
            register(model, **model.__audit__)

    def test_writes_in_the_test_are_recorded_once_each(self) -> None:
        """Outside requests, each write in the test's own transaction is recorded at once."""
        from integrations.django_app.models import Pod  # noqa: PLC0415

        with capture_events() as events:
            Pod.objects.create(org="acme", name="fixture")
        assert [e.action.id for e in events] == ["create"]

    def test_request_records_its_change(self) -> None:
        """Through the test client the request's change is its record, also when the view used atomic()."""
        with capture_events() as events:
            pod_id = new_pod()
            api("patch", f"/pods/{pod_id}", {"spec": {"cpu": 2}})
        assert [e.action.id for e in events] == ["create", "update"]
        assert events[1].changes is not None
        assert events[1].changes.fields == ("spec.cpu",)

    def test_rollback_inside_the_test_transaction_drops_the_change(self) -> None:
        """A block the app opened and rolled back inside the test's transaction leaves nothing."""
        with capture_events() as events:
            with pytest.raises(RuntimeError):
                create_then_fail("undone")
            settle()
        assert list(events) == []

    def test_delete_waits_for_its_block_then_is_handed_on(self) -> None:
        """A delete runs in Django's own atomic block: it is recorded once that block ended."""
        from integrations.django_app.models import Pod  # noqa: PLC0415

        pod = Pod.objects.create(org="acme", name="gone")
        with capture_events() as events:
            pod.delete()
            settle()
        assert [(e.action.id, e.resource.name if e.resource else None) for e in events] == [
            ("delete", "gone")
        ]
