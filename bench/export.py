"""Session-level export of a large study in every format: from the database to the file's bytes.

Builds (once, cached like ``bench/reliability.py``) a study on the shipped ``mbt-individual``
scheme with ``--sessions`` sessions (default 20,000): one therapist and one patient each
(``--therapists`` therapists in 4 sites and 8 teams, 10 sessions per patient two weeks
apart, phases and session numbers as in a course of treatment); every session rated by one
rater on every MBT-ACS item and both overall ratings (2% of items N/A), all submitted;
``--double`` of the sessions (default 20%) double-coded by a second rater, three quarters of
those with a final adjudicated consensus and 2.5% of them gold-standard sessions (the second
rater the expert). With ``--utterances-per-session N`` every session also gets a transcript
of N utterances that every submitted coding codes (the session export reads the codes too,
through ``services.fidelity.load``); the default 0 leaves them out.

Then, each in a fresh process on the built database: ``services.fidelity.load`` alone, and for
each format ``export_table(study, "session", actor=None)`` followed by
``io.export_formats.write(table, format)``, with the peak RSS. Target (issue 5): ≤ 10 s per
format on SQLite for 20,000 sessions.

The SQLite file is cached under ``$TMPDIR/mbtcode-bench-export/`` keyed by the parameters and
the migration head (``--rebuild`` builds it anew); nothing of it belongs in the repository.

Usage: ``python bench/export.py [--sessions 20000] [--double 0.2] [--raters 20]
[--therapists 60] [--utterances-per-session 0] [--formats csv,xlsx,…] [--small] [--rebuild]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from reliability import Writer, current_rss_bytes, mb, peak_rss_bytes  # noqa: E402

STUDY_NAME = "Export benchmark"
GENERATOR_VERSION = 1  # bump when the generated data change (part of the cache key)
FORMATS = ("csv", "xlsx", "parquet", "sav", "dta")
DEFAULTS = {"sessions": 20_000, "double": 0.2, "raters": 20, "therapists": 60,
            "utterances_per_session": 0}
SMALL = {"sessions": 1_000}
CHUNK = 1_000  # sessions generated and written per chunk
SESSIONS_PER_PATIENT = 10


def seed_study(app, args) -> dict:
    """Migrate, create the study, bulk-insert everything; returns figures of the build."""
    import numpy as np
    from sqlalchemy import DateTime

    from mbtcode.extensions import db
    from mbtcode.migrate import upgrade_database
    from mbtcode.services.assignments import codable_roles, required_ratings
    from mbtcode.services.schemes import as_scheme
    from mbtcode.services.studies import create_study
    from synthetic import WORDS

    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()
    with app.app_context():
        upgrade_database()
        study = create_study(STUDY_NAME, actor=None)
        db.session.commit()
        study_id = study.id
        scheme = as_scheme(study.scheme_version)
        required = required_ratings(study)
        roles = codable_roles(study)
        code_ids = {cs.id: [c.id for c in cs.codes] for cs in scheme.code_sets}
        scale = {i.id: (i.scale_min, i.scale_max) for i in scheme.instruments}
        overall = {o.id for i in scheme.instruments for o in i.overall}
        dialect = db.engine.dialect.name
        db.session.remove()

        raw = db.engine.raw_connection()
        try:
            proc = DateTime(timezone=True).bind_processor(db.engine.dialect) or (lambda v: v)
            w = Writer(raw.driver_connection, dialect, proc)
            w.begin()
            now = w.now
            first = {t: w.next_id(t) for t in (
                "user_account", "study_member", "participant", "therapy_session", "assignment",
                "item_rating", "consensus", "consensus_rating", "gold_standard", "transcript",
                "utterance", "utterance_code")}
            n_raters = args.raters
            rater_ids = [first["user_account"] + i for i in range(n_raters + 1)]  # + adjudicator
            w.write("user_account",
                    ("id", "email", "name", "role", "password_hash", "active", "session_epoch",
                     "created_at"),
                    [(rid, f"rater{i:03d}@bench.example.org", f"Rater {i:03d}",
                      "rater" if i < n_raters else "coordinator", "!no-login", True, 0, now)
                     for i, rid in enumerate(rater_ids)])
            w.write("study_member", ("id", "study_id", "user_id", "role", "created_at"),
                    [(first["study_member"] + i, study_id, rid,
                      "rater" if i < n_raters else "coordinator", now)
                     for i, rid in enumerate(rater_ids)])
            adjudicator = rater_ids[-1]
            n_patients = (args.sessions + SESSIONS_PER_PATIENT - 1) // SESSIONS_PER_PATIENT
            therapist_pid = [first["participant"] + i for i in range(args.therapists)]
            patient_pid = [first["participant"] + args.therapists + i for i in range(n_patients)]
            w.write("participant", ("id", "study_id", "kind", "code"),
                    [(pid, study_id, "therapist", f"TH-{i + 1:03d}") for i, pid in enumerate(therapist_pid)]
                    + [(pid, study_id, "patient", f"PT-{i + 1:05d}") for i, pid in enumerate(patient_pid)])

            next_id = dict(first)
            base = date(2024, 1, 8)
            words = [" ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 12)) for _ in range(97)]
            for start in range(0, args.sessions, CHUNK):
                stop = min(args.sessions, start + CHUNK)
                rows = {t: [] for t in ("therapy_session", "session_participant", "assignment",
                                        "item_rating", "consensus", "consensus_rating",
                                        "gold_standard", "transcript", "utterance",
                                        "utterance_code")}
                for s in range(start, stop):
                    sid = first["therapy_session"] + s
                    patient = s // SESSIONS_PER_PATIENT
                    k = s % SESSIONS_PER_PATIENT  # the patient's k-th session
                    therapist = patient % args.therapists
                    day = base + timedelta(days=int(patient % 365) + 14 * k)
                    phase = ("initial", "main", "main", "main", "final")[k * 5 // SESSIONS_PER_PATIENT]
                    rows["therapy_session"].append((
                        sid, study_id, f"TH-{therapist + 1:03d}/PT-{patient + 1:05d} #{k + 1}",
                        w.day(day), "individual", phase, k + 1, "en", f"S{therapist % 4 + 1}",
                        f"team-{therapist % 8 + 1}", now))
                    rows["session_participant"] += [(sid, therapist_pid[therapist]),
                                                    (sid, patient_pid[patient])]
                    a = int(rng.integers(n_raters))
                    raters = [a]
                    double = rng.random() < args.double
                    if double:
                        raters.append((a + 1 + int(rng.integers(n_raters - 1))) % n_raters)
                    aids = []
                    for r in raters:
                        aid = next_id["assignment"]
                        next_id["assignment"] += 1
                        aids.append(aid)
                        rows["assignment"].append((aid, study_id, sid, rater_ids[r], "submitted",
                                                   now, now, 3))
                    quality = rng.normal()
                    for aid in aids:
                        bias = rng.normal(0, 0.4)
                        for instrument, item, dimension in required:
                            lo, hi = scale[instrument]
                            na = item not in overall and rng.random() < 0.02
                            value = None if na else int(min(hi, max(lo, round(
                                4.3 + quality + bias + rng.normal(0, 0.7)))))
                            rows["item_rating"].append((next_id["item_rating"], aid, instrument, item,
                                                        dimension, value, na, now, 1))
                            next_id["item_rating"] += 1
                    if double and rng.random() < 0.75:
                        cid = next_id["consensus"]
                        next_id["consensus"] += 1
                        rows["consensus"].append((cid, study_id, sid, adjudicator, "final", now, now, 2))
                        for instrument, item, dimension in required:
                            lo, hi = scale[instrument]
                            value = float(min(hi, max(lo, round(4.3 + quality))))
                            rows["consensus_rating"].append((
                                next_id["consensus_rating"], cid, instrument, item, dimension, value,
                                False, "entered", None, "", now, 1))
                            next_id["consensus_rating"] += 1
                    elif double and rng.random() < 0.1:
                        rows["gold_standard"].append((next_id["gold_standard"], study_id, sid, aids[1],
                                                      now, None))
                        next_id["gold_standard"] += 1
                    n = args.utterances_per_session
                    if n:
                        tid = next_id["transcript"]
                        next_id["transcript"] += 1
                        rows["transcript"].append((tid, sid, study_id, f"s{s}.txt", "txt",
                                                   f"{sid:064x}", n, now))
                        uids = range(next_id["utterance"], next_id["utterance"] + n)
                        next_id["utterance"] += n
                        for pos, uid in enumerate(uids):
                            role = "therapist" if pos % 2 == 0 else "patient"
                            rows["utterance"].append((uid, tid, pos + 1, "T" if pos % 2 == 0 else "P",
                                                      role, pos * 4.0, pos * 4.0 + 3.5, words[pos % 97]))
                        for aid in aids:
                            picks = rng.integers(0, 1000, n)
                            for pos, uid in enumerate(uids):
                                cs = roles["therapist" if pos % 2 == 0 else "patient"]
                                codes = code_ids[cs]
                                rows["utterance_code"].append((next_id["utterance_code"], aid, uid, cs,
                                                               codes[picks[pos] % len(codes)], "", now, 1))
                                next_id["utterance_code"] += 1
                w.write("therapy_session",
                        ("id", "study_id", "label", "session_date", "modality", "phase",
                         "session_number", "language", "site", "team", "created_at"),
                        rows["therapy_session"])
                w.write("session_participant", ("session_id", "participant_id"),
                        rows["session_participant"])
                w.write("assignment",
                        ("id", "study_id", "session_id", "rater_id", "status", "created_at",
                         "submitted_at", "version"), rows["assignment"])
                w.write("item_rating",
                        ("id", "assignment_id", "instrument", "item", "dimension", "value",
                         "not_applicable", "updated_at", "version"), rows["item_rating"])
                w.write("consensus",
                        ("id", "study_id", "session_id", "adjudicator_id", "status", "created_at",
                         "finalized_at", "version"), rows["consensus"])
                w.write("consensus_rating",
                        ("id", "consensus_id", "instrument", "item", "dimension", "value",
                         "not_applicable", "basis", "source_assignment_id", "note", "updated_at",
                         "version"), rows["consensus_rating"])
                w.write("gold_standard",
                        ("id", "study_id", "session_id", "assignment_id", "marked_at",
                         "marked_by_id"), rows["gold_standard"])
                w.write("transcript",
                        ("id", "session_id", "study_id", "original_filename", "format", "sha256",
                         "n_utterances", "imported_at"), rows["transcript"])
                w.write("utterance",
                        ("id", "transcript_id", "position", "speaker", "role", "start_s", "end_s",
                         "text"), rows["utterance"])
                w.write("utterance_code",
                        ("id", "assignment_id", "utterance_id", "code_set", "code", "note",
                         "updated_at", "version"), rows["utterance_code"])
                print(f"  seeding: {stop:,} / {args.sessions:,} sessions "
                      f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
            w.commit()
        finally:
            raw.close()
        db.engine.dispose()  # the last SQLite connection checkpoints the WAL into the file
    return {"seconds_total": time.perf_counter() - t_start, "rows": w.rows}


def cache_key(args) -> str:
    from mbtcode.migrate import head_revision

    return (f"s{args.sessions}-d{args.double}-r{args.raters}-t{args.therapists}"
            f"-u{args.utterances_per_session}-seed{args.seed}-g{GENERATOR_VERSION}-{head_revision()}")


# --------------------------------------------------------------------------------------------
# measuring, in a fresh process: ``python bench/export.py _measure PART URL INSTANCE``


def measure(part: str, url: str, instance: str) -> None:
    t0 = time.perf_counter()
    os.environ["MBTCODE_INSTANCE_PATH"] = instance
    from mbtcode import create_app
    from mbtcode.extensions import db
    from mbtcode.io import export_formats as ef
    from mbtcode.services import exports, fidelity
    from mbtcode.services.studies import get_study_by_name

    app = create_app({"DATABASE_URL": url})
    result: dict = {"part": part, "import_s": time.perf_counter() - t0}
    with app.app_context():
        study = get_study_by_name(STUDY_NAME)
        study.scheme_version  # noqa: B018 - loaded before the clock starts
        result["rss_before"] = current_rss_bytes()
        result["load_before"] = os.getloadavg()[0]
        t1, c1 = time.perf_counter(), time.process_time()
        if part == "load":
            data = fidelity.load(study)
            scores = data.scores
            t2, c2 = time.perf_counter(), time.process_time()
            result.update({"load_s": t2 - t1, "load_cpu": c2 - c1, "sessions": len(scores),
                           "sources": scores["source"].value_counts().to_dict()})
        else:
            table = exports.export_table(study, "session", actor=None)
            t2, c2 = time.perf_counter(), time.process_time()
            content = ef.write(table, part)
            t3, c3 = time.perf_counter(), time.process_time()
            result.update({"table_s": t2 - t1, "write_s": t3 - t2, "total_s": t3 - t1,
                           "cpu": c3 - c1, "rows": len(table.frame), "columns": len(table.columns),
                           "bytes": len(content), "sha256": ef.sha256(content)})
        db.session.remove()
    result["load_after"] = os.getloadavg()[0]
    result["peak_rss"] = peak_rss_bytes()
    print("RESULT " + json.dumps(result), flush=True)


def run_child(part: str, url: str, instance: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_measure", part, url, str(instance)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"part": part, "error": f"exit {proc.returncode}:\n{tail}"}
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        _, _, part, url, instance = sys.argv
        measure(part, url, instance)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--double", type=float, help="share of sessions double-coded (0.2)")
    parser.add_argument("--raters", type=int)
    parser.add_argument("--therapists", type=int)
    parser.add_argument("--utterances-per-session", type=int)
    parser.add_argument("--small", action="store_true", help=f"quick check: {SMALL['sessions']:,} sessions")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--rebuild", action="store_true", help="build the database anew")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mbtcode-bench-export")
    args = parser.parse_args()
    for name, value in {**DEFAULTS, **(SMALL if args.small else {})}.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    formats = [f for f in args.formats.split(",") if f]
    if not set(formats) <= set(FORMATS) or args.raters < 2:
        parser.error(f"--formats: some of {','.join(FORMATS)}; --raters at least 2")

    key = cache_key(args)
    instance = args.cache_dir / key
    instance.mkdir(parents=True, exist_ok=True)
    os.environ["MBTCODE_INSTANCE_PATH"] = str(instance)
    url = f"sqlite:///{instance / 'mbtcode.db'}"
    marker = instance / "built.json"
    if marker.exists() and not args.rebuild:
        build = json.loads(marker.read_text())
        print(f"(database reused from {instance}; built in {build['seconds_total']:.0f} s; "
              "--rebuild to build again)")
    else:
        for p in instance.glob("mbtcode.db*"):
            p.unlink()
        from mbtcode import create_app

        build = seed_study(create_app({"DATABASE_URL": url}), args)
        marker.write_text(json.dumps(build))
    size = sum(p.stat().st_size for p in instance.glob("mbtcode.db*"))

    results = {part: run_child(part, url, instance) for part in ["load", *formats]}
    rows = build["rows"]
    print()
    print(f"database          SQLite ({instance / 'mbtcode.db'}, {mb(size)})")
    print(f"study             {args.sessions:,} sessions, {rows.get('assignment', 0):,} submitted "
          f"codings ({args.double:.0%} double-coded), {rows.get('consensus', 0):,} final consensuses, "
          f"{rows.get('gold_standard', 0):,} gold; {rows.get('item_rating', 0):,} item ratings, "
          f"{rows.get('consensus_rating', 0):,} consensus ratings, "
          f"{rows.get('utterance_code', 0):,} utterance codes")
    print(f"seeding           {build['seconds_total']:6.1f} s")
    load = results["load"]
    if "error" in load:
        print(f"fidelity.load     FAILED {load['error']}")
    else:
        print(f"fidelity.load     {load['load_s']:6.2f} s  (CPU {load['load_cpu']:.2f} s; "
              f"{load['sessions']:,} sessions, sources {load['sources']}); peak RSS {mb(load['peak_rss'])}")
    print()
    print("format   export_table   write    total   target ≤ 10 s   file         peak RSS   load avg     sha256")
    for fmt in formats:
        r = results[fmt]
        if "error" in r:
            print(f"{fmt:<8} FAILED {r['error']}")
            continue
        verdict = "met" if r["total_s"] <= 10 else "missed"
        print(f"{fmt:<8} {r['table_s']:9.2f} s {r['write_s']:6.2f} s {r['total_s']:6.2f} s   "
              f"{verdict:<14}  {r['bytes'] / 1e6:6.1f} MB   {mb(r['peak_rss']):>8}   "
              f"{r['load_before']:.1f} → {r['load_after']:.1f}   {r['sha256'][:12]}")
    first = next((results[f] for f in formats if "error" not in results[f]), None)
    if first:
        print(f"\n{first['rows']:,} rows × {first['columns']} columns per file")


if __name__ == "__main__":
    main()
