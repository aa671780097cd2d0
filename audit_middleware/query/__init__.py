"""Finding and exporting audit records: one query model, one store contract, two stores."""

from audit_middleware.query.model import NO_TENANT, AuditQuery, Cursor, Page, QueryError
from audit_middleware.query.store import AuditStore, ExportFormat

__all__ = ["NO_TENANT", "AuditQuery", "AuditStore", "Cursor", "ExportFormat", "Page", "QueryError"]
