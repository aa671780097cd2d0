"""Which thread built a request's context: the request thread, or the delivery worker."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from audit_middleware.sinks.delivery import PIPELINE


def building_threads(monkeypatch: pytest.MonkeyPatch, module: ModuleType, reader: str) -> list[bool]:
    """Watch ``module.reader`` (``context_from_environ``, ``context_from_scope``): one entry
    per context built, True when it ran on the delivery worker."""
    on_worker: list[bool] = []
    read = getattr(module, reader)

    def watched(raw: Any, config: Any = None) -> Any:
        on_worker.append(PIPELINE.on_worker())
        return read(raw, config)

    monkeypatch.setattr(module, reader, watched)
    return on_worker
