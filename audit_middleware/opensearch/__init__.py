"""OpenSearch layout of the audit trail: connection, templates, retention tiers and setup.

>>> from audit_middleware.opensearch import ConnectionSettings, SetupConfig, apply, build_client
>>> client = build_client(ConnectionSettings.from_env(default_url="http://127.0.0.1:9200"))  # doctest: +SKIP
>>> for result in apply(client, SetupConfig(prefix="audit")):  # doctest: +SKIP
...     print(result)
"""

from audit_middleware.opensearch.connection import (
    ConnectionSettings,
    build_client,
    configured_in_env,
    parse_urls,
)
from audit_middleware.opensearch.retention import RetentionTier, build_policy, default_tiers, policy_id
from audit_middleware.opensearch.setup import (
    RetentionNotManagedWarning,
    SetupConfig,
    SetupError,
    Step,
    StepResult,
    apply,
    ism_installed,
    plan,
)
from audit_middleware.opensearch.templates import (
    TEMPLATE_REVISION,
    build_component_template,
    build_index_template,
    component_template_name,
    index_template_name,
)
from audit_middleware.opensearch.tiers import TierRouter, UnknownTierError, data_stream_name

__all__ = [
    "TEMPLATE_REVISION",
    "ConnectionSettings",
    "RetentionNotManagedWarning",
    "RetentionTier",
    "SetupConfig",
    "SetupError",
    "Step",
    "StepResult",
    "TierRouter",
    "UnknownTierError",
    "apply",
    "build_client",
    "build_component_template",
    "build_index_template",
    "build_policy",
    "component_template_name",
    "configured_in_env",
    "data_stream_name",
    "default_tiers",
    "index_template_name",
    "ism_installed",
    "parse_urls",
    "plan",
    "policy_id",
]
