"""Where OpenSearch is and how to authenticate, read from the ``AUDIT_OPENSEARCH_*`` variables.

Pure settings: no client is imported here (``client.build_client`` makes one), so code
that only reads configuration does not pay for opensearch-py. The variables are listed
in :mod:`audit_middleware.env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from audit_middleware import env
from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.tiers import DEFAULT_PREFIX, validate_name

DEFAULT_URL = "http://127.0.0.1:9200"
DEFAULT_TIMEOUT = 10.0

AwsService = Literal["es", "aoss"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """Split and check OpenSearch URLs; raises ``AuditValidationError`` naming the bad one.

    >>> parse_urls("https://a.example:9200, https://b.example:9200")
    ('https://a.example:9200', 'https://b.example:9200')
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    urls = tuple(part.strip() for part in parts if part.strip())
    if not urls:
        raise AuditValidationError(
            "no OpenSearch URL given (expected e.g. https://opensearch.example.com:9200)"
        )
    for url in urls:
        check_url(url)
    return urls


def check_url(
    url: str,
    *,
    service: str = "OpenSearch",
    example: str = "https://opensearch.example.com:9200",
    credentials: str = f"{env.OPENSEARCH_USERNAME} and {env.OPENSEARCH_PASSWORD}",
) -> None:
    """Raise ``AuditValidationError`` unless ``url`` is an http(s) URL with a host and no secrets.

    ``service``, ``example`` and ``credentials`` (where the user and password go
    instead) make the messages fit the server the URL is for.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise AuditValidationError(f"{service} URL {url!r} is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise AuditValidationError(
            f"{service} URL {url!r} must start with http:// or https:// (e.g. {example})"
        )
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and error messages.
        raise AuditValidationError(
            f"{service} URL for host {parts.hostname!r} contains credentials: "
            f"set {credentials} (or username/password) instead"
        )
    if not parts.hostname:
        raise AuditValidationError(f"{service} URL {url!r} has no host name")
    if parts.query or parts.fragment:
        raise AuditValidationError(f"{service} URL {url!r} must not have a query string or fragment")


def parse_bool(name: str, value: str) -> bool:
    """``true``/``false`` (and 1/0, yes/no, on/off) from variable ``name``; anything else raises."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise AuditValidationError(f"{name} must be true or false, not {value!r}")


@dataclass(frozen=True, repr=False)
class ConnectionSettings:
    """How to reach OpenSearch. Invalid combinations raise ``AuditValidationError``.

    The password never appears in ``repr()`` or ``str()``.

    >>> settings = ConnectionSettings(urls="https://search.example:9200", username="audit", password="s3cret")
    >>> "s3cret" in repr(settings), settings.urls
    (False, ('https://search.example:9200',))
    """

    urls: tuple[str, ...] = (DEFAULT_URL,)
    username: str | None = None
    password: str | None = None
    verify_certs: bool = True
    ca_certs: str | None = None
    aws_region: str | None = None
    aws_service: AwsService = "es"
    timeout: float = DEFAULT_TIMEOUT
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        # Accept a plain string or list for urls, keep a tuple so the settings stay hashable.
        object.__setattr__(self, "urls", parse_urls(self.urls))
        validate_name(self.prefix, "prefix")
        if (self.username is None) != (self.password is None):
            raise AuditValidationError(
                "basic auth needs both a username and a password "
                f"({env.OPENSEARCH_USERNAME} / {env.OPENSEARCH_PASSWORD})"
            )
        if self.aws_region is not None and self.username is not None:
            raise AuditValidationError("choose either basic auth or AWS SigV4 signing, not both")
        if self.aws_service not in ("es", "aoss"):
            raise AuditValidationError(f"aws_service must be 'es' or 'aoss', not {self.aws_service!r}")
        if self.ca_certs is not None and not os.path.isfile(self.ca_certs):
            raise AuditValidationError(
                f"CA bundle {self.ca_certs!r} ({env.OPENSEARCH_CA_CERTS}) is not a readable file"
            )
        if not self.timeout > 0:
            raise AuditValidationError(f"timeout must be a positive number of seconds, not {self.timeout!r}")

    def __repr__(self) -> str:
        password = None if self.password is None else "***"
        return (
            f"ConnectionSettings(urls={self.urls!r}, username={self.username!r}, password={password!r}, "
            f"verify_certs={self.verify_certs!r}, ca_certs={self.ca_certs!r}, "
            f"aws_region={self.aws_region!r}, "
            f"aws_service={self.aws_service!r}, timeout={self.timeout!r}, prefix={self.prefix!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_url: str = DEFAULT_URL
    ) -> ConnectionSettings:
        """Settings from ``AUDIT_OPENSEARCH_*`` variables (see the module docstring).

        Without ``AUDIT_OPENSEARCH_URL`` the URL is ``default_url``; use
        ``configured_in_env()`` to tell whether OpenSearch was configured at all.
        """
        variables = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = variables.get(name, "").strip()
            return value or None

        url = get(env.OPENSEARCH_URL) or default_url
        verify = get(env.OPENSEARCH_VERIFY_CERTS)
        timeout = get(env.OPENSEARCH_TIMEOUT)
        try:
            timeout_seconds = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        except ValueError:
            raise AuditValidationError(
                f"{env.OPENSEARCH_TIMEOUT} must be a number of seconds, not {timeout!r}"
            ) from None
        service = get(env.OPENSEARCH_AWS_SERVICE) or "es"
        if service not in ("es", "aoss"):
            raise AuditValidationError(
                f"{env.OPENSEARCH_AWS_SERVICE} must be 'es' or 'aoss', not {service!r}"
            )
        return cls(
            urls=parse_urls(url),
            username=get(env.OPENSEARCH_USERNAME),
            # A password may legitimately have surrounding spaces: take it as given.
            password=variables.get(env.OPENSEARCH_PASSWORD) or None,
            verify_certs=True if verify is None else parse_bool(env.OPENSEARCH_VERIFY_CERTS, verify),
            ca_certs=get(env.OPENSEARCH_CA_CERTS),
            aws_region=get(env.OPENSEARCH_AWS_REGION),
            aws_service="aoss" if service == "aoss" else "es",
            timeout=timeout_seconds,
            prefix=get(env.OPENSEARCH_PREFIX) or DEFAULT_PREFIX,
        )
