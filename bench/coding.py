"""Coding workspace: render time of the coding page and the save round trip under concurrent raters.

Sets up a temporary instance (SQLite in a temp folder, or $MBTCODE_DATABASE_URL), one study,
N rater accounts (study role rater) and one transcript of ``--utterances`` utterances per
rater, each assigned to its rater. Then:

1. **render** — one rater logs in through the real login form (Flask test client, CSRF
   included) and GETs the coding page 3 times to warm up, then 50 times timed: median, p95,
   bytes, and SQL statements per request (counted with a ``before_cursor_execute`` event).
   One save through the test client is measured the same way (time and statements).
2. **save** — ``python -m mbtcode serve --threads 8`` runs as a subprocess on 127.0.0.1;
   ``--raters`` client threads, each logged in as its own rater with its own keep-alive
   ``http.client`` connection and cookie jar, code their own assignment's utterances one after
   the other (POST with ``code``, ``version``, ``X-CSRFToken``, ``HX-Request``) for
   ``--seconds`` seconds, each taking the next version from the returned row. Client-side
   round-trip latency per save; afterwards the database must hold exactly the acknowledged
   saves (audit rows, code rows, final code and version of every row). Each rater makes two
   untimed warm-up saves first. ``--pace S`` adds a run where each rater saves once every S
   seconds (a rater's pace) instead of flat out.

``--profile`` adds, for the in-process part, the SQL statements of a page render and of a
save, cProfile summaries of both, and a save's time per phase; and for the server, a run per
load model against an instrumented copy of ``mbtcode serve`` (this script with ``_serve``)
that reports per save the server time, the wait for SQLite's write lock (``BEGIN IMMEDIATE``)
and how long each write transaction holds it.

Usage: ``python bench/coding.py [--utterances 600] [--raters 20] [--seconds 10] [--pace S]
[--profile]``.
Targets (issue 3): coding page median ≤ 150 ms; save p95 ≤ 25 ms under 20 raters on SQLite.
"""

from __future__ import annotations

import argparse
import cProfile
import html
import http.client
import os
import pstats
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from synthetic import make_transcript  # bench/ is on sys.path when run as a script

PASSWORD = "benchmark-passphrase-1"
RENDER_RUNS, RENDER_WARMUPS = 50, 3
SERVER_THREADS = 8
MAX_SAVES_PER_RATER = 5000  # a bound besides --seconds
WARMUP_SAVES = 2  # per rater and run, before the clock starts (verified, not timed)

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
ROW = re.compile(r'<li id="u\d+" class="[^"]*" data-uid="(\d+)" data-version="(\d+)"'
                 r'(?: data-code-set="([^"]+)")? data-code="([^"]*)"')
VERSION = re.compile(r'data-version="(\d+)"')


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


# --------------------------------------------------------------------------------------------
# set-up


def setup(app, n_raters: int, n_utterances: int):
    """Study, raters, one transcript and assignment per rater; returns [(email, assignment_id)]."""
    from sqlalchemy import select

    from mbtcode.extensions import db
    from mbtcode.migrate import upgrade_database
    from mbtcode.models import TherapySession
    from mbtcode.services.assignments import assign_sessions
    from mbtcode.services.imports import SourceFile, apply_import, plan_import
    from mbtcode.services.permissions import add_member
    from mbtcode.services.studies import create_study
    from mbtcode.services.users import create_user

    rng = random.Random(42)
    with app.app_context():
        upgrade_database()
        study = create_study("Coding benchmark", actor=None)
        raters = [
            create_user(f"rater{i:02d}@bench.example.org", name=f"Rater {i:02d}", role="rater",
                        password=PASSWORD, actor=None)
            for i in range(n_raters)
        ]
        for rater in raters:
            add_member(study, rater, "rater", actor=None)
        sources = [SourceFile(f"session{i:02d}.txt", make_transcript(rng, n_utterances, i))
                   for i in range(n_raters)]
        plan = plan_import(study, sources)
        assert plan.ok, plan.problems[:5]
        apply_import(plan, actor=None)
        sessions = list(db.session.scalars(
            select(TherapySession).where(TherapySession.study_id == study.id).order_by(TherapySession.id)
        ))
        pairs = []
        for session, rater in zip(sessions, raters, strict=True):
            (assignment,) = assign_sessions(study, [session], [rater], actor=None)
            pairs.append((rater.email, assignment.id))
        db.session.commit()
        db.session.remove()
    return pairs


