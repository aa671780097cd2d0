"""The OpenSearch layout as built in code: ECS-typed mappings, templates, ISM policies, tiers, connection."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import RequestsHttpConnection, Urllib3AWSV4SignerAuth
from opensearchpy.helpers.signer import AWSV4SignerAuth

from audit_middleware.errors import AuditValidationError, MissingDependencyError
from audit_middleware.opensearch import templates
from audit_middleware.opensearch.connection import (
    ConnectionSettings,
    build_client,
    configured_in_env,
    parse_urls,
)
from audit_middleware.opensearch.retention import (
    ISM_TEMPLATE_PRIORITY,
    RetentionTier,
    build_policy,
    default_tiers,
    policy_id,
)
from audit_middleware.opensearch.setup import SetupConfig
from audit_middleware.opensearch.tiers import TierRouter, UnknownTierError, data_stream_name

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "ecs_flat-9.4.0.yml"
ECS_JSON = ROOT / "audit_middleware" / "ecs_fields.json"


def _load_tool() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("ecs_extract", ROOT / "tools" / "ecs_extract.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ecs_extract = _load_tool()

# The record format's ECS fields (DESIGN.md "Record format"; the contract other modules write).
CONTRACT_ECS_FIELDS = {
    "@timestamp",
    "ecs.version",
    "event.id",
    "event.kind",
    "event.action",
    "event.category",
    "event.type",
    "event.outcome",
    "event.dataset",
    "user.id",
    "user.name",
    "user.email",
    "user.roles",
    "user.effective.id",
    "user.effective.name",
    "user.effective.email",
    "source.ip",
    "user_agent.original",
    "http.request.method",
    "http.request.id",
    "http.response.status_code",
    "url.path",
    "trace.id",
    "service.name",
    "organization.id",
    "organization.name",
}

# The record format's product fields and the types the design gives them.
CONTRACT_AUDIT_FIELDS = {
    "audit.actor.kind": "keyword",
    "audit.action.label": "keyword",
    "audit.action.group": "keyword",
    "audit.project.id": "keyword",
    "audit.project.name": "keyword",
    "audit.resource.type": "keyword",
    "audit.resource.id": "keyword",
    "audit.resource.name": "keyword",
    "audit.targets.type": "keyword",
    "audit.targets.id": "keyword",
    "audit.targets.name": "keyword",
    "audit.changes.before": "flat_object",
    "audit.changes.after": "flat_object",
    "audit.changes.fields": "keyword",
    "audit.details": "flat_object",
    "audit.source.forwarded": "keyword",
    "audit.http.route": "keyword",
    "audit.tier": "keyword",
}


def flatten(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Leaf field mappings of a ``properties`` tree by dotted name."""
    flat: dict[str, dict[str, Any]] = {}
    for name, mapping in properties.items():
        if "properties" in mapping:
            flat.update(flatten(mapping["properties"], f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = mapping
    return flat


@pytest.fixture(scope="module")
def mapped() -> dict[str, dict[str, Any]]:
    return flatten(templates.build_mappings()["properties"])


# --- ECS field list -------------------------------------------------------------------------


def test_every_ecs_field_in_template_has_its_ecs_type(mapped):
    """Each ECS-named field is mapped with the type, ignore_above and multi-fields of the ECS JSON."""
    ecs = json.loads(ECS_JSON.read_text(encoding="utf-8"))
    ecs_named = {name for name in mapped if not name.startswith("audit.")}
    assert ecs_named == set(ecs)
    for name, definition in ecs.items():
        mapping = mapped[name]
        assert mapping["type"] == definition["type"], name
        assert mapping.get("ignore_above") == definition.get("ignore_above"), name
        for multi in definition.get("multi_fields", ()):
            assert mapping["fields"][multi["name"]]["type"] == multi["type"], name


def test_ecs_json_holds_exactly_the_record_ecs_fields():
    """The extracted JSON covers the record contract's ECS fields, no more and no fewer."""
    assert set(json.loads(ECS_JSON.read_text(encoding="utf-8"))) == CONTRACT_ECS_FIELDS


def test_ecs_json_types_come_from_the_field_list():
    """A few types that memory gets wrong are what the ECS list says (wildcard, long, ip)."""
    ecs = json.loads(ECS_JSON.read_text(encoding="utf-8"))
    assert ecs["url.path"]["type"] == "wildcard"
    assert ecs["http.response.status_code"]["type"] == "long"
    assert ecs["source.ip"]["type"] == "ip"
    assert ecs["user.name"]["multi_fields"] == [{"name": "text", "type": "match_only_text"}]


def test_ecs_json_lists_allowed_values_and_expected_event_types():
    """Enumerated event fields carry allowed names; categories carry their expected event types."""
    ecs = json.loads(ECS_JSON.read_text(encoding="utf-8"))
    assert {v["name"] for v in ecs["event.outcome"]["allowed_values"]} == {"success", "failure", "unknown"}
    assert "event" in {v["name"] for v in ecs["event.kind"]["allowed_values"]}
    iam = next(v for v in ecs["event.category"]["allowed_values"] if v["name"] == "iam")
    assert {"creation", "deletion", "change"} <= set(iam["expected_event_types"])
    assert "allowed_values" not in ecs["user.email"]


def test_ecs_json_is_in_committed_form():
    """The JSON file is exactly what the tool renders: sorted keys, stable formatting."""
    text = ECS_JSON.read_text(encoding="utf-8")
    assert text == ecs_extract.render(json.loads(text))
    assert len(text) < 20_000


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"ECS reference {REFERENCE} is outside the repository")
def test_ecs_json_matches_a_fresh_extraction():
    """Re-extracting from the ECS 9.4.0 field list reproduces the committed JSON."""
    assert ecs_extract.render(ecs_extract.extract(REFERENCE)) == ECS_JSON.read_text(encoding="utf-8")


# --- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), sorted(CONTRACT_AUDIT_FIELDS.items()))
def test_audit_fields_have_their_designed_types(mapped, name, expected):
    """Every audit.* field of the record contract is mapped with its designed type."""
    assert mapped[name]["type"] == expected


def test_mapping_covers_the_whole_record_contract(mapped):
    """Nothing the record contract names is left unmapped."""
    assert set(mapped) == CONTRACT_ECS_FIELDS | set(CONTRACT_AUDIT_FIELDS)


def test_unknown_fields_are_kept_but_not_mapped():
    """The root is dynamic: false (never strict, never true), and no object turns it back on."""
    mappings = templates.build_mappings()
    assert mappings["dynamic"] is False
    assert '"dynamic"' not in json.dumps(mappings["properties"])


def test_lowercase_subfields_fold_case_and_accents(mapped):
    """Names and emails get a .lower keyword whose normalizer lowercases and folds accents."""
    for name in ("user.email", "user.effective.email", "audit.resource.name", "event.action"):
        lower = mapped[name]["fields"]["lower"]
        assert lower == {"type": "keyword", "normalizer": templates.NORMALIZER, "ignore_above": 1024}
    normalizer = templates.build_settings()["index"]["analysis"]["normalizer"][templates.NORMALIZER]
    assert normalizer == {"type": "custom", "filter": ["lowercase", "asciifolding"]}


def test_names_get_a_prefix_searchable_text_subfield(mapped):
    """Resource, project, target names and action labels are searchable by word prefix."""
    for name in templates.TEXT_FIELDS:
        text = mapped[name]["fields"]["text"]
        assert text["type"] == "text"
        assert text["analyzer"] == templates.TEXT_ANALYZER
        assert text["index_prefixes"]["min_chars"] == 1
    assert templates.TEXT_ANALYZER in templates.build_settings()["index"]["analysis"]["analyzer"]


def test_index_template_makes_data_streams_from_the_component_template():
    """The index template is a data stream template for '{prefix}-*' composed of our component."""
    body = templates.build_index_template("acme")
    assert body["index_patterns"] == ["acme-*"]
    assert body["data_stream"] == {"timestamp_field": {"name": "@timestamp"}}
    assert body["composed_of"] == [templates.component_template_name("acme")] == ["acme-events-mappings"]
    assert body["priority"] > 100
    assert templates.index_template_name("acme") == "acme-events"


def test_both_templates_carry_the_template_revision(monkeypatch):
    """version and _meta.revision follow TEMPLATE_REVISION, read when the template is built."""
    monkeypatch.setattr(templates, "TEMPLATE_REVISION", 41)
    assert templates.build_component_template()["version"] == 41
    assert templates.build_index_template("audit")["version"] == 41
    assert templates.build_index_template("audit")["_meta"] == {
        "managed_by": "audit-middleware",
        "revision": 41,
    }


def test_replica_count_is_optional():
    """replicas=None leaves the replica count to the cluster; a number is written as given."""
    assert "number_of_replicas" not in templates.build_settings(replicas=None)["index"]
    assert templates.build_settings(shards=2, replicas=3)["index"]["number_of_shards"] == 2
    assert templates.build_settings(shards=2, replicas=3)["index"]["number_of_replicas"] == 3


# --- retention ------------------------------------------------------------------------------


def test_default_tiers_keep_90_and_configurable_extended_days():
    """Standard keeps 90 days; extended keeps what it is given (365 by default)."""
    standard, extended = default_tiers()
    assert (standard.name, standard.min_index_age) == ("standard", "90d")
    assert (extended.name, extended.min_index_age) == ("extended", "365d")
    assert default_tiers(extended_days=2555)[1].min_index_age == "2555d"


def test_policy_rolls_over_then_deletes_by_index_age():
    """Without a repository the policy is hot (rollover by age and size) then delete after N days."""
    policy = build_policy("audit", RetentionTier("standard", 90))["policy"]
    assert [state["name"] for state in policy["states"]] == ["hot", "delete"]
    hot, delete = policy["states"]
    assert hot["actions"] == [{"rollover": {"min_index_age": "1d", "min_primary_shard_size": "30gb"}}]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "90d"}}]
    assert delete["actions"] == [{"delete": {}}]
    assert policy["default_state"] == "hot"


