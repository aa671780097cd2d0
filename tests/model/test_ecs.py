"""The ECS slice in ``ecs_fields.json``: what the record model and the mapping read."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

from tests.conftest import require_shared_file
from tests.contract_fields import CONTRACT_ECS_FIELDS

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "ecs_flat-9.4.0.yml"
ECS_JSON = ROOT / "audit_middleware" / "model" / "ecs_fields.json"


def _load_tool() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("ecs_extract", ROOT / "tools" / "ecs_extract.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ecs_extract = _load_tool()

# --- ECS field list -------------------------------------------------------------------------


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


def test_ecs_json_matches_a_fresh_extraction():
    """Re-extracting from the ECS 9.4.0 field list reproduces the committed JSON."""
    require_shared_file(REFERENCE)
    assert ecs_extract.render(ecs_extract.extract(REFERENCE)) == ECS_JSON.read_text(encoding="utf-8")
