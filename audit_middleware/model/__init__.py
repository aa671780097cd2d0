"""The record model: pure (no I/O, no framework), the bottom of the package.

(Named ``model``, not ``record``: ``audit_middleware.record`` is the public ``record()``.)

Event types and their ECS document, the action catalog, ids, timestamps, change diffs and
the JSON encoding of documents.
"""
