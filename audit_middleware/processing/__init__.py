"""Processing: the stage between capture and the sinks (redaction; one place for it)."""

from audit_middleware.processing.prepare import prepare
from audit_middleware.processing.redaction import Redactor

__all__ = ["Redactor", "prepare"]
