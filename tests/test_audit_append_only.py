"""The audit trail is append-only in the database itself (issue 6): UPDATE and DELETE fail."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from mbtcode.extensions import db
from mbtcode.models import AuditEvent
from mbtcode.services import audit


@pytest.fixture
def event(app):
    row = audit.record("study.create", actor=None, entity="study", detail={"name": "A"})
    db.session.commit()
    return row.id


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET action = 'rewritten' WHERE id = :id",
    "UPDATE audit_event SET detail = '{}' WHERE id = :id",
    "DELETE FROM audit_event WHERE id = :id",
    "DELETE FROM audit_event",
])
def test_the_database_refuses_to_change_or_delete_audit_rows(event, statement):
    with pytest.raises(DatabaseError, match="append-only"):
        db.session.execute(text(statement), {"id": event})
    db.session.rollback()
    row = db.session.get(AuditEvent, event)
    assert (row.action, row.detail) == ("study.create", {"name": "A"})


def test_the_orm_cannot_change_an_audit_row_either(event):
    row = db.session.get(AuditEvent, event)
    row.reason = "tampered"
    with pytest.raises(DatabaseError, match="append-only"):
        db.session.commit()
    db.session.rollback()
    assert db.session.get(AuditEvent, event).reason is None


def test_appending_still_works(event):
    audit.record("study.create", actor=None, entity="study")
    db.session.commit()
    assert db.session.scalar(select(func.count(AuditEvent.id))) == 2
