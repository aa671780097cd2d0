"""Write or check the bundled saved objects: ``python -m audit_middleware.opensearch.dashboards``.

::

    python -m audit_middleware.opensearch.dashboards --write kibana_dashboards/
    python -m audit_middleware.opensearch.dashboards --check kibana_dashboards/   # exit 1 when stale
    python -m audit_middleware.opensearch.dashboards --prefix acme-audit --write /tmp/acme/

Each directory gets ``audit-logs.ndjson`` for the data streams ``{prefix}-*``. The
objects are validated before anything is written. ``make dashboards`` regenerates the
package's copy and ``kibana_dashboards/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from audit_middleware.errors import AuditValidationError
from audit_middleware.opensearch.dashboards import bundle, objects, structure
from audit_middleware.opensearch.tiers import DEFAULT_PREFIX


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m audit_middleware.opensearch.dashboards", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="data stream prefix (default: %(default)s)")
    parser.add_argument(
        "--write", nargs="+", type=Path, default=[], metavar="DIR", help="write the file here"
    )
    parser.add_argument("--check", nargs="+", type=Path, default=[], metavar="DIR", help="fail if stale here")
    args = parser.parse_args(argv)
    if not args.write and not args.check:
        parser.error("give --write DIR or --check DIR")
    try:
        items = bundle.saved_objects(args.prefix)
        structure.validate(items)
    except (AuditValidationError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    content = objects.encode_ndjson(items)
    stale = [path for path in (d / bundle.BUNDLE_FILE for d in args.check) if _read(path) != content]
    for path in stale:
        sys.stderr.write(f"{path} is stale: regenerate it with --write {path.parent}\n")
    for directory in args.write:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / bundle.BUNDLE_FILE
        if _read(path) != content:
            path.write_bytes(content)
            sys.stdout.write(f"wrote {path} ({len(items)} saved objects)\n")
        else:
            sys.stdout.write(f"unchanged {path}\n")
    return 1 if stale else 0


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


if __name__ == "__main__":
    sys.exit(main())
