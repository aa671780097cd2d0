"""First-page latency and CSV export throughput of ``SQLiteStore`` and ``OpenSearchStore`` over N records.

The budget (``../shared/DESIGN.md``): the first page of a filtered search over 1 million
records well under a second on the local node; the CSV export streams in constant
memory.

``N`` synthetic records (1,000,000; 100,000 with ``--quick``; ``--records N`` when run
directly, or ``AUDIT_BENCH_QUERY_RECORDS``) are generated from a fixed seed: 20 tenants,
one of them holding about 30% of the records, ~5,000 users with emails whose activity
is skewed (a few very busy users, a long tail of rare ones), the 17 product actions at
realistic frequencies, pods / virtual machines / storage / projects / SSH keys named
like ``web-frontend-042``, change sets on updates and permission changes, details,
client IPs and user agents, spread over the 60 days before the start of the current
hour in time order (more by day than by night, less on weekends).

They are loaded, in time order, into a fresh SQLite file by ``SQLiteSink.load()`` (the
bulk path of ``audit-middleware import``: one transaction, the indexes and full-text
search built after the rows; the time spent generating the records is not counted) in a
temporary directory, and into a fresh
``{prefix}-standard`` data stream on the local node (``_bulk`` with ``create``, ``_id``
= event id, 5,000 documents per request, ``refresh_interval: -1`` during the load,
then a refresh; no force-merge, so the segments are what a loaded index has). Both
are removed at the end.

With ``--records 3000000`` (or ``--one-tenant``) every record belongs to one tenant.
``--stores sqlite`` (or ``opensearch``) loads only one store.

Queries are scoped to the biggest tenant and ask for a page of 50. Counts are the
bounded count shown beside a search (``count_bounded``: exact up to 10,000). Each case runs once
("first run": nothing of it in any cache yet, though the files are in the OS page
cache), then the cases take turns for ``runs`` rounds (p50/p95). Relative date filters
are rebuilt every run with "now" one second later, as a person clicking again would, so
a cached range filter does not flatter OpenSearch. The first pages of the two stores
are compared event by event.

Export: the biggest tenant's last 30 days to a sink that only counts bytes, CSV through
``store.export``, beside a raw loop over the same rows (SQLite: one ``SELECT document``
statement, each document parsed with orjson; OpenSearch: a point in time and
``search_after`` with opensearch-py's defaults) that writes each stored JSON document,
and ``iterate()`` / NDJSON in between to show where the time goes. RSS is sampled while
the export runs, and the raw loop and the CSV export run once more under tracemalloc:
constant memory means no growth after the first tenth of the rows.

Also printed: the load rate as each store grows, the SQLite query plans (``EXPLAIN
QUERY PLAN`` and VM steps) and the node's own ``took`` per case, to explain slow cases.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import json
import math
import os
import platform
import random
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import IO, Any, cast

import orjson
from opensearchpy.exceptions import OpenSearchException

from audit_middleware.model.actions import CATALOG
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import Actor, AuditEvent, ChangeSet, RequestFacts, Resource, Scope
from audit_middleware.model.tenancy import tenant_key
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.tiers import data_stream_name
from audit_middleware.query import sqlite_store
from audit_middleware.query.model import BOUNDED_COUNT_LIMIT, AuditQuery
from audit_middleware.query.opensearch_store import OpenSearchStore, filter_query, search_body
from audit_middleware.query.sqlite_store import SQLiteStore
from audit_middleware.query.store import AuditStore
from audit_middleware.sinks.sqlite import SQLiteSink
from benchmarks.common import (
    DEFAULT_OPENSEARCH_URL,
    LoadMonitor,
    Result,
    Row,
    Settings,
    Table,
    fmt,
    fmt_bytes,
    markdown,
    median,
    peak_rss_bytes,
    percentile,
    render,
    reset_peak_rss,
    rss_bytes,
)
from benchmarks.node import (
    node_cpu_seconds,
    plain_client,
    require_loopback,
    temporary_layout,
    unavailable,
    unique_prefix,
)

NAME = "query_stores"
STORES = ("SQLite", "OpenSearch")
RECORDS_ENV = "AUDIT_BENCH_QUERY_RECORDS"
SEED = 20261125
DAYS = 60
PAGE_SIZE = 50
TARGET_MS = 1000.0
CLOSE_TO_BUDGET_MS = 250.0
BULK_BATCH = 5_000  # documents per _bulk request
TOTAL_USERS = 5_000
MIB = 1 << 20
SQLITE_RAW = "raw: one SELECT document statement, each parsed with orjson"
OPENSEARCH_RAW = "raw: PIT + search_after, opensearch-py defaults"
CSV = "store.export(csv)"
CSV_SLICED = "store.export(csv), sliced point in time"
OPENSEARCH_SLICES = 2  # slices of the sliced export: one per core of this machine
OPENSEARCH_PAGE_TARGET_MS = 20.0  # first page, tenant only
OPENSEARCH_FILTER_TARGET_MS = 30.0  # first page, any filter
OPENSEARCH_CSV_RATIO = 0.8  # CSV export / raw PIT loop
OPENSEARCH_SLICED_RATIO = 2.0  # sliced CSV export / raw PIT loop
FLAT_MIB = 1.0
SQLITE_PAGE_TARGET_MS = 20.0
EXPORT_RATIO_TARGET = 0.4  # of the raw SELECT + orjson loop, SQLite
ONE_TENANT_FROM = 3_000_000

# -- the synthetic population ------------------------------------------------------------

TENANT_NAMES = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark-industries",
    "wayne-enterprises",
    "wonka",
    "cyberdyne",
    "soylent",
    "tyrell",
    "aperture",
    "massive-dynamic",
    "oscorp",
    "vandelay",
    "dunder-mifflin",
    "pied-piper",
    "gringotts",
    "monsters-inc",
    "black-mesa",
)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "anna ben carla david elena felix greta hugo irene jonas karin leon maria nils olga paul "
    "queenie rafael sofia tomas ursula victor wanda xavier yara zoran amir bianca chen dmitri "
    "emeka fatima goran hana ibrahim julia kenji lucia mateo nadia"
)
LAST_NAMES = _words(
    "smith mueller garcia rossi novak kowalski jensen dubois silva tanaka kim nguyen ivanov "
    "larsen schmidt costa okafor haddad petrov weber fischer moreau lopez bauer kaya yilmaz "
    "berg lindqvist horvat papadopoulos"
)
ROLES = (("admin",), ("developer",), ("developer",), ("developer", "billing"), ("viewer",))
POD_NAMES = (
    ("web", "frontend"), ("api", "gateway"), ("auth", "service"), ("billing", "api"), ("cache", "redis"),
    ("db", "postgres"), ("queue", "rabbitmq"), ("worker", "batch"), ("search", "indexer"),
    ("ml", "training"), ("etl", "pipeline"), ("log", "collector"), ("metrics", "exporter"),
    ("notify", "mailer"), ("image", "resizer"), ("report", "builder"),
)  # fmt: skip
VM_NAMES = (
    ("build", "runner"), ("bastion", "host"), ("gpu", "node"), ("db", "replica"), ("jump", "box"),
    ("web", "legacy"), ("vpn", "gateway"), ("analytics", "warehouse"),
)  # fmt: skip
STORAGE_NAMES = (
    ("backup", "volume"), ("data", "bucket"), ("media", "store"), ("logs", "archive"),
    ("db", "snapshots"), ("shared", "nfs"),
)  # fmt: skip
PROJECT_NAMES = _words(
    "platform checkout mobile-app data-lake internal-tools marketing-site payments search "
    "infrastructure ml-research customer-portal analytics sandbox staging"
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "curl/8.10.1",
    "python-requests/2.32.3",
    "Terraform/1.9.8 terraform-provider-cloud/3.4.1",
    "cloudctl/2.7.0 (linux; amd64)",
)  # fmt: skip
# The 17 product actions and how often each occurs (percent).
ACTION_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("login", 22.0),
    ("logout", 10.0),
    ("login_failed", 3.0),
    ("update", 15.0),
    ("create", 8.0),
    ("delete", 4.0),
    ("start", 9.0),
    ("stop", 8.0),
    ("restart", 4.0),
    ("token_created", 1.5),
    ("token_revoked", 0.8),
    ("ssh_key_added", 1.0),
    ("ssh_key_deleted", 0.4),
    ("invite_sent", 0.8),
    ("invite_accepted", 0.6),
    ("member_removed", 0.3),
    ("permissions_changed", 0.6),
)
CRUD_TYPES = (("pod", 0.45), ("virtual_machine", 0.25), ("storage", 0.2), ("project", 0.1))
POWER_TYPES = (("pod", 0.55), ("virtual_machine", 0.45))
ROUTES: dict[str, tuple[str, str]] = {
    "pod": ("/projects/<project>/pods", "/pods/<pod_id>"),
    "virtual_machine": ("/projects/<project>/vms", "/vms/<vm_id>"),
    "storage": ("/projects/<project>/volumes", "/volumes/<volume_id>"),
    "project": ("/projects", "/projects/<project>"),
}
DELETE_REASONS = ("no longer needed", "replaced", "cost cleanup", "migration finished", None, None)
_PLACEHOLDER = re.compile(r"<[a-z_]+>")
RESTART_REASONS = ("health check failed", "config reload", "out of memory", "deploy", "manual")


def _cumulative(weights: list[float]) -> list[float]:
    total = sum(weights)
    running, out = 0.0, []
    for weight in weights:
        running += weight
        out.append(running / total)
    out[-1] = 1.0
    return out


def _pick(rng: random.Random, items: Any, cum: list[float]) -> Any:
    return items[min(bisect.bisect_left(cum, rng.random()), len(items) - 1)]


@dataclass
class User:
    """One person of a tenant: the actor, a home IP and the clients they use."""

    actor: Actor
    ip: str
    agents: tuple[str, ...]
    weight: float


@dataclass
class Tenant:
    """One organization: its users (activity skewed), projects and resources."""

    scope: Scope
    share: float
    domain: str
    users: list[User] = field(default_factory=list)
    user_cum: list[float] = field(default_factory=list)
    projects: list[Scope] = field(default_factory=list)
    resources: dict[str, list[Resource]] = field(default_factory=dict)


class Population:
    """Tenants, users and resources, all from one seed."""

    def __init__(self, seed: int = SEED, *, one_tenant: bool = False) -> None:
        rng = random.Random(seed)
        self.seed = seed
        others = [1 / k**0.9 for k in range(1, len(TENANT_NAMES))]
        shares = [1.0] if one_tenant else [0.30] + [0.70 * w / sum(others) for w in others]
        self.tenants: list[Tenant] = []
        user_shares = [s**0.7 for s in shares]
        next_user_id = 10_000
        for index, (name, share) in enumerate(zip(TENANT_NAMES[: len(shares)], shares, strict=True)):
            tenant = Tenant(Scope(name, name.replace("-", " ").title()), share, f"{name}.example.com")
            count = max(8, round(TOTAL_USERS * user_shares[index] / sum(user_shares)))
            seen: set[str] = set()
            for rank in range(1, count + 1):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                local = f"{first}.{last}"
                suffix = 2
                while local in seen:
                    local = f"{first}.{last}{suffix}"
                    suffix += 1
                seen.add(local)
                actor = Actor(
                    id=str(next_user_id),
                    name=f"{first.title()} {last.title()}",
                    email=f"{local}@{tenant.domain}",
                    roles=rng.choice(ROLES),
                )
                next_user_id += 1
                if rng.random() < 0.15:
                    ip = f"2001:db8:{index:x}:{rank:x}::{rng.randrange(1, 0xFFFF):x}"
                else:
                    network = rng.choice(("198.51", "203.0", "100.64"))
                    ip = f"{network}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                agents = tuple(rng.sample(USER_AGENTS, 2))
                tenant.users.append(User(actor, ip, agents, 1.0 / rank))  # Zipf: rank 1 is the busiest
            rng.shuffle(tenant.users)  # ranks are not in id order
            tenant.user_cum = _cumulative([u.weight for u in tenant.users])
            projects = rng.sample(PROJECT_NAMES, max(3, min(len(PROJECT_NAMES), round(40 * share))))
            tenant.projects = [Scope(f"{name}-{p}", p.replace("-", " ").title()) for p in projects]
            scale = max(1, round(1500 * share))
            tenant.resources = {
                "pod": self._named(rng, "pod", POD_NAMES, 8 * scale + 20),
                "virtual_machine": self._named(rng, "vm", VM_NAMES, 3 * scale + 8),
                "storage": self._named(rng, "vol", STORAGE_NAMES, 2 * scale + 6),
                "project": [Resource("project", p.id, p.name) for p in tenant.projects],
            }
            self.tenants.append(tenant)
        self.tenant_cum = _cumulative([t.share for t in self.tenants])
        if one_tenant:  # every record in the big tenant (the others keep their users, unused)
            self.tenant_cum = [1.0] * len(self.tenants)
            self.tenants[0].share = 1.0
        self.action_ids = [a for a, _ in ACTION_WEIGHTS]
        self.action_cum = _cumulative([w for _, w in ACTION_WEIGHTS])
        self.actions = {a: CATALOG.get(a) for a in self.action_ids}
        self.support = Actor(
            id="900001", name="Support Desk", email="support@vendor.example", roles=("support",)
        )

    @staticmethod
    def _named(rng: random.Random, kind: str, names: Any, count: int) -> list[Resource]:
        type_id = {"pod": "pod", "vm": "virtual_machine", "vol": "storage"}[kind]
        out = []
        numbers: dict[tuple[str, str], int] = {}
        for _ in range(count):
            app, role = rng.choice(names)
            n = numbers.get((app, role), rng.randrange(1, 40))
            numbers[(app, role)] = n + rng.randrange(1, 4)
            out.append(Resource(type_id, f"{kind}-{rng.getrandbits(40):010x}", f"{app}-{role}-{n:03d}"))
        return out

    @property
    def big(self) -> Tenant:
        """The tenant holding ~30% of the records."""
        return self.tenants[0]

    def users_by_activity(self, tenant: Tenant) -> list[User]:
        """The tenant's users, busiest first."""
        return sorted(tenant.users, key=lambda u: -u.weight)


