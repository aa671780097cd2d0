"""The pods API of the plain WSGI and ASGI examples, without any web framework.

``PodsAPI.handle()`` turns a request (method, path, headers, body) into a response; the two
examples put the WSGI or ASGI protocol in front of it and the audit middleware around
it. The actor and tenant come from the API token, through the resolvers given to
``configure()``: they receive the WSGI environ or the ASGI scope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from audit_middleware import Actor, configure, diff, record
from audit_middleware.sinks import Sink
from integrations import pods

_POD = re.compile(r"/pods/(?P<pod_id>[\w-]+)")
Response = tuple[int, bytes]


def configure_auditing(sink: Sink, tokens: pods.Tokens, header_of: Any) -> None:
    """Audit into ``sink``; ``header_of(native_request, name)`` reads a request header."""

    def user_of(native: Any) -> pods.User | None:
        return tokens.user_for_header(header_of(native, "authorization"))

    def actor_of(native: Any) -> Actor | None:
        user = user_of(native)
        return None if user is None else Actor(id=user.id, name=user.username, email=user.email)

    def tenant_of(native: Any) -> str | None:
        user = user_of(native)
        return None if user is None else user.org

    configure(sink=sink, rules=pods.RULES, actor_resolver=actor_of, tenant_resolver=tenant_of)


class PodsAPI:
    """The pods of the tokens' users, served without a framework."""

    def __init__(self, tokens: pods.Tokens) -> None:
        self.store = pods.PodStore()
        self.tokens = tokens

    def handle(  # noqa: PLR0911 - one answer per route and error
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Serve one request of the pods API."""
        store, tokens = self.store, self.tokens
        user = tokens.user_for_header(headers.get("authorization"))
        if user is None:
            return 401, _json({"error": "send Authorization: Bearer <token>"})
        match = _POD.fullmatch(path.removesuffix("/start").removesuffix("/stop"))
        if path == "/pods" and method == "GET":
            return 200, _json(store.in_org(user.org))
        if path == "/pods" and method == "POST":
            data = _body(body)
            if data is None or not isinstance(data.get("name"), str):
                return 400, _json({"error": "send a JSON object with a name"})
            created = store.create(user.org, data["name"], str(data.get("image", "busybox")))
            record("create", resource=pods.resource(created), changes=diff(None, created["spec"]))
            return 201, _json(created)
        if match is None:
            return 404, _json({"error": "not found"})
        pod = store.get(match["pod_id"], user.org)
        if pod is None:
            return 404, _json({"error": "no such pod"})
        if method == "POST" and path.endswith(("/start", "/stop")):  # recorded by the route rules
            return 200, _json(
                store.set_status(pod["id"], user.org, "running" if path.endswith("/start") else "stopped")
            )
        if method == "PATCH":
            data = _body(body)
            changed = None if data is None else store.update(pod["id"], user.org, data)
            if changed is None:
                return 400, _json({"error": "send a JSON object of changes"})
            before, after = changed
            record("update", resource=pods.resource(after), changes=diff(before, after))
            return 200, _json(after)
        if method == "DELETE":
            store.delete(pod["id"], user.org)
            record("delete", resource=pods.resource(pod))
            return 204, b""
        return 405, _json({"error": "method not allowed"})


def _body(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()
