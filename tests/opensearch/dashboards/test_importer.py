"""The import into Dashboards, checked for what it sends and how it reads the answers.

No OpenSearch Dashboards server can run here, so its HTTP API is mocked with
``responses``; the answers follow the shapes of its saved-objects routes (docs/dashboards.md).
"""

from __future__ import annotations

import base64
import copy
import email.parser
import email.policy
import json
from typing import Any

import pytest
import responses
from responses import matchers

from audit_middleware.opensearch.dashboards import bundle, objects
from audit_middleware.opensearch.dashboards.importer import AUTHINFO_PATH, BULK_GET_PATH, IMPORT_PATH, install
from audit_middleware.opensearch.dashboards.settings import DashboardsSettings
from audit_middleware.opensearch.provisioning import SetupError

URL = "https://dash.example:5601/_dashboards"
SETTINGS = DashboardsSettings(URL, username="admin", password="s3cret")
ITEMS = bundle.saved_objects()


def stored(item: dict[str, Any]) -> dict[str, Any]:
    """An object as _bulk_get returns it once installed."""
    return {**copy.deepcopy(item), "updated_at": "2026-01-01T00:00:00.000Z", "version": "WzEsMV0="}


def missing(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "type": item["type"],
        "error": {"statusCode": 404, "error": "Not Found", "message": "Saved object not found"},
    }


def bulk_get(mock: responses.RequestsMock, answers: list[dict[str, Any]]) -> None:
    mock.post(f"{URL}{BULK_GET_PATH}", json={"saved_objects": answers})


def import_ok(mock: responses.RequestsMock, items: list[dict[str, Any]], *, overwrite: bool = False) -> None:
    results = [
        {
            "type": i["type"],
            "id": i["id"],
            "meta": {"title": i["attributes"]["title"]},
            **({"overwrite": True} if overwrite else {}),
        }
        for i in items
    ]
    mock.post(
        f"{URL}{IMPORT_PATH}",
        json={"success": True, "successCount": len(items), "successResults": results},
        match=[matchers.query_param_matcher({"overwrite": "true"})],
    )