def test_policy_with_repository_snapshots_before_delete():
    """With a repository, an archive state snapshots each index, named after it, then deletes."""
    tier = RetentionTier("extended", 365, snapshot_repository="audit-archive")
    states = build_policy("audit", tier)["policy"]["states"]
    assert [state["name"] for state in states] == ["hot", "archive", "delete"]
    assert states[0]["transitions"][0] == {"state_name": "archive", "conditions": {"min_index_age": "365d"}}
    assert states[1]["actions"] == [
        {"snapshot": {"repository": "audit-archive", "snapshot": "{{ctx.index}}"}}
    ]
    assert states[1]["transitions"] == [{"state_name": "delete"}]


def test_ism_template_targets_the_data_stream_name():
    """ISM matches data stream backing indices by stream name, so the pattern is the stream itself."""
    policy = build_policy("audit", RetentionTier("extended", 365))["policy"]
    assert policy["ism_template"] == [
        {"index_patterns": ["audit-extended"], "priority": ISM_TEMPLATE_PRIORITY}
    ]
    assert policy_id("audit", "extended") == "audit-extended-retention"


def test_policy_can_act_in_minutes_for_accelerated_tests():
    """delete_after takes any ISM time value, so a retention test can watch deletion in minutes."""
    tier = RetentionTier("standard", 0, rollover_max_age="1m", rollover_max_size="1mb", delete_after="3m")
    hot = build_policy("t", tier)["policy"]["states"][0]
    assert hot["actions"][0]["rollover"] == {"min_index_age": "1m", "min_primary_shard_size": "1mb"}
    assert hot["transitions"][0]["conditions"] == {"min_index_age": "3m"}


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"name": "Standard", "delete_after_days": 90}, id="uppercase-name"),
        pytest.param({"name": "standard", "delete_after_days": 0}, id="zero-days"),
        pytest.param({"name": "standard", "delete_after_days": 90, "rollover_max_size": "30 GB"}, id="size"),
        pytest.param({"name": "standard", "delete_after_days": 90, "rollover_max_age": "1 day"}, id="age"),
        pytest.param(
            {"name": "standard", "delete_after_days": 0, "delete_after": "2 minutes"}, id="delete-after"
        ),
        pytest.param(
            {"name": "standard", "delete_after_days": 9, "snapshot_repository": "a b"}, id="repository"
        ),
    ],
)
def test_invalid_tiers_are_rejected(kwargs):
    """Values ISM would reject later are refused when the tier is built, naming the tier."""
    with pytest.raises(AuditValidationError, match=r"tier|name"):
        RetentionTier(**kwargs)


