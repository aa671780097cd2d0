"""The SQLAlchemy adapter on plain SQLAlchemy sessions (Flask-SQLAlchemy and SQLModel: the example apps).

Each test gets fresh mapped classes on an in-memory SQLite database whose driver is set
up for SAVEPOINT (pysqlite's own transaction handling gets them wrong).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import ForeignKey, create_engine, delete, event, insert, update  # noqa: E402
from sqlalchemy.orm import (  # noqa: E402
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)

from audit_middleware import Resource  # noqa: E402
from audit_middleware.capture.changes import REGISTRY  # noqa: E402
from audit_middleware.frameworks.sqlalchemy import BULK_ROWS, AuditedMixin, audited, register  # noqa: E402
from audit_middleware.model.event import SYSTEM_ACTOR  # noqa: E402
from audit_middleware.sinks import MemorySink  # noqa: E402
from tests.wsgi_support import request, simple_app  # noqa: E402


class Models:
    """A fresh set of mapped classes (each test registers its own)."""

    def __init__(self) -> None:
        class Base(DeclarativeBase): ...

        class User(Base):
            __tablename__ = "user"
            id: Mapped[int] = mapped_column(primary_key=True)
            username: Mapped[str]
            password_hash: Mapped[str] = mapped_column(default="")
            notes: Mapped[str] = mapped_column(default="")

        class Post(Base):
            __tablename__ = "post"
            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str]
            body: Mapped[str] = mapped_column(default="")
            views: Mapped[int] = mapped_column(default=0)
            author_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
            author: Mapped[User | None] = relationship()

        self.Base, self.User, self.Post = Base, User, Post


@pytest.fixture
def models() -> Models:
    return Models()


@pytest.fixture
def engine(models: Models) -> Iterator[Any]:
    engine = create_engine("sqlite://")

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (savepoints work)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    models.Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Any) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


@pytest.fixture
def registered(models: Models) -> Models:
    register(models.User, exclude=["notes"], name_field="username")
    register(models.Post, exclude=["body"])
    return models


def documents(sink: MemorySink) -> list[dict[str, Any]]:
    return [event.to_document() for event in sink.events]


def test_create_update_delete_outside_a_request(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """Each committed row is its own record by the system actor: create, update with before/after, delete."""
    user = registered.User(username="ann", password_hash="h")
    session.add(user)
    session.commit()
    user.username = "anne"
    session.commit()
    session.delete(user)
    session.commit()
    create, change, removal = audit_sink.events
    assert [e.action.id for e in audit_sink.events] == ["create", "update", "delete"]
    assert create.actor == SYSTEM_ACTOR
    assert create.resource == Resource("user", "1", "ann")
    assert create.changes is not None
    assert create.changes.after == {"id": 1, "username": "ann", "password_hash": "[REDACTED]"}
    assert change.resource == Resource("user", "1", "anne")
    assert change.changes is not None
    assert (change.changes.before, change.changes.after, change.changes.fields) == (
        {"username": "ann"},
        {"username": "anne"},
        ("username",),
    )
    assert removal.changes is not None
    assert removal.changes.before["username"] == "anne"


def test_excluded_fields_are_never_read(registered: Models, session: Session, audit_sink: MemorySink) -> None:
    """An excluded column's value appears nowhere in the record, not even as a field name."""
    session.add(registered.User(username="ann", notes="private diary"))
    session.commit()
    user = session.get(registered.User, 1)
    assert user is not None
    user.notes = "more private"
    session.commit()
    (create,) = audit_sink.events  # the update touched only the excluded column: no record
    assert "private" not in repr(create.to_document())
    assert "notes" not in repr(create.to_document())


def test_update_of_an_expired_object_reads_the_previous_value(
    registered: Models, session: Session, audit_sink: MemorySink, engine: Any
) -> None:
    """After a commit expired the object, setting a column still records its previous value."""
    session.add(registered.Post(title="first"))
    session.commit()  # expires every attribute
    post = session.get(registered.Post, 1)
    session.commit()
    assert post is not None
    post.title = "second"  # set without loading the old value
    session.commit()
    change = audit_sink.events[-1]
    assert change.changes is not None
    assert change.changes.before == {"title": "first"}
    assert change.changes.after == {"title": "second"}


