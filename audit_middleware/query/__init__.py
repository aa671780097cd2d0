"""Finding and exporting audit records: one query model, one store contract, two stores."""

from audit_middleware.model.tenancy import NO_PROJECT, NO_TENANT
from audit_middleware.query.export import ExportFormat
from audit_middleware.query.model import AuditQuery, Cursor, Page, QueryError
from audit_middleware.query.store import AuditStore

__all__ = [
    "NO_PROJECT",
    "NO_TENANT",
    "AuditQuery",
    "AuditStore",
    "Cursor",
    "ExportFormat",
    "Page",
    "QueryError",
]
