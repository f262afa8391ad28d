"""Reliability report for a large double-coded study: from the database to the finished report.

Builds (once, cached) a study on the demo scheme ``mbt-individual`` with ``--sessions``
sessions of about ``--utterances-per-session`` codable utterances each (therapist and patient
turns alternating), two raters per session out of ``--raters`` (pairs rotating through every
pair of raters), every utterance coded by both raters and every required MBT-ACS rating given
by both, all assignments submitted. Then, each in a fresh process on the built database:

1. **frames** — ``frames.code_frame(study, min_raters=2)`` and ``frames.rating_frame(study,
   min_raters=2)`` (database → DataFrames);
2. **report** — the whole ``reliability_report(study, n_boot=N)`` (database → finished report)
   and ``json.dumps(report, allow_nan=False)``;

with the peak RSS of each process (``resource.getrusage``; the RSS before the timed part is
printed too, i.e. interpreter + imports). ``--profile`` adds a third fresh process that runs
the report under cProfile and prints the top 25 functions by cumulative time and the time of
the report's parts (DB fetch, DataFrame building, per-code summaries, pair loops, bootstrap,
ICC …). Profiling slows pandas-heavy code down: compare parts with each other, not with the
timed run.

The study data (all generated with ``numpy.random.default_rng(--seed)``):

* codes — per code set a skewed prevalence (a few codes common, most rare), varied per session
  (Dirichlet around it, so per-session tallies differ between sessions); the first rater's
  code is drawn from the session's prevalence; the second rater gives the same code with
  probability 0.75, else a code drawn again from the same distribution (which may coincide:
  observed agreement about 0.8);
* ratings — ``round(4 + 1.1·session quality + item offset + rater bias + 0.5·shared
  session×item noise + 0.6·rater noise)`` clipped to 1…7 (the shared term correlates the two
  raters' errors); competence correlated with adherence; items N/A for both raters in 2% of
  session×items and for one rater in another 1%; overall ratings never N/A.

Seeding uses the app's migrations and ``create_study``, then the DB-API connection directly
(sqlite3 ``executemany`` in one transaction with ``synchronous=OFF``, or PostgreSQL ``COPY``
in text format, then ``VACUUM ANALYZE`` as autovacuum would), with explicit ids; no
``ANALYZE`` on SQLite (the app never runs it). Wall-clock figures on a shared machine depend on
its load: each part also prints its process CPU time and the load average. The SQLite file is cached under ``$TMPDIR/mbtcode-bench-reliability/``
keyed by the parameters and the migration head (``--rebuild`` forces a new one). With
``--database-url postgresql+psycopg://HOST:PORT/DB`` the study goes into a database of its own,
``mbtcode_bench_reliability``, created through that server (``DB`` is only used to connect
for ``CREATE DATABASE``); the database is marked with a comment and reused while the key
matches; a database of that name without the mark is never touched.

Usage: ``python bench/reliability.py [--sessions 10000] [--utterances-per-session 100]
[--raters 20] [--small] [--rebuild] [--n-boot 1000] [--profile] [--only frames|report]
[--database-url URL]``.
Target (issue 4): database → report ≤ 5 s on SQLite for 1,000,000 double-coded utterances and
10,000 double-rated sessions.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
STUDY_NAME = "Reliability benchmark"
GENERATOR_VERSION = 1  # bump when the generated data changes (part of the cache key)
PG_DATABASE = "mbtcode_bench_reliability"
PG_MARK = "mbtcode bench/reliability.py"
SMALL = {"sessions": 400, "utterances_per_session": 50, "raters": 6}
DEFAULTS = {"sessions": 10_000, "utterances_per_session": 100, "raters": 20}
SESSION_CHUNK = 500  # sessions generated and written per chunk
AGREEMENT = 0.75  # probability that the second rater copies the first rater's code


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.0f} MB"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


# --------------------------------------------------------------------------------------------
# the study's data


def code_weights(n: int):
    """A skewed prevalence over n codes (Zipf-like, exponent 1.1), in scheme order shuffled."""
    import numpy as np

    w = 1.0 / np.arange(1, n + 1) ** 1.1
    rng = np.random.default_rng(n)  # fixed per code set size, independent of --seed
    return rng.permutation(w / w.sum())


def draw(rng, cdf_rows):
    """One category per row from per-row cumulative distributions (rows × K)."""
    import numpy as np

    u = rng.random(len(cdf_rows))
    idx = (u[:, None] >= cdf_rows).sum(axis=1)
    return np.minimum(idx, cdf_rows.shape[1] - 1)


class Writer:
    """Bulk rows through the DB-API connection: sqlite3 executemany or PostgreSQL COPY."""

    def __init__(self, raw_conn, dialect: str, timestamp_processor):
        self.raw = raw_conn
        self.dialect = dialect
        self.rows: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
        # SQLite: the text SQLAlchemy would store; PostgreSQL: COPY text input
        self.now = timestamp_processor(now) if dialect == "sqlite" else now.isoformat(sep=" ")

    def day(self, d: date) -> str:
        return d.isoformat()

    def begin(self) -> None:
        if self.dialect == "sqlite":
            self.raw.execute("PRAGMA foreign_keys=OFF")  # consistent by construction
            self.raw.execute("PRAGMA synchronous=OFF")
            self.raw.execute("PRAGMA cache_size=-512000")
            self.raw.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.dialect == "sqlite":
            self.raw.execute("COMMIT")
            self.raw.execute("PRAGMA synchronous=FULL")
            self.raw.execute("PRAGMA foreign_keys=ON")
        else:
            self.raw.commit()

    def write(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        t0 = time.perf_counter()
        cols = ", ".join(columns)
        if self.dialect == "sqlite":
            marks = ", ".join("?" * len(columns))
            self.raw.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
        else:
            # COPY in text format, formatted here (psycopg's write_row adapts value by value
            # and is several times slower). The generated strings hold no tab, newline or
            # backslash, so nothing needs escaping; None is NULL, True/False read as booleans.
            text = "".join("\t".join("\\N" if v is None else str(v) for v in row) + "\n"
                           for row in rows)
            with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                copy.write(text)
        self.rows[table] = self.rows.get(table, 0) + len(rows)
        self.seconds[table] = self.seconds.get(table, 0.0) + time.perf_counter() - t0

    def next_id(self, table: str) -> int:
        cur = self.raw.cursor()
        cur.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
        (value,) = cur.fetchone()
        cur.close()
        return int(value)

    def fix_sequences(self, tables) -> None:
        if self.dialect != "postgresql":
            return
        with self.raw.cursor() as cur:
            for table in tables:
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )


def seed_study(app, n_sessions: int, n_utt: int, n_raters: int, seed: int) -> dict:
    """Migrate, create the study, bulk-insert everything; returns figures of the build."""
    import numpy as np
    from sqlalchemy import DateTime

    from mbtcode.extensions import db
    from mbtcode.migrate import upgrade_database
    from mbtcode.services.assignments import required_ratings
    from mbtcode.services.schemes import as_scheme
    from mbtcode.services.studies import create_study
    from synthetic import WORDS

    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    with app.app_context():
        upgrade_database()
        study = create_study(STUDY_NAME, actor=None)
        db.session.commit()
        t_migrated = time.perf_counter()
        study_id = study.id
        scheme = as_scheme(study.scheme_version)
        required = required_ratings(study)
        instruments = {i.id: i for i in scheme.instruments}
        set_for_role = {}
        for code_set in scheme.code_sets:
            for role in code_set.applies_to_roles:
                set_for_role.setdefault(role, code_set)
        therapist_set, patient_set = set_for_role["therapist"], set_for_role["patient"]
        dialect = db.engine.dialect.name
        db.session.remove()

        raw = db.engine.raw_connection()
        try:
            proc = DateTime(timezone=True).bind_processor(db.engine.dialect) or (lambda v: v)
            w = Writer(raw.driver_connection, dialect, proc)
            w.begin()
            now = w.now
            first = {t: w.next_id(t) for t in (
                "user_account", "study_member", "therapy_session", "transcript", "utterance",
                "assignment", "utterance_code", "item_rating", "reliability_sample",
                "sampled_session")}

            # raters (they never log in: the hash is no valid hash)
            rater_ids = [first["user_account"] + i for i in range(n_raters)]
            w.write("user_account",
                    ("id", "email", "name", "role", "password_hash", "active", "session_epoch",
                     "created_at"),
                    [(rid, f"rater{i:03d}@bench.example.org", f"Rater {i:03d}", "rater",
                      "!no-login", True, 0, now) for i, rid in enumerate(rater_ids)])
            w.write("study_member", ("id", "study_id", "user_id", "role", "created_at"),
                    [(first["study_member"] + i, study_id, rid, "rater", now)
                     for i, rid in enumerate(rater_ids)])
            sample_id = first["reliability_sample"]
            w.write("reliability_sample",
                    ("id", "study_id", "seed", "fraction", "stratify", "created_at"),
                    [(sample_id, study_id, seed, 1.0, "", now)])

            # sessions: about n_utt utterances each (±10 %, pairwise balanced: exact total)
            spread = max(0, n_utt // 10)
            delta = rng.integers(-spread, spread + 1, size=(n_sessions + 1) // 2)
            if n_sessions % 2:
                delta[-1] = 0  # the last session has no partner to balance it
            n_per = np.full(n_sessions, n_utt)
            n_per[0::2] += delta[: len(n_per[0::2])]
            n_per[1::2] -= delta[: len(n_per[1::2])]
            pairs = [(a, b) for a in range(n_raters) for b in range(a + 1, n_raters)]
            texts = [" ".join(WORDS[j] for j in rng.integers(0, len(WORDS), rng.integers(6, 31)))
                     for _ in range(997)]
            ts_weights = code_weights(len(therapist_set.codes))
            pt_weights = code_weights(len(patient_set.codes))
            ts_codes = [c.id for c in therapist_set.codes]
            pt_codes = [c.id for c in patient_set.codes]
            rater_bias = rng.normal(0.0, 0.3, n_raters)
            item_offset = {key: rng.normal(0.0, 0.5) for key in required}
            scale = {iid: (inst.scale_min, inst.scale_max) for iid, inst in instruments.items()}
            overall_ids = {o.id for inst in instruments.values() for o in inst.overall}

            next_utt = first["utterance"]
            next_asg = first["assignment"]
            next_code = first["utterance_code"]
            next_rating = first["item_rating"]
            base_day = date(2024, 1, 8)
            for start in range(0, n_sessions, SESSION_CHUNK):
                stop = min(n_sessions, start + SESSION_CHUNK)
                sessions, transcripts, sampled, utterances = [], [], [], []
                assignments, codes, ratings = [], [], []
                for s in range(start, stop):
                    sid = first["therapy_session"] + s
                    therapist, patient = s % 40 + 1, s // 25 + 1
                    label = f"TH-{therapist:02d}/PT-{patient:04d} #{s % 25 + 1}"
                    sessions.append((sid, study_id, label, w.day(base_day + timedelta(days=s % 700)),
                                     "individual", ("initial", "main", "final")[s % 25 * 3 // 25],
                                     s % 25 + 1, "en", now))
                    n = int(n_per[s])
                    tid = first["transcript"] + s
                    transcripts.append((tid, sid, study_id, f"session{s:06d}.txt", "txt",
                                        hashlib.sha256(label.encode()).hexdigest(), n, now))
                    sampled.append((first["sampled_session"] + s, sample_id, study_id, sid, ""))
                    a, b = pairs[s % len(pairs)]
                    if s // len(pairs) % 2:
                        a, b = b, a  # either rater of a pair is sometimes the first one
                    asg = (next_asg, next_asg + 1)
                    next_asg += 2
                    for aid, r in zip(asg, (a, b), strict=True):
                        assignments.append((aid, study_id, sid, rater_ids[r], "submitted", now,
                                            now, 3))

                    # utterances and both raters' codes (vectorised per session)
                    roles = np.arange(n) % 2  # 0 therapist, 1 patient
                    uids = np.arange(next_utt, next_utt + n)
                    next_utt += n
                    tcdf = np.cumsum(rng.dirichlet(ts_weights * 60 + 0.05), axis=-1)
                    pcdf = np.cumsum(rng.dirichlet(pt_weights * 60 + 0.05), axis=-1)
                    is_t = roles == 0
                    first_code = np.empty(n, dtype=np.intp)
                    second_code = np.empty(n, dtype=np.intp)
                    for mask, cdf in ((is_t, tcdf), (~is_t, pcdf)):
                        m = int(mask.sum())
                        rows = np.broadcast_to(cdf, (m, len(cdf)))
                        c1 = draw(rng, rows)
                        c2 = np.where(rng.random(m) < AGREEMENT, c1, draw(rng, rows))
                        first_code[mask], second_code[mask] = c1, c2
                    text_idx = rng.integers(0, len(texts), n)
                    for pos in range(n):
                        t = is_t[pos]
                        utterances.append((int(uids[pos]), tid, pos + 1, "T" if t else "P",
                                           "therapist" if t else "patient", pos * 4.0,
                                           pos * 4.0 + 3.5, texts[text_idx[pos]]))
                    for aid, chosen in ((asg[0], first_code), (asg[1], second_code)):
                        for pos in range(n):
                            if is_t[pos]:
                                cs, code = therapist_set.id, ts_codes[chosen[pos]]
                            else:
                                cs, code = patient_set.id, pt_codes[chosen[pos]]
                            codes.append((next_code, aid, int(uids[pos]), cs, code, "", now, 1))
                            next_code += 1

                    # MBT-ACS ratings: correlated between raters, some items N/A
                    quality = rng.normal()
                    competence_shift = rng.normal(0.0, 0.4)
                    for key in required:
                        instrument, item, dimension = key
                        lo, hi = scale[instrument]
                        shared = rng.normal()
                        u = rng.random()
                        is_overall = item in overall_ids
                        na_both = not is_overall and u < 0.02
                        na_one = -1 if is_overall or not 0.02 <= u < 0.03 else int(rng.integers(2))
                        for slot, (aid, r) in enumerate(zip(asg, (a, b), strict=True)):
                            if na_both or na_one == slot:
                                value, na = None, True
                            else:
                                v = (4 + 1.1 * quality + item_offset[key] + rater_bias[r]
                                     + 0.5 * shared + 0.6 * rng.normal()
                                     + (competence_shift if dimension == "competence" else 0.0))
                                value, na = int(min(hi, max(lo, round(v)))), False
                            ratings.append((next_rating, aid, instrument, item, dimension, value,
                                            na, now, 1))
                            next_rating += 1
                w.write("therapy_session",
                        ("id", "study_id", "label", "session_date", "modality", "phase",
                         "session_number", "language", "created_at"), sessions)
                w.write("transcript",
                        ("id", "session_id", "study_id", "original_filename", "format", "sha256",
                         "n_utterances", "imported_at"), transcripts)
                w.write("sampled_session", ("id", "sample_id", "study_id", "session_id", "stratum"),
                        sampled)
                w.write("utterance",
                        ("id", "transcript_id", "position", "speaker", "role", "start_s", "end_s",
                         "text"), utterances)
                w.write("assignment",
                        ("id", "study_id", "session_id", "rater_id", "status", "created_at",
                         "submitted_at", "version"), assignments)
                w.write("utterance_code",
                        ("id", "assignment_id", "utterance_id", "code_set", "code", "note",
                         "updated_at", "version"), codes)
                w.write("item_rating",
                        ("id", "assignment_id", "instrument", "item", "dimension", "value",
                         "not_applicable", "updated_at", "version"), ratings)
                print(f"  seeding: {stop:,} / {n_sessions:,} sessions "
                      f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
            w.fix_sequences(first)
            t_commit = time.perf_counter()
            w.commit()
            if dialect == "postgresql":
                raw.driver_connection.autocommit = True
                raw.driver_connection.execute("VACUUM ANALYZE")  # what autovacuum would do
            t_end = time.perf_counter()
        finally:
            raw.close()
        db.engine.dispose()  # the last SQLite connection checkpoints the WAL into the file
    return {
        "seconds_total": t_end - t_start,
        "seconds_migrate_study": t_migrated - t_start,
        "seconds_commit": t_end - t_commit,
        "rows": w.rows,
        "seconds_per_table": w.seconds,
    }


# --------------------------------------------------------------------------------------------
# where the database lives


def cache_key(args) -> str:
    from mbtcode.migrate import head_revision

    return (f"s{args.sessions}-u{args.utterances_per_session}-r{args.raters}-seed{args.seed}"
            f"-g{GENERATOR_VERSION}-{head_revision()}")


def pg_urls(base_url: str):
    """(admin URL as given, URL of the bench's own database, libpq conninfo of both)."""
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    bench = url.set(database=PG_DATABASE)

    def conninfo(u):
        return u.set(drivername="postgresql").render_as_string(hide_password=False)

    return url, bench, conninfo(url), conninfo(bench)


def prepare_postgres(args, key: str) -> tuple[str, bool]:
    """Create (or find, or recreate) our own database; returns (URL, already built)."""
    import psycopg

    _url, bench, admin_info, _bench_info = pg_urls(args.database_url)
    with psycopg.connect(admin_info, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = %s", (PG_DATABASE,)).fetchone()
        if row is not None:
            comment = row[0] or ""
            if not comment.startswith(PG_MARK):
                sys.exit(f"Error: database {PG_DATABASE} exists and was not made by this script "
                         f"(no '{PG_MARK}' comment); not touching it")
            if comment == f"{PG_MARK} key={key} complete" and not args.rebuild:
                return bench.render_as_string(hide_password=False), True
            conn.execute(f'DROP DATABASE "{PG_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        conn.execute(f"COMMENT ON DATABASE \"{PG_DATABASE}\" IS '{PG_MARK} key={key} building'")
    return bench.render_as_string(hide_password=False), False


def mark_postgres_complete(args, key: str) -> None:
    import psycopg

    _url, _bench, admin_info, _ = pg_urls(args.database_url)
    with psycopg.connect(admin_info, autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{PG_DATABASE}\" IS '{PG_MARK} key={key} complete'")


def database_size(url: str, instance: Path) -> int:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    import psycopg

    from sqlalchemy.engine import make_url

    info = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


# --------------------------------------------------------------------------------------------
# measuring (in a fresh process: ``python bench/reliability.py _measure PART URL INSTANCE N_BOOT``)

def _report(name: str):
    return lambda f, n: n == name and f.endswith("reliability_report.py")


def _builtin(method: str, owner: str):
    return lambda f, n: f == "~" and method in n and owner in n


PARTS_OF_THE_REPORT = [
    # (label, predicate on (file, function name)); cumulative times: parts may overlap, and
    # indented rows are (mostly) inside the row above; a part the code no longer has is left out
    ("code_frame (DB → codes DataFrame)", lambda f, n: f.endswith("frames.py") and n == "code_frame"),
    ("rating_frame (DB → ratings DataFrame)", lambda f, n: f.endswith("frames.py") and n == "rating_frame"),
    ("  DB: sqlite3 execute (up to the first row)", _builtin("'execute'", "sqlite3.Cursor")),
    ("  DB: sqlite3 fetchall/fetchmany (SQLite's work + rows → tuples)", lambda f, n: f == "~"
        and "sqlite3.Cursor" in n and ("fetchall" in n or "fetchmany" in n)),
    ("  DB: psycopg execute", lambda f, n: f.endswith("psycopg/cursor.py") and n == "execute"),
    ("  DB: psycopg fetchall/fetchmany", lambda f, n: f.endswith("psycopg/cursor.py")
        and n in ("fetchall", "fetchmany")),
    ("  SQLAlchemy Result.all (tuples → Row objects)", lambda f, n: n == "all" and "engine/result.py" in f),
    ("  DataFrame.from_records", lambda f, n: n == "from_records"),
    ("    hasattr(Row, 'dtype') probes (pandas 3 + Row)", lambda f, n: n == "_key_not_found"
        and "engine/result.py" in f),
    ("code sets (_code_sets)", _report("_code_sets")),
    ("  overall + per-code summaries (irr_summary)", lambda f, n: n == "irr_summary"),
    ("  per-code summaries (irr_summary_one_vs_rest)", lambda f, n: n == "irr_summary_one_vs_rest"),
    ("  session tallies (_tallies)", _report("_tallies")),
    ("  pairs of ratings within units (_pair_expansion)", _report("_pair_expansion")),
    ("  rater pairs (_pair_rows)", _report("_pair_rows")),
    ("  coincidence matrix (_coincidences)", _report("_coincidences")),
    ("ratings (_ratings)", _report("_ratings")),
    ("  items (_rating_entry)", _report("_rating_entry")),
    ("  item means (_mean_entry)", _report("_mean_entry")),
    ("designs and rater slots (_designs)", _report("_designs")),
    ("string comparisons (pandas str dtype ==)", lambda f, n: n == "_cmp_method"
        and f.endswith("arrays/string_.py")),
    ("stats: validation + encoding (_prepare, _prepare_index)", lambda f, n: n in ("_prepare", "_prepare_index")
        and "stats" in f),
    ("stats: percent_agreement", lambda f, n: n == "percent_agreement"),
    ("stats: krippendorff_alpha", lambda f, n: n == "krippendorff_alpha" and "stats" in f),
    ("  krippendorff package alpha()", lambda f, n: n == "alpha" and "krippendorff" in f),
    ("stats: gwet_ac1", lambda f, n: n == "gwet_ac1"),
    ("stats: fleiss_kappa", lambda f, n: n == "fleiss_kappa"),
    ("stats: cohen_kappa", lambda f, n: n == "cohen_kappa"),
    ("stats: icc", lambda f, n: n == "icc" and "stats" in f),
    ("stats: bootstrap weights (_boot_weights / _pattern_weights)", lambda f, n: n in
        ("_boot_weights", "_pattern_weights") and "stats" in f),
    ("  Generator.multinomial", lambda f, n: "multinomial" in n),
    ("pandas groupby reductions (any)", lambda f, n: n in ("sum", "mean", "agg", "aggregate", "rank",
                                                           "nunique") and "groupby" in f),
    ("pandas concat (any)", lambda f, n: n == "concat" and "pandas" in f),
]


def profile_text(profiler: cProfile.Profile, total: float, top: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    raw = stats.stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    lines = [f"profiled report run: {total:.2f} s (cProfile overhead included)", "",
             "where the time goes (cumulative s; rows overlap, indented rows are inside the one above):"]
    for label, pred in PARTS_OF_THE_REPORT:
        matched = [(ct, nc) for (f, _l, n), (_cc, nc, _tt, ct, _c) in raw.items() if pred(f.replace("\\", "/"), n)]
        if matched:
            # a recursive function or a generator is counted once per top-level entry: sum is
            # right for non-nested calls, which is the case for every predicate above
            ct = sum(c for c, _ in matched)
            calls = sum(n for _, n in matched)
            lines.append(f"  {ct:8.2f} s  {calls:7d}×  {label}")
    lines += ["", f"top {top} by cumulative time:", out.getvalue()]
    return "\n".join(lines)


def measure(part: str, url: str, instance: str, n_boot: int) -> None:
    """Child process: time one part, print one ``RESULT {json}`` line (and the profile)."""
    t0 = time.perf_counter()
    os.environ["MBTCODE_INSTANCE_PATH"] = instance
    from mbtcode import create_app
    from mbtcode.extensions import db
    from mbtcode.services import frames
    from mbtcode.services.reliability_report import reliability_report
    from mbtcode.services.studies import get_study_by_name

    app = create_app({"DATABASE_URL": url})
    result: dict = {"part": part, "import_s": time.perf_counter() - t0}
    with app.app_context():
        study = get_study_by_name(STUDY_NAME)
        study.scheme_version  # noqa: B018 - loaded before the clock starts
        result["rss_before"] = current_rss_bytes()
        result["load_before"] = os.getloadavg()[0]
        if part == "frames":
            t1, c1 = time.perf_counter(), time.process_time()
            codes = frames.code_frame(study, min_raters=2)
            t2, c2 = time.perf_counter(), time.process_time()
            ratings = frames.rating_frame(study, min_raters=2)
            t3, c3 = time.perf_counter(), time.process_time()
            result.update({
                "code_frame_s": t2 - t1, "rating_frame_s": t3 - t2,
                "code_frame_cpu": c2 - c1, "rating_frame_cpu": c3 - c2,
                "code_rows": len(codes), "rating_rows": len(ratings),
                "code_frame_bytes": int(codes.memory_usage(deep=True).sum()),
                "rating_frame_bytes": int(ratings.memory_usage(deep=True).sum()),
                "sessions": int(codes["session_id"].nunique()) if len(codes) else 0,
            })
        else:
            profiler = cProfile.Profile() if part == "profile" else None
            t1, c1 = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            report = reliability_report(study, n_boot=n_boot)
            t2, c2 = time.perf_counter(), time.process_time()
            text = json.dumps(report, allow_nan=False)
            t3, c3 = time.perf_counter(), time.process_time()
            if profiler:
                profiler.disable()
                result["profile"] = profile_text(profiler, t3 - t1)
            code_sets = report.get("code_sets", [])
            result.update({
                "report_s": t2 - t1, "json_s": t3 - t2, "json_bytes": len(text),
                "report_cpu": c2 - c1, "json_cpu": c3 - c2,
                "sessions": report.get("sessions"),
                "code_sets": [(cs.get("id"), (cs.get("overall") or {}).get("n_units"),
                               len(cs.get("codes", [])), len(cs.get("pairs", [])))
                              for cs in code_sets],
                "rating_entries": {k: len(v) for k, v in (report.get("ratings") or {}).items()},
                "alpha": {cs.get("id"): cs["overall"]["statistics"].get("krippendorff_alpha", {}).get("estimate")
                          for cs in code_sets if cs.get("overall")},
            })
        db.session.remove()
    result["load_after"] = os.getloadavg()[0]
    result["peak_rss"] = peak_rss_bytes()
    print("RESULT " + json.dumps(result), flush=True)


def run_child(part: str, url: str, instance: Path, n_boot: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_measure", part, url, str(instance),
           str(n_boot)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"part": part, "error": f"exit {proc.returncode}:\n{tail}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


# --------------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        _, _, part, url, instance, n_boot = sys.argv
        measure(part, url, instance, int(n_boot))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--utterances-per-session", type=int)
    parser.add_argument("--raters", type=int)
    parser.add_argument("--small", action="store_true",
                        help=f"quick check: {SMALL['sessions']} sessions × "
                             f"{SMALL['utterances_per_session']} utterances, {SMALL['raters']} raters")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true", help="build the database anew")
    parser.add_argument("--profile", action="store_true",
                        help="also run the report under cProfile (a third fresh process)")
    parser.add_argument("--only", choices=("frames", "report"), help="time only this part")
    parser.add_argument("--database-url", help="postgresql+psycopg://HOST:PORT/DB (the bench "
                        f"creates and uses its own database {PG_DATABASE} on that server)")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mbtcode-bench-reliability")
    args = parser.parse_args()
    preset = SMALL if args.small else DEFAULTS
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.raters < 2:
        parser.error("--raters must be at least 2")

    sys.path.insert(0, str(BENCH_DIR))
    key = cache_key(args)
    instance = args.cache_dir / key
    if args.database_url and not args.database_url.startswith("sqlite"):
        instance = args.cache_dir / "postgresql-instance"
    instance.mkdir(parents=True, exist_ok=True)
    os.environ["MBTCODE_INSTANCE_PATH"] = str(instance)

    built_marker = instance / "built.json"
    if args.database_url and not args.database_url.startswith("sqlite"):
        url, ready = prepare_postgres(args, key)
        built_marker = instance / f"built-{key}.json"
        ready = ready and built_marker.exists()
    else:
        url = f"sqlite:///{instance / 'mbtcode.db'}"
        ready = built_marker.exists() and not args.rebuild
        if not ready:
            for p in instance.glob("mbtcode.db*"):
                p.unlink()

    if ready:
        build = json.loads(built_marker.read_text())
        print(f"(database reused from {url if 'sqlite' in url else PG_DATABASE}; built in "
              f"{build['seconds_total']:.0f} s; --rebuild to build again)")
    else:
        from mbtcode import create_app

        app = create_app({"DATABASE_URL": url})
        build = seed_study(app, args.sessions, args.utterances_per_session, args.raters, args.seed)
        if not url.startswith("sqlite"):
            mark_postgres_complete(args, key)
        built_marker.write_text(json.dumps(build))
    size = database_size(url, instance)

    parts = [args.only] if args.only else ["frames", "report"]
    results = {p: run_child(p, url, instance, args.n_boot) for p in parts}
    if args.profile:
        results["profile"] = run_child("profile", url, instance, args.n_boot)

    dialect = url.split(":", 1)[0].split("+")[0]
    rows = build["rows"]
    print()
    print(f"database            {dialect}"
          + (f" ({PG_DATABASE})" if dialect != "sqlite" else f" ({url.removeprefix('sqlite:///')})"))
    print(f"study               {args.sessions:,} sessions × ~{args.utterances_per_session} "
          f"utterances, {args.raters} raters, 2 per session; n_boot {args.n_boot}")
    print(f"rows                {rows.get('utterance', 0):,} utterances, "
          f"{rows.get('assignment', 0):,} assignments, {rows.get('utterance_code', 0):,} "
          f"utterance codes, {rows.get('item_rating', 0):,} item ratings")
    print(f"seeding             {build['seconds_total']:6.1f} s  (migrate + study "
          f"{build['seconds_migrate_study']:.1f} s, commit {build['seconds_commit']:.1f} s; "
          + ", ".join(f"{t} {s:.1f} s" for t, s in sorted(build["seconds_per_table"].items(),
                                                         key=lambda kv: -kv[1])[:4]) + ")")
    print(f"database size       {mb(size)}")
    frames_r = results.get("frames")
    if frames_r:
        if "error" in frames_r:
            print(f"frames              FAILED {frames_r['error']}")
        else:
            f = frames_r
            print(f"code_frame          {f['code_frame_s']:6.2f} s  (CPU {f['code_frame_cpu']:.2f} s; "
                  f"{f['code_rows']:,} rows, {mb(f['code_frame_bytes'])} in memory)")
            print(f"rating_frame        {f['rating_frame_s']:6.2f} s  (CPU {f['rating_frame_cpu']:.2f} s; "
                  f"{f['rating_rows']:,} rows, {mb(f['rating_frame_bytes'])} in memory)")
            print(f"frames total        {f['code_frame_s'] + f['rating_frame_s']:6.2f} s  "
                  f"(CPU {f['code_frame_cpu'] + f['rating_frame_cpu']:.2f} s)  peak RSS "
                  f"{mb(f['peak_rss'])} (before: {mb(f['rss_before'])}); load average "
                  f"{f['load_before']:.1f} → {f['load_after']:.1f}")
    report_r = results.get("report")
    if report_r:
        if "error" in report_r:
            print(f"report              FAILED {report_r['error']}")
        else:
            r = report_r
            total = r["report_s"] + r["json_s"]
            print(f"reliability_report  {r['report_s']:6.2f} s  (CPU {r['report_cpu']:.2f} s; "
                  f"n_boot {args.n_boot})")
            print(f"json.dumps          {r['json_s']:6.2f} s  ({r['json_bytes'] / 1e3:,.0f} kB)")
            print(f"DB → report JSON    {total:6.2f} s  (CPU {r['report_cpu'] + r['json_cpu']:.2f} s)  "
                  f"peak RSS {mb(r['peak_rss'])} (before: {mb(r['rss_before'])}); load average "
                  f"{r['load_before']:.1f} → {r['load_after']:.1f}")
            issue_sizes = all(getattr(args, k) == v for k, v in DEFAULTS.items())
            if dialect == "sqlite" and issue_sizes and args.n_boot == 1000:
                print(f"target ≤ 5 s        {'met' if total <= 5 else 'missed'}")
            print(f"report contents     sessions {r['sessions']}; code sets (id, units, codes, "
                  f"rater pairs) {r['code_sets']}; ratings {r['rating_entries']}; alpha {r['alpha']}")
    prof = results.get("profile")
    if prof:
        print()
        print(prof.get("profile") or f"profile FAILED {prof.get('error')}")


if __name__ == "__main__":
    main()
