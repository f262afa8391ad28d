"""Coding schemes (code sets and rating instruments) stored as immutable versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import UTCDateTime, utcnow


class SchemeVersion(db.Model):
    """One immutable revision of a scheme file; a changed file becomes a new revision."""

    __tablename__ = "scheme_version"
    __table_args__ = (UniqueConstraint("key", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The scheme's ``id`` from its file, e.g. ``mbt-individual``.
    key: Mapped[str] = mapped_column(String(64), index=True)
    #: 1, 2, 3 … per key, in the order the revisions were added.
    revision: Mapped[int]
    #: The ``version`` string the file's author declared (informational).
    version: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    #: SHA-256 of the canonical JSON; identical content is stored once.
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: The validated scheme document as loaded. Deferred: the parsed scheme is cached by
    #: sha256 (revisions never change), so most requests never need the raw document.
    document: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)
    source_filename: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    @property
    def ref(self) -> str:
        """The reference users type: ``key@revision``."""
        return f"{self.key}@{self.revision}"
