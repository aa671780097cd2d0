"""``python -m audit_middleware``: the ``audit-middleware`` command line."""

from audit_middleware.cli import main

main(prog_name="audit-middleware")
