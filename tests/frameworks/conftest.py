"""Fixtures shared by the framework adapter tests.

Each test module provides an ``app`` fixture that configures auditing the way its example
app does; ``events`` then captures the records sent while the test runs.
``django_project`` sets up the Django example project once per run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from audit_middleware.capture.changes import REGISTRY, Tracking
from audit_middleware.testing import CapturedEvents, capture_events


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory) -> dict[type, Tracking]:
    """Settings of the Django example project (on a temporary database), set up once per run;
    returns the example's model registrations (each test starts without them)."""
    django = pytest.importorskip("django")
    from django.conf import settings  # noqa: PLC0415 - Django is optional for these tests
    from django.core.management import call_command  # noqa: PLC0415

    from audit_middleware.frameworks.django import register  # noqa: PLC0415
    from audit_middleware.sinks import MemorySink  # noqa: PLC0415
    from integrations.django_app import settings as example  # noqa: PLC0415

    if not settings.configured:
        values: dict[str, Any] = {name: getattr(example, name) for name in dir(example) if name.isupper()}
        database = tmp_path_factory.mktemp("django") / "db.sqlite3"
        values["DATABASES"] = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}}
        values["PASSWORD_HASHERS"] = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins
        values["AUDIT_MIDDLEWARE"] = {**example.AUDIT_MIDDLEWARE, "sink": MemorySink()}  # not stdout
        settings.configure(**values)
        django.setup()
    from integrations.django_app.models import Label, Pod  # noqa: PLC0415 - needs the app registry
    from integrations.django_app.views import seed_users  # noqa: PLC0415

    call_command("migrate", run_syncdb=True, verbosity=0)
    seed_users()
    for model in (Pod, Label):  # as the mixin did at import (the test fixtures clear the registry)
        register(model, **model.__audit__)
    return {model: options for model in (Pod, Label) if (options := REGISTRY.tracking_for(model))}


@pytest.fixture
def events(app: object) -> Iterator[CapturedEvents]:
    """The audit records sent during the test (after ``app`` set up auditing)."""
    with capture_events() as captured:
        yield captured
