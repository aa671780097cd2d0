"""SQLAlchemy: every create, update and delete of a registered mapped class, from session
events. Works for plain SQLAlchemy, Flask-SQLAlchemy and SQLModel alike::

    from audit_middleware.frameworks.sqlalchemy import register

    register(Post, exclude=["body"], name_field="title")   # or @audited(...), or AuditedMixin

Inside a request the committed changes become the request's record (the row as
resource, the action from what happened, before/after values and the modified fields);
outside a request each flushed row, and each bulk statement, is its own record.

How it works, and what it costs:

* ``before_flush`` reads the values a flush is about to overwrite: from attribute
  history when the object was loaded (no query), else one ``SELECT`` by primary key of
  just the missing columns (an attribute set on an expired object). Deleted objects'
  values are taken here too.
* ``after_flush`` snapshots the rows (primary keys are known now) as plain values and
  stages them on the transaction they were flushed in; ``after_transaction_end`` hands
  them on when that transaction committed (a savepoint's rows wait for the enclosing
  transaction) and drops them when it rolled back.
* ``do_orm_execute`` captures ORM-enabled bulk ``update(Model)`` / ``delete(Model)``
  statements on registered classes: one ``SELECT`` of the matching rows before (at most
  :data:`BULK_ROWS`, the rest counted) and, for an update, one after.

Not captured: Core statements on tables (``update(table)``, ``connection.execute``),
ORM bulk inserts (``insert(Model).values([...])``, ``bulk_insert_mappings``), and
changes made by SQL the ORM does not see. Listeners are attached once, to the
``Session`` class, so every session (and every app instance in a process) is covered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from audit_middleware.errors import MissingDependencyError

try:
    from sqlalchemy import event
    from sqlalchemy.orm import Session
except ImportError as exc:  # the one clear message this adapter's users need
    raise MissingDependencyError(
        "audit_middleware.frameworks.sqlalchemy needs SQLAlchemy, which is not installed: "
        "pip install opensearch-audit-middleware[sqlalchemy]"
    ) from exc

from audit_middleware.capture.changes import REGISTRY, NameField, decorator, tracking
from audit_middleware.frameworks.sqlalchemy import bulk, session
from audit_middleware.frameworks.sqlalchemy.bulk import BULK_ROWS

__all__ = ["BULK_ROWS", "AuditedMixin", "audited", "register"]

ModelT = TypeVar("ModelT", bound=type)

_lock = threading.Lock()
_listening = False


def register(
    model: ModelT,
    *,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    resource_type: str | None = None,
    name_field: NameField | None = None,
) -> ModelT:
    """Audit the creates, updates and deletes of a mapped class (and its subclasses).

    ``fields`` limits the columns read, ``exclude`` names columns never read (their
    values never leave the process); column attribute names, as on the class.
    ``resource_type`` defaults to the class name in snake case; ``name_field`` names the
    attribute (or a callable ``row -> name``) that is the row's human name. Returns the
    class, so it also works as a plain decorator.

    >>> from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    >>> class Base(DeclarativeBase): ...
    >>> class Note(Base):
    ...     __tablename__ = "note"
    ...     id: Mapped[int] = mapped_column(primary_key=True)
    ...     title: Mapped[str]
    >>> register(Note, name_field="title") is Note
    True
    """
    REGISTRY.add(
        model,
        tracking(model, fields=fields, exclude=exclude, resource_type=resource_type, name_field=name_field),
    )
    _listen()
    return model


def audited(model: Any = None, /, **options: Any) -> Any:
    """Class decorator form of :func:`register`: ``@audited`` or ``@audited(exclude=[...])``."""
    return decorator(register, model, options)


class AuditedMixin:
    """Mixin form of :func:`register`: every subclass is registered, with ``__audit__`` as options.

    >>> from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    >>> class Base(DeclarativeBase): ...
    >>> class Pod(AuditedMixin, Base):
    ...     __tablename__ = "pod"
    ...     __audit__ = {"exclude": ["secret_env"]}
    ...     id: Mapped[int] = mapped_column(primary_key=True)
    """

    __audit__: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("__abstract__", False):
            register(cls, **cls.__audit__)


def _listen() -> None:
    global _listening  # noqa: PLW0603 - attach the listeners once per process
    with _lock:
        if _listening:
            return
        event.listen(Session, "before_flush", session.before_flush)
        event.listen(Session, "after_flush", session.after_flush)
        event.listen(Session, "after_commit", session.after_commit)
        event.listen(Session, "after_transaction_end", session.after_transaction_end)
        event.listen(Session, "do_orm_execute", bulk.do_orm_execute)
        _listening = True
