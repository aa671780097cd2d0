"""The demo: a cloud console whose requests produce audit records, searched, exported and shown.

    python -m integrations.demo                       # embedded SQLite store (.audit/demo.sqlite3)
    python -m integrations.demo --store opensearch    # the local OpenSearch node (prefix "demo")
    python -m integrations.demo --no-serve            # the scenario and the CLI only

Several users in two tenants (acme, globex) log in (and fail to), create, start, stop,
restart, update and delete pods and virtual machines, create and revoke API tokens, add
and delete SSH keys, invite members, remove them and change their permissions; a support
engineer acts as a customer. Then the CLI searches and exports what was recorded, and the
console serves its Audit Logs page (http://127.0.0.1:8000/audit/) until Ctrl-C: it prints
a signed viewer link per tenant, or log in (``POST /login``) and open the page.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from werkzeug.serving import make_server

from audit_middleware import Actor, configure
from audit_middleware.cli import main as cli
from audit_middleware.query import AuditQuery, AuditStore
from audit_middleware.sinks import Sink
from audit_middleware.viewer import Access, AuditViewer, ViewerTokens
from integrations import console, flask_app, pods

STATE = Path(os.environ.get("AUDIT_DEMO_DIR", ".audit"))
PREFIX = "demo"
# The viewer links' key: random per run unless given (the browser tests give one to forge with).
SECRET_ENV = "AUDIT_DEMO_VIEWER_SECRET"


@dataclass(frozen=True)
class Person:
    """A demo user and the network and browser they come from."""

    username: str
    ip: str
    agent: str


ALICE = Person(
    "alice", "198.51.100.10", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
)
DAVE = Person("dave", "203.0.113.25", "curl/8.11.0")
BOB = Person(
    "bob", "192.0.2.44", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 Safari/605.1.15"
)
ERIN = Person("erin", "2001:db8::7", "console-cli/2.4 (python-requests/2.32)")
PASSWORDS = {user.username: user.password for user in pods.USERS.values()}


def build_app(sink: Sink, viewer_tokens: ViewerTokens | None = None, poll_interval: float = 5.0) -> Any:
    """The Flask example app plus the console views, auditing into ``sink``."""
    tokens = pods.Tokens()
    app = flask_app.create_app(
        sink=sink, tokens=tokens, viewer_tokens=viewer_tokens, poll_interval=poll_interval
    )
    app.register_blueprint(console.blueprint(console.Console(), tokens))
    # the demo app sits behind one reverse proxy, which appends X-Forwarded-For
    configure(
        sink=sink,
        rules=[*pods.RULES, *console.RULES],
        tenant_resolver=flask_app.tenant_of,
        trusted_proxies=1,
        service_name="demo-console",
    )
    return app


class Session:
    """One person's browser: their own cookie jar, IP (via the proxy) and user agent."""

    def __init__(self, app: Any, person: Person) -> None:
        self.client: FlaskClient = app.test_client()
        self.person = person

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {
            "X-Forwarded-For": self.person.ip,
            "User-Agent": self.person.agent,
            **kwargs.pop("headers", {}),
        }
        response = self.client.open(path, method=method, headers=headers, buffered=True, **kwargs)
        response.close()
        return response

    def login(self, password: str | None = None) -> Any:
        username = self.person.username
        return self.call(
            "POST", "/login", json={"username": username, "password": password or PASSWORDS[username]}
        )


def run_scenario(app: Any) -> None:
    """Drive the console through a realistic day in two tenants."""
    alice, dave, bob, erin = (Session(app, p) for p in (ALICE, DAVE, BOB, ERIN))
    invite_code = acme_day(app, alice, dave)
    globex_day(bob, erin, invite_code)
    for session in (alice, dave, bob, erin):
        session.call("POST", "/logout")


