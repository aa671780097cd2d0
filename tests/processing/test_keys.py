"""The words of a key name, as redaction matches them."""

from __future__ import annotations

import pytest

from audit_middleware.processing.keys import normalise, words


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("HTTP_AUTHORIZATION", ["authorization"]),
        ("http", ["http"]),  # a lone "http" is a name, not a prefix
        ("X-API-Key", ["x", "api", "key"]),
        ("basicAuth", ["basic", "auth"]),
        ("XAuthToken", ["x", "auth", "token"]),
        ("db.passwd", ["db", "passwd"]),
        ("user2fa", ["user", "2", "fa"]),
        ("Contraseña", ["contrase", "ña"]),
    ],
)
def test_words(name: str, expected: list[str]) -> None:
    """Names split at separators and camelCase; a leading http word (WSGI's HTTP_) is dropped."""
    assert words(name) == expected


def test_normalised_names_join_the_words() -> None:
    """Spellings of one name normalise alike."""
    assert {normalise(name) for name in ("X-API-Key", "x_api_key", "apiKey ", "HTTP_X_API_KEY")} == {
        "xapikey",
        "apikey",
    }