def uploaded_file(request: Any) -> tuple[str, str, bytes]:
    """(form field name, file name, content) of the one part of a multipart body."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    (part,) = list(message.iter_parts())
    return (
        part.get_param("name", header="content-disposition"),
        part.get_filename(),
        part.get_payload(decode=True),
    )


def statuses(results) -> dict[str, str]:
    return {f"{r.step.kind} {r.step.name}": r.status for r in results}


@responses.activate
def test_first_install_sends_every_object_as_one_ndjson_file():
    """Nothing installed: one import, overwrite=true, field 'file', a .ndjson name, osd-xsrf, basic auth."""
    bulk_get(responses.mock, [missing(i) for i in ITEMS])
    import_ok(responses.mock, ITEMS)
    results = install(SETTINGS, ITEMS)
    assert {r.status for r in results} == {"created"}
    assert [r.step.name for r in results] == [i["attributes"]["title"] for i in ITEMS]
    lookup, upload = responses.calls
    assert json.loads(lookup.request.body) == [{"type": i["type"], "id": i["id"]} for i in ITEMS]
    for call in (lookup, upload):
        assert call.request.headers["osd-xsrf"] == "true"
        assert call.request.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:s3cret").decode()
        assert "securitytenant" not in call.request.headers
    assert upload.request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    field, filename, content = uploaded_file(upload.request)
    assert (field, filename) == ("file", "audit-logs.ndjson")
    assert content == objects.encode_ndjson(ITEMS) == bundle.ndjson()


@responses.activate
def test_second_install_changes_nothing():
    """Everything installed as it is: every object unchanged, no import request."""
    bulk_get(responses.mock, [stored(i) for i in ITEMS])
    results = install(SETTINGS, ITEMS)
    assert {r.status for r in results} == {"unchanged"}
    assert len(responses.calls) == 1


@responses.activate
def test_only_changed_objects_are_sent_and_reported_updated():
    """An object edited in Dashboards (or changed by a new version) is re-imported, the rest left alone."""
    edited = stored(ITEMS[1])
    edited["attributes"]["columns"] = ["_source"]
    answers = [stored(i) for i in ITEMS]
    answers[1] = edited
    answers[-1] = missing(ITEMS[-1])
    bulk_get(responses.mock, answers)
    mock_import = [ITEMS[1], ITEMS[-1]]
    responses.post(
        f"{URL}{IMPORT_PATH}",
        json={
            "success": True,
            "successCount": 2,
            "successResults": [
                {"type": ITEMS[1]["type"], "id": ITEMS[1]["id"], "overwrite": True},
                {"type": ITEMS[-1]["type"], "id": ITEMS[-1]["id"]},
            ],
        },
    )
    results = statuses(install(SETTINGS, ITEMS))
    assert results.pop("saved search Audit: all entries") == "updated"
    assert results.pop("saved dashboard Audit Logs") == "created"
    assert set(results.values()) == {"unchanged"}
    assert uploaded_file(responses.calls[1].request)[2] == objects.encode_ndjson(mock_import)


@responses.activate
def test_dry_run_reads_and_sends_nothing():
    """A dry run reports what would change and never calls the import route."""
    answers = [stored(i) for i in ITEMS]
    answers[0] = missing(ITEMS[0])
    bulk_get(responses.mock, answers)
    results = install(SETTINGS, ITEMS, dry_run=True)
    assert [r.status for r in results] == ["created"] + ["unchanged"] * (len(ITEMS) - 1)
    assert [c.request.url for c in responses.calls] == [f"{URL}{BULK_GET_PATH}"]


@responses.activate
def test_an_answer_with_success_false_is_a_failure_even_with_status_200():
    """Dashboards answers 200 when objects fail: the per-object errors become the message."""
    bulk_get(responses.mock, [missing(i) for i in ITEMS])
    responses.post(
        f"{URL}{IMPORT_PATH}",
        json={
            "success": False,
            "successCount": 0,
            "errors": [
                {
                    "id": ITEMS[1]["id"],
                    "type": "search",
                    "title": "Audit: all entries",
                    "error": {
                        "type": "missing_references",
                        "references": [{"type": "index-pattern", "id": "x-1"}],
                    },
                }
            ],
        },
    )
    with pytest.raises(
        SetupError, match=r"search 'Audit: all entries': missing_references: index-pattern x-1"
    ):
        install(SETTINGS, ITEMS)


@responses.activate
def test_success_without_every_object_is_a_failure():
    """An object the answer does not list as imported is not reported as created."""
    bulk_get(responses.mock, [missing(i) for i in ITEMS])
    import_ok(responses.mock, ITEMS[:-1])
    with pytest.raises(SetupError, match="did not list saved dashboard"):
        install(SETTINGS, ITEMS)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            401,
            {"statusCode": 401, "message": "Unauthorized"},
            "AUDIT_DASHBOARDS_USERNAME / AUDIT_DASHBOARDS_PASSWORD",
        ),
        (403, {"statusCode": 403, "message": "no permissions for [indices:data/read/mget]"}, "kibana_user"),
        (404, {"statusCode": 404, "message": "Not Found"}, "server.basePath"),
        (503, "OpenSearch Dashboards server is not ready yet", "not ready yet"),
        (400, {"statusCode": 400, "message": "Request must contain a osd-xsrf header."}, "osd-xsrf"),
    ],
)
@responses.activate
def test_http_errors_say_what_to_do_and_never_show_the_password(status, body, message):
    """401, 403, 404, 503 and other refusals become one sentence naming the fix."""
    if isinstance(body, dict):
        responses.post(f"{URL}{BULK_GET_PATH}", json=body, status=status)
    else:
        responses.post(f"{URL}{BULK_GET_PATH}", body=body, status=status)
    with pytest.raises(SetupError, match=message) as raised:
        install(SETTINGS, ITEMS)
    assert "s3cret" not in str(raised.value)


def test_an_unreachable_dashboards_names_the_variable():
    """A refused connection says Dashboards did not answer and which setting holds its URL."""
    with pytest.raises(SetupError, match=r"did not answer .* AUDIT_DASHBOARDS_URL"):
        install(DashboardsSettings("http://127.0.0.1:9", timeout=2), ITEMS)


@responses.activate
def test_a_non_json_answer_is_named():
    """An HTML page (a proxy, the wrong URL) is reported, not parsed."""
    responses.post(f"{URL}{BULK_GET_PATH}", body="<html>login</html>", content_type="text/html")
    with pytest.raises(SetupError, match="not JSON"):
        install(SETTINGS, ITEMS)


TENANTED = DashboardsSettings(URL, username="admin", password="s3cret", tenant="audit-team")
AUTHINFO = {
    "user_name": "admin",
    "tenants": {"global_tenant": True, "admin": True, "audit-team": True, "readers": False},
}


@responses.activate
def test_a_tenant_is_checked_then_sent_on_every_request():
    """With a tenant, the user's access is read first, and each request carries the securitytenant header."""
    responses.get(f"{URL}{AUTHINFO_PATH}", json=AUTHINFO)
    bulk_get(responses.mock, [missing(i) for i in ITEMS])
    import_ok(responses.mock, ITEMS)
    install(TENANTED, ITEMS)
    assert [c.request.headers["securitytenant"] for c in responses.calls] == ["audit-team"] * 3
    assert "securitytenant" not in (responses.calls[2].request.url or "")


