"""Which data stream a tenant's records go to: one data stream per retention tier.

A tier is a name (``standard``, ``extended``, ...) and its data stream is
``{prefix}-{tier}``; the tier's ISM policy (see ``retention``) decides how long the
stream's backing indices live. ``TierRouter`` maps a tenant id to its tier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from audit_middleware.errors import AuditValidationError

DEFAULT_PREFIX = "audit"
STANDARD_TIER = "standard"
EXTENDED_TIER = "extended"

# Lowercase because index names must be; no leading "-", "_", "+" or "." (hidden and
# ".ds-" backing-index names), and no characters OpenSearch forbids in index names.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")

TierCallback = Callable[[str | None], str | None]
"""Returns the tier for a tenant id (``None`` when the record has no tenant), or ``None`` for the default."""


class UnknownTierError(AuditValidationError):
    """A tenant was routed to a tier that has no data stream."""


def validate_name(value: str, what: str) -> str:
    """Return ``value`` if it is usable inside an index name, else raise a clear error."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise AuditValidationError(
            f"{what} {value!r} is not a valid name: use 1-100 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def data_stream_name(prefix: str, tier: str) -> str:
    """The data stream holding one tier's records, e.g. ``audit-standard``."""
    return f"{validate_name(prefix, 'prefix')}-{validate_name(tier, 'tier name')}"


class TierRouter:
    """Maps a tenant id to a retention tier and its data stream.

    Give either a static ``tenant_tiers`` map or a ``callback`` (or neither: every
    tenant gets ``default_tier``). Tenants missing from the map, and callbacks that
    return ``None``, get the default tier. A tier outside ``tiers`` raises
    ``UnknownTierError``: routing a record to a stream without the intended retention
    would silently shorten how long it is kept.

    >>> router = TierRouter(tenant_tiers={"acme": "extended"})
    >>> router.data_stream_for(router.tier_for("acme")), router.data_stream_for(router.tier_for("other"))
    ('audit-extended', 'audit-standard')
    """

    __slots__ = ("_callback", "_default", "_prefix", "_streams", "_tenant_tiers")

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        tiers: Iterable[str] = (STANDARD_TIER, EXTENDED_TIER),
        tenant_tiers: Mapping[str, str] | None = None,
        callback: TierCallback | None = None,
        default_tier: str = STANDARD_TIER,
    ) -> None:
        if tenant_tiers is not None and callback is not None:
            raise AuditValidationError("give TierRouter either tenant_tiers or callback, not both")
        self._prefix = validate_name(prefix, "prefix")
        self._streams = {tier: data_stream_name(prefix, tier) for tier in tiers}
        self._default = self._known(default_tier, "default_tier")
        self._tenant_tiers = {
            tenant: self._known(tier, f"tier of tenant {tenant!r}")
            for tenant, tier in (tenant_tiers or {}).items()
        }
        self._callback = callback

    def _known(self, tier: str, what: str) -> str:
        if tier not in self._streams:
            raise UnknownTierError(
                f"{what} is {tier!r}, which is not one of the tiers {sorted(self._streams)}"
            )
        return tier

    @property
    def tiers(self) -> tuple[str, ...]:
        """The tier names this router can route to."""
        return tuple(self._streams)

    @property
    def data_streams(self) -> tuple[str, ...]:
        """Every data stream this router can route to, one per tier."""
        return tuple(self._streams.values())

    def tier_for(self, tenant_id: str | None) -> str:
        """The tier of ``tenant_id`` (``None``: a record without a tenant)."""
        if self._callback is not None:
            chosen = self._callback(tenant_id)
            return (
                self._default if chosen is None else self._known(chosen, f"callback tier for {tenant_id!r}")
            )
        if tenant_id is None:
            return self._default
        return self._tenant_tiers.get(tenant_id, self._default)

    def data_stream_for(self, tier: str) -> str:
        """The data stream of a tier, e.g. ``data_stream_for("extended") == "audit-extended"``."""
        return self._streams[self._known(tier, "tier")]