def acme_day(app: Any, alice: Session, dave: Session) -> str:
    """acme: a failed-login burst, then pods, a VM, a token, SSH keys and the team."""
    for guess in ("hunter2", "password", "Diver"):
        dave.login(guess)
    dave.login()
    alice.login()
    web = alice.call("POST", "/pods", json={"name": "web-frontend", "image": "nginx:1.27", "cpu": 2}).json
    worker = alice.call("POST", "/pods", json={"name": "queue-worker", "image": "python:3.13"}).json
    alice.call("POST", f"/pods/{web['id']}/start")
    alice.call("POST", f"/pods/{worker['id']}/start")
    alice.call("POST", f"/pods/{web['id']}/restart")
    alice.call("PATCH", f"/pods/{web['id']}", json={"spec": {"image": "nginx:1.28", "cpu": 4}})
    alice.call("POST", f"/pods/{worker['id']}/stop")
    alice.call("DELETE", f"/pods/{worker['id']}")
    vm = alice.call("POST", "/vms", json={"name": "db-primary", "size": "large"}).json
    alice.call("POST", f"/vms/{vm['id']}/start")
    alice.call("POST", f"/vms/{vm['id']}/restart")
    token = alice.call("POST", "/tokens").json["token"]
    robot = Session(app, Person("alice", "198.51.100.77", "deploy-bot/1.0"))
    robot.call(
        "POST",
        "/pods",
        json={"name": "batch-job", "image": "busybox"},
        headers={"Authorization": f"Bearer {token}"},
    )
    alice.call("DELETE", f"/tokens/{token[:6]}")
    key = dave.call("POST", "/ssh-keys", json={"name": "dave-laptop", "fingerprint": "SHA256:q1w2e3r4"}).json
    dave.call("DELETE", "/members/bob")  # not an admin yet: a failed attempt, recorded
    alice.call("PUT", "/members/dave/roles", json={"roles": ["admin", "developer"]})
    dave.call("DELETE", f"/ssh-keys/{key['id']}")
    code = alice.call("POST", "/invites", json={"email": "frank@partner.example"}).json["code"]
    alice.call("POST", f"/vms/{vm['id']}/stop")
    alice.call("DELETE", f"/vms/{vm['id']}")
    return str(code)


def globex_day(bob: Session, erin: Session, invite_code: str) -> None:
    """globex: a failed login, a pod, an accepted invite, support acting as a customer."""
    bob.login()
    erin.login("eagle-typo")
    erin.login()
    api = bob.call("POST", "/pods", json={"name": "web-shop", "image": "node:22"}).json
    bob.call("POST", f"/pods/{api['id']}/start")
    bob.call("POST", f"/invites/{invite_code}/accept")
    erin.call("POST", f"/support/impersonate/bob/pods/{api['id']}/restart")
    erin.call("PUT", "/members/bob/roles", json={"roles": ["admin"]})
    erin.call("DELETE", "/members/bob")
    bob.call("DELETE", f"/pods/{api['id']}")


@contextmanager
def sqlite_target() -> Iterator[tuple[Sink, list[str], AuditStore]]:
    """A fresh SQLite store under .audit/: the sink writes it, the store reads it."""
    from audit_middleware.query.sqlite_store import SQLiteStore  # noqa: PLC0415 - chosen at run time
    from audit_middleware.sinks.sqlite import SQLiteSink  # noqa: PLC0415

    STATE.mkdir(exist_ok=True)
    path = STATE / "demo.sqlite3"
    for leftover in STATE.glob("demo.sqlite3*"):
        leftover.unlink()
    sink = SQLiteSink(path)
    store = SQLiteStore(path)
    try:
        yield sink, ["--store", f"sqlite:{path}"], store
    finally:
        sink.close()
        store.close()


@contextmanager
def opensearch_target() -> Iterator[tuple[Sink, list[str], AuditStore]]:
    """The local OpenSearch node, under a fresh ``demo`` prefix."""
    from audit_middleware.opensearch.client import build_client  # noqa: PLC0415
    from audit_middleware.opensearch.connection import ConnectionSettings  # noqa: PLC0415
    from audit_middleware.opensearch.provisioning import SetupConfig, apply  # noqa: PLC0415
    from audit_middleware.query.opensearch_store import OpenSearchStore  # noqa: PLC0415
    from audit_middleware.sinks.opensearch.sink import OpenSearchSink  # noqa: PLC0415

    os.environ["AUDIT_OPENSEARCH_PREFIX"] = PREFIX  # read by the CLI commands below
    settings = replace(ConnectionSettings.from_env(), prefix=PREFIX)
    client = build_client(settings)
    client.indices.delete_data_stream(name=f"{PREFIX}-*", ignore=[404])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on a node without ISM, retention is not managed
        apply(client, SetupConfig(prefix=PREFIX, replicas=0, require_ism=False))
    shutil.rmtree(STATE / "opensearch-state", ignore_errors=True)
    sink = OpenSearchSink(settings=settings, state_dir=STATE / "opensearch-state")
    try:
        yield sink, ["--store", "opensearch"], OpenSearchStore(client, prefix=PREFIX)
    finally:
        sink.close()


