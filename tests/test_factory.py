"""The app factory: configuration from the environment, packaged folders, SQLite settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from mbtcode import create_app
from mbtcode.extensions import db
from mbtcode.models import Utterance


@pytest.fixture
def sqlite_app(make_app, tmp_path):
    """An app on a fresh SQLite file (whatever database the rest of the suite uses)."""
    return make_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}",
                     "SECRET_KEY": "x"})


def _pragma(app, name: str):
    with app.app_context(), db.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_no_argument_reads_database_url_and_instance_path_from_environment(make_app, tmp_path,
                                                                         monkeypatch):
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("MBTCODE_DATABASE_URL", url)
    monkeypatch.setenv("MBTCODE_INSTANCE_PATH", str(tmp_path / "inst"))
    app = make_app()
    assert app.instance_path == str(tmp_path / "inst")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == url
    with app.app_context():
        assert db.engine.url.database == str(tmp_path / "from-env.db")


def test_default_database_is_sqlite_in_the_instance_folder(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("MBTCODE_INSTANCE_PATH", str(tmp_path / "inst"))
    app = make_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'inst' / 'mbtcode.db'}"
    assert (tmp_path / "inst").is_dir()


def test_argument_overrides_environment(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("MBTCODE_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    app = make_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'arg.db'}"})
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("arg.db")


def test_environment_sets_other_settings(make_app, monkeypatch):
    monkeypatch.setenv("MBTCODE_TRANSCRIPT_PAGE_SIZE", "25")
    assert make_app().config["TRANSCRIPT_PAGE_SIZE"] == 25


def test_template_folder_holds_base_html(sqlite_app):
    folder = Path(sqlite_app.template_folder)
    assert folder.is_absolute()
    assert (folder / "base.html").is_file()


def test_static_folder_holds_vendored_htmx(sqlite_app):
    folder = Path(sqlite_app.static_folder)
    assert folder.is_absolute()
    assert list(folder.glob("js/vendor/htmx-*.min.js"))


def test_base_template_loads_htmx_locally(sqlite_app):
    source = (Path(sqlite_app.template_folder) / "base.html").read_text(encoding="utf-8")
    assert "url_for('static', filename='js/vendor/htmx-" in source
    assert 'src="http' not in source and 'href="http' not in source  # no CDN


def test_sqlite_uses_wal(sqlite_app):
    assert _pragma(sqlite_app, "journal_mode") == "wal"


def test_sqlite_enforces_foreign_keys(sqlite_app):
    assert _pragma(sqlite_app, "foreign_keys") == 1


def test_sqlite_waits_for_locks(sqlite_app):
    assert _pragma(sqlite_app, "busy_timeout") > 0


def test_sqlite_syncs_fully(sqlite_app):
    assert _pragma(sqlite_app, "synchronous") == 2  # FULL


def test_foreign_key_violation_raises_on_sqlite(sqlite_app):
    from mbtcode.migrate import upgrade_database

    with sqlite_app.app_context():
        upgrade_database()
        db.session.commit()
        db.session.add(Utterance(transcript_id=424242, position=1, speaker="T", role="therapist",
                                 text="orphan"))
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            db.session.commit()
        db.session.rollback()


def test_foreign_key_violation_raises_on_the_test_database(app):
    db.session.add(Utterance(transcript_id=424242, position=1, speaker="T", role="therapist",
                             text="orphan"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_secret_key_file_is_created_private_and_reused(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("MBTCODE_INSTANCE_PATH", str(tmp_path / "inst"))
    monkeypatch.setenv("MBTCODE_DATABASE_URL", f"sqlite:///{tmp_path / 'k.db'}")
    first = make_app()
    key_file = tmp_path / "inst" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.secret_key == key_file.read_text().strip()
    assert len(first.secret_key) >= 32
    assert make_app().secret_key == first.secret_key


def test_configured_secret_key_writes_no_file(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("MBTCODE_INSTANCE_PATH", str(tmp_path / "inst"))
    app = make_app({"SECRET_KEY": "configured", "DATABASE_URL": "sqlite://"})
    assert app.secret_key == "configured"
    assert not (tmp_path / "inst" / "secret_key").exists()


def test_create_app_is_importable_from_the_package():
    import mbtcode

    assert mbtcode.create_app is create_app
