"""audit-middleware: a complete, trustworthy audit trail in OpenSearch for WSGI/ASGI apps."""
