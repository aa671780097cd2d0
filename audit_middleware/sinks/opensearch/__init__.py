"""Delivery to OpenSearch: the sink, its shipper thread, bulk requests, the disk spool,
dead letters and delivery counters."""
