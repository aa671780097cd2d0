"""The OpenSearch layout of the hash chains: the chain fields and the checkpoints data stream.

Each shipper extends its own chains (one per tier, so that ISM, which deletes a tier's
oldest backing indices, only ever removes the start of a chain); the records carry
``audit.chain`` (``id`` and ``seq`` indexed, so ``verify`` reads a chain in order;
``prev`` and ``hash`` kept in ``_source`` only). Checkpoints go to the data stream
``{prefix}_checkpoints``, outside the ``{prefix}-*`` pattern of the audit streams, so no
reader of the trail mistakes one for a record.
"""

from __future__ import annotations

from typing import Any, Final

from audit_middleware.opensearch.tiers import validate_name

__all__ = [
    "CHAIN_FIELDS",
    "CHECKPOINTS_TEMPLATE_REVISION",
    "build_checkpoints_template",
    "checkpoints_stream",
    "checkpoints_template_name",
]

CHECKPOINTS_TEMPLATE_REVISION: Final = 1
_STORED_ONLY: Final[dict[str, Any]] = {"type": "keyword", "index": False, "doc_values": False}

CHAIN_FIELDS: Final[dict[str, dict[str, Any]]] = {
    "audit.chain.id": {"type": "keyword", "ignore_above": 256},
    "audit.chain.seq": {"type": "long"},
    "audit.chain.prev": _STORED_ONLY,
    "audit.chain.hash": _STORED_ONLY,
}
"""The record's link (``model.chain``), merged into the audit template's fields."""


def checkpoints_stream(prefix: str) -> str:
    """The data stream of the checkpoints, e.g. ``audit_checkpoints``."""
    return f"{validate_name(prefix, 'prefix')}_checkpoints"


def checkpoints_template_name(prefix: str) -> str:
    """The index template of the checkpoints data stream."""
    return f"{checkpoints_stream(prefix)}-template"


def build_checkpoints_template(prefix: str) -> dict[str, Any]:
    """The body of ``PUT _index_template/<checkpoints_template_name>``."""
    return {
        "index_patterns": [checkpoints_stream(prefix)],
        "data_stream": {"timestamp_field": {"name": "@timestamp"}},
        "priority": 500,
        "version": CHECKPOINTS_TEMPLATE_REVISION,
        "template": {
            "settings": {"index": {"number_of_shards": "1"}},  # spelled as OpenSearch stores it
            "mappings": {
                "dynamic": False,
                "properties": {
                    "@timestamp": {"type": "date"},
                    "checkpoint": {
                        "properties": {
                            "chain": {"type": "keyword"},
                            "kind": {"type": "keyword"},
                            "first_seq": {"type": "long"},
                            "last_seq": {"type": "long"},
                            "count": {"type": "long"},
                            "created_ms": {"type": "long"},
                            "index": {"type": "keyword"},
                            "key_id": {"type": "keyword"},
                        }
                    },
                },
            },
        },
        "_meta": {"managed_by": "audit-middleware"},
    }


def find_chain_head(client: Any, prefix: str, chain: str, *, timeout: float = 10.0) -> tuple[int, str] | None:
    """The last stored record of ``chain`` (sequence number, hash), or None when it has none."""
    answer = client.search(
        index=f"{validate_name(prefix, 'prefix')}-*",
        body={
            "size": 1,
            "query": {"term": {"audit.chain.id": chain}},
            "sort": [{"audit.chain.seq": {"order": "desc"}}],
            "_source": ["audit.chain"],
        },
        params={"ignore_unavailable": "true", "allow_no_indices": "true", "request_timeout": timeout},
    )
    hits = answer["hits"]["hits"]
    if not hits:
        return None
    link = hits[0]["_source"]["audit"]["chain"]
    return int(link["seq"]), str(link["hash"])
