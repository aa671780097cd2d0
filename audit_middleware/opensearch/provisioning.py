"""Install the audit layout in OpenSearch, idempotently: retention, templates, streams, alerts.

``plan()`` compares what the cluster holds with what this version wants and returns
one ``Step`` per object, each saying whether applying it will create, update, remove or
leave it unchanged; ``apply()`` carries the plan out. The order matters:

1. the snapshot repository, when asked to register one (``snapshot_location``);
2. ISM policies (one per retention tier): ISM attaches a policy through its
   ``ism_template`` only to indices created after the policy, so they come first;
3. the component template (settings and mappings), then the index template using it;
4. the data streams (one per tier), whose first backing indices the policies manage;
   for streams that already existed, fields the template gained since are added to
   their mappings (a template applies only to backing indices created after it), so
   new records are searchable by them before the next rollover;
   a stream whose write index lacks a setting an index takes only at creation (the
   index sort, the shard count: ``templates.CREATION_SETTINGS``) is rolled over, so its
   next backing index, made from the updated template, has it (the older indices keep
   theirs until retention deletes them);
5. ISM attachments: each stream's backing indices carry the tier's policy, at its
   current version (a new stream's first index is checked too, so that setup returns
   only once retention is really managed);
6. the alert monitors (``monitors``), with their notification channel if one is set.

Without the ISM plugin nothing would ever roll over or delete the data: that is an
error unless ``require_ism=False``, which installs the rest and warns
(``RetentionNotManagedWarning``). Without the Alerting plugin the monitors are left out
with an ``AlertsNotInstalledWarning``.

This module is long because planning and applying each kind of object (policies,
templates, streams, attachments) share one idempotency rule and one error translation.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import NotFoundError, OpenSearch, TransportError

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.alerts import AlertRule, default_rules
from audit_middleware.opensearch import errors, monitors
from audit_middleware.opensearch.archive import plan_repository
from audit_middleware.opensearch.chains import build_checkpoints_template, checkpoints_template_name
from audit_middleware.opensearch.retention import RetentionTier, build_policy, default_tiers, policy_id
from audit_middleware.opensearch.steps import (
    SetupError,
    Status,
    Step,
    StepResult,
    contains,
    explained,
    get_or_none,
    has_plugin,
)
from audit_middleware.opensearch.templates import (
    CREATION_SETTINGS,
    build_component_template,
    build_index_template,
    build_mappings,
    component_template_name,
    flatten,
    index_template_name,
)
from audit_middleware.opensearch.tiers import (
    DEFAULT_PREFIX,
    STANDARD_TIER,
    TierCallback,
    TierRouter,
    data_stream_name,
    validate_name,
)

__all__ = [
    "ISM_PLUGIN",
    "AlertsNotInstalledWarning",
    "RetentionNotManagedWarning",
    "SetupConfig",
    "SetupError",
    "Status",
    "Step",
    "StepResult",
    "apply",
    "ism_installed",
    "plan",
]

ISM_PLUGIN = "opensearch-index-management"
_POLICY_ID_KEY = "index.plugins.index_state_management.policy_id"
_LEGACY_POLICY_ID_KEY = "index.opendistro.index_state_management.policy_id"
# Index names per ISM request, so a stream with hundreds of backing indices stays under URL limits.
_INDICES_PER_REQUEST = 50
_ATTACH_WAIT = 30.0  # seconds setup waits for explain to show a new stream's policy


class RetentionNotManagedWarning(UserWarning):
    """The cluster has no ISM plugin: audit data is never rolled over or deleted."""


class AlertsNotInstalledWarning(UserWarning):
    """The cluster has no Alerting plugin: the alert monitors were not installed."""


@dataclass(frozen=True)
class SetupConfig:
    """What to install: names, retention tiers, shard and replica counts, alert monitors.

    ``replicas=None`` leaves the replica count to the cluster's default. With
    ``require_ism=False`` a cluster without the ISM plugin gets everything except
    the retention policies, and a ``RetentionNotManagedWarning``.

    ``snapshot_location`` registers the tiers' snapshot repository as an ``fs``
    repository there (a path under the nodes' ``path.repo``); without it the repository
    must be registered already.

    ``alert_rules`` become monitors (``monitors``); monitors of ours whose rule is no
    longer listed are removed, unless ``manage_alerts=False`` (then setup leaves every
    monitor as it is). ``alert_webhook`` (a URL) creates a Notifications webhook channel
    and ``alert_channel`` names an existing one; either needs the Notifications plugin.
    """

    prefix: str = DEFAULT_PREFIX
    tiers: tuple[RetentionTier, ...] = field(default_factory=default_tiers)
    shards: int = 1
    replicas: int | None = 1
    require_ism: bool = True
    snapshot_location: str | None = None
    alert_rules: tuple[AlertRule, ...] = field(default_factory=default_rules)
    manage_alerts: bool = True
    alert_webhook: str | None = None
    alert_channel: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.prefix, "prefix")
        object.__setattr__(self, "tiers", tuple(self.tiers))
        object.__setattr__(self, "alert_rules", tuple(self.alert_rules))
        rule_ids = [rule.id for rule in self.alert_rules]
        if len(set(rule_ids)) != len(rule_ids):
            raise AuditValidationError(f"alert rule ids must be unique, got {rule_ids}")
        if self.alert_webhook is not None and self.alert_channel is not None:
            raise AuditValidationError("give either an alert webhook or an alert channel, not both")
        if not self.manage_alerts and (self.alert_webhook is not None or self.alert_channel is not None):
            raise AuditValidationError(
                "an alert webhook or channel needs the alert monitors (not --no-alerts)"
            )
        if self.alert_webhook is not None and not self.alert_webhook.startswith(("https://", "http://")):
            raise AuditValidationError(f"alert webhook {self.alert_webhook!r} must be an http(s) URL")
        if self.snapshot_location is not None and len(self.snapshot_repositories) != 1:
            raise AuditValidationError(
                "a snapshot location registers one repository: give the tiers one snapshot repository"
            )
        names = [tier.name for tier in self.tiers]
        if not names:
            raise AuditValidationError("at least one retention tier is needed")
        if len(set(names)) != len(names):
            raise AuditValidationError(f"tier names must be unique, got {names}")
        if self.shards < 1:
            raise AuditValidationError(f"shards must be at least 1, not {self.shards}")
        if self.replicas is not None and self.replicas < 0:
            raise AuditValidationError(f"replicas must be 0 or more, not {self.replicas}")

    @property
    def snapshot_repositories(self) -> tuple[str, ...]:
        """The snapshot repositories the tiers archive to (none without archiving)."""
        return tuple(sorted({tier.snapshot_repository for tier in self.tiers if tier.snapshot_repository}))

    @property
    def data_streams(self) -> tuple[str, ...]:
        """The data streams setup creates, one per tier, e.g. ``("audit-standard", "audit-extended")``."""
        return tuple(data_stream_name(self.prefix, tier.name) for tier in self.tiers)

    def router(
        self,
        *,
        tenant_tiers: Mapping[str, str] | None = None,
        callback: TierCallback | None = None,
        default_tier: str = STANDARD_TIER,
    ) -> TierRouter:
        """A ``TierRouter`` over exactly these tiers and data streams."""
        return TierRouter(
            prefix=self.prefix,
            tiers=[tier.name for tier in self.tiers],
            tenant_tiers=tenant_tiers,
            callback=callback,
            default_tier=default_tier,
        )


def _setting_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_setting_text(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Settings as OpenSearch compares them: dotted ``index.*`` keys, values as strings."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_settings(value, f"{name}."))
        else:
            flat[name if name.startswith("index.") else f"index.{name}"] = _setting_text(value)
    return flat


def _component_template_matches(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    template = stored.get("template", {})
    return (
        stored.get("version") == desired["version"]
        and stored.get("_meta") == desired["_meta"]
        and template.get("mappings") == desired["template"]["mappings"]
        and _flat_settings(template.get("settings", {})) == _flat_settings(desired["template"]["settings"])
        and not template.get("aliases")
    )


def _index_template_matches(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    # An inline "template" would override the component template's settings and mappings.
    return contains(stored, desired) and not stored.get("template")


def ism_installed(client: OpenSearch) -> bool:
    """Whether the cluster runs the Index State Management plugin."""
    return has_plugin(client, ISM_PLUGIN)


def _no_ism_message(client: OpenSearch) -> str:
    return (
        f"OpenSearch at {errors.where(client)} has no Index State Management plugin ({ISM_PLUGIN}), "
        "so audit retention (rollover, snapshot, delete after N days) would not be managed and "
        "records would be kept until deleted by hand"
    )


def _plan_snapshot_repositories(client: OpenSearch, config: SetupConfig) -> list[Step]:
    """Register the repository when given a location; else check that each one exists.

    An ISM snapshot action to a missing repository fails months later and blocks the delete.
    """
    if config.snapshot_location is not None:
        (repository,) = config.snapshot_repositories
        return [plan_repository(client, repository, config.snapshot_location)]
    for repository in config.snapshot_repositories:
        with explained(client, f"read snapshot repository {repository}"):
            try:
                client.snapshot.get_repository(repository=repository)
            except NotFoundError:
                raise SetupError(
                    f"snapshot repository {repository!r} is not registered on the cluster: register it "
                    f"(PUT _snapshot/{repository}), or give setup --snapshot-location PATH, "
                    "or leave the snapshot repository out"
                ) from None
    return []


def _plan_policy(client: OpenSearch, prefix: str, tier: RetentionTier) -> tuple[Step, int | None]:
    """The step for one tier's policy, and the policy's current ``_seq_no`` (``None``: absent)."""
    pid = policy_id(prefix, tier.name)
    path = f"/_plugins/_ism/policies/{pid}"
    desired = build_policy(prefix, tier)
    stored = get_or_none(
        client, f"read ISM policy {pid}", lambda: client.transport.perform_request("GET", path)
    )

    def put(status: Status, params: dict[str, Any] | None = None) -> Callable[[], Status]:
        def run() -> Status:
            verb = "create" if status == "created" else "update"
            with explained(client, f"{verb} ISM policy {pid}"):
                errors.retry_while_plugin_index_starts(
                    lambda: client.transport.perform_request("PUT", path, params=params, body=desired)
                )
            return status

        return run

    if stored is None:
        return Step("ism policy", pid, "created", run=put("created")), None
    seq_no, primary_term = stored["_seq_no"], stored["_primary_term"]
    if contains(stored.get("policy"), desired["policy"]):
        return Step("ism policy", pid, "unchanged"), seq_no
    # Optimistic concurrency: the update fails if the policy changed since we read it.
    params = {"if_seq_no": seq_no, "if_primary_term": primary_term}
    return Step("ism policy", pid, "updated", run=put("updated", params)), seq_no


def _plan_template(
    client: OpenSearch,
    kind: str,
    name: str,
    desired: Mapping[str, Any],
    *,
    read: Callable[[], Any],
    write: Callable[[], Any],
    stored_of: Callable[[Any], Mapping[str, Any]],
    matches: Callable[[Mapping[str, Any], Mapping[str, Any]], bool],
) -> Step:
    """Create, update or leave one template, comparing what is stored with ``desired``."""
    found = get_or_none(client, f"read {kind} {name}", read)

    def run() -> Status:
        with explained(client, f"write {kind} {name}"):
            write()
        return "created" if found is None else "updated"

    if found is None:
        return Step(kind, name, "created", run=run)
    stored = stored_of(found)
    if matches(stored, desired):
        return Step(kind, name, "unchanged")
    return Step(kind, name, "updated", _revision_detail(stored, desired), run=run)


def _plan_component_template(client: OpenSearch, config: SetupConfig) -> Step:
    name = component_template_name(config.prefix)
    desired = build_component_template(shards=config.shards, replicas=config.replicas)
    return _plan_template(
        client,
        "component template",
        name,
        desired,
        read=lambda: client.cluster.get_component_template(name=name),
        write=lambda: client.cluster.put_component_template(name=name, body=desired),
        stored_of=lambda found: found["component_templates"][0]["component_template"],
        matches=_component_template_matches,
    )


def _plan_index_template(client: OpenSearch, config: SetupConfig) -> Step:
    return _plan_named_index_template(
        client,
        index_template_name(config.prefix),
        build_index_template(config.prefix),
        _index_template_matches,
    )


def _plan_checkpoints_template(client: OpenSearch, config: SetupConfig) -> Step:
    # the hash chains' checkpoints: its mappings are inline (no component template)
    desired = build_checkpoints_template(config.prefix)
    return _plan_named_index_template(client, checkpoints_template_name(config.prefix), desired, contains)


def _plan_named_index_template(
    client: OpenSearch,
    name: str,
    desired: Mapping[str, Any],
    matches: Callable[[Mapping[str, Any], Mapping[str, Any]], bool],
) -> Step:
    return _plan_template(
        client,
        "index template",
        name,
        desired,
        read=lambda: client.indices.get_index_template(name=name),
        write=lambda: client.indices.put_index_template(name=name, body=desired),
        stored_of=lambda found: found["index_templates"][0]["index_template"],
        matches=matches,
    )


def _revision_detail(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> str:
    before, after = stored.get("version"), desired["version"]
    return f"revision {before} -> {after}" if before != after else f"revision {after}, content changed"


def _plan_data_stream(client: OpenSearch, name: str) -> tuple[Step, list[str]]:
    """The step for one data stream, and its backing indices (empty when it is to be created)."""
    found = get_or_none(client, f"read data stream {name}", lambda: client.indices.get_data_stream(name=name))
    # A regular index of that name answers 200 with no data streams.
    streams = found["data_streams"] if found else []
    if streams:
        backing = [index["index_name"] for index in streams[0]["indices"]]
        return Step("data stream", name, "unchanged"), backing
    with explained(client, f"check for an index named {name}"):
        taken = client.indices.exists(index=name)
    if taken:
        raise SetupError(
            f"an index or alias named {name!r} already exists and is not a data stream: audit records "
            "were probably written before setup ran. Reindex it elsewhere and delete it, "
            "or choose another prefix"
        )

    def run() -> Status:
        with explained(client, f"create data stream {name}"):
            try:
                client.indices.create_data_stream(name=name)
            except TransportError as exc:
                # The shipper's first write may have created it since we looked.
                if exc.error == "resource_already_exists_exception":
                    return "unchanged"
                raise
        return "created"

    return Step("data stream", name, "created", run=run), []


def _plan_new_fields(client: OpenSearch, stream: str, backing: Sequence[str]) -> Step | None:
    """Add the template's fields missing from an existing stream's write index; ``None``: none missing."""
    write_index = backing[-1]
    with explained(client, f"read the mapping of {stream}"):
        answer = client.indices.get_mapping(index=write_index)
    stored = flatten(answer.get(write_index, {}).get("mappings", {}).get("properties", {}))
    desired = build_mappings()
    missing = sorted(
        name
        for name, mapping in flatten(desired["properties"]).items()
        if not contains(stored.get(name), mapping)
    )
    if not missing:
        return None

    def run() -> Status:
        with explained(client, f"add fields to the mappings of {stream}"):
            try:
                client.indices.put_mapping(index=stream, body=desired)
            except TransportError as exc:
                if exc.status_code != 400:
                    raise
                raise SetupError(
                    f"the mappings of {stream} cannot take the template's fields ({errors.reason(exc)}): "
                    f"roll it over (POST {stream}/_rollover) so its next backing index uses the template"
                ) from None
        return "updated"

    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return Step("mappings", stream, "updated", f"new fields {shown}", run=run)


def _creation_differences(client: OpenSearch, write_index: str, config: SetupConfig) -> list[str]:
    """The creation-only settings in which ``write_index`` differs from the template.

    Each as ``name stored -> desired``.
    """
    with explained(client, f"read the settings of {write_index}"):
        answer = client.indices.get_settings(index=write_index, params={"flat_settings": "true"})
    stored = answer.get(write_index, {}).get("settings", {})
    desired = _flat_settings(build_component_template(shards=config.shards)["template"]["settings"])
    return [
        f"{name} {stored.get(name, 'unset')} -> {desired[name]}"
        for name in CREATION_SETTINGS
        if name in desired and stored.get(name) != desired[name]
    ]


def _plan_rollover(
    client: OpenSearch, stream: str, backing: Sequence[str], config: SetupConfig, pid: str | None
) -> Step | None:
    """Roll ``stream`` over when its write index predates a creation-only setting; ``None``: up to date.

    The new write index comes from the updated template. ``pid`` (the tier's policy, when
    ISM runs) is put on it before the step returns, as for a new stream.
    """
    differences = _creation_differences(client, backing[-1], config)
    if not differences:
        return None

    def run() -> Status:
        with explained(client, f"roll over {stream}"):
            client.indices.rollover(alias=stream)
        if pid is not None:
            _attach_and_wait(client, stream, pid)
        return "updated"

    shown = "; ".join(differences)
    return Step("rollover", stream, "updated", f"write index {backing[-1]}: {shown}", run=run)


def _chunks(names: Sequence[str]) -> Iterator[str]:
    for start in range(0, len(names), _INDICES_PER_REQUEST):
        yield ",".join(names[start : start + _INDICES_PER_REQUEST])


def _explain(client: OpenSearch, stream: str, backing: Sequence[str]) -> dict[str, Any]:
    explained_state: dict[str, Any] = {}
    for names in _chunks(backing):
        with explained(client, f"explain ISM state of {stream}"):
            explained_state.update(client.transport.perform_request("GET", f"/_plugins/_ism/explain/{names}"))
    return explained_state


def _plan_attachment(
    client: OpenSearch,
    stream: str,
    *,
    pid: str,
    backing: Sequence[str],
    policy: Step,
    policy_seq_no: int | None,
) -> Step:
    """Give an existing stream's backing indices the tier's policy, at its current version."""
    explained_state = _explain(client, stream, backing)
    unmanaged: list[str] = []
    outdated: list[str] = []
    for index in backing:
        state = explained_state.get(index) or {}
        attached = state.get(_POLICY_ID_KEY) or state.get(_LEGACY_POLICY_ID_KEY)
        if not attached:
            unmanaged.append(index)
        elif attached == pid and (
            policy.status == "updated" or state.get("policy_seq_no") not in (None, policy_seq_no)
        ):
            outdated.append(index)
        # An index under another policy was put there by someone on purpose: leave it.

    def run() -> Status:
        _ism_post(client, "add", pid, unmanaged, stream)
        _ism_post(client, "change_policy", pid, outdated, stream)
        return "created" if unmanaged else "updated"

    if unmanaged:
        detail = f"{pid} on {len(unmanaged)} unmanaged backing indices" + (
            f", new version on {len(outdated)}" if outdated else ""
        )
        return Step("ism attachment", stream, "created", detail, run=run)
    if outdated:
        return Step(
            "ism attachment", stream, "updated", f"new version of {pid} on {len(outdated)} indices", run=run
        )
    return Step("ism attachment", stream, "unchanged")


def _plan_new_stream_attachment(client: OpenSearch, stream: str, pid: str) -> Step:
    """The policy on the first backing index of a stream this run creates.

    ``ism_template`` attaches it within moments; adding it here as well (a no-op when it
    is there already) means setup returns with retention managed, and lists the same
    steps on every run.
    """

    def run() -> Status:
        _attach_and_wait(client, stream, pid)
        return "created"

    return Step("ism attachment", stream, "created", f"{pid} on the new backing index", run=run)


def _attach_and_wait(client: OpenSearch, stream: str, pid: str) -> None:
    """Put ``pid`` on the write index of ``stream`` and wait until ISM's explain shows it."""
    with explained(client, f"read data stream {stream}"):
        found = client.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]
    backing = [found[-1]["index_name"]]
    _ism_post(client, "add", pid, backing, stream)
    # explain shows the policy once ISM's config index has refreshed (well under a second)
    deadline = time.monotonic() + _ATTACH_WAIT
    while time.monotonic() < deadline:
        state = _explain(client, stream, backing)
        if all((state.get(index) or {}).get(_POLICY_ID_KEY) for index in backing):
            return
        time.sleep(0.2)