class QueryCounter:
    """Counts (and keeps) the SQL statements the engine sends while ``active``."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.active = False
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, _conn, _cursor, statement, _params, _context, _many):
        if self.active:
            self.statements.append(" ".join(statement.split()))

    def run(self, func):
        self.statements = []
        self.active = True
        try:
            result = func()
        finally:
            self.active = False
        return result, list(self.statements)


def summarise_statements(statements: list[str]) -> str:
    kinds = Counter()
    for s in statements:
        head = s.split(" ", 1)[0].upper()
        if head == "SELECT":
            m = re.search(r"\bFROM (\w+)", s)
            head = f"SELECT … FROM {m.group(1) if m else '?'}"
        elif head in ("INSERT", "UPDATE", "DELETE"):
            m = re.search(r"\b(?:INTO|UPDATE|FROM) (\w+)", s)
            head = f"{head} {m.group(1) if m else '?'}"
        kinds[head] += 1
    return "\n".join(f"      {n:3d} × {k}" for k, n in kinds.most_common())


WRAPPERS = ("werkzeug/test.py", "flask/testing.py", "flask/app.py", "bench/coding.py",
            "werkzeug/wrappers", "flask/ctx.py")


def profile_summary(func, top: int = 10) -> str:
    """Top functions by cumulative time (request plumbing left out), then by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    t0 = time.perf_counter()
    func()
    total = time.perf_counter() - t0
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def name(key):
        file, line, func_name = key
        parts = file.replace("\\", "/").split("/")
        short = "/".join(parts[-2:]) if len(parts) > 1 else file
        return f"{short}:{line}({func_name})"

    rows = [(ct, tt, nc, key) for key, (_cc, nc, tt, ct, _callers) in stats.items()]
    cumulative = [r for r in sorted(rows, key=lambda r: -r[0])
                  if not any(w in r[3][0] or r[3][0] == w for w in WRAPPERS)][:top]
    own = sorted(rows, key=lambda r: -r[1])[:top]
    lines = [f"    (profiled run: {total * 1000:.1f} ms)", "    by cumulative time:"]
    lines += [f"      {ct * 1000:7.1f} ms  {nc:6d}×  {name(k)}" for ct, _tt, nc, k in cumulative]
    lines.append("    by own time:")
    lines += [f"      {tt * 1000:7.1f} ms  {nc:6d}×  {name(k)}" for _ct, tt, nc, k in own]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# part 1: render (in process)


