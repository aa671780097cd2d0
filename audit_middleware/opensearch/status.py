"""What ``audit-middleware status`` reports: can records be delivered, and what is waiting.

Counters of a running shipper live in its process (``OpenSearchSink.status()``); this
looks from outside: the connection and set-up, the shared spool on disk, dead letters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opensearchpy.exceptions import AuthenticationException, AuthorizationException, TransportError
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from audit_middleware.deadletter import DeadLetterFile
from audit_middleware.opensearch.connection import ConnectionSettings, build_client
from audit_middleware.opensearch.sink import check_ready
from audit_middleware.spool import inspect


def delivery_status(settings: ConnectionSettings, state_dir: Path) -> dict[str, Any]:
    """Connection, set-up, spool and dead-letter state; ``error`` is None when delivery can work."""
    report: dict[str, Any] = {
        "urls": list(settings.urls),
        "prefix": settings.prefix,
        "state_dir": str(state_dir),
    }
    client = build_client(settings, max_retries=0)
    try:
        report["opensearch_version"] = client.info()["version"]["number"]
        report["error"] = check_ready(client, settings.prefix)
    except (AuthenticationException, AuthorizationException) as exc:
        report["error"] = (
            f"OpenSearch refused the credentials ({exc.status_code}): "
            "check AUDIT_OPENSEARCH_USERNAME / AUDIT_OPENSEARCH_PASSWORD"
        )
    except OSConnectionError as exc:
        report["error"] = f"cannot reach OpenSearch at {', '.join(settings.urls)}: {exc.__class__.__name__}"
    except TransportError as exc:
        report["error"] = f"OpenSearch answered {exc.status_code}: {exc.error}"
    finally:
        client.close()
    spool = inspect(state_dir / "spool")
    report["spool"] = {
        "records": spool.records,
        "bytes": spool.bytes,
        "segments": spool.segments,
        "corrupt_records": spool.corrupt_records,
        "oldest_undelivered_seconds": None
        if spool.oldest_unix_ms is None
        else round(time.time() - spool.oldest_unix_ms / 1000, 1),
    }
    dead_letters = state_dir / "dead-letter.jsonl"
    report["dead_letters"] = (
        sum(1 for _ in DeadLetterFile(dead_letters).read()) if dead_letters.exists() else 0
    )
    return report
