"""The audit trail: one explicit row per change, written by the service that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import UTCDateTime, utcnow


class AuditEvent(db.Model):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    #: None for actions run by the system itself (e.g. ``mbtcode init``).
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("study.id"), index=True)
    #: What happened, as ``area.verb``: ``transcript.import``, ``user.create``…
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[int | None]
    #: Old and new values and other facts, as JSON (``{"old": …, "new": …}``).
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