def part_render(app, email: str, assignment_id: int, profile: bool) -> dict:
    from mbtcode.extensions import db

    client = app.test_client()
    page = client.get("/auth/login").get_data(as_text=True)
    token = html.unescape(CSRF_INPUT.search(page).group(1))
    response = client.post("/auth/login", data={"email": email, "password": PASSWORD,
                                                "csrf_token": token})
    assert response.status_code == 302, response.status_code
    url = f"/assignments/{assignment_id}"
    with app.app_context():
        counter = QueryCounter(db.engine)

    def get():
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response

    for _ in range(RENDER_WARMUPS):
        body = get().get_data(as_text=True)
    times = []
    for _ in range(RENDER_RUNS):
        t0 = time.perf_counter()
        get()
        times.append(time.perf_counter() - t0)
    _, render_sql = counter.run(get)

    # one in-process save (first code on an utterance, then an update of it), for the query count
    csrf = html.unescape(CSRF_META.search(body).group(1))
    rows = ROW.findall(body)
    uid, _version, code_set, _code = rows[-1]
    codes = codes_by_set(app)[code_set]
    headers = {"X-CSRFToken": csrf, "HX-Request": "true"}
    save_url = f"{url}/utterances/{uid}/code"
    state = {"version": "0", "i": 0}

    def save():
        state["i"] += 1
        r = client.post(save_url, data={"code": codes[state["i"] % len(codes)],
                                        "version": state["version"]}, headers=headers)
        assert r.status_code == 200, (r.status_code, r.get_data(as_text=True)[:300])
        state["version"] = VERSION.search(r.get_data(as_text=True)).group(1)
        return r

    _, insert_sql = counter.run(save)
    save_times = []
    for _ in range(20):
        t0 = time.perf_counter()
        save()
        save_times.append(time.perf_counter() - t0)
    _, update_sql = counter.run(save)
    result = {
        "times": times, "bytes": len(body.encode()), "utterances": len(rows),
        "render_sql": render_sql, "insert_sql": insert_sql, "update_sql": update_sql,
        "save_times": save_times,
    }
    result["saves"] = state["i"]
    if profile:
        result["render_profile"] = profile_summary(get)
        result["save_profile"] = profile_summary(save)
        result["save_phases"] = save_phases(save, 20)
        result["saves"] = state["i"]
    return result


def save_phases(save, runs: int) -> str:
    """Mean time per phase of a save (in process), timed by wrapping the functions it calls."""
    import mbtcode.web.coding as view
    from mbtcode.extensions import csrf, db, login

    spent: Counter = Counter()

    def timed(label, func):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - t0
        return wrapper

    patches = [
        (csrf, "protect", "CSRF check"),
        (login, "_user_callback", "load user (flask-login)"),
        (view, "load_own_assignment_or_404", "load assignment + role check"),
        (view, "utterance_of", "load utterance"),
        (view, "record_code", "record_code (version check, write, audit)"),
        (db.session, "commit", "COMMIT (flush + fsync)"),
        (view, "_row_response", "re-render row (2nd transaction: reloads + template)"),
        (view, "render_template", "  of which Jinja render_template"),
    ]
    originals = [(obj, attr, getattr(obj, attr)) for obj, attr, _label in patches]
    for obj, attr, label in patches:
        setattr(obj, attr, timed(label, getattr(obj, attr)))
    try:
        t0 = time.perf_counter()
        for _ in range(runs):
            save()
        total = time.perf_counter() - t0
    finally:
        for obj, attr, original in originals:
            if obj is db.session or obj is csrf:
                delattr(obj, attr)  # back to the class attribute
            else:
                setattr(obj, attr, original)
    lines = [f"      {spent[label] / runs * 1000:6.2f} ms  {label}" for _o, _a, label in patches]
    rest = total - sum(v for k, v in spent.items() if not k.startswith("  "))
    lines.append(f"      {rest / runs * 1000:6.2f} ms  rest (WSGI, Flask, session cookie, test client)")
    lines.append(f"      {total / runs * 1000:6.2f} ms  total per save (mean of {runs})")
    return "\n".join(lines)


def codes_by_set(app) -> dict[str, list[str]]:
    from mbtcode.extensions import db
    from mbtcode.models import Study
    from mbtcode.services.schemes import as_scheme

    with app.app_context():
        study = db.session.query(Study).first()
        scheme = as_scheme(study.scheme_version)
        result = {cs.id: [c.id for c in cs.codes] for cs in scheme.code_sets}
        db.session.remove()
    return result


# --------------------------------------------------------------------------------------------
# part 2: save round trip against the real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One rater's keep-alive HTTP/1.1 connection with a cookie jar (loopback only)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict | None = None) -> tuple[int, str]:
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urlencode(body).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=data, headers=hdrs)
        response = self.conn.getresponse()
        text = response.read().decode()
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["expires"] and "1970" in morsel["expires"] or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response.status, text

    def close(self):
        self.conn.close()


