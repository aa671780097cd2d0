"""Django example: a small pods API with an audit trail, under WSGI or ASGI.

Run it with Django's development server (records are printed to stdout as JSON lines)::

    python -m integrations.django_app              # migrates a demo SQLite db, then runserver
    curl -X POST 127.0.0.1:8000/pods -H 'Authorization: Bearer demo-token-alice' \\
         -H 'Content-Type: application/json' -d '{"name": "web", "image": "nginx:1.27"}'

or under ASGI: ``uvicorn integrations.django_app.asgi:application`` (after one run of the
above, which creates the database). ``settings.py`` shows the two lines audit-middleware
needs: the app in ``INSTALLED_APPS`` (for ``AUDIT_MIDDLEWARE``) and the middleware after
``AuthenticationMiddleware``.
"""
