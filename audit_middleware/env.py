"""Every environment variable the library reads, and where it keeps state on disk.

One place, so that the names in the docs, the CLI and the sinks cannot drift apart.

======================================  ==============================================================
``AUDIT_OPENSEARCH_URL``                OpenSearch URL(s), comma-separated: records go to OpenSearch
``AUDIT_OPENSEARCH_USERNAME``           basic auth user
``AUDIT_OPENSEARCH_PASSWORD``           basic auth password
``AUDIT_OPENSEARCH_CA_CERTS``           CA bundle (PEM) to verify the server's certificate
``AUDIT_OPENSEARCH_VERIFY_CERTS``       ``true`` (default) or ``false``
``AUDIT_OPENSEARCH_AWS_REGION``         sign requests with AWS SigV4 for this region (needs boto3)
``AUDIT_OPENSEARCH_AWS_SERVICE``        ``es`` (Amazon OpenSearch Service, default) or ``aoss``
``AUDIT_OPENSEARCH_TIMEOUT``            request timeout in seconds (default 10)
``AUDIT_OPENSEARCH_PREFIX``             name prefix of templates, policies and data streams (``audit``)
``AUDIT_DASHBOARDS_URL``                OpenSearch Dashboards URL: ``setup`` installs the saved objects there
``AUDIT_DASHBOARDS_USERNAME``           Dashboards basic auth user (default: the OpenSearch user)
``AUDIT_DASHBOARDS_PASSWORD``           Dashboards basic auth password (default: the OpenSearch password)
``AUDIT_DASHBOARDS_TENANT``             Dashboards tenant (security plugin): ``global``, ``private`` or a name
``AUDIT_DASHBOARDS_CA_CERTS``           CA bundle for Dashboards' certificate (default: the OpenSearch one)
``AUDIT_DASHBOARDS_VERIFY_CERTS``       ``true`` or ``false`` (default: as for OpenSearch)
``AUDIT_LOG_FILE``                      without OpenSearch: write JSON lines to this file
``AUDIT_SQLITE_PATH``                   the embedded store's file (default ``./audit.sqlite3``)
``AUDIT_SQLITE_RETENTION_DAYS``         days the default store keeps records (``90``; ``off``: forever)
``AUDIT_SQLITE_ARCHIVE_DIR``            where it archives them first (default ``<store>.archive``)
``AUDIT_ALERT_WEBHOOK``                 URL the default store POSTs its alerts to (else they are logged)
``AUDIT_SPOOL_DIR``                     the OpenSearch sink's state directory (spool, dead letters)
``AUDIT_FALLBACK_DIR``                  the last resort of records a store could not take (default:
                                        ``<state dir>/undelivered``; best on another file system)
``AUDIT_CHAIN_SIGNING_KEY``             PEM file of the Ed25519 key that signs chain checkpoints
``AUDIT_CHAIN_ANCHOR``                  append-only file every checkpoint is also written to (the anchor)
``AUDIT_CHAIN_CHECKPOINT_EVERY``        records between checkpoints (default 1000)
``AUDIT_CHAIN_CHECKPOINT_SECONDS``      seconds between checkpoints while records arrive (default 60)
``XDG_STATE_HOME``                      the base of the default state directory
======================================  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

OPENSEARCH_URL = "AUDIT_OPENSEARCH_URL"
OPENSEARCH_USERNAME = "AUDIT_OPENSEARCH_USERNAME"
OPENSEARCH_PASSWORD = "AUDIT_OPENSEARCH_PASSWORD"  # noqa: S105 - the variable's name, not a password
OPENSEARCH_CA_CERTS = "AUDIT_OPENSEARCH_CA_CERTS"
OPENSEARCH_VERIFY_CERTS = "AUDIT_OPENSEARCH_VERIFY_CERTS"
OPENSEARCH_AWS_REGION = "AUDIT_OPENSEARCH_AWS_REGION"
OPENSEARCH_AWS_SERVICE = "AUDIT_OPENSEARCH_AWS_SERVICE"
OPENSEARCH_TIMEOUT = "AUDIT_OPENSEARCH_TIMEOUT"
OPENSEARCH_PREFIX = "AUDIT_OPENSEARCH_PREFIX"
DASHBOARDS_URL = "AUDIT_DASHBOARDS_URL"
DASHBOARDS_USERNAME = "AUDIT_DASHBOARDS_USERNAME"
DASHBOARDS_PASSWORD = "AUDIT_DASHBOARDS_PASSWORD"  # noqa: S105 - the variable's name, not a password
DASHBOARDS_TENANT = "AUDIT_DASHBOARDS_TENANT"
DASHBOARDS_CA_CERTS = "AUDIT_DASHBOARDS_CA_CERTS"
DASHBOARDS_VERIFY_CERTS = "AUDIT_DASHBOARDS_VERIFY_CERTS"
LOG_FILE = "AUDIT_LOG_FILE"
SQLITE_PATH = "AUDIT_SQLITE_PATH"
SQLITE_RETENTION_DAYS = "AUDIT_SQLITE_RETENTION_DAYS"
SQLITE_ARCHIVE_DIR = "AUDIT_SQLITE_ARCHIVE_DIR"
ALERT_WEBHOOK = "AUDIT_ALERT_WEBHOOK"
SPOOL_DIR = "AUDIT_SPOOL_DIR"
FALLBACK_DIR = "AUDIT_FALLBACK_DIR"
CHAIN_SIGNING_KEY = "AUDIT_CHAIN_SIGNING_KEY"
CHAIN_ANCHOR = "AUDIT_CHAIN_ANCHOR"
CHAIN_CHECKPOINT_EVERY = "AUDIT_CHAIN_CHECKPOINT_EVERY"
CHAIN_CHECKPOINT_SECONDS = "AUDIT_CHAIN_CHECKPOINT_SECONDS"

DEFAULT_SQLITE_PATH = "audit.sqlite3"
STATE_DIR_NAME = "audit-middleware"
SPOOL_SUBDIR = "spool"
DEAD_LETTER_FILE = "dead-letter.jsonl"
FALLBACK_SUBDIR = "undelivered"


def value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    found = (os.environ if environ is None else environ).get(name)
    return found or None


def opensearch_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``AUDIT_OPENSEARCH_URL`` is set, which makes OpenSearch the destination."""
    return value(OPENSEARCH_URL, environ) is not None


