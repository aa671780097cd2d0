"""`audit-middleware setup` against the real local node: idempotence, mappings, routing, errors, ISM.

The local node runs the ISM and Alerting plugins; what setup does without them is shown
on a second node started without them (``plain_node``).
"""

from __future__ import annotations

import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from opensearchpy import ConflictError, NotFoundError, OpenSearch, RequestError, RequestsHttpConnection

from audit_middleware.cli import main
from audit_middleware.model.ids import uuid7
from audit_middleware.opensearch import templates
from audit_middleware.opensearch.client import build_client
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.provisioning import (
    ISM_PLUGIN,
    AlertsNotInstalledWarning,
    RetentionNotManagedWarning,
    SetupConfig,
    SetupError,
    StepResult,
    apply,
)
from audit_middleware.opensearch.retention import default_tiers, policy_id
from tests.conftest import OPENSEARCH_URL, require_plugin
from tests.integration.layout import path_repo, remove_layout, remove_repository

pytestmark = pytest.mark.opensearch

_ENV_VARIABLES = (
    "AUDIT_OPENSEARCH_URL",
    "AUDIT_OPENSEARCH_USERNAME",
    "AUDIT_OPENSEARCH_PASSWORD",
    "AUDIT_OPENSEARCH_CA_CERTS",
    "AUDIT_OPENSEARCH_VERIFY_CERTS",
    "AUDIT_OPENSEARCH_AWS_REGION",
    "AUDIT_OPENSEARCH_AWS_SERVICE",
    "AUDIT_OPENSEARCH_TIMEOUT",
    "AUDIT_OPENSEARCH_PREFIX",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own AUDIT_OPENSEARCH_* settings must not leak into these tests.
    for name in _ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def prefix(opensearch: Any, unique_name: str) -> Iterator[str]:
    """A prefix no other test uses; everything setup created under it is removed afterwards."""
    yield unique_name
    remove_layout(opensearch, unique_name)


@pytest.fixture
def snapshot_repository(opensearch: Any, unique_name: str) -> Iterator[str]:
    """A registered fs snapshot repository under the node's path.repo, removed afterwards."""
    name = f"{unique_name}-repo"
    opensearch.snapshot.create_repository(
        repository=name, body={"type": "fs", "settings": {"location": str(path_repo(opensearch) / name)}}
    )
    yield name
    remove_repository(opensearch, name)


@pytest.fixture
def plain(plain_node: Any) -> Iterator[OpenSearch]:
    """A client for the second node, started without the ISM and Alerting plugins."""
    plain_node.milestones.wait("up", 600)
    client = OpenSearch([plain_node.url], timeout=60)
    yield client
    client.close()


@pytest.fixture
def plain_prefix(plain: OpenSearch, unique_name: str) -> Iterator[str]:
    """A prefix on the node without plugins, removed afterwards."""
    yield unique_name
    remove_layout(plain, unique_name)


def _config(prefix: str, **overrides: Any) -> SetupConfig:
    # replicas=0 keeps the single-node test cluster green; monitors are tested in test_alerting.
    return SetupConfig(**{"prefix": prefix, "replicas": 0, "alert_rules": (), **overrides})


def _apply(client: Any, config: SetupConfig, *, dry_run: bool = False) -> list[StepResult]:
    return apply(client, config, dry_run=dry_run)


def _statuses(results: list[StepResult]) -> dict[str, str]:
    return {f"{r.step.kind} {r.step.name}": r.status for r in results}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample_document(**audit_overrides: Any) -> dict[str, Any]:
    """A record with every field of the record contract filled in."""
    audit: dict[str, Any] = {
        "actor": {"kind": "user"},
        "action": {"label": "Update", "group": "resource"},
        "project": {"id": "p-1", "name": "Production Cluster"},
        "resource": {"type": "virtual_machine", "id": "vm-7", "name": "Prod-Database Éast"},
        "targets": [
            {"type": "disk", "id": "d-1", "name": "Data Disk"},
            {"type": "nic", "id": "n-1", "name": "eth0"},
        ],
        "changes": {
            "before": {"size": "small", "tags": {"env": "prod"}},
            "after": {"size": 10, "tags": {"env": "prod", "tier": "gold"}},
            "fields": ["size", "tags.tier"],
        },
        "details": {"ticket": "OPS-42", "reason": {"text": "scale up"}},
        "source": {"forwarded": ["203.0.113.9", "10.0.0.2"]},
        "http": {"route": "/api/projects/{project}/vms/{vm}"},
        "tier": "standard",
    }
    audit.update(audit_overrides)
    return {
        "@timestamp": "2025-01-15T10:20:30.123Z",
        "ecs": {"version": "9.4.0"},
        "event": {
            "id": uuid7(),
            "kind": "event",
            "action": "update",
            "category": ["configuration"],
            "type": ["change"],
            "outcome": "success",
            "dataset": "audit_middleware.audit",
        },
        "user": {
            "id": "u-1",
            "name": "Alice Admin",
            "email": "Alice.Admin@Example.COM",
            "roles": ["admin", "ops"],
            "effective": {"id": "u-2", "name": "Bob Builder", "email": "bob@example.com"},
        },
        "source": {"ip": "203.0.113.9"},
        "user_agent": {"original": "Mozilla/5.0 (X11; Linux x86_64)"},
        "http": {"request": {"method": "PATCH", "id": "req-123"}, "response": {"status_code": 200}},
        "url": {"path": "/api/projects/p-1/vms/vm-7"},
        "trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"},
        "service": {"name": "cloud-console"},
        "organization": {"id": "acme", "name": "ACME Corp"},
        "audit": audit,
    }


