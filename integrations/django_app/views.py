# Django ships no type hints (django-stubs is not a dependency), so its decorators are untyped.
# mypy: disable-error-code="untyped-decorator, no-any-return"
"""Views of the Django example: login/logout, a pods API for sessions and bearer tokens, and
an HTML form for new pods.

The audit middleware takes the actor from ``request.user``: the session's user, or the
token's user that ``api_view`` puts there. A user's organization is its Django group.
Pods are Django models registered for auditing (``models.py``): creating, changing and
deleting them is recorded from the ORM, with the previous and new values; logins,
logouts and failed logins come from Django's auth signals. These views call
``record()`` nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, ClassVar

from django import forms
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from integrations import pods
from integrations.django_app.models import Label, Pod

TOKENS = pods.Tokens()
CPU_QUOTA = 16
"""Most CPUs a pod may have: a larger resize is rolled back (and recorded as refused)."""

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


def _own_pod(request: HttpRequest, pod_id: str) -> Pod | None:
    org = org_of(request.user)
    return Pod.objects.filter(pk=pod_id, org=org).first() if org else None


@require_POST
def login_view(request: HttpRequest) -> HttpResponse:
    """Log in with ``username`` and ``password`` (form fields); the auth signals record it."""
    user = authenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        return JsonResponse({"error": "wrong username or password"}, status=401)
    login(request, user)
    return JsonResponse({"user": user.get_username()})


@require_POST
@api_view
def logout_view(request: HttpRequest) -> HttpResponse:
    """End the session (the logout signal names who it was)."""
    logout(request)
    return HttpResponse(status=204)


@require_http_methods(["GET", "POST"])
def logout_link(request: HttpRequest) -> HttpResponse:
    """Log out with a plain link (GET) or a form (POST), then go to the login page."""
    logout(request)
    return redirect("login")


class PodForm(forms.ModelForm):  # type: ignore[misc]  # Django ships no type hints
    """The fields of a new pod."""

    image = forms.CharField(max_length=128)

    class Meta:
        model = Pod
        fields: ClassVar[list[str]] = ["name"]

    def save(self, commit: bool = True) -> Pod:
        """The pod, with the image in its spec."""
        self.instance.spec = {"image": self.cleaned_data["image"], "cpu": 1}
        return super().save(commit)


@login_required
@require_http_methods(["GET", "POST"])
def new_pod(request: HttpRequest) -> HttpResponse:
    """An HTML form: a valid one creates the pod; an invalid one is shown again, creating nothing."""
    form = PodForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.instance.org = org_of(request.user) or "-"
        form.save()
        return redirect("/console/pods/new/")
    return render(request, "pods/new.html", {"form": form}, status=200)


@require_http_methods(["GET", "POST", "DELETE"])
@api_view
def pod_collection(request: HttpRequest) -> HttpResponse:
    """GET lists the organization's pods (not audited); POST creates one; DELETE removes
    every pod with ``?status=`` (one record, each pod a target)."""
    org = org_of(request.user)
    if org is None:
        return JsonResponse({"error": "no organization"}, status=403)
    if request.method == "GET":
        return JsonResponse({"pods": [pod.as_json() for pod in Pod.objects.filter(org=org)]})
    if request.method == "DELETE":
        deleted, _ = Pod.objects.filter(org=org, status=request.GET.get("status", "stopped")).delete()
        return JsonResponse({"deleted": deleted})
    body = json.loads(request.body or b"{}")
    pod = Pod.objects.create(
        org=org,
        name=body["name"],
        spec={"image": body["image"], "cpu": int(body.get("cpu", 1))},
        secret_env=body.get("env", {}),
    )
    return JsonResponse(pod.as_json(), status=201)


@require_http_methods(["GET", "PATCH", "DELETE"])
@api_view
def pod_detail(request: HttpRequest, pod_id: str) -> HttpResponse:
    """GET shows a pod, PATCH changes it (name, ``spec``, ``labels``), DELETE removes it."""
    pod = _own_pod(request, pod_id)
    if pod is None:
        return JsonResponse({"error": "no such pod"}, status=404)
    if request.method == "GET":
        return JsonResponse(pod.as_json())
    if request.method == "DELETE":
        pod.delete()
        return HttpResponse(status=204)
    changes = json.loads(request.body or b"{}")
    try:
        with transaction.atomic():
            _apply(pod, changes)
            _check_quota(pod)
    except QuotaExceededError as exc:  # the change was rolled back: nothing is recorded as done
        return JsonResponse({"error": f"at most {CPU_QUOTA} CPUs, not {exc}"}, status=409)
    return JsonResponse(pod.as_json())


class QuotaExceededError(Exception):
    """A resize beyond the organization's quota."""


def _check_quota(pod: Pod) -> None:
    if int(pod.spec.get("cpu", 1)) > CPU_QUOTA:
        raise QuotaExceededError(pod.spec["cpu"])


def _apply(pod: Pod, changes: dict[str, Any]) -> None:
    if "name" in changes:
        pod.name = str(changes["name"])
    pod.spec = {**pod.spec, **{k: v for k, v in changes.get("spec", {}).items() if k in ("image", "cpu")}}
    pod.save()
    if "labels" in changes:
        pod.labels.set([Label.objects.get_or_create(name=str(name))[0] for name in changes["labels"]])


def _set_status(status: str) -> View:
    @require_POST
    @api_view
    def change(request: HttpRequest, pod_id: str) -> HttpResponse:  # audited by the route rule
        pod = _own_pod(request, pod_id)
        if pod is None:
            return JsonResponse({"error": "no such pod"}, status=404)
        pod.status = status
        pod.save(update_fields=["status"])
        return JsonResponse(pod.as_json())

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
        yield from pods.restart_steps(pod.as_json())

    return StreamingHttpResponse(progress(), content_type="text/plain")
