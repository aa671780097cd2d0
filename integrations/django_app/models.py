"""The example's models: pods and their labels, audited by the ``AuditedModel`` mixin.

Every create, update and delete of a pod (and every change of its labels) is recorded
with the pod as resource and its previous and new values; the views record nothing
themselves. ``secret_env`` is excluded: its values never leave the process.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from django.db import models

from audit_middleware.frameworks.django import AuditedModel


def new_pod_id() -> str:
    """A fresh pod id, ``pod-`` and 8 hex digits."""
    return f"pod-{secrets.token_hex(4)}"


class Label(AuditedModel, models.Model):  # type: ignore[misc]  # Django ships no type hints
    """A label pods carry (``team=web``)."""

    name = models.CharField(max_length=64, unique=True)

    class Meta:
        app_label = "django_app"


class Pod(AuditedModel, models.Model):  # type: ignore[misc]
    """A container of an organization."""

    __audit__: ClassVar[dict[str, Any]] = {"exclude": ["secret_env"]}

    id = models.CharField(primary_key=True, max_length=16, default=new_pod_id)
    org = models.CharField(max_length=64)
    name = models.CharField(max_length=128)
    status = models.CharField(max_length=16, default="stopped")
    spec = models.JSONField(default=dict)
    secret_env = models.JSONField(default=dict, blank=True)
    labels = models.ManyToManyField(Label, blank=True)

    class Meta:
        app_label = "django_app"
        ordering: ClassVar[list[str]] = ["name"]

    def as_json(self) -> dict[str, Any]:
        """The pod as the API shows it."""
        return {"id": self.id, "org": self.org, "name": self.name, "status": self.status, "spec": self.spec}
