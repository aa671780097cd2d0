"""Credentials recognised by their value: Authorization values and URL passwords."""

from __future__ import annotations

import pytest

from audit_middleware.processing.credentials import is_authorization_value, mask_url_password


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", True, id="bearer"),
        pytest.param("negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg", True, id="negotiate"),
        pytest.param("Basic dXNlcjpwYXNz", True, id="basic user:pass"),
        pytest.param('Digest username="a", realm="r", response="0a"', True, id="digest"),
        pytest.param("Basic information", False, id="a phrase after Basic"),
        pytest.param("Basic aGVsbG8=", False, id="base64 without a colon"),
        pytest.param("Bearer of bad news", False, id="a phrase after Bearer"),
        pytest.param("Bearertoken", False, id="no space"),
        pytest.param("", False, id="empty"),
    ],
)
def test_authorization_values(text: str, expected: bool) -> None:
    """Authorization values of the usual schemes are recognised; phrases that look alike are not."""
    assert is_authorization_value(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:hunter2@db:5432/main", "postgres://app:*@db:5432/main"),
        ("see https://u:p@a.example and redis://:pw@cache", "see https://u:*@a.example and redis://:*@cache"),
        ("https://example.com/a:b@c", "https://example.com/a:b@c"),
        ("mailto:ann@example.com", "mailto:ann@example.com"),
        ("https://ann@example.com", "https://ann@example.com"),
    ],
)
def test_url_passwords_are_masked(text: str, expected: str) -> None:
    """Only the password in a URL's user information is replaced."""
    assert mask_url_password(text, "*") == expected
