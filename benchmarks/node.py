"""The local OpenSearch node, as the benchmarks use it: loopback only, throw-away layouts."""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, OpenSearchException

from audit_middleware.opensearch.chains import checkpoints_stream, checkpoints_template_name
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.opensearch.templates import component_template_name, index_template_name

LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1"))
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
START_HINT = "start it with `python opensearch-local/node.py start` (or `make bench`)"


def require_loopback(url: str) -> str:
    """``url`` if it points at this machine; benchmarks never send traffic elsewhere."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"benchmarks only talk to 127.0.0.1, not {url!r}")
    return url


def plain_client(url: str, **kwargs: Any) -> OpenSearch:
    """An opensearch-py client with the library defaults (stdlib json, no compression)."""
    return OpenSearch(hosts=[require_loopback(url)], timeout=60, **kwargs)


def unavailable(url: str) -> str | None:
    """Why the node at ``url`` cannot be used, or None when it answers."""
    try:
        info = plain_client(url, max_retries=0).info()
    except OpenSearchException as exc:
        return f"no OpenSearch node at {url} ({type(exc).__name__}); {START_HINT}"
    return None if info.get("version") else f"{url} did not answer like OpenSearch"


def node_cpu_seconds(client: OpenSearch) -> float:
    """CPU seconds the node's JVM has used so far (for load annotations)."""
    stats = client.nodes.stats(metric="process")
    return float(sum(node["process"]["cpu"]["total_in_millis"] for node in stats["nodes"].values()) / 1000)


def unique_prefix(tag: str) -> str:
    """A fresh name prefix, so a benchmark never touches anyone else's data."""
    return f"bench-{tag}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def temporary_layout(client: OpenSearch, prefix: str) -> Iterator[SetupConfig]:
    """Install templates and data streams under ``prefix``; remove them all afterwards."""
    config = SetupConfig(prefix=prefix, replicas=0, require_ism=False, alert_rules=())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a node without ISM would warn that retention is unmanaged
            apply(client, config)
        yield config
    finally:
        remove_layout(client, prefix)


def remove_layout(client: OpenSearch, prefix: str) -> None:
    """Delete the data streams, templates and stray indices of ``prefix``, its checkpoints' too."""
    calls: tuple[Callable[[], object], ...] = (
        lambda: client.indices.delete_data_stream(name=f"{prefix}-*"),
        lambda: client.indices.delete(index=f"{prefix}-*", params={"expand_wildcards": "all"}),
        lambda: client.indices.delete_index_template(name=index_template_name(prefix)),
        lambda: client.cluster.delete_component_template(name=component_template_name(prefix)),
        lambda: client.indices.delete_data_stream(name=checkpoints_stream(prefix)),
        lambda: client.indices.delete_index_template(name=checkpoints_template_name(prefix)),
    )
    try:
        for call in calls:
            with contextlib.suppress(NotFoundError):
                call()
    except OpenSearchException as exc:  # e.g. the node went away mid-run: say what is left over
        print(f"could not remove {prefix}-* ({type(exc).__name__}): delete it by hand", file=sys.stderr)


def count_documents(client: OpenSearch, prefix: str) -> int:
    """Documents stored under ``prefix`` (after a refresh)."""
    client.indices.refresh(index=f"{prefix}-*")
    return int(client.count(index=f"{prefix}-*")["count"])


def wait_until_indexing_settles(client: OpenSearch, prefix: str, *, timeout: float = 30.0) -> None:
    """Wait (bounded) until the node stops indexing documents of ``prefix``.

    Between interleaved server runs, so the node's indexing of one run's records does
    not steal CPU from the next run.
    """
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        stats = client.indices.stats(index=f"{prefix}-*", metric="indexing")
        total = int(stats["_all"]["primaries"].get("indexing", {}).get("index_total", 0))
        if total == last:
            return
        last = total
        time.sleep(1.0)
