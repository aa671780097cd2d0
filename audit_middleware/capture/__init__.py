"""Capture: per-request context, header parsing, client IP, route rules, the recorder and
the WSGI and ASGI middlewares. Imports only the record model below it."""
