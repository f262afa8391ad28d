"""Fixtures: an app on a migrated database (SQLite by default, PostgreSQL by env), factories.

Set ``MBTCODE_TEST_DATABASE_URL=postgresql+psycopg://127.0.0.1:5432/test`` to run the same
suite on PostgreSQL. On SQLite every test gets a copy of a database migrated once per run;
on PostgreSQL the schema is migrated once and every table is emptied after each test.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import text

from mbtcode import create_app
from mbtcode.extensions import db

TEST_DATABASE_URL = os.environ.get("MBTCODE_TEST_DATABASE_URL")
PASSWORD = "correct horse battery staple"


def _base_config(url: str) -> dict:
    return {"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "test-secret-key"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    """Tests never read the developer's MBTCODE_* settings; the instance folder is private."""
    for name in list(os.environ):
        if name.startswith("MBTCODE_") and name != "MBTCODE_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MBTCODE_INSTANCE_PATH", str(tmp_path / "instance"))


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch):
    """Hash passwords with a cheap method in tests (scrypt costs ~0.2 s per hash).

    Verification reads the method from the stored hash, so login works unchanged; the
    production default is checked in tests/services/test_users.py.
    """
    from werkzeug.security import generate_password_hash

    from mbtcode.services import users

    monkeypatch.setattr(
        users, "generate_password_hash",
        functools.partial(generate_password_hash, method="pbkdf2:sha256:1000"),
    )


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory) -> Path | None:
    """Run the migrations once: into a template SQLite file, or into the PostgreSQL database."""
    from mbtcode.migrate import upgrade_database

    os.environ["MBTCODE_INSTANCE_PATH"] = str(tmp_path_factory.mktemp("template-instance"))
    if TEST_DATABASE_URL:
        app = create_app(_base_config(TEST_DATABASE_URL))
        with app.app_context():
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            upgrade_database()
            db.session.commit()  # upgrade_database runs in the session's transaction
            db.session.remove()
            db.engine.dispose()
        template = None
    else:
        template = tmp_path_factory.mktemp("template") / "template.db"
        app = create_app(_base_config(f"sqlite:///{template}"))
        with app.app_context():
            upgrade_database()
            db.session.commit()  # upgrade_database runs in the session's transaction
            db.session.remove()
            db.engine.dispose()  # closing the last connection checkpoints the WAL into the file
        assert not template.with_name(template.name + "-wal").exists()
    del os.environ["MBTCODE_INSTANCE_PATH"]
    return template


@pytest.fixture
def database_url(_migrated_template, tmp_path) -> str:
    if _migrated_template is None:
        return TEST_DATABASE_URL
    path = tmp_path / "mbtcode.db"
    shutil.copyfile(_migrated_template, path)
    return f"sqlite:///{path}"


def _as_separate_caller(func, *args, **kwargs):
    """Run ``func`` the way a browser request or a CLI process would reach the app.

    The test's own work is committed first (another connection sees only committed rows,
    and on SQLite an open test transaction would hold the write lock). ``func`` then runs
    in an empty ``contextvars`` context, so Flask pushes a fresh app context: ``g`` (CSRF
    token, flask-login's cached user) and the database session are new, as in production,
    and whatever the request or command forgets to commit is rolled back at its teardown.
    """
    db.session.commit()
    return contextvars.Context().run(func, *args, **kwargs)


class IsolatedClient(FlaskClient):
    """Test client whose every request runs in its own app context (see above)."""

    def open(self, *args, **kwargs):
        return _as_separate_caller(super().open, *args, **kwargs)


class IsolatedCliRunner(FlaskCliRunner):
    """CLI runner whose every command runs in its own app context (see above)."""

    def invoke(self, cli=None, args=None, **kwargs):
        return _as_separate_caller(super().invoke, cli, args, **kwargs)


@pytest.fixture
def app(database_url) -> Iterator:
    app = create_app(_base_config(database_url))
    app.test_client_class = IsolatedClient
    app.test_cli_runner_class = IsolatedCliRunner
    with app.app_context():
        yield app
        db.session.remove()
        if TEST_DATABASE_URL:
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


_counter = itertools.count(1)


@pytest.fixture
def make_user(app):
    """Create a user (committed); ``password`` is ``PASSWORD`` unless given."""
    from mbtcode.services.users import create_user

    def make(role: str = "rater", *, email: str | None = None, name: str | None = None,
             password: str = PASSWORD):
        n = next(_counter)
        user = create_user(email or f"user{n}@example.org", name=name or f"User {n}", role=role,
                           password=password, actor=None)
        db.session.commit()
        return user

    return make


