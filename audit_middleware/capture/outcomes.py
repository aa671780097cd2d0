"""What an automatic record may claim when nothing else (an explicit record, a rule, the
ORM) says what happened: the outcome rules, written down as a table in docs/architecture.md.

Two modes. ``honest`` (the default when ORM capture is on, an option otherwise): a
request that changed nothing the app registered is not known to have succeeded, so it is
``unknown``; an anonymous request redirected to the login page is a denied ``failure``;
a redirect that only normalises the URL is not audited at all (the repeated request
is). Otherwise the status decides, as before: ``failure`` from 400, else ``success``.
In both, a framework that said it refused the request (flask-login's unauthorized) makes
it a ``failure``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from audit_middleware.model.event import Outcome

__all__ = ["LOGIN_REQUIRED", "LOGIN_SEGMENTS", "Verdict", "is_login_redirect", "judge", "normalises_url"]

LOGIN_REQUIRED = "login required"
LOGIN_SEGMENTS = frozenset({"login", "signin", "sign-in", "sign_in", "log-in", "log_in"})
"""Last path segments that name a login page when the app did not say which one is."""
_NORMALISING = frozenset({301, 307, 308})  # permanent or method-keeping: not a post-redirect-get


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether to record the request, with which outcome, and why (``details.reason``)."""

    audit: bool
    outcome: Outcome
    reason: str | None = None


NOT_AUDITED = Verdict(audit=False, outcome="unknown")


def judge(
    *,
    status: int | None,
    failed: bool,
    honest: bool,
    path: str,
    location: str | None,
    denied: str | None,
    anonymous: bool,
    login_paths: Iterable[str],
) -> Verdict:
    """The verdict on a request's automatic record (see the module docstring)."""
    if failed:
        return Verdict(True, "failure", denied)
    if denied is not None:
        return Verdict(True, "failure", denied)
    if not honest:
        return Verdict(True, "success")
    if status is not None and 300 <= status < 400 and location:
        if status in _NORMALISING and normalises_url(path, location):
            return NOT_AUDITED
        if anonymous and is_login_redirect(location, login_paths):
            return Verdict(True, "failure", LOGIN_REQUIRED)
    return Verdict(True, "unknown")


def normalises_url(path: str, location: str) -> bool:
    """Whether a redirect from ``path`` to ``location`` only changes slashes (or scheme, host).

    >>> normalises_url("/items", "/items/"), normalises_url("/items/", "http://x/items")
    (True, True)
    >>> normalises_url("/items", "/items/7")
    False
    """
    target = urlsplit(location).path or "/"
    return target.rstrip("/") == path.rstrip("/")


def is_login_redirect(location: str, login_paths: Iterable[str]) -> bool:
    """Whether ``location`` is a login page: one of ``login_paths``, or a path ending in ``/login``
    (``/signin``, ...).

    >>> is_login_redirect("/accounts/login/?next=/create", ()), is_login_redirect("/home", ())
    (True, False)
    >>> is_login_redirect("https://sso.example/auth?next=/create", ["https://sso.example/auth"])
    True
    """
    target = urlsplit(location).path.rstrip("/") or "/"
    if target in {urlsplit(p).path.rstrip("/") or "/" for p in login_paths if p}:
        return True
    return target.rsplit("/", 1)[-1].lower() in LOGIN_SEGMENTS