def _attached_meanwhile(reason: str) -> bool:
    """Another setup run, or ism_template itself, attached the policy first.

    Seen before the add (``already has a policy``) or while both write ISM's config
    document for the index (a version conflict on ``.opendistro-ism-config``).
    """
    return "already has a policy" in reason or (
        "version_conflict" in reason.lower().replace(" ", "_") and "document already exists" in reason
    )


def _ism_post(client: OpenSearch, endpoint: str, pid: str, indices: Sequence[str], stream: str) -> None:
    for names in _chunks(indices):
        with explained(client, f"{endpoint.replace('_', ' ')} {pid} on {stream}"):
            answer = client.transport.perform_request(
                "POST", f"/_plugins/_ism/{endpoint}/{names}", body={"policy_id": pid}
            )
        failed = [
            f"{item.get('index_name')}: {item.get('reason')}"
            for item in answer.get("failed_indices", ())
            if not _attached_meanwhile(str(item.get("reason")))
        ]
        if failed:
            raise SetupError(f"could not {endpoint.replace('_', ' ')} {pid} on {stream}: {'; '.join(failed)}")


def plan(client: OpenSearch, config: SetupConfig) -> list[Step]:
    """What ``apply`` would do, in order, without changing anything.

    Raises ``SetupError`` when setup cannot succeed (no ISM plugin while
    ``config.require_ism``, a missing snapshot repository, an index squatting a data
    stream's name, or a connection/authentication failure), before anything changes.
    """
    return _plan(client, config)


