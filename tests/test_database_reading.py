"""``database.reading()``: a long read in a POST or a command takes no SQLite write lock."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from mbtcode.database import reading
from mbtcode.extensions import db
from mbtcode.models import AuditEvent
from mbtcode.services import audit


def _other_writer_can_lock(app) -> bool:
    """Whether a second connection gets the write lock at once (no waiting)."""
    path = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


@pytest.fixture
def sqlite_only(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite locking: PostgreSQL has row locks and MVCC")  # the PG pass
    return app


def test_a_post_holds_the_write_lock_but_a_reading_block_does_not(sqlite_only):
    app = sqlite_only
    with app.test_request_context("/", method="POST"):
        db.session.execute(select(func.count(AuditEvent.id)))
        assert not _other_writer_can_lock(app)  # BEGIN IMMEDIATE: writers wait
        with reading():
            db.session.execute(select(func.count(AuditEvent.id)))
            assert _other_writer_can_lock(app)
        db.session.rollback()


def test_rows_added_inside_are_written_by_the_next_transaction(app):
    with app.test_request_context("/", method="POST"):
        with reading():
            audit.record("export.table", actor=None, entity="study", detail={"rows": 1})
            db.session.execute(select(func.count(AuditEvent.id)))  # no autoflush inside
        assert db.session.scalar(select(func.count(AuditEvent.id))) == 1  # flushed now
        db.session.commit()
    assert db.session.scalar(select(AuditEvent.action)) == "export.table"


def test_an_error_inside_leaves_nothing_behind(app):
    with app.test_request_context("/", method="POST"):
        with pytest.raises(RuntimeError), reading():
            audit.record("export.table", actor=None, entity="study")
            raise RuntimeError("the export failed")
        db.session.rollback()
    assert db.session.scalar(select(func.count(AuditEvent.id))) == 0