def _create(client: Any, stream: str, document: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = client.index(
        index=stream, id=document["event"]["id"], body=document, op_type="create", refresh=True
    )
    return result


def _mapping_of(client: Any, stream: str) -> dict[str, dict[str, Any]]:
    """The leaf field mappings of a stream's write index, by dotted name."""
    answer = client.indices.get_mapping(index=stream)
    (mapping,) = (entry["mappings"] for entry in answer.values())

    def walk(properties: dict[str, Any], prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, field in properties.items():
            if "properties" in field:
                yield from walk(field["properties"], f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", field

    return dict(walk(mapping["properties"], ""))


def _hits(client: Any, stream: str, query: dict[str, Any]) -> int:
    return int(client.search(index=stream, body={"query": query})["hits"]["total"]["value"])


# --- idempotence -----------------------------------------------------------------------------


def test_setup_twice_reports_everything_unchanged(opensearch, prefix):
    """The first run creates every object in order; an immediate second run lists the same
    objects and changes nothing (the new streams' policies are attached before setup returns)."""
    first = _apply(opensearch, _config(prefix))
    kinds = [r.step.kind for r in first]
    assert kinds == [
        "ism policy",
        "ism policy",
        "component template",
        "index template",
        "index template",  # the hash chains' checkpoints stream
        "data stream",
        "data stream",
        "ism attachment",
        "ism attachment",
    ]
    assert {r.status for r in first} == {"created"}
    second = _apply(opensearch, _config(prefix))
    assert [(r.step.kind, r.step.name) for r in second] == [(r.step.kind, r.step.name) for r in first]
    assert {r.status for r in second} == {"unchanged"}
    streams = opensearch.indices.get_data_stream(name=f"{prefix}-*")["data_streams"]
    assert {(s["name"], s["template"]) for s in streams} == {
        (f"{prefix}-standard", f"{prefix}-events"),
        (f"{prefix}-extended", f"{prefix}-events"),
    }


def test_new_template_revision_reports_updated(opensearch, prefix, monkeypatch):
    """Bumping the template revision updates both templates and nothing else."""
    _apply(opensearch, _config(prefix))
    monkeypatch.setattr(templates, "TEMPLATE_REVISION", templates.TEMPLATE_REVISION + 1)
    statuses = _statuses(_apply(opensearch, _config(prefix)))
    assert statuses.pop(f"component template {prefix}-events-mappings") == "updated"
    assert statuses.pop(f"index template {prefix}-events") == "updated"
    assert set(statuses.values()) == {"unchanged"}
    stored = opensearch.indices.get_index_template(name=f"{prefix}-events")["index_templates"][0]
    assert stored["index_template"]["version"] == templates.TEMPLATE_REVISION
    assert {r.status for r in _apply(opensearch, _config(prefix))} == {"unchanged"}


def test_fields_added_to_the_template_reach_existing_streams(opensearch, prefix, monkeypatch):
    """A template that gained a field adds it to existing streams' mappings, so new records match it."""
    older = {name: m for name, m in templates.AUDIT_FIELDS.items() if name != "audit.action.filter"}
    monkeypatch.setattr(templates, "AUDIT_FIELDS", older)
    _apply(opensearch, _config(prefix))
    assert "audit.action.filter" not in _mapping_of(opensearch, f"{prefix}-standard")
    monkeypatch.undo()
    statuses = _statuses(_apply(opensearch, _config(prefix)))
    assert statuses[f"mappings {prefix}-standard"] == "updated"
    assert statuses[f"mappings {prefix}-extended"] == "updated"
    assert _mapping_of(opensearch, f"{prefix}-standard")["audit.action.filter"]["type"] == "keyword"
    _create(opensearch, f"{prefix}-standard", sample_document(action={"label": "Update", "filter": "update"}))
    assert _hits(opensearch, f"{prefix}-standard", {"term": {"audit.action.filter": "update"}}) == 1
    assert not [r for r in _apply(opensearch, _config(prefix)) if r.step.kind == "mappings"]


def test_changed_settings_update_the_component_template(opensearch, prefix):
    """A different replica count is a content change of the component template alone."""
    _apply(opensearch, _config(prefix, replicas=0))
    results = _apply(opensearch, _config(prefix, replicas=1))
    updated = [r for r in results if r.status == "updated"]
    revision = templates.TEMPLATE_REVISION
    assert [str(r.step) for r in updated] == [
        f"component template {prefix}-events-mappings (revision {revision}, content changed)"
    ]


def test_dry_run_changes_nothing(opensearch, prefix):
    """A dry run reports the plan ("created" for everything) and leaves the cluster untouched."""
    results = _apply(opensearch, _config(prefix), dry_run=True)
    assert {r.status for r in results} == {"created"}
    assert not opensearch.indices.exists_index_template(name=f"{prefix}-events")
    assert not opensearch.cluster.exists_component_template(name=f"{prefix}-events-mappings")
    with pytest.raises(NotFoundError):
        opensearch.indices.get_data_stream(name=f"{prefix}-standard")


# --- documents and mappings ------------------------------------------------------------------


def test_full_record_indexes_with_the_designed_types(opensearch, prefix):
    """A complete record is created with _id = event.id and the mapping holds the designed types."""
    _apply(opensearch, _config(prefix))
    stream = f"{prefix}-standard"
    document = sample_document()
    result = _create(opensearch, stream, document)
    assert result["result"] == "created"
    assert result["_id"] == document["event"]["id"]
    mapping = _mapping_of(opensearch, stream)
    expected = {
        "@timestamp": "date",
        "source.ip": "ip",
        "user.email": "keyword",
        "user.roles": "keyword",
        "http.response.status_code": "long",
        "url.path": "wildcard",
        "audit.changes.before": "flat_object",
        "audit.changes.after": "flat_object",
        "audit.details": "flat_object",
        "audit.changes.fields": "keyword",
        "audit.targets.id": "keyword",
        "audit.tier": "keyword",
    }
    assert {name: mapping[name]["type"] for name in expected} == expected
    assert mapping["user.email"]["fields"]["lower"]["normalizer"] == templates.NORMALIZER
    assert mapping["user.name"]["fields"]["text"]["type"] == "match_only_text"
    # A GET by id needs the backing index: data streams resolve ids only in searches.
    assert opensearch.get(index=result["_index"], id=result["_id"])["_source"] == document


def test_second_create_with_same_id_conflicts(opensearch, prefix):
    """Replaying a delivered record is a 409 conflict, never a duplicate."""
    _apply(opensearch, _config(prefix))
    stream = f"{prefix}-standard"
    document = sample_document()
    _create(opensearch, stream, document)
    with pytest.raises(ConflictError) as conflict:
        _create(opensearch, stream, document)
    assert conflict.value.status_code == 409
    assert opensearch.count(index=stream)["count"] == 1


def test_unknown_fields_are_kept_but_not_indexed(opensearch, prefix):
    """dynamic: false accepts unknown fields into _source without mapping or indexing them."""
    _apply(opensearch, _config(prefix))
    stream = f"{prefix}-standard"
    document = sample_document()
    document["surprise"] = {"nested": {"value": 1}}
    document["user"]["nickname"] = "ally"
    created = _create(opensearch, stream, document)
    stored = opensearch.get(index=created["_index"], id=created["_id"])["_source"]
    assert stored["surprise"] == {"nested": {"value": 1}}
    mapping = _mapping_of(opensearch, stream)
    assert not any(name.startswith("surprise") for name in mapping)
    assert "user.nickname" not in mapping
    assert _hits(opensearch, stream, {"exists": {"field": "surprise.nested.value"}}) == 0
    assert _hits(opensearch, stream, {"term": {"user.nickname": "ally"}}) == 0


def test_value_of_the_wrong_type_is_rejected(opensearch, prefix):
    """A mapped field with an impossible value fails with a mapping error (the shipper dead-letters it)."""
    _apply(opensearch, _config(prefix))
    document = sample_document()
    document["source"]["ip"] = "not-an-ip"
    with pytest.raises(RequestError) as rejected:
        _create(opensearch, f"{prefix}-standard", document)
    assert rejected.value.status_code == 400
    assert rejected.value.error == "mapper_parsing_exception"


def test_oversized_keyword_is_stored_not_rejected(opensearch, prefix):
    """A resource name past ignore_above is kept in _source instead of failing the record."""
    _apply(opensearch, _config(prefix))
    name = "x" * 40_000
    document = sample_document(resource={"type": "file", "id": "f-1", "name": name})
    assert _create(opensearch, f"{prefix}-standard", document)["result"] == "created"
    assert _hits(opensearch, f"{prefix}-standard", {"term": {"audit.resource.id": "f-1"}}) == 1


def test_email_search_is_case_insensitive(opensearch, prefix):
    """user.email.lower finds an email whatever its case, by whole value or prefix; the raw field does not."""
    _apply(opensearch, _config(prefix))
    stream = f"{prefix}-standard"
    _create(opensearch, stream, sample_document())
    assert _hits(opensearch, stream, {"term": {"user.email.lower": "alice.admin@example.com"}}) == 1
    assert _hits(opensearch, stream, {"term": {"user.email.lower": "ALICE.ADMIN@EXAMPLE.COM"}}) == 1
    assert _hits(opensearch, stream, {"prefix": {"user.email.lower": "ALICE.A"}}) == 1
    assert _hits(opensearch, stream, {"term": {"user.email": "alice.admin@example.com"}}) == 0


def test_resource_name_and_action_search_by_word_prefix(opensearch, prefix):
    """Word prefixes find resource names (accents folded) and action labels, case-insensitively."""
    _apply(opensearch, _config(prefix))
    stream = f"{prefix}-standard"
    _create(opensearch, stream, sample_document())
    assert _hits(opensearch, stream, {"match_bool_prefix": {"audit.resource.name.text": "datab"}}) == 1
    assert _hits(opensearch, stream, {"match_bool_prefix": {"audit.resource.name.text": "EAST"}}) == 1
    assert _hits(opensearch, stream, {"match_bool_prefix": {"audit.resource.name.text": "staging"}}) == 0
    assert _hits(opensearch, stream, {"match_bool_prefix": {"audit.action.label.text": "upd"}}) == 1
    assert _hits(opensearch, stream, {"prefix": {"audit.resource.name.lower": "prod-data"}}) == 1


def test_tenant_tier_routes_records_to_its_data_stream(opensearch, prefix):
    """An extended tenant's records land in the extended stream, everyone else's in standard."""
    config = _config(prefix, tiers=default_tiers(extended_days=2555))
    _apply(opensearch, config)
    router = config.router(tenant_tiers={"acme": "extended"})
    for tenant in ("acme", "globex", None):
        document = sample_document(tier=router.tier_for(tenant))
        _create(opensearch, router.data_stream_for(router.tier_for(tenant)), document)
    assert opensearch.count(index=f"{prefix}-extended")["count"] == 1
    assert opensearch.count(index=f"{prefix}-standard")["count"] == 2
    hits = opensearch.search(index=f"{prefix}-extended", body={"query": {"match_all": {}}})["hits"]["hits"]
    assert hits[0]["_index"].startswith(f".ds-{prefix}-extended-")
    assert hits[0]["_source"]["audit"]["tier"] == "extended"


# --- errors ----------------------------------------------------------------------------------


def test_without_ism_setup_refuses_and_installs_nothing(plain, plain_prefix):
    """On a node without ISM, setup says retention would not be managed and changes nothing."""
    assert not {row["component"] for row in plain.cat.plugins(format="json")} & {
        ISM_PLUGIN,
        "opensearch-alerting",
    }
    with pytest.raises(SetupError, match="no Index State Management plugin") as refused:
        apply(plain, _config(plain_prefix))
    assert "--skip-ism" in str(refused.value)
    assert not plain.indices.exists_index_template(name=f"{plain_prefix}-events")


def test_without_ism_require_ism_false_installs_the_rest_and_warns(plain, plain_prefix):
    """require_ism=False installs templates and data streams, warning that retention is unmanaged."""
    with pytest.warns(RetentionNotManagedWarning, match="retention"):
        results = apply(plain, _config(plain_prefix, require_ism=False))
    assert not {"ism policy", "ism attachment"} & {r.step.kind for r in results}
    assert plain.indices.get_data_stream(name=f"{plain_prefix}-standard")["data_streams"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetentionNotManagedWarning)
        again = apply(plain, _config(plain_prefix, require_ism=False))
    assert {r.status for r in again} == {"unchanged"}


def test_without_alerting_setup_warns_and_installs_no_monitor(plain, plain_prefix):
    """Alert rules on a node without the Alerting plugin: everything else is installed, with a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetentionNotManagedWarning)
        with pytest.warns(AlertsNotInstalledWarning, match="no Alerting plugin"):
            results = apply(plain, SetupConfig(prefix=plain_prefix, replicas=0, require_ism=False))
    assert "alert monitor" not in {r.step.kind for r in results}
    assert plain.indices.exists_index_template(name=f"{plain_prefix}-events")


def test_without_alerting_a_notification_channel_is_refused(plain, plain_prefix):
    """A webhook asked for on a node without Alerting: refused, saying there are no monitors."""
    config = SetupConfig(
        prefix=plain_prefix, replicas=0, require_ism=False, alert_webhook="https://h.example/x"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetentionNotManagedWarning)
        with pytest.raises(SetupError, match=r"no Alerting plugin.*leave out the alert webhook"):
            apply(plain, config)
    assert not plain.indices.exists_index_template(name=f"{plain_prefix}-events")


def test_missing_snapshot_repository_is_reported_before_any_change(opensearch, prefix):
    """A snapshot repository that is not registered fails the plan, naming the repository."""
    tiers = default_tiers(snapshot_repository=f"{prefix}-nowhere")
    with pytest.raises(SetupError, match=f"{prefix}-nowhere.*not registered"):
        _apply(opensearch, _config(prefix, tiers=tiers))
    assert not opensearch.cluster.exists_component_template(name=f"{prefix}-events-mappings")


def test_registered_snapshot_repository_is_accepted(opensearch, prefix, snapshot_repository):
    """With a registered repository setup succeeds (and, with ISM, archives before delete)."""
    results = _apply(
        opensearch, _config(prefix, tiers=default_tiers(snapshot_repository=snapshot_repository))
    )
    assert {r.status for r in results} == {"created"}


def test_index_squatting_a_stream_name_is_a_clear_error(opensearch, prefix):
    """A regular index where a data stream belongs stops setup before it changes anything."""
    opensearch.indices.create(index=f"{prefix}-standard")
    with pytest.raises(SetupError, match=f"{prefix}-standard.*not a data stream"):
        _apply(opensearch, _config(prefix))
    assert not opensearch.indices.exists_index_template(name=f"{prefix}-events")


def test_unreachable_node_is_a_clear_error(prefix):
    """A URL nobody listens on gives 'cannot connect' with the URL."""
    port = _closed_port()
    client = build_client(ConnectionSettings(urls=(f"http://127.0.0.1:{port}",), timeout=2))
    with pytest.raises(SetupError, match=f"cannot connect to OpenSearch at http://127.0.0.1:{port}"):
        apply(client, _config(prefix))


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param(401, "rejected the credentials", id="401"),
        pytest.param(403, "may not list the installed plugins", id="403"),
    ],
)
def test_auth_failures_are_clear_errors(prefix, status, message):
    """401 and 403 (which the security-less local node cannot produce) name the problem; no password leaks."""
    settings = ConnectionSettings(
        urls=("http://opensearch.invalid:9200",), username="auditor", password="s3cret"
    )
    client = build_client(settings, connection_class=RequestsHttpConnection)
    body = {
        "error": {"type": "security_exception", "reason": "no permissions for [cluster:monitor/nodes/info]"}
    }
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, re.compile(r"http://opensearch\.invalid:9200/.*"), json=body, status=status)
        with pytest.raises(SetupError, match=message) as failed:
            apply(client, _config(prefix))
    assert "s3cret" not in str(failed.value)


# --- command line ----------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["setup", "--url", OPENSEARCH_URL, *args])


def test_cli_setup_prints_one_line_per_step(opensearch, prefix):
    """`setup` prints created lines (monitors included), then unchanged lines on a second run, exiting 0."""
    first = _cli("--prefix", prefix, "--replicas", "0", "--skip-ism")
    assert first.exit_code == 0, first.output
    assert f"created    index template {prefix}-events" in first.stdout.splitlines()
    assert f"created    data stream {prefix}-extended" in first.stdout.splitlines()
    assert f"created    alert monitor {prefix}-alert-mass_deletion" in first.stdout.splitlines()
    second = _cli("--prefix", prefix, "--replicas", "0", "--skip-ism")
    assert second.exit_code == 0, second.output
    lines = second.stdout.splitlines()
    assert lines
    assert all(line.startswith("unchanged") for line in lines)


def test_cli_dry_run_prints_the_plan_only(opensearch, prefix):
    """`setup --dry-run` says what it would create and creates nothing."""
    result = _cli("--prefix", prefix, "--skip-ism", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would create  component template {prefix}-events-mappings" in result.stdout
    assert result.stdout.rstrip().endswith("dry run: nothing was changed")
    assert not opensearch.cluster.exists_component_template(name=f"{prefix}-events-mappings")


def test_cli_without_ism_fails_or_warns(plain_node, plain, plain_prefix):
    """Without ISM, `setup` exits 1 naming --skip-ism; with --skip-ism it warns on stderr and succeeds."""
    command = ["setup", "--url", plain_node.url, "--prefix", plain_prefix, "--replicas", "0"]
    refused = CliRunner().invoke(main, command)
    assert refused.exit_code == 1
    assert "no Index State Management plugin" in refused.stderr
    assert "--skip-ism" in refused.stderr
    accepted = CliRunner().invoke(main, [*command, "--skip-ism"])
    assert accepted.exit_code == 0, accepted.output
    warned = accepted.stderr.splitlines()
    assert all(line.startswith("warning: ") for line in warned)
    assert any("retention" in line for line in warned)
    assert any("no Alerting plugin" in line for line in warned)


def test_cli_registers_the_snapshot_repository(opensearch, prefix):
    """`setup --snapshot-repository NAME --snapshot-location PATH` registers an fs repository there once."""
    name = f"{prefix}-archive"
    location = str(path_repo(opensearch) / name)
    args = ["--prefix", prefix, "--replicas", "0", "--no-alerts", "--snapshot-repository", name]
    try:
        first = _cli(*args, "--snapshot-location", location)
        assert first.exit_code == 0, first.output
        assert f"created    snapshot repository {name} (fs at {location})" in first.stdout.splitlines()
        assert opensearch.snapshot.get_repository(repository=name)[name]["settings"]["location"] == location
        again = _cli(*args, "--snapshot-location", location)
        assert f"unchanged  snapshot repository {name}" in again.stdout.splitlines()
        moved = _cli(*args, "--snapshot-location", location + "-elsewhere")
        assert moved.exit_code == 1
        assert "its archives stay there" in moved.stderr
    finally:
        remove_repository(opensearch, name)


def test_cli_reports_bad_configuration_and_unreachable_node(prefix):
    """A bad URL or an unreachable node is one clear error and exit status 1."""
    bad = CliRunner().invoke(main, ["setup", "--url", "ftp://search.example", "--prefix", prefix])
    assert bad.exit_code == 1
    assert "http:// or https://" in bad.stderr
    port = _closed_port()
    down = CliRunner().invoke(main, ["setup", "--url", f"http://127.0.0.1:{port}", "--prefix", prefix])
    assert down.exit_code == 1
    assert "cannot connect to OpenSearch" in down.stderr


def test_cli_reads_connection_settings_from_the_environment(opensearch, prefix):
    """AUDIT_OPENSEARCH_URL and AUDIT_OPENSEARCH_PREFIX are used when no option overrides them."""
    env = {"AUDIT_OPENSEARCH_URL": OPENSEARCH_URL, "AUDIT_OPENSEARCH_PREFIX": prefix}
    result = CliRunner(env=env).invoke(main, ["setup", "--skip-ism", "--replicas", "0"])
    assert result.exit_code == 0, result.output
    assert opensearch.indices.exists_index_template(name=f"{prefix}-events")


# --- ISM (needs the index-management plugin) --------------------------------------------------


def _wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1)


def _policy_of(client: Any, index: str) -> str | None:
    explained = client.transport.perform_request("GET", f"/_plugins/_ism/explain/{index}")
    policy: str | None = explained.get(index, {}).get("index.plugins.index_state_management.policy_id")
    return policy


def _backing_indices(client: Any, stream: str) -> list[str]:
    return [
        i["index_name"] for i in client.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]
    ]


def test_ism_policies_installed_with_stream_templates(opensearch, prefix):
    """Each tier's policy exists, with an ism_template on exactly its data stream."""
    require_plugin(opensearch, ISM_PLUGIN)
    results = apply(opensearch, _config(prefix))
    assert [r.step.kind for r in results][:2] == ["ism policy", "ism policy"]
    for tier in ("standard", "extended"):
        stored = opensearch.transport.perform_request(
            "GET", f"/_plugins/_ism/policies/{policy_id(prefix, tier)}"
        )
        (template,) = stored["policy"]["ism_template"]
        assert template["index_patterns"] == [f"{prefix}-{tier}"]
        assert [s["name"] for s in stored["policy"]["states"]] == ["hot", "delete"]


def test_ism_manages_the_backing_indices(opensearch, prefix):
    """The explain API shows each stream's first backing index managed by its tier's policy."""
    require_plugin(opensearch, ISM_PLUGIN)
    apply(opensearch, _config(prefix))
    for tier in ("standard", "extended"):
        (index,) = _backing_indices(opensearch, f"{prefix}-{tier}")
        _wait_for(lambda index=index: _policy_of(opensearch, index), 60, f"ISM to manage {index}")
        assert _policy_of(opensearch, index) == policy_id(prefix, tier)


def test_ism_attaches_policy_to_an_existing_unmanaged_stream(opensearch, prefix):
    """A backing index without a policy (e.g. created before ISM) gets its tier's policy on re-run."""
    require_plugin(opensearch, ISM_PLUGIN)
    apply(opensearch, _config(prefix))
    (index,) = _backing_indices(opensearch, f"{prefix}-standard")
    _wait_for(lambda: _policy_of(opensearch, index), 60, f"ISM to manage {index}")
    opensearch.transport.perform_request("POST", f"/_plugins/_ism/remove/{index}")
    _wait_for(lambda: not _policy_of(opensearch, index), 60, f"the policy to leave {index}")
    statuses = _statuses(apply(opensearch, _config(prefix)))
    assert statuses[f"ism attachment {prefix}-standard"] == "created"
    _wait_for(lambda: _policy_of(opensearch, index), 60, f"the policy to return to {index}")
    assert _policy_of(opensearch, index) == policy_id(prefix, "standard")


def test_ism_policy_change_is_an_update(opensearch, prefix):
    """A new extended retention updates that policy (with seq_no) and moves its indices to it."""
    require_plugin(opensearch, ISM_PLUGIN)
    apply(opensearch, _config(prefix, tiers=default_tiers(extended_days=365)))
    (index,) = _backing_indices(opensearch, f"{prefix}-extended")
    _wait_for(lambda: _policy_of(opensearch, index), 60, f"ISM to manage {index}")
    statuses = _statuses(apply(opensearch, _config(prefix, tiers=default_tiers(extended_days=400))))
    assert statuses[f"ism policy {policy_id(prefix, 'extended')}"] == "updated"
    assert statuses[f"ism policy {policy_id(prefix, 'standard')}"] == "unchanged"
    assert statuses[f"ism attachment {prefix}-extended"] == "updated"
    stored = opensearch.transport.perform_request(
        "GET", f"/_plugins/_ism/policies/{policy_id(prefix, 'extended')}"
    )
    assert stored["policy"]["states"][0]["transitions"][0]["conditions"]["min_index_age"] == "400d"


# --- migrations: settings an index takes only when it is created -------------------------------


def _settings_of(client: Any, index: str) -> dict[str, Any]:
    answer = client.indices.get_settings(index=index, params={"flat_settings": "true"})
    settings: dict[str, Any] = answer[index]["settings"]
    return settings


def test_setup_rolls_over_streams_made_before_the_index_sort(opensearch, prefix, monkeypatch):
    """Streams made before the index sort roll over to a sorted, managed write index; old records stay."""
    require_plugin(opensearch, ISM_PLUGIN)
    unsorted = templates.build_settings

    def older_settings(**options: Any) -> dict[str, Any]:
        settings = unsorted(**options)
        del settings["index"]["sort"]
        return settings

    monkeypatch.setattr(templates, "build_settings", older_settings)
    monkeypatch.setattr(templates, "TEMPLATE_REVISION", templates.TEMPLATE_REVISION - 1)
    _apply(opensearch, _config(prefix))
    (old_index,) = _backing_indices(opensearch, f"{prefix}-standard")
    assert "index.sort.field" not in _settings_of(opensearch, old_index)
    document = sample_document()
    _create(opensearch, f"{prefix}-standard", document)
    monkeypatch.undo()

    results = _apply(opensearch, _config(prefix))
    statuses = _statuses(results)
    assert statuses[f"rollover {prefix}-standard"] == statuses[f"rollover {prefix}-extended"] == "updated"
    detail = next(r.step.detail for r in results if str(r.step).startswith(f"rollover {prefix}-standard"))
    assert f"write index {old_index}" in detail
    assert "index.sort.field unset -> ['@timestamp', 'event.id']" in detail
    for tier in ("standard", "extended"):
        _, new = _backing_indices(opensearch, f"{prefix}-{tier}")
        settings = _settings_of(opensearch, new)
        assert (settings["index.sort.field"], settings["index.sort.order"]) == (
            ["@timestamp", "event.id"],
            ["desc", "desc"],
        )
        assert _policy_of(opensearch, new) == policy_id(prefix, tier), (
            "setup returns with the new index managed"
        )
    opensearch.indices.refresh(index=f"{prefix}-standard")
    assert _hits(opensearch, f"{prefix}-standard", {"ids": {"values": [document["event"]["id"]]}}) == 1
    again = _apply(opensearch, _config(prefix))
    assert {r.status for r in again} == {"unchanged"}
    assert len(_backing_indices(opensearch, f"{prefix}-standard")) == 2, "no second rollover"


def test_a_new_shard_count_rolls_the_streams_over(opensearch, prefix):
    """More primaries update the template and roll each stream over; the old index keeps its own count."""
    _apply(opensearch, _config(prefix))
    results = _apply(opensearch, _config(prefix, shards=2))
    rollovers = [str(r.step) for r in results if r.step.kind == "rollover"]
    assert len(rollovers) == 2
    assert all("index.number_of_shards 1 -> 2" in text for text in rollovers)
    old, new = _backing_indices(opensearch, f"{prefix}-standard")
    assert (
        _settings_of(opensearch, old)["index.number_of_shards"],
        _settings_of(opensearch, new)["index.number_of_shards"],
    ) == ("1", "2")
    assert {r.status for r in _apply(opensearch, _config(prefix, shards=2))} == {"unchanged"}


def test_a_dry_run_lists_the_rollover_without_doing_it(opensearch, prefix):
    """A dry run shows the rollover a changed creation-only setting needs and leaves the stream as it is."""
    _apply(opensearch, _config(prefix))
    results = _apply(opensearch, _config(prefix, shards=3), dry_run=True)
    assert _statuses(results)[f"rollover {prefix}-standard"] == "updated"
    assert len(_backing_indices(opensearch, f"{prefix}-standard")) == 1


def test_cli_shards_option_rolls_the_streams_over(opensearch, prefix):
    """`setup --shards 2` on existing streams prints one rollover line per stream and changes the template."""
    assert _cli("--prefix", prefix, "--replicas", "0", "--no-alerts").exit_code == 0
    result = _cli("--prefix", prefix, "--replicas", "0", "--no-alerts", "--shards", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines if "rollover" in line] == [
        f"updated    rollover {prefix}-standard",
        f"updated    rollover {prefix}-extended",
    ]
    _, new = _backing_indices(opensearch, f"{prefix}-standard")
    assert _settings_of(opensearch, new)["index.number_of_shards"] == "2"