@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ("ops", r"has no tenant 'ops' \(it has: audit-team, global, private, readers\)"),
        ("readers", "may only read tenant 'readers'"),
    ],
)
@responses.activate
def test_a_tenant_the_user_cannot_write_is_refused_before_anything_is_sent(tenant, message):
    """Dashboards would silently fall back to another tenant: setup stops instead."""
    responses.get(f"{URL}{AUTHINFO_PATH}", json=AUTHINFO)
    with pytest.raises(SetupError, match=message):
        install(DashboardsSettings(URL, username="admin", password="s3cret", tenant=tenant), ITEMS)
    assert len(responses.calls) == 1


@pytest.mark.parametrize("tenant", ["global", "Global", "private", "__user__"])
@responses.activate
def test_global_and_private_tenants_are_understood(tenant):
    """The security plugin's names for the global and the private tenant are accepted."""
    responses.get(f"{URL}{AUTHINFO_PATH}", json=AUTHINFO)
    bulk_get(responses.mock, [stored(i) for i in ITEMS])
    install(DashboardsSettings(URL, username="admin", password="s3cret", tenant=tenant), ITEMS)
    assert responses.calls[1].request.headers["securitytenant"] == tenant


@responses.activate
def test_a_tenant_without_the_security_plugin_is_refused():
    """No security plugin means no tenants: asking for one is an error, not a silent global import."""
    responses.get(f"{URL}{AUTHINFO_PATH}", json={"statusCode": 404, "message": "Not Found"}, status=404)
    with pytest.raises(SetupError, match="no security plugin"):
        install(TENANTED, ITEMS)


@responses.activate
def test_other_read_errors_stop_the_install():
    """A stored object Dashboards cannot read (other than 404) is an error, not a silent overwrite."""
    answers = [stored(i) for i in ITEMS]
    answers[0] = {
        "id": ITEMS[0]["id"],
        "type": "index-pattern",
        "error": {"statusCode": 403, "message": "Forbidden"},
    }
    bulk_get(responses.mock, answers)
    with pytest.raises(SetupError, match="could not read saved index-pattern"):
        install(SETTINGS, ITEMS)