@pytest.fixture
def make_study(app):
    """Create a study on the default scheme (committed)."""
    from mbtcode.services.studies import create_study

    def make(name: str | None = None, *, scheme: str | None = None):
        study = create_study(name or f"Study {next(_counter)}", actor=None, scheme_ref=scheme)
        db.session.commit()
        return study

    return make


def transcript_text(n: int = 6, *, speakers: tuple[str, ...] = ("T", "P"), tag: str = "") -> str:
    """A small valid txt transcript: ``n`` timestamped turns cycling through ``speakers``.

    ``tag`` makes the content (and so its hash) unique.
    """
    tag = tag or f"t{next(_counter)}"
    return "".join(
        f"[00:{i // 60:02d}:{i % 60:02d}] {speakers[i % len(speakers)]}: utterance {i + 1} ({tag})\n"
        for i in range(n)
    )


def as_bytes(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode("utf-8")


@pytest.fixture
def plan_files(app):
    """``plan_files(study, {"name.txt": text}, manifest=csv_text, **kw)`` → ImportPlan (writes nothing)."""
    from mbtcode.services.imports import SourceFile, plan_import

    def plan(study, files: dict[str, str | bytes], *, manifest: str | None = None, **kwargs):
        sources = [SourceFile(name, as_bytes(data)) for name, data in files.items()]
        manifest_file = SourceFile("manifest.csv", as_bytes(manifest)) if manifest is not None else None
        return plan_import(study, sources, manifest=manifest_file, **kwargs)

    return plan


@pytest.fixture
def import_files(plan_files):
    """Import files into ``study`` (committed); same arguments as ``plan_files``."""
    from mbtcode.services.imports import apply_import

    def do_import(study, files: dict[str, str | bytes], *, actor=None, **kwargs):
        plan = plan_files(study, files, **kwargs)
        assert plan.ok, [str(p) for p in plan.problems]
        sessions = apply_import(plan, actor=actor)
        db.session.commit()
        return sessions

    return do_import


@pytest.fixture
def make_session(import_files):
    """Import one transcript into ``study`` as a session (committed)."""

    def make(study, lines: list[str] | None = None, *, filename: str | None = None,
             speaker_map: dict | None = None):
        n = next(_counter)
        text = "\n".join(lines) + "\n" if lines else transcript_text(6, tag=f"session {n}")
        (session,) = import_files(study, {filename or f"session{n}.txt": text},
                                  speaker_map=speaker_map)
        return session

    return make


def row_counts() -> dict[str, int]:
    """Rows per table of the data model, for before/after comparisons."""
    return {
        table.name: db.session.scalar(text(f'SELECT COUNT(*) FROM "{table.name}"'))
        for table in db.metadata.sorted_tables
    }


MINIMAL_SCHEME = {
    "id": "test-scheme",
    "version": "1",
    "title": "Scheme used by the tests",
    "code_sets": [
        {
            "id": "moves",
            "title": "Therapist moves",
            "applies_to_roles": ["therapist"],
            "codes": [
                {"id": "VAL", "label": "Validate", "key": "1", "mbt": True},
                {"id": "ARG", "label": "Argue", "key": "a", "mbt": False},
            ],
        }
    ],
}


@pytest.fixture
def scheme_file(tmp_path):
    """Write a scheme JSON file (MINIMAL_SCHEME with overrides) and return its path."""

    def write(doc: dict | None = None, *, name: str | None = None, **overrides) -> Path:
        document = json.loads(json.dumps(doc if doc is not None else MINIMAL_SCHEME))
        document.update(overrides)
        path = tmp_path / "schemes" / (name or f"{document.get('id', 'scheme')}-{next(_counter)}.json")
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_app():
    """Create further apps (own config); their engines are disposed after the test."""
    apps = []

    def make(config: dict | None = None):
        new = create_app(config)
        apps.append(new)
        return new

    yield make
    for made in apps:
        with made.app_context():
            db.engine.dispose()


def csrf_token_from(html: str) -> str:
    """The CSRF token a page carries (hidden input or hx-headers)."""
    match = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html) or re.search(
        r'value="([^"]+)" name="csrf_token"', html
    )
    if match is None:
        match = re.search(r"X-CSRFToken&#34;: &#34;([^&]+)&#34;", html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def login(client):
    """Sign ``user`` in through the real login form (CSRF included)."""

    def do_login(user, password: str = PASSWORD):
        page = client.get("/auth/login")
        token = csrf_token_from(page.get_data(as_text=True))
        response = client.post(
            "/auth/login", data={"email": user.email, "password": password, "csrf_token": token}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    return do_login


@pytest.fixture
def signed_in(client, make_user, login):
    """A rater account, signed in on ``client``."""
    user = make_user("rater")
    login(user)
    return user