def test_rolled_back_changes_are_not_recorded(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """Flushed, then rolled back (or the session closed uncommitted): no record."""
    session.add(registered.Post(title="draft"))
    session.flush()
    session.rollback()
    session.add(registered.Post(title="never committed"))
    session.flush()
    session.close()
    assert audit_sink.events == []


def test_savepoints_rolled_back_or_released(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """A rolled-back savepoint's rows are dropped; a released one's wait for the commit."""
    post = registered.Post(title="a")
    session.add(post)
    session.commit()
    audit_sink.clear()
    savepoint = session.begin_nested()
    post.title = "rolled back"
    session.flush()
    savepoint.rollback()
    with session.begin_nested():
        post.title = "kept"
    assert audit_sink.events == []  # released, but the transaction is still open
    session.commit()
    (change,) = audit_sink.events
    assert change.changes is not None
    assert change.changes.after == {"title": "kept"}


def test_dirty_but_unchanged_objects_make_no_record(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """An object touched by a relationship but with no column change records nothing."""
    user = registered.User(username="ann")
    session.add(user)
    session.commit()
    audit_sink.clear()
    session.add(registered.Post(title="hello", author=user))  # makes the user dirty, changes no column
    session.commit()
    assert [(e.action.id, e.resource.type if e.resource else None) for e in audit_sink.events] == [
        ("create", "post")
    ]
    assert audit_sink.events[0].changes is not None
    assert audit_sink.events[0].changes.after["author_id"] == 1


def test_relationship_change_shows_as_the_foreign_key(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """Reassigning a relationship records the foreign key column's before and after."""
    ann, bob = registered.User(username="ann"), registered.User(username="bob")
    post = registered.Post(title="t", author=ann)
    session.add_all([ann, bob, post])
    session.commit()
    audit_sink.clear()
    post.author = bob
    session.commit()
    (change,) = audit_sink.events
    assert change.changes is not None
    assert (change.changes.before, change.changes.after) == ({"author_id": 1}, {"author_id": 2})


def test_bulk_update_and_delete_are_one_record_with_targets(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """An ORM-enabled update()/delete() statement is one record: every row a target, values keyed by row."""
    session.add_all([registered.Post(title=f"p{i}") for i in range(3)])
    session.commit()
    audit_sink.clear()
    session.execute(
        update(registered.Post).where(registered.Post.id > 1).values(views=registered.Post.views + 5)
    )
    session.execute(delete(registered.Post).where(registered.Post.id == 1))
    session.commit()
    bulk_update, bulk_delete = audit_sink.events
    assert bulk_update.action.id == "update"
    assert bulk_update.resource == Resource("post")
    assert [t.id for t in bulk_update.targets] == ["2", "3"]
    assert bulk_update.details == {"count": 2}
    assert bulk_update.changes is not None
    assert bulk_update.changes.before == {"post:2": {"views": 0}, "post:3": {"views": 0}}
    assert bulk_update.changes.after == {"post:2": {"views": 5}, "post:3": {"views": 5}}
    assert bulk_delete.action.id == "delete"
    assert bulk_delete.resource == Resource("post", "1", "p0")  # one row: as a plain delete


def test_bulk_update_by_primary_key(registered: Models, session: Session, audit_sink: MemorySink) -> None:
    """session.execute(update(Model), [{"id": ..., ...}]) records each listed row."""
    session.add_all([registered.Post(title=f"p{i}") for i in range(2)])
    session.commit()
    audit_sink.clear()
    session.execute(update(registered.Post), [{"id": 1, "title": "x"}, {"id": 2, "title": "y"}])
    session.commit()
    (change,) = audit_sink.events
    assert change.changes is not None
    assert change.changes.after == {"post:1": {"title": "x"}, "post:2": {"title": "y"}}


def test_bulk_statement_rolled_back_is_not_recorded(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """A bulk delete inside a transaction that rolls back leaves no record."""
    session.add(registered.Post(title="p"))
    session.commit()
    audit_sink.clear()
    session.execute(delete(registered.Post))
    session.rollback()
    assert audit_sink.events == []


def test_bulk_statement_beyond_the_cap_is_counted(
    registered: Models, session: Session, audit_sink: MemorySink
) -> None:
    """Past BULK_ROWS rows the targets stop, the count does not."""
    session.execute(insert(registered.Post), [{"title": f"p{i}"} for i in range(BULK_ROWS + 5)])
    session.commit()
    assert audit_sink.events == []  # ORM bulk inserts are not captured (documented)
    session.execute(delete(registered.Post))
    session.commit()
    (removal,) = audit_sink.events
    assert len(removal.targets) == BULK_ROWS
    assert removal.details["count"] == BULK_ROWS + 5


def test_unregistered_models_and_core_statements_are_ignored(
    models: Models, session: Session, audit_sink: MemorySink
) -> None:
    """Only registered classes are captured; with none registered nothing is read at all."""
    session.add(models.Post(title="p"))
    session.commit()
    session.execute(update(models.Post.__table__).values(title="core"))
    session.commit()
    assert audit_sink.events == []


def test_changes_in_a_request_become_its_record(
    registered: Models, engine: Any, audit_sink: MemorySink
) -> None:
    """Rows written while handling a POST make that request's one record, with every row a target."""
    factory = sessionmaker(engine)

    def handle(environ: dict[str, Any]) -> None:
        with factory() as db:
            db.add_all([registered.Post(title="a"), registered.Post(title="b")])
            db.commit()

    request(simple_app(action=handle), "POST", "/posts/import")
    (event,) = audit_sink.events
    assert event.action.id == "create"
    assert [t.name for t in event.targets] == ["a", "b"]
    assert event.request is not None
    assert event.request.path == "/posts/import"


def test_decorator_and_mixin_register(audit_sink: MemorySink) -> None:
    """@audited and AuditedMixin register classes like register() does, options included."""

    class Base(DeclarativeBase): ...

    @audited(exclude=["secret"])
    class Key(Base):
        __tablename__ = "key"
        id: Mapped[int] = mapped_column(primary_key=True)
        secret: Mapped[str]

    class Pod(AuditedMixin, Base):
        __tablename__ = "pod"
        __audit__: ClassVar[dict[str, str]] = {"resource_type": "pod", "name_field": "label"}
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str]

    tracked_key = REGISTRY.tracking_for(Key)
    assert tracked_key is not None
    assert not tracked_key.tracks("secret")
    tracked_pod = REGISTRY.tracking_for(Pod)
    assert tracked_pod is not None
    assert tracked_pod.resource_type == "pod"
    assert audited(Base) is Base


def test_a_broken_name_callback_never_breaks_a_flush(
    models: Models, session: Session, audit_sink: MemorySink
) -> None:
    """Auditing errors are logged; the app's commit goes through."""
    register(models.Post, name_field=lambda post: post.missing_attribute)
    session.add(models.Post(title="p"))
    session.commit()
    assert session.get(models.Post, 1) is not None
    (event,) = audit_sink.events
    assert event.resource == Resource("post", "1")


def test_many_sessions_and_engines_record_once(registered: Models, audit_sink: MemorySink) -> None:
    """Listeners live on the Session class: registering again and new engines never duplicate records."""
    register(registered.Post, exclude=["body"])
    for _ in range(2):
        engine = create_engine("sqlite://")
        registered.Base.metadata.create_all(engine)
        with Session(engine) as db:
            db.add(registered.Post(title="p"))
            db.commit()
        engine.dispose()
    assert [e.action.id for e in audit_sink.events] == ["create", "create"]
