"""The one user-to-actor mapping: claims, user objects, values an adapter read, and guarded lookups."""

from __future__ import annotations

from dataclasses import dataclass

from structlog.testing import capture_logs

from audit_middleware.frameworks.users import actor_from_user, guarded
from audit_middleware.model.event import Actor


@dataclass
class User:
    id: object = None
    name: str | None = None
    username: str | None = None
    email: str | None = None
    roles: object = None


def test_nothing_and_actors_pass_through() -> None:
    """None stays None, and an Actor is kept as it is."""
    actor = Actor(id="7", kind="service")
    assert actor_from_user(None) is None
    assert actor_from_user(actor) is actor


def test_token_claims() -> None:
    """sub, name, email and roles of a claims mapping become the actor."""
    claims = {"sub": "42", "name": "Ann", "email": "ann@example.com", "roles": ["admin", "ops"]}
    assert actor_from_user(claims) == Actor(
        id="42", name="Ann", email="ann@example.com", roles=("admin", "ops")
    )


def test_claims_fallbacks() -> None:
    """id stands in for sub and preferred_username for name; missing roles are none."""
    assert actor_from_user({"id": 9, "preferred_username": "ann"}) == Actor(id="9", name="ann")
    assert actor_from_user({"sub": "1", "roles": None}).roles == ()  # type: ignore[union-attr]


def test_user_object_attributes() -> None:
    """id, name (or username), email and roles are read from a user object; ids become text."""
    user = User(id=42, username="ann", email="ann@example.com", roles=["admin"])
    assert actor_from_user(user) == Actor(id="42", name="ann", email="ann@example.com", roles=("admin",))
    assert actor_from_user(User(name="Ann B", username="ann")).name == "Ann B"  # type: ignore[union-attr]


def test_values_the_adapter_read_win() -> None:
    """An adapter's own values (Django's pk and get_username()) replace the attribute reads."""
    user = User(id="attribute-id", name="attribute-name", email="a@example.com", roles=["x"])
    actor = actor_from_user(user, user_id=5, name="ann", email=None, roles=["staff"])
    assert actor == Actor(id="5", name="ann", email=None, roles=("staff",))


def test_an_object_without_the_attributes_is_an_empty_user() -> None:
    """A user object lacking every attribute gives an actor with nothing known, not an error."""
    assert actor_from_user(object()) == Actor()


def test_guarded_returns_the_lookups_actor() -> None:
    """guarded(lookup, *args) is lookup(*args) when it works."""
    assert guarded(lambda user, kind: Actor(id=user, kind=kind), "u1", "service") == Actor(
        id="u1", kind="service"
    )


def test_guarded_turns_an_app_bug_into_one_warning() -> None:
    """A lookup that raises gives None and one warning naming the error."""

    def broken(user: object) -> Actor:
        raise KeyError("profile")

    with capture_logs() as logs:
        assert guarded(broken, object()) is None
    assert logs == [
        {"event": "audit actor lookup failed", "error": "KeyError: 'profile'", "log_level": "warning"}
    ]