def wait_until_searchable(store: AuditStore, timeout: float = 10.0) -> None:
    """OpenSearch makes new documents searchable at its next refresh (1 s by default)."""
    deadline = time.monotonic() + timeout
    query = AuditQuery.build("acme", action="logout")
    while not store.count(query) and time.monotonic() < deadline:
        time.sleep(0.2)


def show(args: list[str], store_args: list[str], run: Callable[..., Any] = cli) -> None:
    """Print and run one CLI command against the demo's store."""
    print(f"\n$ audit-middleware {' '.join(args)}", flush=True)
    command, *rest = args
    try:
        run(args=[command, *store_args, *rest], prog_name="audit-middleware", standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code:
            raise


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve(app: Any, host: str, port: int, tokens: ViewerTokens) -> None:
    """Serve the console and its Audit Logs page until Ctrl-C, printing where to open it."""
    server = make_server(host, port, app, threaded=True)
    page = f"http://{host}:{server.server_port}/audit/"
    print(f"\nThe Audit Logs page is serving at {page}", flush=True)
    for username in ("alice", "bob"):
        user = pods.USERS[username]
        reader = Access(user.org, Actor(user.id, user.username, user.email, user.roles))
        viewer: AuditViewer = app.extensions["audit_viewer"]
        print(
            f"  {user.org} (as {username}, valid 12 h): {page}?token={viewer.issue_token(reader)}", flush=True
        )
    print(
        f"  or log in: curl -c jar -d username=alice -d password={PASSWORDS['alice']} {page[:-6]}login",
        flush=True,
    )
    print("Press Ctrl-C to stop.", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends it as Ctrl-C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    """Run the scenario, show searches and an export, then serve the Audit Logs page."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "opensearch"), default="sqlite")
    parser.add_argument("--no-serve", action="store_true", help="end after the scenario and the CLI")
    parser.add_argument("--host", default="127.0.0.1", help="where to serve the page [127.0.0.1]")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="[8000]")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="live view period, seconds [5]")
    args = parser.parse_args(argv)
    target = sqlite_target if args.store == "sqlite" else opensearch_target
    secret = os.environ.get(SECRET_ENV) or secrets.token_urlsafe(48)
    tokens = ViewerTokens(secret, ttl=timedelta(hours=12))
    with target() as (sink, store_args, store):
        app = build_app(sink, tokens, args.poll_interval)
        run_scenario(app)
        sink.flush(30)
        wait_until_searchable(store)
        export_path = STATE / f"acme-audit-{args.store}.csv"
        show(["search", "--tenant", "acme", "--since", "24h"], store_args)
        show(["search", "--tenant", "acme", "--action", "start-stop"], store_args)
        show(["search", "--tenant", "acme", "--action", "login_failed"], store_args)
        show(["search", "--tenant", "acme", "--user", "dave@acme.example"], store_args)
        show(["search", "--tenant", "acme", "--search", "web"], store_args)
        show(["search", "--tenant", "globex", "--resource-type", "member"], store_args)
        update = store.search(AuditQuery.build("acme", action="update", page_size=1)).events[0]
        show(["show", update.id, "--tenant", "acme"], store_args)
        show(["export", "--tenant", "acme", "--format", "csv", "-o", str(export_path)], store_args)
        print(f"\nfirst lines of {export_path}:")
        with export_path.open(encoding="utf-8") as exported:
            for _, line in zip(range(4), exported, strict=False):
                print("  " + line.rstrip()[:160])
        if not args.no_serve:
            serve(app, args.host, args.port, tokens)
    print("\nDone. Run `audit-middleware --help` to explore the records yourself.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
