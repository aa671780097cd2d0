"""How events look in a terminal: the table, the detail view, and escaping of control characters."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

import click

from audit_middleware.model.changes import ABSENT, value_at
from audit_middleware.model.encoding import dumps
from audit_middleware.model.event import AuditEvent, Scope
from audit_middleware.model.timestamps import format_timestamp
from audit_middleware.query.export import display_user

__all__ = ["echo_events", "event_details", "printable", "table_header", "table_row", "terminal_json"]

_TABLE = (("TIME", 24), ("USER", 32), ("ACTION", 20), ("RESOURCE", 36), ("OUTCOME", 7), ("IP", 39))


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and format characters (escape sequences,
    bidi overrides) are shown as ``\\u....`` escapes instead of acting on the terminal."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or unicodedata.category(char) == "Zs" else f"\\u{ord(char):04x}"
        for char in text
    )


def _acts_on_terminal(char: str) -> bool:
    # C0/C1 controls and DEL (escape sequences), format characters (bidi overrides, zero
    # widths, tags) and the line/paragraph separators some terminals and tools break lines on.
    return unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"}


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a JSON escape is UTF-16: a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def terminal_json(value: Any) -> str:
    """``value`` as one line of JSON that is safe to print: every character a terminal could
    act on is written as a ``\\u`` escape, so the text decodes to the same value.

    Outside strings JSON holds only ASCII punctuation, so escaping such characters
    wherever they occur is exact.

    >>> terminal_json({"name": "a\u202eb\x9b"})
    '{"name":"a\\\\u202eb\\\\u009b"}'
    """
    text = dumps(value).decode("utf-8")
    if text.isascii() and "\x7f" not in text:
        return text  # orjson already escapes C0 controls
    return "".join(_json_escape(char) if _acts_on_terminal(char) else char for char in text)


def _fit(text: str, width: int) -> str:
    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _resource_text(event: AuditEvent) -> str:
    resource = event.resource
    if resource is None:
        return ""
    return " ".join(part for part in (resource.type, resource.name or resource.id) if part)


def table_header() -> str:
    """The header line of the event table."""
    return "  ".join(f"{name:<{width}}" for name, width in _TABLE).rstrip()


def table_row(event: AuditEvent) -> str:
    """One event as a line of the table (time, user, action, resource, outcome, ip)."""
    ip = event.request.client_ip if event.request and event.request.client_ip else ""
    cells = (
        format_timestamp(event.unix_ms),
        display_user(event.actor),
        event.action.label,
        _resource_text(event),
        event.outcome,
        ip,
    )
    return "  ".join(
        f"{_fit(cell, width):<{width}}" for cell, (_, width) in zip(cells, _TABLE, strict=True)
    ).rstrip()


def echo_events(events: Iterable[AuditEvent], *, as_json: bool) -> None:
    for event in events:
        click.echo(terminal_json(event.to_document()) if as_json else table_row(event))


def _json_value(value: Any) -> str:
    return dumps(value).decode("utf-8")


def event_details(event: AuditEvent) -> list[str]:
    """Every detail of ``event`` as ``label: value`` lines, the change diff as ``field: old -> new``."""
    lines: list[tuple[str, str]] = [
        ("Event", event.id),
        ("Time", format_timestamp(event.unix_ms)),
        ("Tenant", _scope_text(event.tenant)),
        ("Project", _scope_text(event.project)),
        ("User", f"{display_user(event.actor)} [{event.actor.kind}]"),
        ("User id", (event.actor.impersonator or event.actor).id or ""),
        ("Roles", ", ".join(event.actor.roles)),
        ("Action", f"{event.action.label} ({event.action.id})"),
        ("Outcome", event.outcome),
        ("Resource type", event.resource.type if event.resource else ""),
        ("Resource id", (event.resource.id or "") if event.resource else ""),
        ("Resource name", (event.resource.name or "") if event.resource else ""),
        ("Targets", "; ".join(f"{t.type} {t.name or t.id or ''}".strip() for t in event.targets)),
        ("Service", event.service or ""),
    ]
    request = event.request
    if request is not None:
        status = f" -> {request.status_code}" if request.status_code is not None else ""
        lines += [
            ("IP address", request.client_ip or ""),
            ("Forwarded", ", ".join(request.forwarded_chain)),
            ("User agent", request.user_agent or ""),
            ("Request", f"{request.method or ''} {request.path or ''}{status}".strip()),
            ("Route", request.route or ""),
            ("Request id", request.request_id or ""),
            ("Trace id", request.trace_id or ""),
        ]
    width = max(len(label) for label, _ in lines)
    out = [f"{label + ':':<{width + 1}} {printable(value)}" for label, value in lines if value]
    if event.changes is not None:
        out.append("Changes:")
        before, after = event.changes.before, event.changes.after
        for field in event.changes.fields or sorted({*before, *after}):
            old_value, new_value = value_at(before, field), value_at(after, field)
            old = "(absent)" if old_value is ABSENT else _json_value(old_value)
            new = "(absent)" if new_value is ABSENT else _json_value(new_value)
            out.append(f"  {printable(field)}: {printable(old)} -> {printable(new)}")
    if event.details:
        out.append("Details:")
        out.extend(
            f"  {printable(str(key))}: {printable(_json_value(value))}"
            for key, value in event.details.items()
        )
    return out


def _scope_text(scope: Scope | None) -> str:
    if scope is None:
        return ""
    return f"{scope.id} ({scope.name})" if scope.name else str(scope.id)
