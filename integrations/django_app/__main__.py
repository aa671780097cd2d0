"""``python -m integrations.django_app``: create the demo database and users, then runserver."""

from __future__ import annotations

import os


def main() -> None:
    """Migrate the demo database, add the demo users and serve on 127.0.0.1."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations.django_app.settings")
    import django  # noqa: PLC0415 - after DJANGO_SETTINGS_MODULE is set
    from django.core.management import call_command  # noqa: PLC0415

    django.setup()
    from integrations.django_app.views import seed_users  # noqa: PLC0415 - needs the app registry

    call_command("migrate", run_syncdb=True, verbosity=0)  # the example has no migrations
    seed_users()
    call_command("runserver", f"127.0.0.1:{os.environ.get('PORT', '8000')}", "--noreload")


if __name__ == "__main__":
    main()
