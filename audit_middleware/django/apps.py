"""The Django app under its older name, ``"audit_middleware.django"`` in ``INSTALLED_APPS``."""

from audit_middleware.frameworks.django.apps import AuditMiddlewareConfig as _Config


class AuditMiddlewareConfig(_Config):
    """The same app as ``audit_middleware.frameworks.django``, registered under the older name."""

    name = "audit_middleware.django"
