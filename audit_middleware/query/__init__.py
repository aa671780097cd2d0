"""Finding and exporting audit records: one query model, one store contract, two stores."""

from audit_middleware.query.model import AuditQuery, Page, QueryError
from audit_middleware.query.store import AuditStore

__all__ = ["AuditQuery", "AuditStore", "Page", "QueryError"]
