# flask-login ships no type hints, so login_required is an untyped decorator.
# mypy: disable-error-code="untyped-decorator"
"""The rest of the demo cloud console, beside the Flask example's pods: virtual machines,
API tokens, SSH keys and the team (invites, members, permissions).

Kept in memory; mounted on the Flask example app by ``integrations.demo``. Each view
records what it did, with the resource's name and, for permission changes, the diff.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from flask import Blueprint, abort, jsonify, request
from flask_login import current_user, login_required

from audit_middleware import Actor, Resource, Rule, diff, record
from integrations import pods

# Virtual machines start and stop by route rule, as pods do.
RULES = [
    Rule("POST", "/vms/<vm_id>/start", action="start", resource_type="virtual_machine", id_param="vm_id"),
    Rule("POST", "/vms/<vm_id>/stop", action="stop", resource_type="virtual_machine", id_param="vm_id"),
    Rule("POST", "/vms/<vm_id>/restart", action="restart", resource_type="virtual_machine", id_param="vm_id"),
]


class Console:
    """The console's state: VMs, SSH keys, invites and per-organization roles."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.vms: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self.invites: dict[str, dict[str, Any]] = {}
        self.roles: dict[str, list[str]] = {user.username: list(user.roles) for user in pods.USERS.values()}
        self.members: dict[str, set[str]] = {}
        for user in pods.USERS.values():
            self.members.setdefault(user.org, set()).add(user.username)


def blueprint(console: Console, tokens: pods.Tokens) -> Blueprint:  # noqa: PLR0915 - one view per action
    """The console's views, to register on the Flask example app."""
    views = Blueprint("console", __name__)

    def own(table: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
        item = table.get(key)
        if item is None or item["org"] != current_user.org:
            abort(404)
        return item

    @views.post("/vms")
    @login_required
    def create_vm() -> Any:
        body = request.get_json(force=True)
        vm = {
            "id": f"vm-{secrets.token_hex(4)}",
            "org": current_user.org,
            "name": body["name"],
            "size": body.get("size", "small"),
            "status": "stopped",
        }
        with console.lock:
            console.vms[vm["id"]] = vm
        record(
            "create", resource=Resource("virtual_machine", vm["id"], vm["name"]), details={"size": vm["size"]}
        )
        return jsonify(vm), 201

    @views.post("/vms/<vm_id>/<any(start, stop, restart):verb>")
    @login_required
    def power(vm_id: str, verb: str) -> Any:  # audited by the route rules
        vm = own(console.vms, vm_id)
        vm["status"] = "stopped" if verb == "stop" else "running"
        return jsonify(vm)

    @views.delete("/vms/<vm_id>")
    @login_required
    def delete_vm(vm_id: str) -> Any:
        vm = own(console.vms, vm_id)
        with console.lock:
            console.vms.pop(vm_id)
        record("delete", resource=Resource("virtual_machine", vm["id"], vm["name"]))
        return "", 204

    @views.delete("/tokens/<prefix>")
    @login_required
    def revoke_token(prefix: str) -> Any:
        token = tokens.find(prefix, current_user.username)
        if token is None:
            abort(404)
        tokens.revoke(token)
        record("token_revoked", resource=Resource("api_token", prefix))
        return "", 204

    @views.post("/ssh-keys")
    @login_required
    def add_key() -> Any:
        body = request.get_json(force=True)
        key = {
            "id": f"key-{secrets.token_hex(3)}",
            "org": current_user.org,
            "name": body["name"],
            "fingerprint": body["fingerprint"],
        }
        console.keys[key["id"]] = key
        record(
            "ssh_key_added",
            resource=Resource("ssh_key", key["id"], key["name"]),
            details={"fingerprint": key["fingerprint"]},
        )
        return jsonify(key), 201

    @views.delete("/ssh-keys/<key_id>")
    @login_required
    def delete_key(key_id: str) -> Any:
        key = own(console.keys, key_id)
        console.keys.pop(key_id)
        record("ssh_key_deleted", resource=Resource("ssh_key", key["id"], key["name"]))
        return "", 204

    @views.post("/invites")
    @login_required
    def invite() -> Any:
        email = request.get_json(force=True)["email"]
        code = secrets.token_hex(4)
        console.invites[code] = {"org": current_user.org, "email": email}
        record("invite_sent", resource=Resource("invite", code, email))
        return jsonify(code=code), 201

    @views.post("/invites/<code>/accept")
    @login_required
    def accept(code: str) -> Any:
        invite = console.invites.pop(code, None)
        if invite is None:
            abort(404)
        console.members.setdefault(invite["org"], set()).add(current_user.username)
        record("invite_accepted", resource=Resource("invite", code, invite["email"]), tenant=invite["org"])
        return "", 204

    @views.delete("/members/<username>")
    @login_required
    def remove_member(username: str) -> Any:
        if "admin" not in console.roles.get(current_user.username, []):
            record(
                "member_removed",
                resource=Resource("member", username, username),
                outcome="failure",
                details={"reason": "not an admin"},
            )
            abort(403)
        console.members.get(current_user.org, set()).discard(username)
        record("member_removed", resource=Resource("member", username, username))
        return "", 204

    @views.put("/members/<username>/roles")
    @login_required
    def set_roles(username: str) -> Any:
        roles = sorted(request.get_json(force=True)["roles"])
        before = {"roles": console.roles.get(username, [])}
        console.roles[username] = roles
        record(
            "permissions_changed",
            resource=Resource("member", username, username),
            changes=diff(before, {"roles": roles}),
        )
        return jsonify(roles=roles)

    @views.post("/support/impersonate/<username>/pods/<pod_id>/restart")
    @login_required
    def support_restart(username: str, pod_id: str) -> Any:
        # a support engineer acting as a customer: both identities are recorded
        customer = pods.USERS[username]
        record(
            "restart",
            resource=Resource("pod", pod_id),
            actor=Actor(
                customer.id,
                customer.username,
                customer.email,
                customer.roles,
                impersonator=Actor(current_user.id, current_user.username, current_user.email),
            ),
            tenant=customer.org,
        )
        return "", 202

    return views
