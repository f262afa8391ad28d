"""Engine settings per backend, chosen deliberately (see SECURITY.md d1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_READING: ContextVar[bool] = ContextVar("mbtcode_reading", default=False)


@contextmanager
def reading() -> Iterator[None]:
    """Run a long read (an export) in a transaction of its own that takes no write lock.

    On SQLite a POST or a command begins with ``BEGIN IMMEDIATE``, which would hold the
    database's write lock for the seconds an export of a large study takes, and raters'
    saves would wait. Inside this block transactions begin with a plain ``BEGIN``. Any open
    transaction is committed first, and the block's own read transaction is ended after it.
    Rows the block adds to the session (audit events) are not flushed inside it: they stay
    in the session for the caller's next transaction, which writes them.
    """
    from .extensions import db

    session = db.session()
    _commit_keeping_loaded(session)
    token = _READING.set(True)
    try:
        with session.no_autoflush:
            yield
        pending = list(session.new)
        for row in pending:
            session.expunge(row)
        _commit_keeping_loaded(session)  # nothing to write: ends the read transaction
    finally:
        _READING.reset(token)
    session.add_all(pending)


def _commit_keeping_loaded(session) -> None:
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def engine_options(url: str) -> dict:
    """Options for ``create_engine`` given the database URL."""
    if url.startswith("sqlite"):
        # 30 s busy handler: an import may hold the write lock for seconds.
        return {"connect_args": {"timeout": 30.0}}
    return {"pool_pre_ping": True}


def configure_sqlite(engine: Engine) -> None:
    """Turn on WAL, foreign keys, a busy timeout, and take over ``BEGIN`` from sqlite3.

    Python's sqlite3 module sends no BEGIN before SELECTs in its legacy mode, which makes
    SAVEPOINTs not join the enclosing transaction; SQLAlchemy documents this recipe.
    Writes use ``BEGIN IMMEDIATE`` so they wait for the lock (busy_timeout) instead of
    failing at once with SQLITE_BUSY when a read transaction tries to upgrade.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        # Writes come at human pace: pay one fsync per commit to keep every saved code.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        reading = _READING.get() or (has_request_context() and request.method not in WRITE_METHODS)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")
