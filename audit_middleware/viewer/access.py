"""Who may see what: the host app's answer for one request, and how a URL may only narrow it.

The viewer never takes a tenant or a project from the request as a grant. The host app's
authorisation callback (or a signed viewer token) names the one tenant a reader may
see, and optionally the projects; a ``tenant`` or ``project`` in the URL is accepted
only when it lies inside that grant, and refused otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from audit_middleware.errors import AuditValidationError
from audit_middleware.model.event import Actor
from audit_middleware.model.tenancy import NoProject, ProjectSelector

__all__ = ["Access", "Authorize", "ForbiddenError", "narrow"]


class ForbiddenError(AuditValidationError):
    """The request asks for more than the reader may see; the message says what, for the reader."""


@dataclass(frozen=True, slots=True)
class Access:
    """What the current reader may see: one tenant, and optionally only some of its projects.

    ``projects`` is None for every project of the tenant, else the allow-list (use
    ``audit_middleware.query.NO_PROJECT`` to include the records made outside any
    project; no project id stands for those, not even ``"-"``). ``actor`` is the reader,
    recorded on every read. ``tenant_name`` is shown in the page's heading.

    >>> Access("acme", Actor(id="u1", email="ann@acme.example"), projects=["p1"]).projects
    ('p1',)
    """

    tenant: str
    actor: Actor
    projects: tuple[ProjectSelector, ...] | None = None
    tenant_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, str) or not self.tenant:
            raise AuditValidationError("Access needs the tenant id the reader may see")
        if not isinstance(self.actor, Actor):
            raise AuditValidationError("Access needs the reader as an Actor (it is recorded on every read)")
        projects: object = self.projects
        if projects is not None:
            if isinstance(projects, str) or not isinstance(projects, Iterable):
                raise AuditValidationError("Access.projects is a list of project ids, or None for all")
            ids = tuple(
                dict.fromkeys(
                    project if isinstance(project, NoProject) else str(project) for project in projects
                )
            )
            if not all(ids):
                raise AuditValidationError("Access.projects holds an empty project id")
            object.__setattr__(self, "projects", ids)


Authorize = Callable[[Any], "Access | None"]
"""The host app's callback: the framework's request in, the reader's ``Access`` out (None: refused)."""


def narrow(
    access: Access, tenant: str | None, project: str | None
) -> tuple[tuple[ProjectSelector, ...] | None, str | None]:
    """The project allow-list and project filter for a request that names ``tenant`` / ``project``.

    A tenant in the URL must be the granted one; a project must be inside the allow-list.
    Anything else is ``ForbiddenError``: a URL can narrow what the reader sees, never widen it.

    >>> narrow(Access("acme", Actor(name="ann"), projects=("p1", "p2")), "acme", "p2")
    (('p1', 'p2'), 'p2')
    """
    if tenant and tenant != access.tenant:
        raise ForbiddenError("this page shows only the audit log of your own organization")
    if project and access.projects is not None and project not in access.projects:
        raise ForbiddenError("you may not see the audit log of that project")
    return access.projects, project or None
