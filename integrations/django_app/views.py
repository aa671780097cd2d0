# Django ships no type hints (django-stubs is not a dependency), so its decorators are untyped.
# mypy: disable-error-code="untyped-decorator, no-any-return"
"""Views of the Django example: login/logout, and a pods API for sessions and bearer tokens.

The audit middleware takes the actor from ``request.user``: the session's user, or the
token's user that ``api_view`` puts there. A user's organization is its Django group.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from audit_middleware import Resource, diff, record
from integrations import pods

STORE = pods.PodStore()
TOKENS = pods.Tokens()

View = Callable[..., HttpResponse]


def seed_users() -> None:
    """Create the demo users (password as in ``integrations.pods``) and their org groups."""
    for demo in pods.USERS.values():
        user, created = User.objects.get_or_create(username=demo.username, defaults={"email": demo.email})
        if created:
            user.set_password(demo.password)
            user.save()
        user.groups.add(Group.objects.get_or_create(name=demo.org)[0])


def org_of(user: Any) -> str | None:
    """The user's organization: the name of its first group."""
    if not user.is_authenticated:
        return None
    name: str | None = user.groups.order_by("name").values_list("name", flat=True).first()
    return name


def tenant_of(request: HttpRequest) -> str | None:
    """The tenant (``AUDIT_MIDDLEWARE["tenant_resolver"]``): the user's org, else X-Tenant-ID."""
    return org_of(request.user) or request.headers.get("X-Tenant-ID")


def api_view(view: View) -> View:
    """Authenticate by bearer token or session; only session requests need a CSRF token."""

    @csrf_exempt
    @wraps(view)
    def authenticated(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token_user = TOKENS.user_for_header(request.headers.get("Authorization"))
        if token_user is not None:
            # a bearer token is not sent by browsers on their own: no CSRF check needed
            request.user = User.objects.get(username=token_user.username)
        else:
            refused = CsrfViewMiddleware(lambda _: HttpResponse()).process_view(request, None, (), {})
            if refused is not None:
                return refused
            if not request.user.is_authenticated:
                return JsonResponse({"error": "login required"}, status=401)
        return view(request, *args, **kwargs)

    return authenticated


def _own_pod(request: HttpRequest, pod_id: str) -> dict[str, Any] | None:
    org = org_of(request.user)
    return STORE.get(pod_id, org) if org else None


@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    """Log in with ``username`` and ``password`` (form fields)."""
    user = authenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        record("login_failed", details={"username": request.POST.get("username")})
        return JsonResponse({"error": "wrong username or password"}, status=401)
    login(request, user)
    record("login", resource=Resource("session"))
    return JsonResponse({"user": user.get_username()})


@require_POST
@api_view
def logout_view(request: HttpRequest) -> HttpResponse:
    """End the session (the middleware still records who it was)."""
    record("logout", resource=Resource("session"), tenant=org_of(request.user))
    logout(request)
    return HttpResponse(status=204)


@require_http_methods(["GET", "POST"])
@api_view
def pod_collection(request: HttpRequest) -> HttpResponse:
    """GET lists the organization's pods (not audited); POST creates one."""
    org = org_of(request.user)
    if org is None:
        return JsonResponse({"error": "no organization"}, status=403)
    if request.method == "GET":
        return JsonResponse({"pods": STORE.in_org(org)})
    body = json.loads(request.body or b"{}")
    pod = STORE.create(org, body["name"], body["image"], int(body.get("cpu", 1)))
    record("create", resource=pods.resource(pod))
    return JsonResponse(pod, status=201)


@require_http_methods(["GET", "PATCH", "DELETE"])
@api_view
def pod_detail(request: HttpRequest, pod_id: str) -> HttpResponse:
    """GET shows a pod, PATCH changes it (the record holds the change), DELETE removes it."""
    pod = _own_pod(request, pod_id)
    if pod is None:
        return JsonResponse({"error": "no such pod"}, status=404)
    if request.method == "GET":
        return JsonResponse(pod)
    if request.method == "DELETE":
        STORE.delete(pod_id, pod["org"])
        record("delete", resource=pods.resource(pod))
        return HttpResponse(status=204)
    result = STORE.update(pod_id, pod["org"], json.loads(request.body or b"{}"))
    assert result is not None
    before, after = result
    record("update", resource=pods.resource(after), changes=diff(before, after))
    return JsonResponse(after)


def _set_status(status: str) -> View:
    @require_POST
    @api_view
    def change(request: HttpRequest, pod_id: str) -> HttpResponse:  # audited by the route rule
        pod = _own_pod(request, pod_id)
        if pod is None:
            return JsonResponse({"error": "no such pod"}, status=404)
        return JsonResponse(STORE.set_status(pod_id, pod["org"], status))

    return change


start_pod = _set_status("running")
stop_pod = _set_status("stopped")


@require_POST
@api_view
def restart_pod(request: HttpRequest, pod_id: str) -> HttpResponse:
    """Stream the restart's progress; the record is sent when the stream is closed."""
    pod = _own_pod(request, pod_id)
    if pod is None:
        return JsonResponse({"error": "no such pod"}, status=404)

    def progress() -> Iterator[str]:
        yield from pods.restart_steps(pod)

    return StreamingHttpResponse(progress(), content_type="text/plain")