def _plan(client: OpenSearch, config: SetupConfig) -> list[Step]:
    with_ism = ism_installed(client)
    if not with_ism:
        if config.require_ism:
            raise SetupError(
                _no_ism_message(client) + ". Install the plugin, or run setup with --skip-ism "
                "(require_ism=False) to install the templates and data streams without retention"
            )
        warnings.warn(
            RetentionNotManagedWarning(
                _no_ism_message(client) + ": installing templates and data streams without retention policies"
            ),
            stacklevel=3,  # the caller of plan() or apply(), which both call _plan()
        )
    steps = _plan_snapshot_repositories(client, config)
    alert_steps = _plan_alerts(client, config)

    policies: list[tuple[Step, int | None]] = []
    if with_ism:
        policies = [_plan_policy(client, config.prefix, tier) for tier in config.tiers]
        steps.extend(step for step, _ in policies)
    steps.append(_plan_component_template(client, config))
    steps.append(_plan_index_template(client, config))
    steps.append(_plan_checkpoints_template(client, config))  # the hash chains' checkpoints
    streams = [_plan_data_stream(client, name) for name in config.data_streams]
    steps.extend(step for step, _ in streams)
    for stream, backing in streams:
        new_fields = _plan_new_fields(client, stream.name, backing) if backing else None
        if new_fields is not None:
            steps.append(new_fields)
    for tier, (stream, backing) in zip(config.tiers, streams, strict=True):
        pid = policy_id(config.prefix, tier.name) if with_ism else None
        rollover = _plan_rollover(client, stream.name, backing, config, pid) if backing else None
        if rollover is not None:
            steps.append(rollover)
    for index, (tier, (stream, backing)) in enumerate(zip(config.tiers, streams, strict=True)):
        pid = policy_id(config.prefix, tier.name)
        if with_ism and not backing:
            steps.append(_plan_new_stream_attachment(client, stream.name, pid))
        elif with_ism:
            # Existing streams may predate the policy, or hold indices on an older version of it.
            policy, seq_no = policies[index]
            steps.append(
                _plan_attachment(
                    client, stream.name, pid=pid, backing=backing, policy=policy, policy_seq_no=seq_no
                )
            )
    return steps + alert_steps


