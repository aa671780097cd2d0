"""The embeddable Audit Logs page: the host app's users read their tenant's audit trail.

One framework-neutral core (``core.AuditViewer``) over the query layer, so it reads the
embedded SQLite store and OpenSearch alike, and a thin mount per framework::

    viewer = AuditViewer(authorize=who_may_read)      # -> Access(tenant, actor, projects)

    app.register_blueprint(audit_blueprint(viewer), url_prefix="/audit")   # viewer.flask
    path("audit/", include(audit_urls(viewer)))                            # viewer.django
    app.mount("/audit", audit_router(viewer))                              # viewer.starlette
    app = mount_wsgi(app, "/audit", viewer)                                # viewer.wsgi
    app = mount_asgi(app, "/audit", viewer)                                # viewer.asgi

The mounts import their framework when imported themselves; this package imports none.
"""

from audit_middleware.viewer.access import Access, Authorize, ForbiddenError
from audit_middleware.viewer.core import AuditViewer
from audit_middleware.viewer.tokens import InvalidViewerTokenError, ViewerTokens

__all__ = ["Access", "AuditViewer", "Authorize", "ForbiddenError", "InvalidViewerTokenError", "ViewerTokens"]
