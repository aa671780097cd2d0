"""Restored archives: named outside the live pattern, and only they can be dropped."""

from __future__ import annotations

import pytest

from audit_middleware.opensearch.archive import ArchiveError, drop_restored, restored_name, restored_pattern


def test_a_restored_index_is_named_outside_the_live_pattern():
    """.ds-audit-standard-000001 comes back as restored-audit-standard-000001, which audit-* misses."""
    assert restored_name(".ds-audit-standard-000001") == "restored-audit-standard-000001"
    assert restored_pattern("audit") == "restored-audit-*"
    assert not restored_name(".ds-audit-standard-000001").startswith("audit-")


@pytest.mark.parametrize(
    "name", [".ds-audit-standard-000001", "audit-standard", "restored-other-standard-000001"]
)
def test_only_restored_indices_of_the_prefix_can_be_dropped(name):
    """drop_restored refuses a live index, a stream, or another prefix's archive before asking the cluster."""
    with pytest.raises(ArchiveError, match="is not a restored index"):
        drop_restored(None, "audit", name)  # type: ignore[arg-type]