def _plan_alerts(client: OpenSearch, config: SetupConfig) -> list[Step]:
    """The notification channel and the monitors; checked before anything changes."""
    if not config.manage_alerts:
        return []
    if not has_plugin(client, monitors.ALERTING_PLUGIN):
        if config.alert_webhook is not None or config.alert_channel is not None:
            raise SetupError(
                f"OpenSearch at {errors.where(client)} has no Alerting plugin ({monitors.ALERTING_PLUGIN}), "
                "so there are no monitors to notify from: leave out the alert webhook or channel"
            )
        if config.alert_rules:
            warnings.warn(
                AlertsNotInstalledWarning(
                    f"OpenSearch at {errors.where(client)} has no Alerting plugin "
                    f"({monitors.ALERTING_PLUGIN}): the alert monitors were not installed"
                ),
                stacklevel=4,
            )
        return []
    steps: list[Step] = []
    destination = config.alert_channel
    if config.alert_webhook is not None:
        steps.append(monitors.plan_channel(client, config.prefix, config.alert_webhook))
        destination = monitors.channel_id(config.prefix)
    elif config.alert_channel is not None:
        monitors.check_channel(client, config.alert_channel)
    return steps + monitors.plan_monitors(
        client, config.prefix, config.alert_rules, config.data_streams, destination
    )


def apply(client: OpenSearch, config: SetupConfig, dry_run: bool = False) -> list[StepResult]:
    """Install or update everything ``plan`` lists, in order; ``dry_run`` changes nothing.

    Running it twice in a row reports every step ``unchanged`` the second time. On
    failure the ``SetupError`` carries the steps completed before it.
    """
    results: list[StepResult] = []
    for step in _plan(client, config):
        if dry_run or step.run is None:
            results.append(StepResult(step, step.status))
            continue
        try:
            results.append(StepResult(step, step.run()))
        except SetupError as exc:
            exc.completed = tuple(results)
            raise
    return results
