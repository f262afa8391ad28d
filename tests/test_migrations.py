"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mbtcode.extensions import db
from mbtcode.migrate import current_revision, head_revision


def test_database_is_at_the_newest_revision(app):
    assert current_revision() == head_revision()


def test_migrations_match_the_models(app):
    """A model change without a migration (or the reverse) shows up here as a diff."""
    context = MigrationContext.configure(
        db.session.connection(), opts={"compare_type": True, "render_as_batch": True}
    )
    diff = [d for d in compare_metadata(context, db.metadata)
            if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]
    assert diff == []
