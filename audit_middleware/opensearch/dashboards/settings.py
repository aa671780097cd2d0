"""Where OpenSearch Dashboards is and how to sign in, from ``AUDIT_DASHBOARDS_*`` (pure settings).

Dashboards signs users in against the same security plugin as OpenSearch, so the
credentials and TLS settings default to the OpenSearch connection's; the
``AUDIT_DASHBOARDS_*`` variables (listed in :mod:`audit_middleware.env`) override them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from audit_middleware import env
from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.connection import ConnectionSettings, check_url, parse_bool

__all__ = ["DEFAULT_TIMEOUT", "DashboardsSettings"]

DEFAULT_TIMEOUT = 30.0
_EXAMPLE = "https://dashboards.example.com:5601"


@dataclass(frozen=True, repr=False)
class DashboardsSettings:
    """How to reach OpenSearch Dashboards. Invalid values raise ``AuditValidationError``.

    ``url`` may carry Dashboards' ``server.basePath`` (``https://host/_dashboards``).
    ``tenant`` picks the security plugin's tenant: ``global``, ``private`` or a
    tenant's name; ``None`` leaves it to Dashboards (no security plugin: the only space).
    The password never appears in ``repr()``.

    >>> settings = DashboardsSettings("https://dash.example/", username="admin", password="s3cret")
    >>> settings.url, "s3cret" in repr(settings)
    ('https://dash.example', False)
    """

    url: str
    username: str | None = None
    password: str | None = None
    tenant: str | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        url = self.url.strip().rstrip("/")
        check_url(
            url,
            service="OpenSearch Dashboards",
            example=_EXAMPLE,
            credentials=f"{env.DASHBOARDS_USERNAME} and {env.DASHBOARDS_PASSWORD}",
        )
        object.__setattr__(self, "url", url)
        if (self.username is None) != (self.password is None):
            raise AuditValidationError(
                "Dashboards basic auth needs both a username and a password "
                f"({env.DASHBOARDS_USERNAME} / {env.DASHBOARDS_PASSWORD})"
            )
        if self.tenant is not None and (not self.tenant.strip() or self.tenant != self.tenant.strip()):
            raise AuditValidationError(
                f"Dashboards tenant {self.tenant!r} must be global, private or a tenant's name"
            )
        if self.ca_certs is not None and not os.path.isfile(self.ca_certs):
            raise AuditValidationError(
                f"CA bundle {self.ca_certs!r} ({env.DASHBOARDS_CA_CERTS}) is not a readable file"
            )
        if not self.timeout > 0:
            raise AuditValidationError(f"timeout must be a positive number of seconds, not {self.timeout!r}")

    def __repr__(self) -> str:
        password = None if self.password is None else "***"
        return (
            f"DashboardsSettings(url={self.url!r}, username={self.username!r}, password={password!r}, "
            f"tenant={self.tenant!r}, verify_certs={self.verify_certs!r}, ca_certs={self.ca_certs!r}, "
            f"timeout={self.timeout!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        url: str | None = None,
        tenant: str | None = None,
        opensearch: ConnectionSettings | None = None,
    ) -> DashboardsSettings | None:
        """Settings from ``AUDIT_DASHBOARDS_*``, ``url``/``tenant`` winning; ``None`` without a URL.

        Unset credentials and TLS settings fall back to ``opensearch``'s.
        """
        variables = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = variables.get(name, "").strip()
            return value or None

        found_url = url or get(env.DASHBOARDS_URL)
        if found_url is None:
            return None
        username, password = get(env.DASHBOARDS_USERNAME), variables.get(env.DASHBOARDS_PASSWORD) or None
        if username is None and password is None and opensearch is not None:
            username, password = opensearch.username, opensearch.password
        verify = get(env.DASHBOARDS_VERIFY_CERTS)
        return cls(
            url=found_url,
            username=username,
            password=password,
            tenant=tenant or get(env.DASHBOARDS_TENANT),
            verify_certs=(opensearch.verify_certs if opensearch else True)
            if verify is None
            else parse_bool(env.DASHBOARDS_VERIFY_CERTS, verify),
            ca_certs=get(env.DASHBOARDS_CA_CERTS) or (opensearch.ca_certs if opensearch else None),
        )
