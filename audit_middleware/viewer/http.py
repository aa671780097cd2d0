"""The viewer's own small HTTP model, so one core serves every framework's mount.

Each mount (WSGI, ASGI, Flask, Django, Starlette) turns its request into a
``ViewerRequest`` and writes the ``ViewerResponse`` back; the core never sees a
framework. ``native`` is the framework's own request object, handed unchanged to the
host app's authorisation callback.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

__all__ = ["MAX_FORM_BYTES", "ViewerRequest", "ViewerResponse", "parse_form", "parse_query"]

MAX_FORM_BYTES = 64 * 1024  # the export form holds filters and two tokens: far less than this
_FORM_TYPE = "application/x-www-form-urlencoded"


def parse_query(text: str) -> dict[str, list[str]]:
    """A query string's values by name (blank values kept, so a cleared filter stays cleared)."""
    return parse_qs(text, keep_blank_values=True, max_num_fields=100)


def parse_form(content_type: str | None, body: bytes) -> dict[str, list[str]]:
    """An urlencoded form body's values; anything else (or too big, or not UTF-8) is no form."""
    if not content_type or content_type.split(";")[0].strip().lower() != _FORM_TYPE:
        return {}
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        return parse_query(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}


@dataclass(frozen=True, slots=True)
class ViewerRequest:
    """One request to the viewer.

    ``base`` is the path the viewer is mounted at (``"/audit"``; ``""`` at the root),
    ``path`` the rest (``"/"``, ``"/entries/ID"``). ``headers`` have lower-case names.
    """

    method: str
    base: str
    path: str
    query: Mapping[str, Sequence[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, Sequence[str]] = field(default_factory=dict)
    peer: str | None = None
    secure: bool = False
    native: Any = None

    def header(self, name: str) -> str | None:
        """A header's value (``name`` in lower case), or None."""
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        """A cookie's value, or None (also when the Cookie header is malformed)."""
        raw = self.headers.get("cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel is not None else None

    def param(self, name: str) -> str:
        """A query-string value, else a form value, else ``""``."""
        for source in (self.query, self.form):
            values = source.get(name)
            if values:
                return values[0]
        return ""


@dataclass(slots=True)
class ViewerResponse:
    """Status, headers and body (bytes, or chunks for a streamed export)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes] = b""

    def chunks(self) -> Generator[bytes, None, None]:
        """The body as chunks."""
        if isinstance(self.body, bytes):
            yield self.body
        else:
            yield from self.body

    def close(self) -> None:
        """Close a streamed body (a cancelled download still records its export)."""
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
