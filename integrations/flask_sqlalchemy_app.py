# flask-login ships no type hints, so login_required is an untyped decorator.
# mypy: disable-error-code="untyped-decorator"
"""Flask + Flask-SQLAlchemy example: an organization's projects in SQLite, audited from the ORM.

Run it (records are printed to stdout as JSON lines; the database is in memory)::

    python -m integrations.flask_sqlalchemy_app       # http://127.0.0.1:5001/login (alice / wonderland)

The audit set-up is two lines beside the app's own: ``AuditExtension(app)`` and
``register(Project, ...)``. The views record nothing themselves: creating, editing,
deleting, archiving in bulk and purging projects is recorded from the ORM with the
project as resource and its previous and new values; a transfer that is rolled back
is not recorded as done. Logins and logouts come from flask-login's signals; a failed
login, which flask-login does not signal, is the one line ``audit_login_failed(...)``.
Because ORM capture is on, what no record explains is not claimed as a success: a form
shown again with errors is ``unknown``, an anonymous request sent to the login page a
``failure``, and the redirect that adds a missing slash is not recorded at all.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, redirect, render_template_string, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, delete, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from audit_middleware import configure
from audit_middleware.frameworks.flask import AuditExtension, audit_login_failed
from audit_middleware.frameworks.sqlalchemy import register
from audit_middleware.sinks import JsonLinesSink, Sink
from integrations import pods

NAME_LIMIT = 64


class Base(DeclarativeBase):
    """The declarative base of the example's models."""


db = SQLAlchemy(model_class=Base)


