"""Create or upgrade the database schema with Alembic, on the app's own engine."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from . import paths
from .extensions import db


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(paths.MIGRATIONS_DIR))
    return cfg


def upgrade_database(revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in the session's transaction (caller commits).

    Running on the session's own connection keeps a command to one connection, which on
    SQLite means one write lock, and makes ``init`` all-or-nothing (transactional DDL).
    """
    cfg = alembic_config()
    cfg.attributes["connection"] = db.session.connection()
    command.upgrade(cfg, revision)


def current_revision() -> str | None:
    """The revision the database is at, or None for an empty database."""
    return MigrationContext.configure(db.session.connection()).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of mbtcode."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def make_migration(message: str) -> None:
    """Autogenerate a new migration from the models (developers only)."""
    cfg = alembic_config()
    cfg.attributes["connection"] = db.session.connection()
    command.revision(cfg, message=message, autogenerate=True)
