"""The bundled OpenSearch Dashboards saved objects, and their installation.

One source builds them (``bundle``), from the field definitions of the index template,
so a saved object can never name a field the template does not map:

* ``fields``: the index pattern's field list, computed from field capabilities the
  way Dashboards computes it;
* ``objects`` and ``visualizations``: builders for the saved-object kinds of
  OpenSearch Dashboards 2.19 (index pattern, saved search, dashboard; count charts and
  input controls) and their ndjson encoding;
* ``bundle``: the product's objects (the "Audit Logs" dashboard and what it shows);
* ``structure``: the checks an importable file must pass, and the fields it uses;
* ``settings`` / ``importer``: where Dashboards is, and the import through its
  saved-objects API that ``audit-middleware setup --dashboards-url`` runs.

``python -m audit_middleware.opensearch.dashboards --write DIR`` writes the ndjson; the
package ships it as ``audit-logs.ndjson`` beside this file, and the repository keeps a
copy in ``kibana_dashboards/`` for people who import by hand. docs/dashboards.md
describes the objects and cites the Dashboards sources the format follows.
"""