class User(UserMixin, db.Model):  # type: ignore[name-defined, misc]  # Flask-SQLAlchemy's dynamic base
    """An account (the demo users of ``integrations.pods``)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(128))
    org: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(256))


class Project(db.Model):  # type: ignore[name-defined, misc]
    """A project of an organization; ``deploy_key`` is a secret the audit trail never reads."""

    id: Mapped[int] = mapped_column(primary_key=True)
    org: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(NAME_LIMIT))
    description: Mapped[str] = mapped_column(default="")
    archived: Mapped[bool] = mapped_column(default=False)
    deploy_key: Mapped[str] = mapped_column(default="")


# The ORM half of the audit set-up: what is audited, and what never leaves the process.
register(Project, exclude=["deploy_key"])
register(User, name_field="username")

PAGE = """<!doctype html><title>{{ title }}</title>
{% for error in errors %}<p class="error">{{ error }}</p>{% endfor %}
{% if projects is not none %}<ul>{% for p in projects %}
<li>{{ p.name }}{% if p.archived %} (archived){% endif %}</li>{% endfor %}</ul>{% endif %}
<form method="post">{% for field in fields %}<input name="{{ field }}" value="{{ form.get(field, '') }}">
{% endfor %}<button>{{ title }}</button></form>"""


def create_app(database_uri: str = "sqlite://", sink: Sink | None = None) -> Flask:  # noqa: PLR0915 - one view per action
    """The example app on ``database_uri``; ``sink`` receives the audit records (default: stdout)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("FLASK_SECRET_KEY", "dev-only-not-secret"),
        SQLALCHEMY_DATABASE_URI=database_uri,
    )
    db.init_app(app)
    configure(sink=sink or JsonLinesSink.stdout(), tenant_resolver=tenant_of)
    AuditExtension(app)  # the request half of the audit set-up
    login_manager = LoginManager(app)
    login_manager.login_view = "login"
    login_manager.user_loader(lambda user_id: db.session.get(User, int(user_id)))

    with app.app_context():
        db.create_all()
        seed_users()

    def page(
        title: str,
        fields: tuple[str, ...],
        *,
        errors: list[str] | None = None,
        status: int = 200,
        projects: list[Project] | None = None,
    ) -> ResponseReturnValue:
        body = render_template_string(
            PAGE, title=title, fields=fields, errors=errors or [], form=request.form, projects=projects
        )
        return body, status

    def own_project(project_id: int) -> Project:
        project = db.session.get(Project, project_id)
        if project is None or project.org != current_user.org:
            abort(404)
        return project

    @app.route("/login", methods=["GET", "POST"])
    def login() -> ResponseReturnValue:
        if request.method == "GET":
            return page("Log in", ("username", "password"))
        username = request.form.get("username", "")
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None or not check_password_hash(user.password_hash, request.form.get("password", "")):
            audit_login_failed(username, reason="unknown user" if user is None else "bad password")
            return page("Log in", ("username", "password"), errors=["wrong username or password"])
        login_user(user)
        return redirect(request.args.get("next") or url_for("projects"))

    @app.route("/logout", methods=["GET", "POST"])
    def logout() -> ResponseReturnValue:
        logout_user()
        return redirect(url_for("login"))

    @app.route("/projects/", methods=["GET", "POST"])
    @login_required
    def projects() -> ResponseReturnValue:
        if request.method == "POST":
            errors = _validate(request.form)
            if errors:  # the form is shown again: nothing was created
                return page("New project", ("name", "description"), errors=errors)
            db.session.add(
                Project(
                    org=current_user.org,
                    name=request.form["name"],
                    description=request.form.get("description", ""),
                    deploy_key=request.form.get("deploy_key", ""),
                )
            )
            db.session.commit()
            return redirect(url_for("projects"))
        listed = db.session.scalars(
            select(Project).where(Project.org == current_user.org).order_by(Project.id)
        )
        return page("New project", ("name", "description"), projects=list(listed))

    @app.post("/projects/<int:project_id>/edit")
    @login_required
    def edit_project(project_id: int) -> ResponseReturnValue:
        project = own_project(project_id)
        errors = _validate(request.form)
        if errors:
            return page("Edit project", ("name", "description"), errors=errors)
        project.name = request.form["name"]
        project.description = request.form.get("description", project.description)
        db.session.commit()
        return redirect(url_for("projects"))

    @app.post("/projects/<int:project_id>/delete")
    @login_required
    def delete_project(project_id: int) -> ResponseReturnValue:
        db.session.delete(own_project(project_id))
        db.session.commit()
        return redirect(url_for("projects"))

    @app.post("/projects/archive")
    @login_required
    def archive_projects() -> ResponseReturnValue:
        ids = [int(value) for value in request.form.getlist("id")]
        db.session.execute(
            update(Project).where(Project.org == current_user.org, Project.id.in_(ids)).values(archived=True)
        )
        db.session.commit()
        return redirect(url_for("projects"))

    @app.post("/projects/purge")
    @login_required
    def purge_projects() -> ResponseReturnValue:
        db.session.execute(delete(Project).where(Project.org == current_user.org, Project.archived.is_(True)))
        db.session.commit()
        return redirect(url_for("projects"))

    @app.post("/projects/<int:project_id>/transfer")
    @login_required
    def transfer_project(project_id: int) -> ResponseReturnValue:
        project = own_project(project_id)
        project.org = request.form.get("org", "")
        db.session.flush()  # written, but not yet committed
        if project.org not in {user.org for user in pods.USERS.values()}:
            db.session.rollback()  # refused: the change is undone and never recorded as done
            return page("Transfer", ("org",), errors=[f"no organization {project.org!r}"], status=409)
        db.session.commit()
        return redirect(url_for("projects"))

    return app


def tenant_of(_request: Any) -> str | None:
    """The tenant of a request: the logged-in user's organization."""
    user = current_user._get_current_object()
    return str(user.org) if user.is_authenticated else None


def _validate(form: Any) -> list[str]:
    name = form.get("name", "").strip()
    if not name:
        return ["a project needs a name"]
    if len(name) > NAME_LIMIT:
        return [f"a name has at most {NAME_LIMIT} characters"]
    return []


def seed_users() -> None:
    """Add the demo users (``integrations.pods``) unless they are there."""
    for demo in pods.USERS.values():
        if db.session.scalar(select(User).where(User.username == demo.username)) is None:
            db.session.add(
                User(
                    username=demo.username,
                    email=demo.email,
                    org=demo.org,
                    # the demo's fixed passwords: a cheap hash keeps start-up (and the tests) fast
                    password_hash=generate_password_hash(demo.password, method="pbkdf2:sha256:1000"),
                )
            )
    db.session.commit()


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5001")))
