"""Settings of the Django example (see the package docstring)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from audit_middleware.sinks import JsonLinesSink
from integrations import pods

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "integrations.django_app.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/console/pods/new/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "audit_middleware.frameworks.django",  # applies AUDIT_MIDDLEWARE at start-up
    "integrations.django_app",  # the pods (models.py), audited from the ORM
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit_middleware.frameworks.django.AuditMiddleware",  # after authentication: it reads request.user
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # outside the source tree; python -m integrations.django_app creates it
        "NAME": os.environ.get(
            "DJANGO_DEMO_DB", str(Path(tempfile.gettempdir()) / "audit-middleware-demo.sqlite3")
        ),
    }
}

# Keys are audit_middleware.configure()'s keyword arguments (objects or dotted paths),
# plus "user_mapper".
AUDIT_MIDDLEWARE = {
    "sink": JsonLinesSink.stdout(),
    "rules": pods.RULES,
    "tenant_resolver": "integrations.django_app.views.tenant_of",
}