def test_setup_config_rejects_duplicate_tiers():
    """Two tiers with one name would share a data stream and a policy."""
    with pytest.raises(AuditValidationError, match="unique"):
        SetupConfig(tiers=(RetentionTier("standard", 90), RetentionTier("standard", 30)))


# --- tiers ----------------------------------------------------------------------------------


def test_router_uses_static_map_with_default():
    """Mapped tenants go to their tier's stream; others and tenantless records to standard."""
    router = TierRouter(prefix="audit", tenant_tiers={"acme": "extended"})
    assert router.data_stream_for_tenant("acme") == "audit-extended"
    assert router.data_stream_for_tenant("globex") == "audit-standard"
    assert router.data_stream_for_tenant(None) == "audit-standard"
    assert router.data_streams == ("audit-standard", "audit-extended")


def test_router_uses_callback():
    """A callback decides the tier; returning None means the default tier."""
    router = TierRouter(callback=lambda tenant: "extended" if tenant and tenant.startswith("ent-") else None)
    assert router.tier_for("ent-42") == "extended"
    assert router.tier_for("free-1") == "standard"


def test_router_refuses_unknown_tiers():
    """A tier without a data stream is an error, from a map, a callback or a direct lookup."""
    with pytest.raises(UnknownTierError, match="gold"):
        TierRouter(tenant_tiers={"acme": "gold"})
    with pytest.raises(UnknownTierError, match="gold"):
        TierRouter(callback=lambda _tenant: "gold").data_stream_for_tenant("acme")
    with pytest.raises(UnknownTierError):
        TierRouter().data_stream_for("gold")


