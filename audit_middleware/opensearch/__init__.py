"""The OpenSearch layout of the audit trail, shared by its writer and its reader.

Connection settings (``connection``) and the client (``client``), one translation of
client errors (``errors``), the index templates (``templates``), retention tiers as ISM
policies (``retention``), tenant-to-tier routing (``tiers``), installing all of it
(``provisioning``, the ``setup`` command) and what the cluster reports (``status``).
Nothing is imported here, so using one part does not load the others.
"""