def start_server(port: int, env: dict, stats_file: str | None = None) -> subprocess.Popen:
    """``mbtcode serve`` as a subprocess; with ``stats_file``, this script's instrumented twin."""
    if stats_file is None:
        command = [sys.executable, "-m", "mbtcode", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--threads", str(SERVER_THREADS)]
    else:
        command = [sys.executable, os.path.abspath(__file__), "_serve", str(port), stats_file]
    # the server's output goes to a file: a full pipe would block its logging (waitress warns
    # "Task queue depth is N" under load)
    log = open(os.path.join(env["MBTCODE_INSTANCE_PATH"], f"server-{port}.log"), "w+b")  # noqa: SIM115
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError("server exited:\n" + log.read().decode(errors="replace"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("server did not start within 30 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log.close()


class Rater(threading.Thread):
    def __init__(self, port, email, assignment_id, codes_by_set, start_at: threading.Barrier,
                 seconds: float, pace: float = 0.0):
        super().__init__(daemon=True)
        self.pace = pace
        self.browser = Browser(port)
        self.email, self.assignment_id = email, assignment_id
        self.codes_by_set, self.barrier, self.seconds = codes_by_set, start_at, seconds
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.acked: dict[int, tuple[str, int]] = {}  # uid -> (code, version) last acknowledged
        self.n_acked = 0
        self.failure: BaseException | None = None

    def login(self):
        b = self.browser
        status, page = b.request("GET", "/auth/login")
        token = html.unescape(CSRF_INPUT.search(page).group(1))
        status, _ = b.request("POST", "/auth/login",
                              {"email": self.email, "password": PASSWORD, "csrf_token": token})
        assert status == 302, f"login {self.email}: {status}"
        status, page = b.request("GET", f"/assignments/{self.assignment_id}")
        assert status == 200, status
        self.csrf = html.unescape(CSRF_META.search(page).group(1))
        self.rows = [(int(uid), int(v), cs, code) for uid, v, cs, code in ROW.findall(page) if cs]
        self.preexisting = {uid for uid, v, _cs, _c in self.rows if v}

    def run(self):
        try:
            self.login()
            self.prepare()
            for _ in range(WARMUP_SAVES):  # untimed: the server's first requests compile SQL
                self.save_next(record=False)
        except Exception as exc:  # noqa: BLE001 -- reported by the main thread
            self.failure = exc
        self.barrier.wait()
        if self.failure:
            return
        try:
            self.code()
        except Exception as exc:  # noqa: BLE001 -- reported by the main thread
            self.failure = exc
        finally:
            self.browser.close()

    def prepare(self):
        self.headers = {"X-CSRFToken": self.csrf, "HX-Request": "true"}
        self.versions = {uid: v for uid, v, _cs, _c in self.rows}
        self.current = {uid: c for uid, _v, _cs, c in self.rows}
        self.rng = random.Random(self.assignment_id)
        self.base = f"/assignments/{self.assignment_id}/utterances/"
        self.i = 0

    def save_next(self, *, record: bool = True):
        """Code the next utterance (in transcript order, wrapping) with a different code."""
        uid, _v, code_set, _c = self.rows[self.i % len(self.rows)]
        self.i += 1
        code = self.rng.choice([c for c in self.codes_by_set[code_set] if c != self.current[uid]])
        headers = self.headers if record else {**self.headers, "X-Bench-Warmup": "1"}
        t0 = time.perf_counter()
        status, body = self.browser.request(
            "POST", f"{self.base}{uid}/code", {"code": code, "version": self.versions[uid]},
            headers)
        if record:
            self.latencies.append(time.perf_counter() - t0)
            self.statuses[status] += 1
        elif status != 200:
            raise RuntimeError(f"warm-up save: {status} {body[:200]}")
        if status == 200 and "saved" in body:
            self.versions[uid] = int(VERSION.search(body).group(1))
            self.current[uid] = code
            self.acked[uid] = (code, self.versions[uid])
            self.n_acked += 1

    def code(self):
        start = time.perf_counter()
        deadline = start + self.seconds
        phase = self.rng.uniform(0, self.pace)  # raters do not press keys in step
        k = 0
        while time.perf_counter() < deadline and k < MAX_SAVES_PER_RATER:
            if self.pace:  # one save every ``pace`` seconds (a rater's pace), late ones at once
                wait = start + phase + k * self.pace - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                if time.perf_counter() >= deadline:
                    break
            k += 1
            self.save_next()


def audit_count(app) -> int:
    from sqlalchemy import func, select

    from mbtcode.extensions import db
    from mbtcode.models import AuditEvent

    with app.app_context():
        n = db.session.scalar(select(func.count()).where(AuditEvent.action == "code.set"))
        db.session.remove()
    return n


def part_save(app, env: dict, pairs, seconds: float, pace: float = 0.0,
              stats_file: str | None = None) -> dict:
    port = free_port()
    by_set = codes_by_set(app)
    audits_before = audit_count(app)
    proc = start_server(port, env, stats_file)
    try:
        barrier = threading.Barrier(len(pairs) + 1)
        raters = [Rater(port, email, aid, by_set, barrier, seconds, pace) for email, aid in pairs]
        for r in raters:
            r.start()
        barrier.wait()  # every rater is logged in and has its page
        t0 = time.perf_counter()
        for r in raters:
            r.join(seconds + 120)
        elapsed = time.perf_counter() - t0
    finally:
        stop_server(proc)
    failures = [f"{r.email}: {r.failure!r}" for r in raters if r.failure]
    if failures:
        raise RuntimeError("client failures:\n" + "\n".join(failures))
    return {
        "raters": raters, "elapsed": elapsed, "problems": verify(app, raters, audits_before),
        "latencies": [x for r in raters for x in r.latencies],
        "statuses": sum((r.statuses for r in raters), Counter()),
        "acked": sum(r.n_acked for r in raters),
    }


def verify(app, raters, audits_before: int) -> list[str]:
    """Compare the database with what the clients were told was saved."""
    from sqlalchemy import select

    from mbtcode.extensions import db
    from mbtcode.models import UtteranceCode

    problems = []
    with app.app_context():
        for r in raters:
            stored = {row.utterance_id: row for row in db.session.scalars(
                select(UtteranceCode).where(UtteranceCode.assignment_id == r.assignment_id))}
            if set(stored) != set(r.acked) | r.preexisting:
                problems.append(f"assignment {r.assignment_id}: {len(stored)} code rows, "
                                f"{len(set(r.acked) | r.preexisting)} expected")
            for uid, (code, version) in r.acked.items():
                row = stored.get(uid)
                if row is None or row.code != code or row.version != version:
                    problems.append(f"assignment {r.assignment_id} utterance {uid}: stored "
                                    f"{row and (row.code, row.version)}, acknowledged {(code, version)}")
        db.session.remove()
    n_audit = audit_count(app) - audits_before
    n_acked = sum(r.n_acked for r in raters)
    if n_audit != n_acked:
        problems.append(f"{n_audit} new code.set audit rows, {n_acked} acknowledged saves")
    return problems


def serve_instrumented(port: int, stats_file: str) -> None:
    """``mbtcode serve`` plus timers: per save, server time, SQLite write-lock wait and hold.

    The write lock is taken by ``BEGIN IMMEDIATE`` (every transaction of a POST request) and
    released by COMMIT or ROLLBACK; the timers wrap the DB-API calls, nothing else changes.
    On SIGTERM the figures are written to ``stats_file`` as JSON.
    """
    import json
    import signal

    import waitress
    from sqlalchemy import event

    from mbtcode import create_app
    from mbtcode.extensions import db

    app = create_app()
    local = threading.local()
    records: list[dict] = []
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def _before(_conn, _cursor, statement, *_):
        if statement.startswith("BEGIN IMMEDIATE") and hasattr(local, "rec"):
            local.begin = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(_conn, _cursor, statement, *_):
        rec = getattr(local, "rec", None)
        if rec is None:
            return
        rec["statements"] += 1
        if statement.startswith("BEGIN IMMEDIATE"):
            now = time.perf_counter()
            rec["lock_wait"] += now - local.begin
            rec["write_transactions"] += 1
            local.locked_at = now

    def _release(original, is_commit):
        def wrapper(dbapi_connection):
            t0 = time.perf_counter()
            try:
                return original(dbapi_connection)
            finally:
                rec, locked_at = getattr(local, "rec", None), getattr(local, "locked_at", None)
                if rec is not None and locked_at is not None:
                    now = time.perf_counter()
                    rec["holds"].append(now - locked_at)
                    if is_commit:
                        rec["commit"] += now - t0
                    local.locked_at = None
        return wrapper

    engine.dialect.do_commit = _release(engine.dialect.do_commit, True)
    engine.dialect.do_rollback = _release(engine.dialect.do_rollback, False)
    inner = app.wsgi_app

    def timed(environ, start_response):
        save = (environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/code")
                and "HTTP_X_BENCH_WARMUP" not in environ)
        if save:
            local.rec = {"lock_wait": 0.0, "holds": [], "commit": 0.0, "write_transactions": 0,
                         "statements": 0}
            local.locked_at = None
        t0 = time.perf_counter()
        try:
            return inner(environ, start_response)
        finally:
            if save:
                rec = local.__dict__.pop("rec")
                # the request's session is removed at app-context teardown, inside ``inner``
                rec["server"] = time.perf_counter() - t0
                rec["lock_hold"] = sum(rec["holds"])
                records.append(rec)

    app.wsgi_app = timed

    def dump(_signum, _frame):
        with open(stats_file, "w") as fh:
            json.dump(records, fh)
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    waitress.serve(app, host="127.0.0.1", port=port, threads=SERVER_THREADS, ident="mbtcode")


def breakdown(stats_file: str) -> str:
    import json

    with open(stats_file) as fh:
        records = json.load(fh)
    if not records:
        return "    (no saves recorded)"
    lines = []
    rows = [("server", "server time (WSGI)"), ("lock_wait", "waiting for write lock"),
            ("lock_hold", "holding write lock"), ("hold_1", "  1st transaction (save)"),
            ("commit", "    of which COMMIT"), ("hold_2", "  2nd (re-render)")]
    for r in records:
        r["hold_1"] = r["holds"][0] if r["holds"] else 0.0
        r["hold_2"] = sum(r["holds"][1:])
    for key, label in rows:
        values = [r[key] for r in records]
        lines.append(f"    {label:24s} median {ms(statistics.median(values))}   "
                     f"p95 {ms(pct(values, 95))}   max {ms(max(values))}")
    other = [r["server"] - r["lock_wait"] - r["lock_hold"] for r in records]
    lines.append(f"    {'rest (no lock held)':24s} median {ms(statistics.median(other))}   "
                 f"p95 {ms(pct(other, 95))}")
    wt = Counter(r["write_transactions"] for r in records)
    st = Counter(r["statements"] for r in records)
    lines.append(f"    write transactions per save {dict(wt)}; SQL statements per save {dict(st)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main() -> None:
    if sys.argv[1:2] == ["_serve"]:  # the instrumented server of ``--profile``
        serve_instrumented(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=600)
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pace", type=float, default=0.0,
                        help="also run part 2 with each rater saving once every PACE seconds")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile summary and SQL statements of one page render and one save")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if not (1 <= args.raters <= 200 and 2 <= args.utterances <= 20000 and 0 < args.seconds <= 300):
        parser.error("out of range: 1–200 raters, 2–20,000 utterances, up to 300 s")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MBTCODE_INSTANCE_PATH"] = tmp
        env = dict(os.environ)
        from mbtcode import create_app
        from mbtcode.extensions import db

        app = create_app()
        t0 = time.perf_counter()
        pairs = setup(app, args.raters, args.utterances)
        t_setup = time.perf_counter() - t0
        with app.app_context():
            url = db.engine.url.render_as_string(hide_password=True)

        render = part_render(app, *pairs[0], profile=args.profile)
        save = part_save(app, env, pairs, args.seconds)
        extra = []  # (title, result, breakdown or None); they add saves on top of part 2's
        if args.pace:
            extra.append((f"paced: one save per rater every {args.pace:g} s",
                          part_save(app, env, pairs, args.seconds, args.pace), None))
        if args.profile:
            stats_file = os.path.join(tmp, "server-stats.json")
            result = part_save(app, env, pairs, args.seconds, 0.0, stats_file)
            extra.append(("flat out again, instrumented server", result, breakdown(stats_file)))
            if args.pace:
                result = part_save(app, env, pairs, args.seconds, args.pace, stats_file)
                extra.append((f"paced every {args.pace:g} s, instrumented server", result,
                              breakdown(stats_file)))
        problems = save["problems"] + [p for _t, r, _d in extra for p in r["problems"]]
        with app.app_context():
            db.engine.dispose()

    times = render["times"]
    print(f"database           {url.split('://')[0]}  (set-up {t_setup:.1f} s: {args.raters} rater(s), "
          f"{args.raters} × {args.utterances} utterances)")
    print(f"machine            {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average "
          f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (other work skews the figures)")
    print()
    print(f"coding page        {render['utterances']} utterances, {render['bytes']:,} bytes, "
          f"{len(render['render_sql'])} SQL statements")
    print(f"  render ×{RENDER_RUNS:<5}     median {ms(statistics.median(times))}   p95 {ms(pct(times, 95))}"
          f"   min {ms(min(times))}")
    st = render["save_times"]
    print(f"  save, in process  median {ms(statistics.median(st))}   p95 {ms(pct(st, 95))}"
          f"   (no concurrency; SQL statements: insert {len(render['insert_sql'])}, "
          f"update {len(render['update_sql'])})")
    if args.profile:
        print("\n  SQL of one coding page render:\n" + summarise_statements(render["render_sql"]))
        print("\n  SQL of one save (first code of an utterance):\n"
              + summarise_statements(render["insert_sql"]))
        print("\n  SQL of one save (changing a code):\n" + summarise_statements(render["update_sql"]))
        print("\n  cProfile, one coding page render:\n" + render["render_profile"])
        print("\n  cProfile, one save:\n" + render["save_profile"])
        print("\n  one save in process, time per phase:\n" + render["save_phases"])
    print()
    print(f"save round trip    {args.raters} rater(s), each its own keep-alive connection, saving "
          f"one after the other; waitress {SERVER_THREADS} threads")
    print_save(save)
    for title, result, detail in extra:
        print(f"\nsave round trip    {title}")
        print_save(result)
        if detail:
            print("  server side, per save:\n" + detail)
    print(f"\nlost writes        {'0 (database matches every acknowledged save, every run)' if not problems else len(problems)}")
    for p in problems[:10]:
        print("    " + p)
    if problems:
        sys.exit(1)


def print_save(save: dict) -> None:
    lat = save["latencies"]
    n = len(lat)
    errors = {s: c for s, c in save["statuses"].items() if s != 200}
    print(f"  saves            {n:,} in {save['elapsed']:.1f} s ({n / save['elapsed']:,.0f}/s), "
          f"acknowledged {save['acked']:,}, errors {sum(errors.values())} {errors or ''}")
    print(f"  latency          median {ms(statistics.median(lat))}   p95 {ms(pct(lat, 95))}   "
          f"p99 {ms(pct(lat, 99))}   max {ms(max(lat))}")


if __name__ == "__main__":
    main()
