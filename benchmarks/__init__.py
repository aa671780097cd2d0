"""Benchmarks of audit-middleware's performance budget (``../shared/DESIGN.md``).

Run them all with ``python -m benchmarks`` (``make bench`` starts and stops the local
OpenSearch node around them); ``--only NAME`` picks one, ``--quick`` shortens every run.

Every figure is printed beside a baseline measured in the same process (or on the
same machine, in the same run, interleaved with it), never against a fixed number of
milliseconds: speed depends on the machine. Results also go to ``benchmarks/results/``
as JSON, and a Markdown table for the README is printed at the end.

==========================  ==================================================================
``capture_inprocess``       µs per request, bare vs wrapped (Flask/WSGI and Starlette/ASGI)
``structlog_context``       a structlog call with and without ``add_audit_context``
``server_throughput``       gunicorn and uvicorn on 127.0.0.1 under ``wrk``, bare vs wrapped
``shipper_throughput``      events/s into the local node: OpenSearchSink vs a raw bulk loop
``request_latency_node_down``  request-path latency with the node up vs unreachable
``memory_node_down``        memory while the node is unreachable under sustained load
``query_stores``            first pages and CSV export of both stores at a million records
``viewer_pages``            the Audit Logs page and each filter change over a million-record SQLite store
==========================  ==================================================================

Network traffic goes to 127.0.0.1 only, and every load loop is bounded in count and time.
"""