def _hour_weight(moment: datetime) -> float:
    hour, weekday = moment.hour, moment.weekday()
    daily = 1.0 if 7 <= hour < 19 else 0.45 if 5 <= hour < 22 else 0.12
    return daily * (0.3 if weekday >= 5 else 1.0)


class EventStream:
    """``count`` events in time order over the ``DAYS`` days before ``end``; the same every time."""

    def __init__(self, population: Population, count: int, end: datetime) -> None:
        self.population = population
        self.count = count
        self.end = end
        self.start = end - timedelta(days=DAYS)
        hours = DAYS * 24
        weights = [
            _hour_weight(self.start + timedelta(hours=h)) * (0.8 + 0.4 * h / hours) for h in range(hours)
        ]
        cum = _cumulative(weights)
        self.per_hour = [
            round(count * c) - (round(count * cum[h - 1]) if h else 0) for h, c in enumerate(cum)
        ]
        self.start_ms = int(self.start.timestamp() * 1000)

    def chunks(self, size: int) -> Iterator[list[AuditEvent]]:
        """The events, ``size`` at a time."""
        chunk: list[AuditEvent] = []
        for event in self:
            chunk.append(event)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def __iter__(self) -> Iterator[AuditEvent]:
        rng = random.Random(self.population.seed + 1)
        last_ms, sequence = -1, 0
        for hour, n in enumerate(self.per_hour):
            base = self.start_ms + hour * 3_600_000
            for offset in sorted(rng.randrange(3_600_000) for _ in range(n)):
                ms = base + offset
                if ms == last_ms:
                    sequence += 1
                else:
                    sequence = rng.getrandbits(9)
                last_ms = ms
                yield self._event(rng, ms, _uuid7(ms, sequence, rng.getrandbits(62)))

    def _event(self, rng: random.Random, ms: int, event_id: str) -> AuditEvent:
        pop = self.population
        tenant: Tenant = _pick(rng, pop.tenants, pop.tenant_cum)
        user: User = _pick(rng, tenant.users, tenant.user_cum)
        action_id: str = _pick(rng, pop.action_ids, pop.action_cum)
        project = rng.choice(tenant.projects)
        actor = user.actor
        if rng.random() < 0.003:  # support acting as the customer
            actor = Actor(actor.id, actor.name, actor.email, actor.roles, impersonator=pop.support)
        resource: Resource | None = None
        changes: ChangeSet | None = None
        details: dict[str, Any] = {}
        outcome = "success"
        status = 200
        method, route = "POST", "/"
        if action_id in ("create", "update", "delete", "start", "stop", "restart"):
            types = CRUD_TYPES if action_id in ("create", "update", "delete") else POWER_TYPES
            type_id = types[0][0]
            roll = rng.random()
            for candidate, share in types:
                roll -= share
                if roll <= 0:
                    type_id = candidate
                    break
            pool = tenant.resources[type_id]
            resource = pool[int(len(pool) * rng.random() ** 2)]  # some resources are touched far more
            collection, item = ROUTES[type_id]
            if action_id == "create":
                method, route, status = "POST", collection, 201
            elif action_id == "update":
                method, route = "PATCH", item
                changes = _change(rng, type_id)
            elif action_id == "delete":
                method, route, status = "DELETE", item, 204
                reason = rng.choice(DELETE_REASONS)
                if reason:
                    details["reason"] = reason
            else:
                method, route = "POST", f"{item}/{action_id}"
                if action_id == "restart":
                    details["reason"] = rng.choice(RESTART_REASONS)
        elif action_id in ("login", "logout", "login_failed"):
            resource = Resource("session")
            route = f"/{action_id.split('_', maxsplit=1)[0]}"
            if action_id == "login":
                details["method"] = rng.choice(("password", "password", "sso", "sso", "sso", "passkey"))
            elif action_id == "login_failed":
                outcome, status = "failure", 401
                details = {"username": (actor.email or "").split("@")[0], "reason": "bad_password"}
        elif action_id in ("token_created", "token_revoked"):
            name = rng.choice(("ci-deploy", "terraform", "monitoring", "backup-job", "local-dev"))
            resource = Resource("api_token", f"{rng.getrandbits(24):06x}", name)
            if action_id == "token_created":
                route, status = "/tokens", 201
                details = {"scopes": rng.choice((["pods:write"], ["read"], ["vms:write", "pods:write"])),
                           "expires_in_days": rng.choice((30, 90, 365))}  # fmt: skip
            else:
                method, route, status = "DELETE", "/tokens/<token_id>", 204
        elif action_id in ("ssh_key_added", "ssh_key_deleted"):
            owner = (actor.name or "user").split()[0].lower()
            device = rng.choice(("laptop", "desktop", "ci", "workstation"))
            resource = Resource("ssh_key", f"key-{rng.getrandbits(32):08x}", f"{owner}-{device}")
            if action_id == "ssh_key_added":
                route, status = "/ssh-keys", 201
                details["fingerprint"] = f"SHA256:{rng.getrandbits(128):032x}"
            else:
                method, route, status = "DELETE", "/ssh-keys/<key_id>", 204
        else:  # team actions
            other = _pick(rng, tenant.users, tenant.user_cum).actor
            if action_id in ("invite_sent", "invite_accepted"):
                invitee = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@{tenant.domain}"
                resource = Resource("invite", f"inv-{rng.getrandbits(32):08x}", invitee)
                route = "/invites" if action_id == "invite_sent" else "/invites/<code>/accept"
                if action_id == "invite_sent":
                    details["role"] = rng.choice(("developer", "viewer", "admin"))
            else:
                resource = Resource("member", other.id, other.email)
                if action_id == "member_removed":
                    method, route, status = "DELETE", "/members/<member>", 204
                else:
                    method, route = "PUT", "/members/<member>/roles"
                    before = list(other.roles)
                    after = sorted({*before, rng.choice(("admin", "developer", "billing", "viewer"))})
                    changes = ChangeSet({"roles": before}, {"roles": after}, ("roles",))
        if outcome == "success" and action_id != "login_failed" and rng.random() < 0.015:
            outcome, status = "failure", 403
        item_id = resource.id if resource is not None and resource.id else "x"
        path = _PLACEHOLDER.sub(lambda m: project.id if m.group(0) == "<project>" else item_id, route)
        return AuditEvent(
            id=event_id,
            unix_ms=ms,
            action=pop.actions[action_id],
            actor=actor,
            outcome=outcome,  # type: ignore[arg-type]
            resource=resource,
            changes=changes,
            details=details,
            tenant=tenant.scope,
            project=project,
            request=RequestFacts(
                method=method,
                path=path,
                route=route,
                request_id=f"{rng.getrandbits(128):032x}",
                status_code=status,
                client_ip=user.ip if rng.random() < 0.85 else f"192.0.2.{rng.randrange(1, 255)}",
                user_agent=user.agents[0] if rng.random() < 0.8 else user.agents[1],
            ),
        )


