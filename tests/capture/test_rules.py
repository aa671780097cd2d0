"""Route rules: which requests are audited, as which action, on which resource."""

from __future__ import annotations

import pytest

from audit_middleware import AuditValidationError, Resource, RouteRules, Rule
from audit_middleware.capture.rules import Decision, generic_resource

RULES = RouteRules(
    [
        Rule("POST", "/pods/<pod_id>/start", action="start", resource_type="pod", id_param="pod_id"),
        Rule("POST", "/vms/{vm_id}/stop", action="stop", resource_type="virtual_machine", id_param="vm_id"),
        Rule(
            "PUT",
            "/projects/<int:project_id>/keys/<name>",
            action="ssh_key_added",
            resource_type="ssh_key",
            id_param="project_id",
            name_param="name",
        ),
        Rule("GET", "/audit/export", action="audit_exported", resource_type="audit_log"),
        Rule("POST", "/healthz", audit=False),
        Rule("delete", "/sessions/current", action="logout", resource_type="session"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param(
            "POST", "/pods/web-1/start", Decision("start", Resource("pod", "web-1")), id="werkzeug-syntax"
        ),
        pytest.param(
            "POST", "/vms/vm-9/stop", Decision("stop", Resource("virtual_machine", "vm-9")), id="brace-syntax"
        ),
        pytest.param(
            "PUT",
            "/projects/12/keys/laptop",
            Decision("ssh_key_added", Resource("ssh_key", "12", "laptop")),
            id="converter-and-name",
        ),
        pytest.param(
            "GET", "/audit/export", Decision("audit_exported", Resource("audit_log")), id="get-with-rule"
        ),
        pytest.param(
            "DELETE", "/sessions/current", Decision("logout", Resource("session")), id="lowercase-rule-method"
        ),
        pytest.param(
            "POST", "/pods/web-1/start/", Decision("start", Resource("pod", "web-1")), id="trailing-slash"
        ),
    ],
)
def test_declared_rules_match(method, path, expected):
    """A request matching a rule gets the rule's action and the resource from its path."""
    assert RULES.decide(method, path, None) == expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param("POST", "/pods", Decision("create", Resource("pods")), id="post-create"),
        pytest.param("PUT", "/pods/7", Decision("update", Resource("pods", "7")), id="put-update"),
        pytest.param("PATCH", "/pods/7", Decision("update", Resource("pods", "7")), id="patch-update"),
        pytest.param("DELETE", "/pods/7/x", Decision("delete", Resource("pods", "7")), id="delete"),
        pytest.param("POST", "/", Decision("create", None), id="root"),
        pytest.param("POST", "/123/x", Decision("create", Resource("http")), id="digit-segment"),
        pytest.param("POST", "/SSH-Keys/a", Decision("create", Resource("ssh-keys", "a")), id="lowercased"),
        pytest.param("POST", "/pödß/%zz", Decision("create", Resource("p_d", "%zz")), id="non-ascii"),
        pytest.param(
            "POST", "/pods/7/start", Decision("create", Resource("pods", "7")), id="rule-method-differs"
        ),
    ],
)
def test_generic_fallback(method, path, expected):
    """Unmatched state-changing requests get the generic action and a resource guessed from the path."""
    rules = RouteRules([Rule("PUT", "/pods/<pod_id>/start", action="start")])
    assert rules.decide(method, path, None) == expected


def test_generic_resource_is_always_valid():
    """Whatever the path, guessing never raises and gives a bounded, valid type (or none)."""
    for path in ["/", "//", "/\x00/\x01", "/..", "/-_-/1", "/" + "a" * 500 + "/" + "b" * 500, "/ü/ö", "/.h"]:
        resource = generic_resource(path)  # Resource() itself raises on an invalid type
        assert resource is None or (len(resource.type) <= 64 and len(resource.id or "") <= 256)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_are_not_audited_without_a_rule(method):
    """GET (and other safe methods) produce no decision unless a rule names them."""
    assert RULES.decide(method, "/pods/web-1", None) is None


def test_forced_get_is_audited_as_read():
    """audit_this_request() on a GET without a rule records a generic read."""
    assert RULES.decide("GET", "/pods/7", None, force=True) == Decision("read", Resource("pods", "7"))


def test_audit_false_rule_silences_a_route():
    """A rule with audit=False keeps a state-changing route out of the trail."""
    assert RULES.decide("POST", "/healthz", None) is None
    assert RULES.decide("POST", "/healthz", "/healthz") is None


def test_route_template_lookup():
    """The framework's route template finds the rule directly; parameters still come from the path."""
    assert RULES.decide("POST", "/vms/vm-1/stop", "/vms/{vm_id}/stop") == Decision(
        "stop", Resource("virtual_machine", "vm-1")
    )
    assert RULES.decide("POST", "/vms/vm-1/stop", "/vms/<vm_id>/stop") == Decision(
        "stop", Resource("virtual_machine", "vm-1")
    )


def test_route_template_of_another_rule_falls_back_to_url_matching():
    """An unknown template does not hide a rule that matches the URL."""
    assert RULES.decide("POST", "/pods/p/start", "/something/else") == Decision("start", Resource("pod", "p"))


def test_generic_methods_can_be_narrowed():
    """With generic_methods limited, other unmatched methods are not audited."""
    assert RULES.decide("PATCH", "/pods/7", None, generic_methods=frozenset({"POST"})) is None
    assert RULES.decide("POST", "/pods", None, generic_methods=frozenset({"POST"})) == Decision(
        "create", Resource("pods")
    )


def test_rule_methods():
    """RouteRules reports the methods its rules name, uppercased."""
    assert RULES.methods == frozenset({"POST", "PUT", "GET", "DELETE"})


def test_rule_without_action_uses_generic_action():
    """A rule that names only the resource type gets the method's generic action."""
    rules = RouteRules([Rule("DELETE", "/keys/<key_id>", resource_type="ssh_key", id_param="key_id")])
    assert rules.decide("DELETE", "/keys/k1", None) == Decision("delete", Resource("ssh_key", "k1"))


def test_bad_resource_type_in_rule_fails_at_set_up():
    """A rule with an invalid resource type is refused when declared, not on each request."""
    with pytest.raises(AuditValidationError, match="resource type"):
        Rule("POST", "/x", resource_type="Bad Type")


def test_malformed_rule_path_fails_at_set_up():
    """A malformed werkzeug rule is refused when the rules are built."""
    with pytest.raises(ValueError, match="malformed url rule"):
        RouteRules([Rule("POST", "/pods/<pod id>")])
