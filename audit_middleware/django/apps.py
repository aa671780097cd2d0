"""The Django app under its older name, ``"audit_middleware.django"`` in ``INSTALLED_APPS``."""

# The module, not the class: Django picks a package's AppConfig only when its apps module
# holds exactly one AppConfig subclass, and an imported base class would be a second.
from audit_middleware.frameworks.django import apps as _apps


class AuditMiddlewareConfig(_apps.AuditMiddlewareConfig):
    """The same app as ``audit_middleware.frameworks.django``, registered under the older name."""

    name = "audit_middleware.django"
