"""Scenarios that wait on the cluster's own clocks, started together when the session starts.

ISM acts once per job interval (1 minute) and a monitor runs once a minute, so a
retention run takes about 7 minutes and an alert about 1. Run one after the other, and
after the rest of the suite, they would add up; so ``tests/integration/conftest.py``
starts every scenario the selected tests need as soon as collection ends, each in a
thread of its own, and the tests that check them run last and wait only for what is
left. Each scenario records its milestones (seconds after it started); the session
summary prints them, and so does ``docs/retention-and-alerts.md``.

Events are built here and handed to the real sink through the real processing stage
(``sinks.delivery.deliver``, what ``record()`` does once an event is built): ``record()``
itself would send them to whichever configuration the test running at that moment
installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from audit_middleware import Actor, Resource, Scope, diff
from audit_middleware.env import spool_dir
from audit_middleware.model.actions import CATALOG
from audit_middleware.model.alerts import apply_overrides, default_rules
from audit_middleware.model.event import AuditEvent, RequestFacts
from audit_middleware.model.ids import uuid7
from audit_middleware.opensearch import archive
from audit_middleware.opensearch.connection import ConnectionSettings
from audit_middleware.opensearch.monitors import MONITORS, monitor_name
from audit_middleware.opensearch.provisioning import SetupConfig, apply
from audit_middleware.opensearch.retention import RetentionTier
from audit_middleware.processing.redaction import Redactor
from audit_middleware.query.model import AuditQuery
from audit_middleware.query.opensearch_store import OpenSearchStore, OpenSearchStoreError
from audit_middleware.sinks.delivery import deliver
from audit_middleware.sinks.opensearch.shipper import ShipperOptions
from audit_middleware.sinks.opensearch.sink import OpenSearchSink
from audit_middleware.sinks.opensearch.spool import Spool
from tests.integration.layout import path_repo, remove_layout, remove_repository

ROOT = Path(__file__).resolve().parents[2]
NODE_SCRIPT = ROOT / "opensearch-local" / "node.py"
FAST = ShipperOptions(flush_interval=0.1, backoff_base=0.05, backoff_max=0.5, request_timeout=5.0)


def load_node_module() -> Any:
    """``opensearch-local/node.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("opensearch_local_node", NODE_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("opensearch_local_node", module)
    spec.loader.exec_module(module)
    return module


def make_event(
    action: str,
    *,
    actor: Actor,
    tenant: str,
    ip: str | None = None,
    resource: Resource | None = None,
    targets: Iterable[Resource] = (),
    changes: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """An event as ``record()`` builds it, at this moment."""
    now = time.time_ns() // 1_000_000
    return AuditEvent(
        id=uuid7(now),
        unix_ms=now,
        action=CATALOG.get(action),
        actor=actor,
        outcome=CATALOG.get(action).default_outcome,  # type: ignore[arg-type]
        resource=resource,
        targets=tuple(targets),
        changes=changes,
        details=details or {},
        tenant=Scope(tenant),
        request=RequestFacts(method="POST", path="/", client_ip=ip, user_agent="pytest") if ip else None,
    )


def send(sink: OpenSearchSink, events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Deliver ``events`` through the processing stage into ``sink`` and wait until they are stored."""
    sent = list(events)
    for event in sent:
        deliver(event, sink, Redactor())
    assert sink.flush(60), "the sink did not deliver within 60 s"
    return sent


@dataclass
class Milestones:
    """Named moments of one scenario, in seconds after it started; tests wait for them."""

    name: str
    started: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: str | None = None
    done: bool = False
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Figures for the session summary (counts, durations)."""
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def mark(self, milestone: str, **info: Any) -> None:
        with self._cond:
            if milestone not in self.seen:
                self.seen[milestone] = round(time.monotonic() - self.started, 1)
                self.info[milestone] = info
            self._cond.notify_all()

    def note(self, what: str, **figures: Any) -> None:
        self.notes[what] = figures

    def fail(self, message: str) -> None:
        with self._cond:
            self.failure = message
            self.done = True
            self._cond.notify_all()

    def finish(self) -> None:
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def wait(self, milestone: str, timeout: float) -> dict[str, Any]:
        """The milestone's info once reached; AssertionError if the scenario failed or time ran out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while milestone not in self.seen:
                if self.failure is not None:
                    raise AssertionError(f"scenario {self.name} failed before {milestone!r}: {self.failure}")
                if self.done:
                    raise AssertionError(f"scenario {self.name} ended without reaching {milestone!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"scenario {self.name}: {milestone!r} not reached within {timeout:.0f} s "
                        f"(reached so far: {self.seen})"
                    )
                self._cond.wait(min(remaining, 1.0))
            return self.info[milestone]

    def at(self, milestone: str) -> float:
        """Seconds after the start at which ``milestone`` was reached."""
        return self.seen[milestone]


class Scenario:
    """A background job: ``run`` in a thread, milestones marked, cleaned up at session end."""

    name = "scenario"

    def __init__(self) -> None:
        self.milestones = Milestones(self.name)
        self._thread: threading.Thread | None = None
        self.stop = threading.Event()

    def start(self) -> Scenario:
        self.milestones = Milestones(self.name)
        self._thread = threading.Thread(target=self._guarded, name=f"scenario-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self.run()
            self.milestones.finish()
        except Exception:  # noqa: BLE001 - reported to the tests that wait on it
            self.milestones.fail(traceback.format_exc(limit=8))

    def run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def poll(self, condition: Callable[[], bool], timeout: float, every: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            if condition():
                return True
            self.stop.wait(every)
        return False


class NodeScenario(Scenario):
    """A scenario on the local node, under a prefix of its own, with a state folder for its sinks."""

    def __init__(self, client: OpenSearch, url: str, stem: str) -> None:
        super().__init__()
        self.client = client
        self.url = url
        self.prefix = f"{stem}-{secrets.token_hex(4)}"
        self.state = Path(tempfile.mkdtemp(prefix=f"audit-{self.name}-"))

    def close(self) -> None:
        super().close()
        remove_layout(self.client, self.prefix)
        shutil.rmtree(self.state, ignore_errors=True)


# -- retention on the real engine ----------------------------------------------------------


def _backing(client: OpenSearch, stream: str) -> list[str]:
    found = client.indices.get_data_stream(name=stream)["data_streams"]
    return [index["index_name"] for index in found[0]["indices"]] if found else []


class RetentionScenario(NodeScenario):
    """Both tiers with accelerated policies (minutes), built by the same code as the real ones.

    standard: roll over at 1 minute of age; extended: roll over at 50 kb per primary
    shard (its records are bulky), age limit 1 day. Both: snapshot, then delete, once an
    index is 2 (standard) or 3 (extended) minutes old. Each tier's first backing index is
    followed through rollover, snapshot and deletion; the standard one is then restored.
    Between its rollover and its deletion, spools left by a "dead process" are replayed
    into the stream, with and without the check before re-sending.
    """

    name = "retention"

    def __init__(self, client: OpenSearch, url: str) -> None:
        super().__init__(client, url, "ret")
        self.repository = f"{self.prefix}-archive"
        self.first: dict[str, str] = {}
        self.kept: list[AuditEvent] = []
        self.bulky: list[AuditEvent] = []
        self.replayed: dict[str, list[AuditEvent]] = {}

    def config(self) -> SetupConfig:
        tiers = (
            RetentionTier(
                "standard", 0, rollover_max_age="1m", delete_after="2m", snapshot_repository=self.repository
            ),
            RetentionTier(
                "extended",
                0,
                rollover_max_age="1d",
                rollover_max_size="50kb",
                delete_after="3m",
                snapshot_repository=self.repository,
            ),
        )
        location = str(path_repo(self.client) / self.prefix)
        return SetupConfig(
            prefix=self.prefix, tiers=tiers, replicas=0, snapshot_location=location, alert_rules=()
        )

    def sink(self, state: str, **options: Any) -> OpenSearchSink:
        settings = ConnectionSettings(urls=(self.url,), prefix=self.prefix, timeout=10.0)
        router = self.config().router(tenant_tiers={"bigcorp": "extended"})
        shipper = dataclasses.replace(FAST, **options)
        return OpenSearchSink(settings=settings, router=router, state_dir=self.state / state, options=shipper)

    def run(self) -> None:
        config = self.config()
        self.setup_results = apply(self.client, config)
        self.milestones.mark("setup", steps=[str(result) for result in self.setup_results])
        for stream in config.data_streams:
            self.first[stream.rsplit("-", 1)[1]] = _backing(self.client, stream)[0]
        sink = self.sink("writer")
        try:
            self.kept = send(sink, (self._pod_update(n) for n in range(20)))
            self.replayed = {
                which: send(sink, (self._pod_create(f"{which}-{n}") for n in range(10)))
                for which in ("checked", "unchecked")
            }
            self.bulky = send(sink, (self._bulky_update(n) for n in range(300)))
        finally:
            sink.close(10)
        self.client.indices.refresh(index=f"{self.prefix}-*")
        self.milestones.mark("written", records={"standard": 40, "extended": 300})
        self._follow(config)

    @staticmethod
    def _pod_update(n: int) -> AuditEvent:
        resource = Resource("pod", f"p-{n}", f"web-{n}")
        return make_event("update", actor=Actor(email="ann@acme.example"), tenant="acme", resource=resource)

    @staticmethod
    def _pod_create(pod: str) -> AuditEvent:
        actor = Actor(email="rep@acme.example")
        return make_event("create", actor=actor, tenant="replay", resource=Resource("pod", pod))

    @staticmethod
    def _bulky_update(n: int) -> AuditEvent:
        details = {"blob": secrets.token_hex(400)}  # random: the shard grows past the rollover size
        actor = Actor(email="bo@bigcorp.example")
        return make_event(
            "update", actor=actor, tenant="bigcorp", resource=Resource("vm", f"vm-{n}"), details=details
        )

    def _follow(self, config: SetupConfig) -> None:
        snapshots: dict[str, str] = {}

        def step() -> bool:
            for tier, first in self.first.items():
                stream = f"{self.prefix}-{tier}"
                explained = self.client.transport.perform_request("GET", f"/_plugins/_ism/explain/{stream}")
                state = explained.get(first) or {}
                if state.get("index.plugins.index_state_management.policy_id"):
                    self.milestones.mark(f"{tier}:managed")
                if (state.get("state") or {}).get("name"):
                    self.milestones.mark(f"{tier}:initialized", state=state["state"]["name"])
                backing = _backing(self.client, stream)
                if len(backing) >= 2 or first not in backing:
                    self.milestones.mark(f"{tier}:rolled_over", backing=backing, info=state.get("info"))
                found = self.client.snapshot.get(repository=self.repository, snapshot="_all")["snapshots"]
                done = [s for s in found if first in s.get("indices", ()) and s.get("state") == "SUCCESS"]
                if done:
                    snapshots[tier] = done[0]["snapshot"]
                    self.milestones.mark(f"{tier}:snapshot", snapshot=done[0]["snapshot"])
                if first not in backing:
                    self.milestones.mark(
                        f"{tier}:deleted", snapshot_taken=f"{tier}:snapshot" in self.milestones.seen
                    )
            if "standard:rolled_over" in self.milestones.seen and "replay" not in self.milestones.seen:
                self._replay_after_rollover()
            if "standard:deleted" in self.milestones.seen and "standard:restored" not in self.milestones.seen:
                self._restore(snapshots["standard"])
            return all(f"{tier}:deleted" in self.milestones.seen for tier in self.first) and (
                "standard:restored" in self.milestones.seen
            )

        if not self.poll(step, timeout=15 * 60, every=3.0):
            raise AssertionError(f"retention did not complete within 15 minutes: {self.milestones.seen}")

    def _replay_after_rollover(self) -> None:
        """A dead process's spool holding delivered records, replayed after the stream rolled over."""
        counts = {}
        for which, check in (("checked", True), ("unchecked", False)):
            events = self.replayed[which]
            orphan = Spool(spool_dir(self.state / f"orphan-{which}"))
            writer = self.sink("payloads")
            orphan.append([writer.encode(event).spool_payload() for event in events], durable=True)
            orphan.close()  # its lock is released, as the kernel does when a process dies
            successor = self.sink(f"orphan-{which}", check_before_resend=check)
            # the next process to start records something, and adopts the dead one's spool
            send(successor, [make_event("login", actor=Actor(email="next@acme.example"), tenant="replay")])
            status = successor.status()
            successor.close(10)
            self.client.indices.refresh(index=f"{self.prefix}-standard")
            hits = self.client.search(
                index=f"{self.prefix}-standard",
                body={
                    "size": 100,
                    "query": {"ids": {"values": [event.id for event in events]}},
                    "_source": False,
                },
            )["hits"]["hits"]
            counts[which] = {
                "records": len(events),
                "stored_copies": len(hits),
                "duplicates": len(hits) - len({hit["_id"] for hit in hits}),
                "indices": sorted({hit["_index"] for hit in hits}),
                "already_stored": status["already_stored"],
            }
        self.milestones.mark("replay", **counts)
        self.milestones.note(
            "rollover replay",
            **{
                f"{which}_{key}": counts[which][key]
                for which in counts
                for key in ("records", "stored_copies", "duplicates")
            },
        )

    def _restore(self, snapshot: str) -> None:
        """Restore the deleted index (the library call `archive restore` makes) and read it back.

        No CliRunner here: it swaps sys.stdout for the whole process, and the main thread
        runs other tests meanwhile; the tests run the commands themselves.
        """
        started = time.monotonic()
        names = archive.restore(self.client, self.repository, snapshot)
        seconds = round(time.monotonic() - started, 1)
        self.milestones.note("restore", seconds=seconds, snapshot=snapshot)
        query = AuditQuery.build("acme", page_size=500)
        with_restored = OpenSearchStore(self.client, prefix=self.prefix, include_restored=True)
        live = OpenSearchStore(self.client, prefix=self.prefix)
        self.milestones.mark(
            "standard:restored",
            seconds=seconds,
            names=names,
            restored_ids=_ids_racing_retention(with_restored, query),
            live_ids=_ids_racing_retention(live, query),
            restored_get=with_restored.get("acme", self.kept[0].id) is not None,
        )

    def close(self) -> None:
        super().close()
        remove_repository(self.client, self.repository)


def _ids_racing_retention(store: OpenSearchStore, query: AuditQuery, attempts: int = 3) -> list[str]:
    """The sorted ids ``query`` finds, read again when ISM deleted an index during the read.

    The extended tier's index is deleted on its own schedule, possibly while this reads
    it: the store then refuses the partial answer (search context missing), as it must,
    and says to retry.
    """
    for attempt in range(1, attempts + 1):
        try:
            return sorted(event.id for event in store.iterate(query))
        except OpenSearchStoreError as exc:  # noqa: PERF203 - a few reads of a racing index
            if attempt == attempts or "search_context_missing" not in str(exc):
                raise
    raise AssertionError("unreachable")


# -- alert monitors on their schedule ----------------------------------------------------


class AlertScenario(NodeScenario):
    """The five monitors of the four alerts, installed by setup, fed by the real sink.

    Thresholds: 3 failed logins (per user, per IP) and 20 deleted targets, in two hours.
    Tenant ``acme`` crosses every threshold; tenant ``globex`` has the same user and IP
    below the threshold, and must raise nothing. Once every alert is ACTIVE, setup runs
    again with another failed-login threshold, and the alerts must survive the update.
    """

    name = "alerts"

    def __init__(self, client: OpenSearch, url: str) -> None:
        super().__init__(client, url, "alr")
        self.events: dict[str, list[AuditEvent]] = {}

    WINDOW = "2h"

    def config(self, failed_logins: int = 3) -> SetupConfig:
        # Windows of two hours: the alerts stay ACTIVE however late in a long suite the tests
        # that read them run (with 10 minutes they complete once the events are older).
        windows = [(rule.id, None, self.WINDOW) for rule in default_rules()]
        rules = apply_overrides(
            default_rules(),
            [
                *windows,
                ("failed_logins_per_user", failed_logins, None),
                ("failed_logins_per_ip", failed_logins, None),
            ],
        )
        return SetupConfig(prefix=self.prefix, replicas=0, alert_rules=rules)

    def run(self) -> None:
        results = apply(self.client, self.config())
        self.milestones.mark("setup", steps=[str(result) for result in results])
        settings = ConnectionSettings(urls=(self.url,), prefix=self.prefix, timeout=10.0)
        sink = OpenSearchSink(settings=settings, state_dir=self.state, options=FAST)
        try:
            self.events = {name: send(sink, events) for name, events in self._events().items()}
        finally:
            sink.close(10)
        self.milestones.mark("sent")
        rules = [rule.id for rule in self.config().alert_rules]

        def all_active() -> bool:
            for rule in rules:
                alerts = self.alerts(rule)
                if alerts:
                    self.milestones.mark(f"{rule}:active", alerts=alerts)
            return all(f"{rule}:active" in self.milestones.seen for rule in rules)

        if not self.poll(all_active, timeout=6 * 60, every=3.0):
            raise AssertionError(f"not every alert became ACTIVE within 6 minutes: {self.milestones.seen}")
        before = {alert["id"]: int(alert["version"]) for alert in self.alerts("failed_logins_per_user")}
        updated = apply(self.client, self.config(failed_logins=4))
        self.milestones.mark("updated", steps=[str(result) for result in updated], alert_ids=sorted(before))

        def ran_again() -> bool:
            # the monitor ran since the update: an alert it kept has a newer version, or it
            # deleted them (a new trigger id) and raised others
            for alert in self.alerts("failed_logins_per_user", state="ALL"):
                if alert["state"] == "DELETED" or alert["id"] not in before:
                    return True
                if int(alert["version"]) > before[alert["id"]]:
                    return True
            return False

        self.poll(ran_again, timeout=3 * 60, every=3.0)
        after = self.alerts("failed_logins_per_user", state="ALL")
        (trigger,) = self.monitor("failed_logins_per_user")["monitor"]["triggers"]
        self.milestones.mark(
            "kept",
            active_ids=sorted(a["id"] for a in after if a["state"] == "ACTIVE"),
            deleted_ids=sorted(a["id"] for a in after if a["state"] == "DELETED"),
            alert_triggers=sorted({a["trigger_id"] for a in after}),
            trigger_id=trigger["bucket_level_trigger"]["id"],
            trigger_name=trigger["bucket_level_trigger"]["name"],
        )

    @staticmethod
    def _events() -> dict[str, list[AuditEvent]]:
        mallory = Actor(name="mallory")
        grant = diff({"roles": ["viewer"]}, {"roles": ["viewer", "admin"]})
        return {
            "logins": [
                make_event("login_failed", actor=mallory, tenant="acme", ip="203.0.113.7") for _ in range(4)
            ],
            "other_tenant": [
                make_event("login_failed", actor=mallory, tenant="globex", ip="203.0.113.7") for _ in range(2)
            ],
            "bulk_delete": [
                make_event(
                    "delete",
                    actor=Actor(id="u-7", email="dora@acme.example"),
                    tenant="acme",
                    targets=[Resource("pod", f"p-{n}") for n in range(25)],
                )
            ],
            "grant": [
                make_event(
                    "permissions_changed",
                    actor=Actor(email="root@acme.example"),
                    tenant="acme",
                    resource=Resource("member", "u-9", "bob"),
                    changes=grant,
                )
            ],
            "token": [
                make_event(
                    "token_created",
                    actor=Actor(email="tom@acme.example"),
                    tenant="acme",
                    resource=Resource("api_token", "tok-1", "ci deploy"),
                )
            ],
        }

    def monitor(self, rule: str) -> dict[str, Any]:
        name = monitor_name(self.prefix, rule)
        body = {"query": {"term": {"monitor.name.keyword": name}}}
        (hit,) = self.client.transport.perform_request("POST", f"{MONITORS}/_search", body=body)["hits"][
            "hits"
        ]
        monitor: dict[str, Any] = self.client.transport.perform_request("GET", f"{MONITORS}/{hit['_id']}")
        return monitor

    def alerts(self, rule: str, state: str = "ACTIVE") -> list[dict[str, Any]]:
        monitor_id = self.monitor(rule)["_id"]
        answer = self.client.transport.perform_request(
            "GET", f"{MONITORS}/alerts", params={"monitorId": monitor_id, "alertState": state, "size": 100}
        )
        return list(answer.get("alerts") or [])


# -- other nodes -------------------------------------------------------------------------------


class PlainNodeScenario(Scenario):
    """A second single node without the ISM and Alerting plugins, for setup's no-plugin behaviour.

    Its install is assembled once (from the same Maven cache) under ``<home>/without-plugins``.
    """

    name = "plain-node"

    def __init__(self, home: Path, port: int) -> None:
        super().__init__()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.node_dir = Path(tempfile.mkdtemp(prefix="audit-plain-node-"))
        self.env = {
            **os.environ,
            "AUDIT_OPENSEARCH_HOME": str(home / "without-plugins"),
            "AUDIT_OPENSEARCH_PLUGINS_DIR": "",
            "AUDIT_OPENSEARCH_PORT": str(port),
            "AUDIT_OPENSEARCH_NODE_DIR": str(self.node_dir),
            "AUDIT_OPENSEARCH_HEAP": "512m",
        }

    def run(self) -> None:
        result = subprocess.run(
            [sys.executable, str(NODE_SCRIPT), "start"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"the node without plugins did not start: {result.stderr[-2000:]}")
        self.milestones.mark("up", log=result.stderr[-500:])

    def close(self) -> None:
        super().close()
        subprocess.run(
            [sys.executable, str(NODE_SCRIPT), "stop"], env=self.env, capture_output=True, check=False
        )
        shutil.rmtree(self.node_dir, ignore_errors=True)


class ClusterScenario(Scenario):
    """The local three-node cluster (``node.py cluster``), started in the background."""

    name = "cluster"

    def __init__(self) -> None:
        super().__init__()
        self.node = load_node_module()
        self.layout: list[Any] = []

    def run(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.layout = self.node.cluster_start(nodes=3)
        self.milestones.mark("green", urls=[node.url for node in self.layout])

    def close(self) -> None:
        super().close()
        self.node.cluster_wipe()