def sqlite_path(environ: Mapping[str, str] | None = None) -> Path:
    """The embedded store's file: ``AUDIT_SQLITE_PATH``, else ``./audit.sqlite3``."""
    return Path(value(SQLITE_PATH, environ) or DEFAULT_SQLITE_PATH)


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The OpenSearch sink's state: ``AUDIT_SPOOL_DIR``, else ``$XDG_STATE_HOME/audit-middleware``."""
    configured = value(SPOOL_DIR, environ)
    if configured:
        return Path(configured)
    base = value("XDG_STATE_HOME", environ) or str(Path.home() / ".local" / "state")
    return Path(base) / STATE_DIR_NAME


def spool_dir(state: Path) -> Path:
    """The spool below a state directory."""
    return state / SPOOL_SUBDIR


def dead_letter_path(state: Path) -> Path:
    """The dead-letter file below a state directory."""
    return state / DEAD_LETTER_FILE


def fallback_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where records go that a store could not take: ``AUDIT_FALLBACK_DIR``, else ``<state>/undelivered``.

    The state directory here is ``$XDG_STATE_HOME/audit-middleware`` whatever
    ``AUDIT_SPOOL_DIR`` says, so a custom spool location and the fallback are apart.
    """
    configured = value(FALLBACK_DIR, environ)
    if configured:
        return Path(configured)
    base = value("XDG_STATE_HOME", environ) or str(Path.home() / ".local" / "state")
    return Path(base) / STATE_DIR_NAME / FALLBACK_SUBDIR