def test_router_takes_a_map_or_a_callback_not_both():
    """Giving both would leave it unclear which one wins."""
    with pytest.raises(AuditValidationError, match="not both"):
        TierRouter(tenant_tiers={}, callback=lambda _tenant: None)


def test_setup_config_router_matches_its_tiers():
    """A config's router routes to exactly the data streams setup creates."""
    config = SetupConfig(prefix="acme", tiers=default_tiers())
    assert config.router().data_streams == config.data_streams == ("acme-standard", "acme-extended")


@pytest.mark.parametrize("prefix", ["Audit", "-audit", "_audit", ".ds-audit", "au dit", ""])
def test_invalid_prefixes_are_rejected(prefix):
    """Prefixes that are not valid (or would be hidden) index names fail early."""
    with pytest.raises(AuditValidationError, match="prefix"):
        data_stream_name(prefix, "standard")


# --- connection -----------------------------------------------------------------------------


def test_from_env_reads_every_variable(tmp_path):
    """All AUDIT_OPENSEARCH_* variables end up in the settings."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = ConnectionSettings.from_env(
        {
            "AUDIT_OPENSEARCH_URL": "https://a.example:9200, https://b.example:9200",
            "AUDIT_OPENSEARCH_USERNAME": "auditor",
            "AUDIT_OPENSEARCH_PASSWORD": "pa ss",
            "AUDIT_OPENSEARCH_CA_CERTS": str(ca),
            "AUDIT_OPENSEARCH_VERIFY_CERTS": "false",
            "AUDIT_OPENSEARCH_TIMEOUT": "2.5",
            "AUDIT_OPENSEARCH_PREFIX": "acme-audit",
        }
    )
    assert settings.urls == ("https://a.example:9200", "https://b.example:9200")
    assert (settings.username, settings.password) == ("auditor", "pa ss")
    assert (settings.ca_certs, settings.verify_certs, settings.timeout) == (str(ca), False, 2.5)
    assert settings.prefix == "acme-audit"


def test_from_env_without_url_uses_the_default():
    """With nothing set, settings point at the local default and configured_in_env says no."""
    assert ConnectionSettings.from_env({}).urls == ("http://127.0.0.1:9200",)
    assert ConnectionSettings.from_env({}, default_url="https://x:9200").urls == ("https://x:9200",)
    assert configured_in_env({}) is False
    assert configured_in_env({"AUDIT_OPENSEARCH_URL": "http://h:9200"}) is True


def test_from_env_reads_aws_signing():
    """Region and service select SigV4 signing; aoss is accepted for Serverless."""
    settings = ConnectionSettings.from_env(
        {"AUDIT_OPENSEARCH_AWS_REGION": "eu-west-1", "AUDIT_OPENSEARCH_AWS_SERVICE": "aoss"}
    )
    assert (settings.aws_region, settings.aws_service) == ("eu-west-1", "aoss")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"AUDIT_OPENSEARCH_VERIFY_CERTS": "maybe"}, "VERIFY_CERTS", id="verify"),
        pytest.param({"AUDIT_OPENSEARCH_TIMEOUT": "soon"}, "TIMEOUT", id="timeout"),
        pytest.param({"AUDIT_OPENSEARCH_AWS_SERVICE": "s3"}, "AWS_SERVICE", id="service"),
        pytest.param({"AUDIT_OPENSEARCH_USERNAME": "u"}, "password", id="user-without-password"),
        pytest.param({"AUDIT_OPENSEARCH_CA_CERTS": "/nonexistent/ca.pem"}, "CA bundle", id="ca-missing"),
        pytest.param({"AUDIT_OPENSEARCH_PREFIX": "Audit"}, "prefix", id="prefix"),
        pytest.param(
            {
                "AUDIT_OPENSEARCH_USERNAME": "u",
                "AUDIT_OPENSEARCH_PASSWORD": "p",
                "AUDIT_OPENSEARCH_AWS_REGION": "x",
            },
            "not both",
            id="basic-and-sigv4",
        ),
    ],
)
def test_bad_environment_values_give_clear_errors(env, message):
    """Each bad variable is reported by name (or by what is wrong), not as a later failure."""
    with pytest.raises(AuditValidationError, match=message):
        ConnectionSettings.from_env(env)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("ftp://search.example", "http:// or https://", id="scheme"),
        pytest.param("search.example:9200", "http:// or https://", id="no-scheme"),
        pytest.param("http://:9200", "no host", id="no-host"),
        pytest.param("https://admin:secret@search.example", "credentials", id="credentials"),
        pytest.param("http://search.example:99999", "malformed", id="port"),
        pytest.param("http://search.example/?x=1", "query", id="query"),
        pytest.param(" , ", "no OpenSearch URL", id="empty"),
    ],
)
def test_invalid_urls_are_rejected(url, message):
    """URLs without http(s), a host, or with credentials or a query are refused with the reason."""
    with pytest.raises(AuditValidationError, match=message):
        parse_urls(url)


def test_credentials_in_url_are_not_echoed():
    """The error about credentials in a URL does not repeat the password."""
    with pytest.raises(AuditValidationError) as caught:
        parse_urls("https://admin:s3cret@search.example")
    assert "s3cret" not in str(caught.value)


def test_repr_masks_the_password():
    """Neither repr() nor str() of the settings shows the password."""
    settings = ConnectionSettings(urls=("https://h:9200",), username="auditor", password="s3cret")
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings)
    assert "password='***'" in repr(settings)


def test_build_client_uses_basic_auth_and_all_urls():
    """The client gets every URL and a basic Authorization header."""
    settings = ConnectionSettings(urls=("https://a:9200", "https://b:9201"), username="u", password="p")
    client = build_client(settings)
    hosts = client.transport.hosts
    assert [(h["host"], h["port"], h.get("use_ssl")) for h in hosts] == [("a", 9200, True), ("b", 9201, True)]
    connection = client.transport.connection_pool.connections[0]
    assert connection.headers["authorization"] == "Basic dTpw"


def test_sigv4_without_boto3_says_what_to_install(monkeypatch):
    """SigV4 needs boto3, imported only then; its absence is one clear error."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependencyError, match="pip install boto3"):
        build_client(ConnectionSettings(urls=("https://search.example",), aws_region="eu-west-1"))


