"""Routing tenants to retention tiers and their data streams."""

from __future__ import annotations

import pytest

from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.provisioning import SetupConfig
from audit_middleware.opensearch.retention import (
    default_tiers,
)
from audit_middleware.opensearch.tiers import TierRouter, UnknownTierError, data_stream_name

# --- tiers ----------------------------------------------------------------------------------


def test_router_uses_static_map_with_default():
    """Mapped tenants go to their tier's stream; others and tenantless records to standard."""
    router = TierRouter(prefix="audit", tenant_tiers={"acme": "extended"})
    assert router.data_stream_for(router.tier_for("acme")) == "audit-extended"
    assert router.data_stream_for(router.tier_for("globex")) == "audit-standard"
    assert router.data_stream_for(router.tier_for(None)) == "audit-standard"
    assert router.data_streams == ("audit-standard", "audit-extended")


def test_router_uses_callback():
    """A callback decides the tier; returning None means the default tier."""
    router = TierRouter(callback=lambda tenant: "extended" if tenant and tenant.startswith("ent-") else None)
    assert router.tier_for("ent-42") == "extended"
    assert router.tier_for("free-1") == "standard"


def test_router_refuses_unknown_tiers():
    """A tier without a data stream is an error, from a map, a callback or a direct lookup."""
    with pytest.raises(UnknownTierError, match="gold"):
        TierRouter(tenant_tiers={"acme": "gold"})
    with pytest.raises(UnknownTierError, match="gold"):
        TierRouter(callback=lambda _tenant: "gold").tier_for("acme")
    with pytest.raises(UnknownTierError):
        TierRouter().data_stream_for("gold")


def test_router_takes_a_map_or_a_callback_not_both():
    """Giving both would leave it unclear which one wins."""
    with pytest.raises(AuditValidationError, match="not both"):
        TierRouter(tenant_tiers={}, callback=lambda _tenant: None)


def test_setup_config_router_matches_its_tiers():
    """A config's router routes to exactly the data streams setup creates."""
    config = SetupConfig(prefix="acme", tiers=default_tiers())
    assert config.router().data_streams == config.data_streams == ("acme-standard", "acme-extended")


@pytest.mark.parametrize("prefix", ["Audit", "-audit", "_audit", ".ds-audit", "au dit", ""])
def test_invalid_prefixes_are_rejected(prefix):
    """Prefixes that are not valid (or would be hidden) index names fail early."""
    with pytest.raises(AuditValidationError, match="prefix"):
        data_stream_name(prefix, "standard")
