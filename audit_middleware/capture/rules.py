"""Route rules: which requests are audited, and as what action on which resource.

Rules use werkzeug's URL rule syntax (``/pods/<pod_id>/start``); FastAPI-style
``{pod_id}`` placeholders are accepted too. A request that matches no rule is audited
with a generic action when its method changes state (POST/PUT/PATCH/DELETE)::

    rules = RouteRules([
        Rule("POST", "/pods/<pod_id>/start", action="start", resource_type="pod", id_param="pod_id"),
        Rule("GET", "/audit/export", action="audit_exported", resource_type="audit_log"),
    ])
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from audit_middleware.model.event import Resource

if TYPE_CHECKING:
    from werkzeug.routing import Map

STATE_CHANGING_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
_GENERIC_ACTIONS = {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}
_BRACES = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
_RESOURCE_SEGMENT = re.compile(r"[^a-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class Rule:
    """Audit requests of ``method`` to ``path`` as ``action`` on a ``resource_type``.

    ``id_param`` / ``name_param`` name the path placeholders holding the resource id and
    name. ``audit=False`` silences a route (health checks, for example).
    """

    method: str
    path: str
    action: str | None = None
    resource_type: str | None = None
    id_param: str | None = None
    name_param: str | None = None
    audit: bool = True

    def __post_init__(self) -> None:
        if self.resource_type is not None:
            Resource(self.resource_type)  # a bad type fails here, at set-up, not on every request


@dataclass(slots=True)  # not frozen: built on every audited request, and frozen init costs more
class Decision:
    """What to record for a request: an action id, the resource it touched, and the rule
    that said so (None for the generic fallback)."""

    action: str
    resource: Resource | None
    rule: Rule | None = field(default=None, compare=False)  # provenance, not part of the decision


class RouteRules:
    """Matches requests against the app's declared rules, with a generic fallback."""

    __slots__ = ("_by_template", "_map", "_rules", "methods")

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules = tuple(rules)
        self._map = _url_map(self._rules) if self._rules else None
        # Adapters report the framework's route template: an exact lookup skips URL matching.
        self._by_template = {(r.method.upper(), _werkzeug_path(r.path)): r for r in self._rules}
        # Methods that some rule names (GET is audited only through a rule); a plain attribute,
        # not a property: every request reads it.
        self.methods: frozenset[str] = frozenset(r.method.upper() for r in self._rules)

    def match(self, method: str, path: str, route: str | None = None) -> tuple[Rule, dict[str, str]] | None:
        """The rule for this request and its path parameters, or None."""
        if not self._rules or method not in self.methods:
            return None
        if route is not None:
            rule = self._by_template.get((method, _werkzeug_path(route)))
            if rule is not None:
                return rule, self._params(method, path)
        found = _match(self._map, method, path)
        if found is None:
            return None
        endpoint, params = found
        return self._rules[endpoint], params

    def _params(self, method: str, path: str) -> dict[str, str]:
        found = _match(self._map, method, path)
        return {} if found is None else found[1]

    def decide(
        self,
        method: str,
        path: str,
        route: str | None,
        *,
        generic_methods: frozenset[str] = STATE_CHANGING_METHODS,
        force: bool = False,
    ) -> Decision | None:
        """What to record for this request, or None when it is not audited.

        Unmatched requests with a method in ``generic_methods`` (or ``force``) get the
        generic action for their method.
        """
        matched = self.match(method, path, route)
        if matched is not None:
            rule, params = matched
            if not rule.audit:
                return None
            resource = None
            if rule.resource_type is not None:
                resource = Resource(
                    rule.resource_type,
                    params.get(rule.id_param) if rule.id_param else None,
                    params.get(rule.name_param) if rule.name_param else None,
                )
            return Decision(rule.action or generic_action(method), resource, rule)
        if method in generic_methods or force:
            return Decision(generic_action(method), generic_resource(path))
        return None


def generic_action(method: str) -> str:
    """The action id of an unmatched request: POST creates, PUT/PATCH update, DELETE deletes."""
    return _GENERIC_ACTIONS.get(method, "read")


def generic_resource(path: str) -> Resource | None:
    """A best guess from the path: ``/pods/7/start`` is resource type ``pods``, id ``7``."""
    segments = [s for s in path.split("/") if s]
    if not segments:
        return None
    type_id = _resource_type_of(segments[0])
    if type_id is None:
        return Resource("http")
    return Resource(type_id, segments[1][:256] if len(segments) > 1 else None)


@functools.lru_cache(maxsize=1024)
def _resource_type_of(segment: str) -> str | None:
    # An app has few first path segments: cache the normalisation (bounded, for odd paths).
    type_id = _RESOURCE_SEGMENT.sub("_", segment.lower()).strip("_.-")[:64]
    return type_id if type_id and type_id[0].isalpha() else None


def _url_map(rules: tuple[Rule, ...]) -> Map:
    # werkzeug is imported only by apps that declare rules: it costs more than the rest of
    # the capture path to import.
    from werkzeug.routing import Map  # noqa: PLC0415
    from werkzeug.routing import Rule as WerkzeugRule  # noqa: PLC0415

    return Map(
        [
            WerkzeugRule(_werkzeug_path(r.path), methods=[r.method.upper()], endpoint=index)
            for index, r in enumerate(rules)
        ],
        strict_slashes=False,
        merge_slashes=False,
    )


def _match(url_map: Map | None, method: str, path: str) -> tuple[int, dict[str, str]] | None:
    """The index of the rule matching the request and its path parameters, or None."""
    if url_map is None:
        return None
    from werkzeug.exceptions import HTTPException  # noqa: PLC0415 - loaded with the map

    try:
        endpoint, params = url_map.bind("audit.invalid").match(path, method=method)
    except HTTPException:
        return None
    return int(endpoint), {k: str(v) for k, v in params.items()}


def _werkzeug_path(path: str) -> str:
    return _BRACES.sub(r"<\1>", path)
