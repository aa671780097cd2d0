"""The demo domain the example apps share: users, API tokens and pods, kept in memory.

Nothing here knows a web framework or audit-middleware's request path: each example app
(``flask_app``, ``fastapi_app``, ``django_app``) puts its own framework in front of it.
Passwords and tokens are fixed demo values, never to be reused.
"""

from __future__ import annotations

import copy
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from audit_middleware import Resource, Rule

# Start and stop are audited by route rule alone; create, update and delete are recorded
# by the views, which know the pod's name and the change.
RULES = [
    Rule("POST", "/pods/<pod_id>/start", action="start", resource_type="pod", id_param="pod_id"),
    Rule("POST", "/pods/<pod_id>/stop", action="stop", resource_type="pod", id_param="pod_id"),
    Rule("POST", "/pods/<pod_id>/restart", action="restart", resource_type="pod", id_param="pod_id"),
]


@dataclass(frozen=True)
class User:
    """A demo account; also speaks flask-login's user protocol (``get_id`` and flags)."""

    id: str
    username: str
    email: str
    org: str
    password: str = field(repr=False)
    roles: tuple[str, ...] = ()

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        """The id flask-login keeps in the session."""
        return self.id


USERS = {
    user.username: user
    for user in (
        User("u-1", "alice", "alice@acme.example", "acme", "wonderland", ("admin",)),
        User("u-2", "bob", "bob@globex.example", "globex", "builder"),
        User("u-3", "dave", "dave@acme.example", "acme", "diver", ("developer",)),
        User("u-4", "erin", "erin@globex.example", "globex", "eagle", ("admin",)),
    )
}
_USERS_BY_ID = {user.id: user for user in USERS.values()}


def user_by_id(user_id: str) -> User | None:
    """The user with this id, or None."""
    return _USERS_BY_ID.get(user_id)


def check_password(username: str, password: str) -> User | None:
    """The user when the password is right, else None."""
    user = USERS.get(username)
    if user is None or not secrets.compare_digest(user.password.encode(), password.encode()):
        return None
    return user


class Tokens:
    """API tokens (``Authorization: Bearer <token>``) and the users they stand for."""

    def __init__(self) -> None:
        self._users = {"demo-token-alice": "alice", "demo-token-bob": "bob"}
        self._lock = threading.Lock()

    def issue(self, user: User) -> str:
        """A new token for ``user``."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._users[token] = user.username
        return token

    def revoke(self, token: str) -> None:
        """Forget the token."""
        with self._lock:
            self._users.pop(token, None)

    def find(self, prefix: str, username: str) -> str | None:
        """The token of ``username`` starting with ``prefix`` (as audit records show it)."""
        with self._lock:
            return next((t for t, u in self._users.items() if u == username and t.startswith(prefix)), None)

    def user(self, token: str) -> User | None:
        """Who the token belongs to, or None."""
        with self._lock:
            username = self._users.get(token)
        return USERS.get(username) if username else None

    def user_for_header(self, authorization: str | None) -> User | None:
        """The user of an ``Authorization: Bearer <token>`` header, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.user(token.strip())


class PodStore:
    """Pods (containers or virtual machines), keyed by id."""

    def __init__(self) -> None:
        self._pods: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def in_org(self, org: str) -> list[dict[str, Any]]:
        """The organization's pods."""
        with self._lock:
            return [copy.deepcopy(pod) for pod in self._pods.values() if pod["org"] == org]

    def get(self, pod_id: str, org: str) -> dict[str, Any] | None:
        """One pod of the organization, or None."""
        with self._lock:
            pod = self._pods.get(pod_id)
            return copy.deepcopy(pod) if pod is not None and pod["org"] == org else None

    def create(self, org: str, name: str, image: str, cpu: int = 1) -> dict[str, Any]:
        """A new, stopped pod."""
        pod_id = f"pod-{secrets.token_hex(4)}"
        pod = {
            "id": pod_id,
            "org": org,
            "name": name,
            "status": "stopped",
            "spec": {"image": image, "cpu": cpu},
        }
        with self._lock:
            self._pods[pod_id] = pod
        return copy.deepcopy(pod)

    def update(
        self, pod_id: str, org: str, changes: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Apply ``changes`` (``name``, ``spec.image``, ``spec.cpu``); the pod before and after."""
        with self._lock:
            pod = self._pods.get(pod_id)
            if pod is None or pod["org"] != org:
                return None
            before = copy.deepcopy(pod)
            if "name" in changes:
                pod["name"] = str(changes["name"])
            for key in ("image", "cpu"):
                if key in changes.get("spec", {}):
                    pod["spec"][key] = changes["spec"][key]
            return before, copy.deepcopy(pod)

    def set_status(self, pod_id: str, org: str, status: str) -> dict[str, Any] | None:
        """Start or stop the pod; None when it is not the organization's."""
        with self._lock:
            pod = self._pods.get(pod_id)
            if pod is None or pod["org"] != org:
                return None
            pod["status"] = status
            return copy.deepcopy(pod)

    def delete(self, pod_id: str, org: str) -> dict[str, Any] | None:
        """Remove the pod and return it; None when it is not the organization's."""
        with self._lock:
            pod = self._pods.get(pod_id)
            if pod is None or pod["org"] != org:
                return None
            return self._pods.pop(pod_id)


def resource(pod: dict[str, Any]) -> Resource:
    """The audit resource for a pod."""
    return Resource("pod", pod["id"], pod["name"])


def restart_steps(pod: dict[str, Any]) -> list[str]:
    """The progress lines a restart streams to the client."""
    return [f"stopping {pod['name']}\n", f"starting {pod['name']}\n", "running\n"]
