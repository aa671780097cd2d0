"""The component and index templates: ECS-typed mappings and settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audit_middleware.model.tenancy import KEY_LIMIT
from audit_middleware.opensearch import templates
from tests.contract_fields import CONTRACT_AUDIT_FIELDS, CONTRACT_ECS_FIELDS

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "ecs_flat-9.4.0.yml"
ECS_JSON = ROOT / "audit_middleware" / "model" / "ecs_fields.json"


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


def test_scoped_keys_fit_the_keyword_limit() -> None:
    """The tenant and project keys are never longer than their fields' ignore_above."""
    fields = templates.field_mappings()
    for name in ("organization.id", "audit.project.id"):
        assert fields[name]["ignore_above"] >= KEY_LIMIT, name