def _change(rng: random.Random, type_id: str) -> ChangeSet:
    if type_id == "pod":
        replicas = rng.randrange(1, 8)
        before = {"replicas": replicas, "image": f"registry.example.com/app:1.{rng.randrange(30)}.0"}
        after = {"replicas": replicas + rng.choice((-1, 1, 2)), "image": before["image"]}
        if rng.random() < 0.5:
            after["image"] = f"registry.example.com/app:1.{rng.randrange(30, 60)}.0"
    elif type_id == "virtual_machine":
        cpu = rng.choice((2, 4, 8, 16))
        before, after = {"cpu": cpu, "memory_gb": cpu * 4}, {"cpu": cpu * 2, "memory_gb": cpu * 8}
    elif type_id == "storage":
        size = rng.choice((50, 100, 250, 500, 1000))
        before, after = {"size_gb": size, "tier": "standard"}, {"size_gb": size * 2, "tier": "standard"}
    else:
        before = {"description": "", "labels": {"env": "dev"}}
        after = {"description": rng.choice(("Customer facing", "Batch jobs", "Shared services")),
                 "labels": {"env": rng.choice(("dev", "staging", "prod"))}}  # fmt: skip
    fields = tuple(sorted(k for k in after if before.get(k) != after[k]))
    return ChangeSet(before, after, fields)


