"""Reading what an OpenSearch spool directory holds: audit records and the chains' checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from audit_middleware.sinks.opensearch import spool as spool_format


def spooled_documents(directory: Path) -> list[dict[str, Any]]:
    """Every valid document in the segments of ``directory``, oldest segment first."""
    documents = []
    for segment in sorted(directory.glob("*/seg-*.log")):
        data = segment.read_bytes()
        _, offset = spool_format._read_header(data)
        for frame in spool_format._iter_frames(data, offset):
            if frame.valid:
                _, _, document = data[frame.start : frame.end].partition(b"\n")
                documents.append(orjson.loads(document))
    return documents


def spooled_kinds(directory: Path) -> tuple[int, int]:
    """(audit records, chain checkpoints) in a spool directory's segments."""
    documents = spooled_documents(directory)
    checkpoints = sum(1 for document in documents if "checkpoint" in document)
    return len(documents) - checkpoints, checkpoints


def spooled_checkpoints(directory: Path) -> list[dict[str, Any]]:
    """The checkpoint objects in a spool directory, as spooled."""
    return [document["checkpoint"] for document in spooled_documents(directory) if "checkpoint" in document]
