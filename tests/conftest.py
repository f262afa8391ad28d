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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import text

from mbtcode import create_app
from mbtcode.extensions import db

TEST_DATABASE_URL = os.environ.get("MBTCODE_TEST_DATABASE_URL")


def _worker_database(url: str, worker: str) -> str:
    """The PostgreSQL database of one pytest-xdist worker (``test`` → ``test_gw0``), created once.

    Each worker empties its tables after every test, so workers must not share a database.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


if TEST_DATABASE_URL and os.environ.get("PYTEST_XDIST_WORKER"):
    TEST_DATABASE_URL = _worker_database(TEST_DATABASE_URL, os.environ["PYTEST_XDIST_WORKER"])
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


_parsed_shipped: dict[tuple[str, bytes], object] = {}


@pytest.fixture(autouse=True)
def _parse_shipped_schemes_once(monkeypatch):
    """Every new study registers the shipped schemes; parse each file's bytes once per run.

    Validating the MBT scheme against the JSON Schema costs ~0.1 s and would dominate every
    test that creates a study. The cache is keyed by the file's bytes, so a changed file
    is parsed (and validated) anew; the parse itself is tested in tests/io/test_schemes.py.
    """
    from mbtcode.io.schemes import load_scheme_file
    from mbtcode.services import schemes

    def load_once(path):
        key = (os.fspath(path), Path(path).read_bytes())
        if key not in _parsed_shipped:
            _parsed_shipped[key] = load_scheme_file(path)
        return _parsed_shipped[key]

    monkeypatch.setattr(schemes, "load_scheme_file", load_once)


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
    if _SEPARATE.get():  # a redirect followed from inside a separate call
        return func(*args, **kwargs)
    db.session.commit()

    def call():
        _SEPARATE.set(True)
        return func(*args, **kwargs)

    return contextvars.Context().run(call)


_SEPARATE: contextvars.ContextVar[bool] = contextvars.ContextVar("separate", default=False)


class IsolatedClient(FlaskClient):
    """Test client whose every request runs in its own app context (see above)."""

    def open(self, *args, **kwargs):
        return _as_separate_caller(super().open, *args, **kwargs)


class IsolatedCliRunner(FlaskCliRunner):
    """CLI runner whose every command runs in its own app context (see above)."""

    def invoke(self, cli=None, args=None, **kwargs):
        return _as_separate_caller(super().invoke, cli, args, **kwargs)


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates shared by the apps of one run (keyed by the template's source)."""

    def __init__(self) -> None:
        self._store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self._store:
            bucket.bytecode_from_string(self._store[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._store[bucket.key] = bucket.bytecode_to_string()


_TEMPLATE_CACHE = _MemoryBytecodeCache()


@pytest.fixture
def app(database_url) -> Iterator:
    """The app on the test's database.

    Two shortcuts keep ~300 tests that each create an app fast, without changing behaviour:
    compiled templates are shared between the apps of a run (every app would compile each
    template anew, ~50 ms per page), and SQLite skips fsync (durability against power loss
    is no test subject; tests/test_factory.py checks the production pragmas).
    """
    app = create_app(_base_config(database_url))
    app.test_client_class = IsolatedClient
    app.test_cli_runner_class = IsolatedCliRunner
    app.jinja_env.bytecode_cache = _TEMPLATE_CACHE
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            from sqlalchemy import event

            @event.listens_for(db.engine, "connect")
            def _no_fsync(dbapi_conn, _record):
                dbapi_conn.execute("PRAGMA synchronous=OFF")
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
    """A rater account, signed in on ``client`` (a member of no study)."""
    user = make_user("rater")
    login(user)
    return user


@pytest.fixture
def make_member(app):
    """Give ``user`` a role in ``study`` through the service (committed)."""
    from mbtcode.services.permissions import add_member

    def make(study, user, role: str = "rater"):
        member = add_member(study, user, role, actor=None)
        db.session.commit()
        return member

    return make


@pytest.fixture
def make_assignment(app, make_member):
    """Assign ``session`` to ``rater`` through the service (committed).

    The rater is made a rater of the session's study first if they are not one yet.
    """
    from sqlalchemy import select

    from mbtcode.models import Assignment, StudyMember
    from mbtcode.services.assignments import assign_sessions

    def make(session, rater, *, actor=None):
        role = db.session.scalar(
            select(StudyMember.role).where(
                StudyMember.study_id == session.study_id, StudyMember.user_id == rater.id
            )
        )
        if role != "rater":
            make_member(session.study, rater, "rater")
        assign_sessions(session.study, [session], [rater], actor=actor)
        db.session.commit()
        return db.session.scalar(
            select(Assignment).where(
                Assignment.session_id == session.id, Assignment.rater_id == rater.id
            )
        )

    return make


@pytest.fixture
def client_for(app):
    """``client_for(user)``: a new browser (test client) signed in as ``user``.

    Several users at once (rater A, rater B, their coordinator) each get their own cookies;
    ``login`` signs in on the one ``client``.
    """

    def make(user, password: str = PASSWORD):
        browser = app.test_client()
        page = browser.get("/auth/login")
        token = csrf_token_from(page.get_data(as_text=True))
        response = browser.post(
            "/auth/login", data={"email": user.email, "password": password, "csrf_token": token}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        return browser

    return make


@pytest.fixture
def signed_in_as(client, make_user, make_member, login):
    """``signed_in_as(role, *studies)``: a user with that site role, a member of ``studies``
    with the same role (site admins need no membership), signed in on ``client``."""

    def make(role: str, *studies, **user_kwargs):
        user = make_user(role, **user_kwargs)
        if role != "admin":
            for study in studies:
                make_member(study, user, role)
        login(user)
        return user

    return make




#: The transcript of the double-coded session in ``coding_world``: therapist (T), patient (P)
#: and one "other" speaker (an observer, not coded).
WORLD_LINES = [
    "[00:00:01] T: How was your week?",
    "[00:00:09] P: He never listens, I just know it.",
    "[00:00:15] T: What makes you so sure?",
    "[00:00:21] P: I can tell from his face.",
    "[00:00:30] Obs: (door opens)",
    "[00:00:41] T: Let's stay with that for a moment.",
]


@dataclass
class CodingWorld:
    """A study with one session coded by two raters (A and B) and one of every other role."""

    study: Any
    session: Any
    other_study: Any
    other_session: Any
    admin: Any
    coordinator: Any
    analyst: Any
    rater_a: Any
    rater_b: Any
    #: Coordinator of ``other_study`` only: a member of nothing here.
    outsider: Any
    a: Any  # rater A's assignment
    b: Any  # rater B's assignment
    utterances: list

    def utterance(self, position: int):
        return self.utterances[position - 1]


def _build_world() -> dict[str, int]:
    """Create the coding world's rows in the current app's database; return their ids."""
    from mbtcode.services.assignments import assign_sessions
    from mbtcode.services.imports import SourceFile, apply_import, plan_import
    from mbtcode.services.permissions import add_member
    from mbtcode.services.studies import create_study
    from mbtcode.services.users import create_user

    def user(role, name):
        n = next(_counter)
        return create_user(f"world{n}@example.org", name=name, role=role, password=PASSWORD,
                           actor=None)

    def session_of(study, name, text, **kwargs):
        plan = plan_import(study, [SourceFile(name, text.encode())], **kwargs)
        assert plan.ok, [str(p) for p in plan.problems]
        (session,) = apply_import(plan, actor=None)
        return session

    study = create_study("Blinded study", actor=None)
    other_study = create_study("Outside study", actor=None)
    people = {
        "admin": user("admin", "Site Admin"),
        "coordinator": user("coordinator", "Cora Coordinator"),
        "analyst": user("analyst", "Ana Analyst"),
        "rater_a": user("rater", "Alice Rater"),
        "rater_b": user("rater", "Bertha Blindtest"),
        "outsider": user("coordinator", "Otto Outsider"),
    }
    for study_, member, role in [(study, "coordinator", "coordinator"),
                                 (study, "analyst", "analyst"), (study, "rater_a", "rater"),
                                 (study, "rater_b", "rater"),
                                 (other_study, "outsider", "coordinator")]:
        add_member(study_, people[member], role, actor=None)
    session = session_of(study, "world.txt", "\n".join(WORLD_LINES) + "\n",
                         speaker_map={"Obs": "other"})
    other_session = session_of(other_study, "elsewhere.txt", "T: elsewhere one\nP: elsewhere two\n")
    a, b = assign_sessions(study, [session], [people["rater_a"], people["rater_b"]],
                           actor=people["coordinator"])
    db.session.flush()
    return {"study": study.id, "other_study": other_study.id, "session": session.id,
            "other_session": other_session.id, "a": a.id, "b": b.id,
            **{key: u.id for key, u in people.items()}}


@pytest.fixture(scope="session")
def _world_template(_migrated_template, tmp_path_factory):
    """On SQLite: a database file holding the coding world, built once per run (or None).

    Building the world costs ~0.1 s; copying a file costs ~0.2 ms. On PostgreSQL every test
    builds it anew.
    """
    if _migrated_template is None:
        return None
    from werkzeug.security import generate_password_hash

    from mbtcode.io.schemes import load_scheme_file
    from mbtcode.services import schemes, users

    path = tmp_path_factory.mktemp("world") / "world.db"
    shutil.copyfile(_migrated_template, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MBTCODE_INSTANCE_PATH", str(tmp_path_factory.mktemp("world-instance")))
        mp.setattr(users, "generate_password_hash",
                   functools.partial(generate_password_hash, method="pbkdf2:sha256:1000"))
        mp.setattr(schemes, "load_scheme_file", load_scheme_file)
        app = create_app(_base_config(f"sqlite:///{path}"))
        with app.app_context():
            ids = _build_world()
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
    assert not path.with_name(path.name + "-wal").exists()
    return path, ids


@pytest.fixture
def coding_world(app, _world_template):
    """A ``CodingWorld`` (committed); names are distinctive so that leaks can be searched.

    On SQLite the test's (still untouched) database file is replaced by the prebuilt world.
    """
    from mbtcode.models import Assignment, Study, TherapySession, User
    from mbtcode.services.sessions import all_utterances

    if _world_template is None:
        ids = _build_world()
        db.session.commit()
    else:
        template, ids = _world_template
        db.session.remove()
        target = Path(db.engine.url.database)
        assert db.session.scalar(text("SELECT COUNT(*) FROM user_account")) == 0, \
            "request coding_world before creating any rows"
        db.session.remove()
        db.engine.dispose()
        for suffix in ("-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        shutil.copyfile(template, target)
    get = db.session.get
    session = get(TherapySession, ids["session"])
    return CodingWorld(
        study=get(Study, ids["study"]), session=session,
        other_study=get(Study, ids["other_study"]),
        other_session=get(TherapySession, ids["other_session"]),
        admin=get(User, ids["admin"]), coordinator=get(User, ids["coordinator"]),
        analyst=get(User, ids["analyst"]), rater_a=get(User, ids["rater_a"]),
        rater_b=get(User, ids["rater_b"]), outsider=get(User, ids["outsider"]),
        a=get(Assignment, ids["a"]), b=get(Assignment, ids["b"]),
        utterances=all_utterances(session),
    )

#: A valid code per speaker role in the default (MBT individual) scheme.
CODE_FOR_ROLE = {"therapist": "EV", "patient": "MENT"}


def code_everything(assignment, actor, *, skip: tuple[int, ...] = ()) -> None:
    """Code every codable utterance of the assignment (but the positions in ``skip``); commit."""
    from mbtcode.services.coding import codes_by_utterance, record_code
    from mbtcode.services.sessions import all_utterances

    rows = codes_by_utterance(assignment)
    for u in all_utterances(assignment.session):
        if u.role in CODE_FOR_ROLE and u.position not in skip:
            row = rows.get(u.id)
            record_code(assignment, u, CODE_FOR_ROLE[u.role],
                        expected_version=row.version if row else 0, actor=actor)
    db.session.commit()


def rate_everything(assignment, actor, value: str = "4", *, skip=()) -> None:
    """Give every required rating (but the (item, dimension) pairs in ``skip``); commit."""
    from mbtcode.services.assignments import required_ratings
    from mbtcode.services.ratings import ratings_of, record_rating

    current = ratings_of(assignment)
    for instrument, item, dimension in required_ratings(assignment.study):
        if (item, dimension) in skip:
            continue
        row = current.get((instrument, item, dimension))
        record_rating(assignment, instrument, item, dimension, value,
                      expected_version=row.version if row else 0, actor=actor)
    db.session.commit()


def check_each(cases, check) -> None:
    """Run ``check(case)`` for every case and report every case that fails, not just the first.

    For lists of bad inputs that share one (costly) setup: one behaviour, many inputs.
    """
    failures = []
    for case in cases:
        try:
            check(case)
        except AssertionError as exc:
            failures.append(f"{case!r}: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported with the case that raised it
            failures.append(f"{case!r}: {type(exc).__name__}: {exc}")
        db.session.rollback()
    assert not failures, "\n".join(failures)