def _uuid7(ms: int, sequence: int, random_bits: int) -> str:
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (sequence & 0xFFF) << 64 | 0b10 << 62 | random_bits
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# -- the queries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One filter, as the CLI and the page would send it (AuditQuery.build keyword arguments)."""

    label: str
    filters: dict[str, Any]

    def query(self, tenant: str, now: datetime) -> AuditQuery:
        """The query, with relative dates counted from ``now``."""
        return AuditQuery.build(tenant, page_size=PAGE_SIZE, now=now, **self.filters)


def _cases(
    population: Population, export_days: int = 30
) -> tuple[list[Case], list[Case], Case, dict[str, Any]]:
    """Search cases, count cases, the export case, and who/what they name."""
    users = population.users_by_activity(population.big)
    typical = users[min(9, len(users) - 1)]  # the 10th busiest user: ~1% of the tenant's records
    rare = users[-1]  # the least active user of the tenant
    pods = population.big.resources["pod"]
    one_name = pods[len(pods) // 3].name  # a pod touched now and then
    assert typical.actor.email
    assert rare.actor.email
    assert one_name
    search = [
        Case("no filter (tenant only)", {}),
        Case("user (email)", {"user": typical.actor.email}),
        Case("action: delete", {"action": "delete"}),
        Case("action group: start-stop", {"action": "start-stop"}),
        Case("resource type: virtual_machine", {"resource_type": "virtual_machine"}),
        Case("last 7 days", {"since": "7d"}),
        Case("search 'web-fr'", {"search": "web-fr"}),
        Case(f"search one name '{one_name}'", {"search": one_name}),
        Case("user + 7 days + update", {"user": typical.actor.email, "since": "7d", "action": "update"}),
        Case("rare user (email)", {"user": rare.actor.email}),
    ]
    counts = [
        Case("count: start-stop, last 30 days", {"action": "start-stop", "since": "30d"}),
        Case("count: user (email)", {"user": typical.actor.email}),
    ]
    export = Case(f"export: last {export_days} days", {"since": f"{export_days}d"})
    named = {"typical_user": typical.actor.email, "rare_user": rare.actor.email, "one_name": one_name}
    return search, counts, export, named


@dataclass
class Timing:
    """Latencies of one case on one store, in ms."""

    first: float = math.nan
    runs: list[float] = field(default_factory=list)
    hits: int = 0
    page_ids: list[str] = field(default_factory=list)
    matches: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def p50(self) -> float:
        return median(self.runs)

    @property
    def p95(self) -> float:
        return percentile(sorted(self.runs), 95)

    @property
    def worst(self) -> float:
        return max(self.first, self.p95)


def _measure(
    store: AuditStore, tenant: str, anchor: datetime, search: list[Case], counts: list[Case], runs: int
) -> dict[str, Timing]:
    """First run of every case, then ``runs`` rounds with the cases taking turns."""
    timings = {case.label: Timing() for case in [*search, *counts]}
    tick = 0

    def once(case: Case, counting: bool) -> float:
        nonlocal tick
        tick += 1
        query = case.query(tenant, anchor + timedelta(seconds=tick))
        started = time.perf_counter()
        if counting:  # the total shown beside a search: exact up to 10,000, then "10,000+"
            store.count_bounded(query)
            return (time.perf_counter() - started) * 1000
        page = store.search(query)
        elapsed = (time.perf_counter() - started) * 1000
        timing = timings[case.label]
        if not timing.page_ids:
            timing.hits = len(page.events)
            timing.page_ids = [event.id for event in page.events]
        return elapsed

    everything = [(case, False) for case in search] + [(case, True) for case in counts]
    for case, counting in everything:
        timings[case.label].first = once(case, counting)
    for rnd in range(runs):
        order = everything if rnd % 2 == 0 else everything[::-1]
        for case, counting in order:
            timings[case.label].runs.append(once(case, counting))
    for case in search:  # how many match (untimed, after the timed runs)
        timings[case.label].matches = store.count(case.query(tenant, anchor))
    return timings


# -- SQLite -----------------------------------------------------------------------------


def _sqlite_plan(path: Path, query: AuditQuery, counting: bool) -> tuple[str, int]:
    """EXPLAIN QUERY PLAN of the store's statement, and the VM steps it takes (x1000).

    Rebuilds the statement as ``SQLiteStore.search`` / ``count`` do (private helpers:
    diagnostics only).
    """
    conn = sqlite3.connect(path)
    limit = BOUNDED_COUNT_LIMIT if counting else sqlite_store.drive_limit(conn, query)
    where = sqlite_store._Filter.of(query, conn, drive=limit)
    if where is None:
        conn.close()
        return "(matches nothing: no query)", 0
    select, params = where.select("1" if counting else "document")
    if counting:
        # as SQLiteStore._count: a count reads along its first full-text set
        counted = sqlite_store._by_full_text(where, select)
        sql, params = f"SELECT count(*) FROM ({counted} LIMIT ?)", [*params, BOUNDED_COUNT_LIMIT + 1]
    else:
        sql = f"{select} ORDER BY unix_ms DESC, event_id DESC LIMIT ?"
        params = [*params, query.page_size + 1]
    try:
        plan = " / ".join(str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        if where.driving is not None:
            plan = f"driven by {len(where.driving):,} full-text matches / {plan}"
        steps = 0

        def tick() -> int:
            nonlocal steps
            steps += 1
            return 0

        conn.set_progress_handler(tick, 1000)
        conn.execute(sql, params).fetchall()
        conn.set_progress_handler(None, 0)
    finally:
        conn.close()
    return plan, steps


class _TimedSource:
    """The events of ``stream``, noting the time spent making them (not loading) and progress."""

    def __init__(self, stream: EventStream) -> None:
        self.generate = 0.0
        self.count = 0
        self.marks: list[tuple[int, float]] = []  # (records so far, wall seconds so far)
        self._events = iter(stream)
        self._started = time.perf_counter()

    def __iter__(self) -> Iterator[AuditEvent]:
        while True:
            mark = time.perf_counter()
            event = next(self._events, None)
            self.generate += time.perf_counter() - mark
            if event is None:
                return
            self.count += 1
            if self.count % 100_000 == 0:
                spent = time.perf_counter() - self._started - self.generate
                self.marks.append((self.count, spent))
                print(f"  sqlite: {self.count:,} handed to the load", file=sys.stderr, flush=True)
            yield event


def _load_sqlite(sink: SQLiteSink, stream: EventStream) -> dict[str, Any]:
    """``SQLiteSink.load`` (the bulk path: indexes built after the rows) of every event, in one call."""
    source = _TimedSource(stream)
    started = time.perf_counter()
    inserted = sink.load(source)
    wall = time.perf_counter() - started
    write = wall - source.generate
    # What load() does per row before SQLite sees it: to_document() and the JSON (timed alone).
    sample = next(EventStream(stream.population, 20_000, stream.end).chunks(20_000))
    mark = time.perf_counter()
    for event in sample:
        dumps(event.to_document())
    encode_us = (time.perf_counter() - mark) / len(sample) * 1e6
    return {
        "inserted": inserted,
        "write_s": write,
        "generate_s": source.generate,
        "wall_s": wall,
        "encode_us": encode_us,
        "progress": [*source.marks, (inserted, write)],
    }


def _bench_sqlite(
    directory: Path,
    stream: EventStream,
    search: list[Case],
    counts: list[Case],
    export: Case,
    runs: int,
) -> dict[str, Any]:
    path = directory / "audit.sqlite3"
    with SQLiteSink(path) as sink:
        loaded = _load_sqlite(sink, stream)
    store = SQLiteStore(path)
    out: dict[str, Any] = {}
    try:
        out["load"] = loaded
        out["load"]["db_bytes"] = path.stat().st_size
        wal = path.with_name(path.name + "-wal")
        out["load"]["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
        tenant = stream.population.big.scope.id
        print("  sqlite: queries", file=sys.stderr, flush=True)
        out["timings"] = _measure(store, tenant, stream.end, search, counts, runs)
        for case in [*search, *counts]:
            query = case.query(tenant, stream.end)
            plan, steps = _sqlite_plan(path, query, case in counts)
            out["timings"][case.label].extra.update(plan=plan, vm_ksteps=steps)
        print("  sqlite: export", file=sys.stderr, flush=True)
        query = export.query(tenant, stream.end)
        out["export"] = _export_variants(
            {
                SQLITE_RAW: lambda sink: _sqlite_raw(path, query, sink),
                "store.iterate() (events only)": lambda sink: _drain(store.iterate(query), sink),
                "store.export(ndjson)": lambda sink: store.export(query, sink.file, "ndjson"),
                CSV: lambda sink: store.export(query, sink.file, "csv"),
            },
            traced=(SQLITE_RAW, CSV),
        )
    finally:
        store.close()
    return out


def _sqlite_raw(path: Path, query: AuditQuery, sink: CountingSink) -> int:
    """What a person would write without the store: one statement, each stored document out."""
    conn = sqlite3.connect(path)
    rows = 0
    try:
        cursor = conn.execute(
            "SELECT document FROM events WHERE tenant = ? AND unix_ms >= ? "
            "ORDER BY unix_ms DESC, event_id DESC",
            (tenant_key(query.tenant), query.start_ms),
        )
        for (document,) in cursor:
            orjson.loads(document)
            sink.write(document.encode() + b"\n")
            rows += 1
    finally:
        conn.close()
    return rows


# -- OpenSearch -------------------------------------------------------------------------


def _load_opensearch(client: Any, stream_name: str, stream: EventStream) -> dict[str, Any]:
    client.indices.put_settings(index=stream_name, body={"index": {"refresh_interval": "-1"}})
    sent = took_ms = 0
    generate = send = 0.0
    progress: list[tuple[int, float]] = []  # (documents so far, send seconds so far)
    chunks = stream.chunks(BULK_BATCH)
    node0 = node_cpu_seconds(client)
    started = time.perf_counter()
    while True:
        mark = time.perf_counter()
        chunk = next(chunks, None)
        generate += time.perf_counter() - mark
        if chunk is None:
            break
        mark = time.perf_counter()
        lines = []
        for event in chunk:
            document = event.to_document()
            document["audit"]["tier"] = "standard"  # as the sink sends it
            lines.append(dumps({"create": {"_index": stream_name, "_id": event.id}}))
            lines.append(dumps(document))
        answer = client.bulk(body=b"\n".join(lines) + b"\n")
        send += time.perf_counter() - mark
        if answer["errors"]:
            failed = [item for item in answer["items"] if item["create"].get("error")]
            raise RuntimeError(f"bulk load: {len(failed)} items failed, e.g. {failed[0]}")
        took_ms += int(answer.get("took", 0))
        sent += len(chunk)
        progress.append((sent, send))
        if sent % 100_000 < BULK_BATCH:
            print(f"  opensearch: {sent:,} indexed, {sent / send:,.0f}/s", file=sys.stderr, flush=True)
    mark = time.perf_counter()
    client.indices.put_settings(index=stream_name, body={"index": {"refresh_interval": None}})
    client.indices.refresh(index=stream_name)
    refresh = time.perf_counter() - mark
    node_cpu = node_cpu_seconds(client) - node0
    stats = client.indices.stats(index=stream_name, metric="docs,store,segments")["_all"]["primaries"]
    return {
        "indexed": sent,
        "send_s": send,
        "refresh_s": refresh,
        "generate_s": generate,
        "bulk_took_s": took_ms / 1000,
        "node_cpu_s": node_cpu,
        "wall_s": time.perf_counter() - started,
        "docs": stats["docs"]["count"],
        "store_bytes": stats["store"]["size_in_bytes"],
        "segments": stats["segments"]["count"],
        "progress": progress,
    }


def _opensearch_took(client: Any, pattern: str, query: AuditQuery, counting: bool, repeats: int = 5) -> float:
    """The node's own ``took`` (ms) for the store's request, median of ``repeats``."""
    took = []
    for _ in range(repeats):
        if counting:  # _count reports no took: the same request as a search of size 0
            body = {"query": filter_query(query), "size": 0, "track_total_hits": True}
        else:
            body = search_body(query)
        took.append(float(client.search(index=pattern, body=body)["took"]))
    return median(took)


def _bench_opensearch(
    url: str,
    stream: EventStream,
    search: list[Case],
    counts: list[Case],
    export: Case,
    runs: int,
) -> dict[str, Any]:
    client = plain_client(url)
    prefix = unique_prefix("query")
    out: dict[str, Any] = {"prefix": prefix}
    with temporary_layout(client, prefix):
        stream_name = data_stream_name(prefix, "standard")
        out["load"] = _load_opensearch(client, stream_name, stream)
        settings = ConnectionSettings(urls=(url,), prefix=prefix, timeout=60)
        store = OpenSearchStore.from_settings(settings, export_slices=1)
        sliced = OpenSearchStore.from_settings(settings, export_slices=OPENSEARCH_SLICES)
        try:
            tenant = stream.population.big.scope.id
            print("  opensearch: queries", file=sys.stderr, flush=True)
            out["timings"] = _measure(store, tenant, stream.end, search, counts, runs)
            for case in [*search, *counts]:
                query = case.query(tenant, stream.end)
                out["timings"][case.label].extra["took_ms"] = _opensearch_took(
                    client, store.index_pattern, query, case in counts
                )
            out["bounded"] = _bounded_counts(store, tenant, stream.end, [search[0], *counts], runs)
            print("  opensearch: export", file=sys.stderr, flush=True)
            query = export.query(tenant, stream.end)
            out["export"] = _export_variants(
                {
                    OPENSEARCH_RAW: lambda sink: _opensearch_raw(client, store.index_pattern, query, sink),
                    "store.iterate() (events only)": lambda sink: _drain(store.iterate(query), sink),
                    "store.export(ndjson)": lambda sink: store.export(query, sink.file, "ndjson"),
                    CSV: lambda sink: store.export(query, sink.file, "csv"),
                    CSV_SLICED: lambda sink: sliced.export(query, sink.file, "csv"),
                },
                traced=(OPENSEARCH_RAW, CSV, CSV_SLICED),
            )
        finally:
            store.close()
            sliced.close()
    return out


def _bounded_counts(
    store: OpenSearchStore, tenant: str, anchor: datetime, cases: list[Case], runs: int
) -> dict[str, dict[str, Any]]:
    """``count_bounded`` (what a search shows beside its results) per case: p95 ms and the answer."""
    figures: dict[str, dict[str, Any]] = {}
    for case in cases:
        times = []
        answer = None
        for tick in range(runs):
            query = case.query(tenant, anchor + timedelta(seconds=tick + 1))
            started = time.perf_counter()
            answer = store.count_bounded(query)
            times.append((time.perf_counter() - started) * 1000)
        figures[case.label] = {"p95_ms": percentile(sorted(times), 95), "shown": str(answer)}
    return figures


def _opensearch_raw(client: Any, pattern: str, query: AuditQuery, sink: CountingSink) -> int:
    """What a person would write with opensearch-py: a PIT, ``search_after``, each ``_source`` out."""
    pit = client.create_pit(index=pattern, params={"keep_alive": "1m"})["pit_id"]
    rows = 0
    body: dict[str, Any] = {
        "query": filter_query(query),
        "sort": [{"@timestamp": "desc"}, {"event.id": "desc"}],
        "size": 1000,
        "track_total_hits": False,
    }
    try:
        while True:
            body["pit"] = {"id": pit, "keep_alive": "1m"}
            answer = client.search(body=body)
            pit = answer.get("pit_id", pit)
            hits = answer["hits"]["hits"]
            for hit in hits:
                sink.write(json.dumps(hit["_source"]).encode() + b"\n")
            rows += len(hits)
            if len(hits) < 1000:
                return rows
            body["search_after"] = hits[-1]["sort"]
    finally:
        client.delete_pit(body={"pit_id": [pit]})


# -- export -----------------------------------------------------------------------------


class CountingSink:
    """A binary file that keeps nothing: counts bytes and samples memory as they pass.

    Every 0.1 s it notes this process's RSS and, while tracemalloc runs, the traced
    Python allocations, beside how far the export has got.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.rows = 0  # for writers that write no bytes (iterate only)
        self.samples: list[tuple[int, int, int]] = []  # (progress, RSS, traced bytes)
        self._next = 0.0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        if time.monotonic() >= self._next:
            self.sample()
        return len(data)

    def sample(self) -> None:
        """Note the memory now."""
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        self.samples.append((self.bytes or self.rows, rss_bytes(), traced))
        self._next = time.monotonic() + 0.1

    def flush(self) -> None:
        """Nothing to flush."""

    @property
    def file(self) -> IO[bytes]:
        """This sink, typed as the binary file ``store.export`` writes to."""
        return cast(IO[bytes], self)

    def after_tenth(self, column: int) -> tuple[int, int]:
        """The value of ``column`` (1 RSS, 2 traced) when a tenth was done, and its maximum after."""
        total = self.bytes or self.rows
        later = [sample[column] for sample in self.samples if sample[0] >= total / 10]
        return later[0], max(later)


def _drain(events: Iterator[AuditEvent], sink: CountingSink) -> int:
    for _ in events:
        sink.rows += 1
        if sink.rows % 1000 == 0 and time.monotonic() >= sink._next:
            sink.sample()
    return sink.rows


def _export_variants(
    variants: dict[str, Callable[[CountingSink], int]], traced: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Time each variant; those in ``traced`` run a second time under tracemalloc (slower)."""
    figures: dict[str, dict[str, Any]] = {}
    for name, work in variants.items():
        gc.collect()
        reset_peak_rss()
        rss0 = rss_bytes()
        sink = CountingSink()
        sink.sample()
        cpu0, started = time.process_time(), time.perf_counter()
        rows = work(sink)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        sink.sample()
        peak = peak_rss_bytes()
        at_tenth, highest = sink.after_tenth(1)
        figures[name] = {
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": rows / seconds if seconds else math.nan,
            "cpu_s": cpu,
            "bytes": sink.bytes,
            "rss_start": rss0,
            "peak_growth": peak - rss0,
            "growth_after_tenth": highest - at_tenth,
            "samples": len(sink.samples),
        }
        print(f"  {name}: {rows:,} rows, {rows / seconds:,.0f}/s", file=sys.stderr, flush=True)
        if name in traced:
            gc.collect()
            sink = CountingSink()
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                sink.sample()
                work(sink)
                sink.sample()
                traced_peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            at_tenth, highest = sink.after_tenth(2)
            figures[name]["traced_peak"] = traced_peak - base
            figures[name]["traced_growth_after_tenth"] = highest - at_tenth
            print(
                f"  {name} under tracemalloc: peak {fmt_bytes(traced_peak - base)}, "
                f"growth after the first tenth {fmt_bytes(highest - at_tenth)}",
                file=sys.stderr,
                flush=True,
            )
    return figures


# -- the benchmark ----------------------------------------------------------------------


def record_count(settings: Settings, records: int | None = None) -> int:
    """``records``, else ``$AUDIT_BENCH_QUERY_RECORDS``, else 1,000,000 (100,000 quick)."""
    if records is None and os.environ.get(RECORDS_ENV):
        records = int(os.environ[RECORDS_ENV])
    if records is None:
        records = settings.pick(1_000_000, 100_000)
    if records < 10_000:
        raise SystemExit(f"--records must be at least 10,000 (got {records:,})")
    return int(records)


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the temporary file and data stream are removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    settings: Settings,
    records: int | None = None,
    *,
    stores_wanted: tuple[str, ...] = STORES,
    one_tenant: bool | None = None,
    export_days: int = 30,
) -> Result:
    """Load both stores (or those in ``stores_wanted``) with the same records, then time
    first pages, counts and exports.

    ``one_tenant`` (default: from 3,000,000 records on) puts every record in the big tenant.
    """
    count = record_count(settings, records)
    runs = settings.pick(20, 10)
    single = count >= ONE_TENANT_FROM if one_tenant is None else one_tenant
    population = Population(SEED, one_tenant=single)
    anchor = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    stream = EventStream(population, count, anchor)
    search, counts, export, named = _cases(population, export_days)
    big = population.big.scope.id
    result = Result(
        NAME,
        f"first page (50) and CSV export over {count:,} records: SQLiteStore and OpenSearchStore",
        settings={
            "records": count,
            "seed": SEED,
            "days": DAYS,
            "tenants": len(population.tenants),
            "users": sum(len(t.users) for t in population.tenants),
            "page_size": PAGE_SIZE,
            "runs": runs,
            "data_end": anchor.isoformat(),
            "big_tenant": big,
            "one_tenant": single,
            **named,
        },
    )
    stores: dict[str, dict[str, Any]] = {}
    with _terminate_cleanly():
        if "SQLite" in stores_wanted:
            with tempfile.TemporaryDirectory(prefix="audit-bench-query-") as tmp:
                print(f"  sqlite: loading {count:,} records into {tmp}", file=sys.stderr, flush=True)
                stores["SQLite"] = _bench_sqlite(Path(tmp), stream, search, counts, export, runs)
        problem = unavailable(settings.opensearch_url)
        if "OpenSearch" not in stores_wanted:
            result.notes.append("OpenSearch part not asked for (--stores sqlite)")
        elif problem is None:
            print(f"  opensearch: loading {count:,} records", file=sys.stderr, flush=True)
            stores["OpenSearch"] = _bench_opensearch(
                settings.opensearch_url, stream, search, counts, export, runs
            )
        else:
            result.notes.append(f"OpenSearch part skipped: {problem}")
    _report(result, stores, search, counts, export, population, count)
    return result


def _slices(stores: dict[str, dict[str, Any]], count: int) -> list[list[str]]:
    """Load rate per tenth of the records, per store."""
    bounds = [count * k // 10 for k in range(1, 11)]
    columns = []
    for figures in stores.values():
        progress = figures["load"]["progress"]
        rates, previous = [], (0, 0.0)
        for bound in bounds:
            mark = next((p for p in progress if p[0] >= bound), progress[-1])
            if mark[0] <= previous[0]:  # no chunk ended inside this tenth
                rates.append(math.nan)
                continue
            rates.append((mark[0] - previous[0]) / max(mark[1] - previous[1], 1e-9))
            previous = mark
        columns.append(rates)
    return [[f"{bound:,}", *(fmt(column[i]) for column in columns)] for i, bound in enumerate(bounds)]


def _short_plan(plan: str) -> str:
    """EXPLAIN QUERY PLAN lines, with the subqueries of a ``seq IN`` filter named, not spelled out."""
    steps = plan.split(" / ")
    driving, rest = steps[0], steps[1:]
    used = [
        step.split(" USING COVERING INDEX ")[1].split(" ")[0] for step in rest if "COVERING INDEX" in step
    ]
    if any("events_fts" in step for step in rest):
        used.append("events_fts MATCH")
    others = [
        step
        for step in rest
        if not step.startswith(
            (
                "LIST SUBQUERY",
                "COMPOUND QUERY",
                "LEFT-MOST",
                "UNION ALL",
                "SEARCH events USING COVERING",
                "SCAN events_fts",
            )
        )
    ]
    text = driving
    if used:
        text += f"; seq IN ({', '.join(used)})"
    if others:
        text += " / " + " / ".join(others)
    return text


def _report(
    result: Result,
    stores: dict[str, dict[str, Any]],
    search: list[Case],
    counts: list[Case],
    export: Case,
    population: Population,
    count: int,
) -> None:
    big = population.big.scope.id
    for store, figures in stores.items():
        page_target = SQLITE_PAGE_TARGET_MS if store == "SQLite" else TARGET_MS
        for case in search:
            timing: Timing = figures["timings"][case.label]
            if store == "OpenSearch":  # the query-speed targets: p95, tenant only and any filter
                limit = OPENSEARCH_PAGE_TARGET_MS if case is search[0] else OPENSEARCH_FILTER_TARGET_MS
                target, met = f"<= {limit:g} ms", timing.p95 <= limit
            else:
                target, met = f"<= {page_target:g} ms", timing.p95 <= page_target
            result.rows.append(
                Row(
                    f"{store} first page p95: {case.label}",
                    "ms",
                    None,
                    timing.p95,
                    target=target,
                    met=met,
                    note=f"first run {timing.first:.1f} ms",
                )
            )
        for case in counts:
            timing = figures["timings"][case.label]
            result.rows.append(
                Row(
                    f"{store} {case.label} p95",
                    "ms",
                    None,
                    timing.p95,
                    target=f"<= {page_target:g} ms" if store == "SQLite" else "",
                    met=timing.p95 <= page_target if store == "SQLite" else None,
                )
            )
        for label, bounded in figures.get("bounded", {}).items():
            result.rows.append(
                Row(
                    f"{store} bounded count ({bounded['shown']}) p95: {label.removeprefix('count: ')}",
                    "ms",
                    figures["timings"][label].p95 if label.startswith("count") else None,
                    bounded["p95_ms"],
                    target="exact up to 10,000, then 10,000+",
                )
            )
    for store, figures in stores.items():
        variants = figures["export"]
        raw = next(v for name, v in variants.items() if name.startswith("raw"))
        csv = variants[CSV]
        ratio = csv["rows_per_s"] / raw["rows_per_s"]
        ratio_target: dict[str, Any] = {}
        if store == "OpenSearch":
            ratio_target = {
                "target": f">= {OPENSEARCH_CSV_RATIO:g}x raw",
                "met": ratio >= OPENSEARCH_CSV_RATIO,
            }
        else:
            ratio_target = {"target": f">= {EXPORT_RATIO_TARGET} of raw", "met": ratio >= EXPORT_RATIO_TARGET}
        result.rows.append(
            Row(
                f"{store} CSV export rows/s (baseline: raw loop)",
                "rows/s",
                raw["rows_per_s"],
                csv["rows_per_s"],
                delta=csv["rows_per_s"] - raw["rows_per_s"],
                ratio=ratio,
                **ratio_target,
            )
        )
        if CSV_SLICED in variants:
            sliced = variants[CSV_SLICED]
            result.rows.append(
                Row(
                    f"{store} CSV export rows/s, {OPENSEARCH_SLICES} slices (baseline: raw loop)",
                    "rows/s",
                    raw["rows_per_s"],
                    sliced["rows_per_s"],
                    delta=sliced["rows_per_s"] - raw["rows_per_s"],
                    ratio=sliced["rows_per_s"] / raw["rows_per_s"],
                    target=f">= {OPENSEARCH_SLICED_RATIO:g}x raw",
                    met=sliced["rows_per_s"] / raw["rows_per_s"] >= OPENSEARCH_SLICED_RATIO,
                )
            )
            result.rows.append(
                Row(
                    f"{store} sliced CSV export memory growth after the first 10% of rows, tracemalloc",
                    "MiB",
                    raw["traced_growth_after_tenth"] / MIB,
                    sliced["traced_growth_after_tenth"] / MIB,
                    target=f"constant: <= {FLAT_MIB:g} MiB",
                    met=sliced["traced_growth_after_tenth"] / MIB <= FLAT_MIB,
                )
            )
        result.rows.append(
            Row(
                f"{store} CSV export memory growth after the first 10% of rows, tracemalloc "
                "(baseline: raw loop)",
                "MiB",
                raw["traced_growth_after_tenth"] / MIB,
                csv["traced_growth_after_tenth"] / MIB,
                delta=(csv["traced_growth_after_tenth"] - raw["traced_growth_after_tenth"]) / MIB,
                target=f"constant: <= {FLAT_MIB:g} MiB",
                met=csv["traced_growth_after_tenth"] / MIB <= FLAT_MIB,
            )
        )

    # loading
    load_rows = []
    if "SQLite" in stores:
        load = stores["SQLite"]["load"]
        load_rows.append(
            [
                "SQLiteSink.load(): one transaction, indexes and FTS built after the rows",
                f"{load['inserted']:,}",
                f"{load['write_s']:.1f}",
                fmt(load["inserted"] / load["write_s"]),
                f"{fmt_bytes(load['db_bytes'])} (+ WAL {fmt_bytes(load['wal_bytes'])})",
                f"to_document()+JSON {load['encode_us']:.1f} µs/row of "
                f"{load['write_s'] / load['inserted'] * 1e6:.0f} µs",
            ]
        )
    if "OpenSearch" in stores:
        load = stores["OpenSearch"]["load"]
        load_rows.append(
            [
                f"_bulk create, {BULK_BATCH:,} per request, refresh off",
                f"{load['indexed']:,}",
                f"{load['send_s']:.1f} + refresh {load['refresh_s']:.1f}",
                fmt(load["indexed"] / (load["send_s"] + load["refresh_s"])),
                f"{fmt_bytes(load['store_bytes'])}, {load['segments']} segments",
                f"node took {load['bulk_took_s']:.0f} s, node CPU {load['node_cpu_s']:.0f} s",
            ]
        )
    generate = next(iter(stores.values()))["load"]["generate_s"] if stores else math.nan
    result.tables.append(
        Table(
            f"loading {count:,} records (generating them, not counted: {count / generate:,.0f}/s)",
            ["store", "records", "seconds", "records/s", "size", "where the time goes"],
            load_rows,
        )
    )

    slices = _slices(stores, count)
    if slices:
        result.tables.append(
            Table(
                "load rate as the stores grow (records/s within each tenth of the load)",
                ["records", *(f"{store} records/s" for store in stores)],
                slices,
            )
        )

    # first pages side by side
    names = list(stores)
    headers = ["case", "matches"]
    for store in names:
        headers += [f"{store} first", "p50", "p95"]
    if "OpenSearch" in stores:
        headers.append("OS node took p50")
    rows = []
    for case in [*search, *counts]:
        timings = [stores[s]["timings"][case.label] for s in names]
        matches = timings[0].matches
        row = [case.label, "-" if matches is None else f"{matches:,}"]
        for timing in timings:
            row += [fmt(timing.first), fmt(timing.p50), fmt(timing.p95)]
        if "OpenSearch" in stores:
            row.append(fmt(stores["OpenSearch"]["timings"][case.label].extra.get("took_ms")))
        rows.append(row)
    result.tables.append(
        Table(
            f"latency in ms, tenant {big!r} ({population.big.share:.0%} of the records), page of {PAGE_SIZE}",
            headers,
            rows,
        )
    )
    if "SQLite" in stores:
        result.tables.append(
            Table(
                "SQLite query plans (EXPLAIN QUERY PLAN, subqueries summarised) and VM steps of one run",
                ["case", "k steps", "plan"],
                [
                    [
                        case.label,
                        f"{stores['SQLite']['timings'][case.label].extra['vm_ksteps']:,}",
                        _short_plan(stores["SQLite"]["timings"][case.label].extra["plan"]),
                    ]
                    for case in [*search, *counts]
                ],
            )
        )

    # export
    export_rows = []
    for store, figures in stores.items():
        variants = figures["export"]
        raw_rate = next(v for name, v in variants.items() if name.startswith("raw"))["rows_per_s"]
        for name, v in variants.items():
            export_rows.append(
                [
                    f"{store}: {name}",
                    f"{v['rows']:,}",
                    f"{v['seconds']:.1f}",
                    fmt(v["rows_per_s"]),
                    f"{v['rows_per_s'] / raw_rate:.2f}x",
                    f"{v['cpu_s'] / max(v['rows'], 1) * 1e6:.0f}",
                    fmt_bytes(v["bytes"]) if v["bytes"] else "-",
                    fmt_bytes(v["peak_growth"]),
                    fmt_bytes(v["growth_after_tenth"]),
                    fmt_bytes(v.get("traced_peak")),
                    fmt_bytes(v.get("traced_growth_after_tenth")),
                ]
            )
    result.tables.append(
        Table(
            f"export of tenant {big!r}, {export.label.split(': ')[1]} (to a sink that only counts bytes)",
            [
                "variant",
                "rows",
                "seconds",
                "rows/s",
                "vs raw",
                "CPU µs/row",
                "output",
                "RSS peak +",
                "RSS + after 10%",
                "traced peak",
                "traced + after 10%",
            ],
            export_rows,
        )
    )

    # notes
    slow = [
        f"{store} {case.label} ({stores[store]['timings'][case.label].worst:.0f} ms)"
        for store in names
        for case in search
        if stores[store]["timings"][case.label].worst >= CLOSE_TO_BUDGET_MS
    ]
    result.notes.append(
        f"targets: SQLite first page and bounded count p95 <= {SQLITE_PAGE_TARGET_MS:g} ms; OpenSearch "
        "first page < 1 s" + (f"; at or above {CLOSE_TO_BUDGET_MS:.0f} ms: {', '.join(slow)}" if slow else "")
    )
    if len(names) == 2:
        lite, search_engine = stores["SQLite"]["timings"], stores["OpenSearch"]["timings"]
        differ = [c.label for c in search if lite[c.label].page_ids != search_engine[c.label].page_ids]
        counts_differ = [c.label for c in search if lite[c.label].matches != search_engine[c.label].matches]
        result.notes.append(
            "first pages identical in both stores (same events, same order)"
            if not differ
            else f"FIRST PAGES DIFFER between the stores: {', '.join(differ)}"
        )
        if counts_differ:
            result.notes.append(f"MATCH COUNTS DIFFER between the stores: {', '.join(counts_differ)}")
    result.notes += [
        f"{count:,} records over {DAYS} days, {len(population.tenants)} tenants, "
        f"{sum(len(t.users) for t in population.tenants):,} users, seed {SEED}; queries on {big!r}; "
        f"user = {result.settings['typical_user']}, rare user = {result.settings['rare_user']}",
        "p50/p95 over the warm runs (cases taking turns); 'first' is each case's first run after the load",
        "export memory: RSS during the timed run (freed memory from the load is reused, so RSS alone "
        "understates growth); 'traced' columns come from a second run under tracemalloc: the peak is "
        "the working set of one batch (1,000 rows), the growth after the first 10% shows whether it "
        "grows with the rows",
        "the OpenSearch node and this process share the machine's cores; the node's heap is its own setting",
    ]
    result.data = {
        store: {
            "load": figures["load"],
            "timings": {
                label: {
                    "first_ms": t.first,
                    "runs_ms": t.runs,
                    "p50_ms": t.p50,
                    "p95_ms": t.p95,
                    "hits": t.hits,
                    "matches": t.matches,
                    **t.extra,
                }
                for label, t in figures["timings"].items()
            },
            "export": figures["export"],
        }
        for store, figures in stores.items()
    }


# -- running it directly ------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _environment(settings: Settings, records: int) -> dict[str, Any]:
    versions = {package: _version(package) for package in ("audit-middleware", "opensearch-py", "orjson")}
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "quick": settings.quick,
        "records": records,
        "opensearch_url": settings.opensearch_url,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.query_stores [--records N] [--quick]``: this benchmark alone."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.query_stores", description=(__doc__ or NAME).splitlines()[0]
    )
    parser.add_argument("--records", type=int, help="records to load (default 1,000,000; --quick 100,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 records and 10 runs per case")
    parser.add_argument(
        "--one-tenant",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"every record in one tenant (default: from {ONE_TENANT_FROM:,} records on)",
    )
    parser.add_argument(
        "--export-days", type=int, default=30, help="the export case's date range, in days (default 30)"
    )
    parser.add_argument(
        "--stores", choices=("both", "sqlite", "opensearch"), default="both", help="which stores to load"
    )
    parser.add_argument(
        "--opensearch-url", default=DEFAULT_OPENSEARCH_URL, help="the local node (loopback only)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where the JSON goes",
    )
    args = parser.parse_args(argv)
    settings = Settings(quick=args.quick, opensearch_url=require_loopback(args.opensearch_url))
    records = record_count(settings, args.records)
    environment = _environment(settings, records)
    print(
        f"audit-middleware benchmark {NAME} ({records:,} records): Python {environment['python']}, "
        f"SQLite {environment['sqlite']}, {environment['cores']} cores, {environment['platform']}",
        flush=True,
    )
    external = None
    if args.stores != "sqlite" and unavailable(settings.opensearch_url) is None:
        client = plain_client(settings.opensearch_url)

        def external() -> float:
            return node_cpu_seconds(client)

    monitor = LoadMonitor(external)
    monitor.start()
    started = time.monotonic()
    try:
        wanted = STORES if args.stores == "both" else tuple(s for s in STORES if s.lower() == args.stores)
        result = run(
            settings, records, stores_wanted=wanted, one_tenant=args.one_tenant, export_days=args.export_days
        )
    except OpenSearchException as exc:
        result = Result(NAME, "failed", skipped=f"failed: {type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - started
    result.load = monitor.stop()
    print(render(result), flush=True)
    print("\n== Markdown (for the README)\n")
    print(markdown([result]))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"{stamp}-{NAME}{'-quick' if args.quick else ''}.json"
    payload = {"created": stamp, "environment": environment, "results": [result.to_json()]}
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