def _fake_boto3(credentials: object) -> types.ModuleType:
    module = types.ModuleType("boto3")

    class Session:
        def get_credentials(self) -> object:
            return credentials

    module.Session = Session  # type: ignore[attr-defined]
    return module


def test_sigv4_signs_with_the_connection_classes_signer(monkeypatch):
    """The urllib3 layer gets the urllib3 signer; the requests layer gets AWSV4SignerAuth."""
    credentials = types.SimpleNamespace(access_key="AKIA", secret_key="secret", token=None)
    monkeypatch.setitem(sys.modules, "boto3", _fake_boto3(credentials))
    settings = ConnectionSettings(
        urls=("https://search.example",), aws_region="eu-west-1", aws_service="aoss"
    )
    urllib3_auth = build_client(settings).transport.connection_pool.connection.http_auth
    assert isinstance(urllib3_auth, Urllib3AWSV4SignerAuth)
    assert (urllib3_auth.signer.region, urllib3_auth.service) == ("eu-west-1", "aoss")
    requests_client = build_client(settings, connection_class=RequestsHttpConnection)
    assert isinstance(requests_client.transport.connection_pool.connection.session.auth, AWSV4SignerAuth)


def test_sigv4_without_aws_credentials_is_clear(monkeypatch):
    """boto3 finding no credentials is reported as such, not as a signing failure later."""
    monkeypatch.setitem(sys.modules, "boto3", _fake_boto3(None))
    with pytest.raises(AuditValidationError, match="no AWS credentials"):
        build_client(ConnectionSettings(urls=("https://search.example",), aws_region="eu-west-1"))
