#!/usr/bin/env python3
"""Extract the ECS fields that audit records use from the machine-readable ECS field list.

The output, ``audit_middleware/model/ecs_fields.json``, is committed: the index
template takes every ECS field's type from it, so mapping types come from the ECS
field list rather than from memory. Re-run this after changing ``RECORD_ECS_FIELDS``
or moving to a new ECS version::

    python tools/ecs_extract.py                  # (re)write the JSON
    python tools/ecs_extract.py --check          # exit 1 if the JSON is stale

The reference file (``ecs_flat-<version>.yml`` from the ECS repository's
``generated/ecs/`` folder) is read from ``../shared/reference/`` unless
``--reference`` names another copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ECS_VERSION = "9.4.0"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = ROOT.parent / "shared" / "reference" / f"ecs_flat-{ECS_VERSION}.yml"
DEFAULT_OUTPUT = ROOT / "audit_middleware" / "model" / "ecs_fields.json"

# Exactly the ECS fields of the record format (docs: DESIGN.md, "Record format").
RECORD_ECS_FIELDS: tuple[str, ...] = (
    "@timestamp",
    "ecs.version",
    "event.action",
    "event.category",
    "event.dataset",
    "event.id",
    "event.kind",
    "event.outcome",
    "event.type",
    "http.request.id",
    "http.request.method",
    "http.response.status_code",
    "organization.id",
    "organization.name",
    "service.name",
    "source.ip",
    "span.id",
    "trace.id",
    "url.path",
    "user.effective.email",
    "user.effective.id",
    "user.effective.name",
    "user.email",
    "user.id",
    "user.name",
    "user.roles",
    "user_agent.original",
)

# Enumerated fields whose allowed values records are validated against.
ALLOWED_VALUE_FIELDS = frozenset({"event.category", "event.kind", "event.outcome", "event.type"})


def _load(reference: Path) -> dict[str, Any]:
    # The flat file is 1.2 MB; the C loader, when PyYAML has it, reads it ten times faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with reference.open(encoding="utf-8") as stream:
        loaded: dict[str, Any] = yaml.load(stream, Loader=loader)  # noqa: S506 - a safe loader
    return loaded


def _allowed_values(definition: dict[str, Any]) -> list[dict[str, Any]]:
    values = []
    for entry in definition.get("allowed_values", ()):
        value: dict[str, Any] = {"name": entry["name"]}
        if "expected_event_types" in entry:
            value["expected_event_types"] = list(entry["expected_event_types"])
        values.append(value)
    return values


def extract(reference: Path = DEFAULT_REFERENCE) -> dict[str, dict[str, Any]]:
    """The record's ECS fields, by flat name, with the parts a mapping or validator needs.

    Each entry has ``type`` and ``normalize``; ``ignore_above`` and ``multi_fields``
    (name and type of each) when ECS defines them; and ``allowed_values`` (names, plus
    ``expected_event_types`` for ``event.category``) for the enumerated event fields.
    """
    ecs = _load(reference)
    missing = [name for name in RECORD_ECS_FIELDS if name not in ecs]
    if missing:
        raise KeyError(f"{reference} does not define these record fields: {', '.join(missing)}")
    fields: dict[str, dict[str, Any]] = {}
    for name in RECORD_ECS_FIELDS:
        definition = ecs[name]
        entry: dict[str, Any] = {
            "type": definition["type"],
            "normalize": list(definition.get("normalize", ())),
        }
        if "ignore_above" in definition:
            entry["ignore_above"] = definition["ignore_above"]
        if definition.get("multi_fields"):
            entry["multi_fields"] = [
                {"name": multi["name"], "type": multi["type"]} for multi in definition["multi_fields"]
            ]
        if name in ALLOWED_VALUE_FIELDS:
            entry["allowed_values"] = _allowed_values(definition)
        fields[name] = entry
    return fields


def render(fields: dict[str, dict[str, Any]]) -> str:
    """The committed form of the extraction: sorted keys, two-space indent, final newline."""
    return json.dumps(fields, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` verify) the extracted JSON; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="ecs_flat YAML to read")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("--check", action="store_true", help="only report whether the output is current")
    args = parser.parse_args(argv)
    if not args.reference.is_file():
        parser.error(f"ECS reference not found: {args.reference}")
    text = render(extract(args.reference))
    current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
    if args.check:
        if current != text:
            sys.stderr.write(f"{args.output} is stale: run python tools/ecs_extract.py\n")
            return 1
        return 0
    if current != text:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
