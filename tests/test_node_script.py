"""The local node script recovers from state a real node leaves behind but cannot produce on cue.

A data folder kept from a run with another plugin set holds *archived* cluster settings,
and while they exist the node refuses every cluster settings update with 400. A loopback
stub plays that node: the script must clear them, apply its settings and report green.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.scenarios import load_node_module

ARCHIVED_REFUSAL = {
    "error": {
        "type": "illegal_argument_exception",
        "reason": "unknown setting [archived.plugins.index_state_management.jitter]",
    },
    "status": 400,
}


class ArchivedSettingsNode(BaseHTTPRequestHandler):
    """One single-node 'node' whose cluster state holds archived settings until they are nulled."""

    state: dict[str, Any]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path.startswith("/_nodes/settings"):
            self._reply(200, {"nodes": {"n1": {"settings": {"discovery": {"type": "single-node"}}}}})
        elif self.path.startswith("/_cat/plugins"):
            self._reply(200, [])
        elif self.path.startswith("/_cluster/health"):
            self._reply(200, {"status": "green" if self.state["applied"] else "yellow", "number_of_nodes": 1})
        elif self.path.startswith("/_cat/indices"):
            self._reply(200, [])
        else:
            self._reply(200, {"version": {"number": "2.19.4"}})

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.state["puts"].append(body)
        persistent = body.get("persistent", {})
        if "archived.*" in persistent and persistent["archived.*"] is None:
            self.state["archived"] = False
            self._reply(200, {"acknowledged": True})
        elif self.state["archived"]:
            self._reply(400, ARCHIVED_REFUSAL)
        else:
            self.state["applied"] = True
            self._reply(200, {"acknowledged": True})


@pytest.fixture
def archived_node() -> Iterator[tuple[int, dict[str, Any]]]:
    state: dict[str, Any] = {"archived": True, "applied": False, "puts": []}
    handler = type("Handler", (ArchivedSettingsNode,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


def test_archived_settings_are_cleared_before_the_single_node_settings(archived_node):
    http_port, state = archived_node
    node = load_node_module()

    health = node.wait_single_node(http_port, timeout=20)

    assert health["status"] == "green"
    assert state["archived"] is False
    assert state["applied"] is True
    applied = [p for p in state["puts"] if "cluster.default_number_of_replicas" in p.get("persistent", {})]
    assert applied[-1]["persistent"]["cluster.default_number_of_replicas"] == 0
