"""Commit helpers for views."""

from __future__ import annotations

from ..extensions import db


def commit_and_keep_loaded() -> None:
    """Commit without expiring loaded objects, so the response renders from memory.

    After a save, the view renders the saved row from the objects it just wrote. With the
    default expire-on-commit, rendering would reload them in a second transaction, which on
    SQLite is another write lock (``BEGIN IMMEDIATE`` for POSTs) held while the template
    runs; bench/coding.py measured that as half of a save's lock time.
    """
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True
