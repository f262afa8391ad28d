"""Engine settings per backend, chosen deliberately (see SECURITY.md d1)."""

from __future__ import annotations

from flask import has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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
        reading = has_request_context() and request.method not in WRITE_METHODS
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")
