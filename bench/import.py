"""Import throughput: 200 transcripts × 600 utterances into a fresh SQLite (or $MBTCODE_DATABASE_URL).

Runs the same code path as ``mbtcode import`` (parse and validate the whole batch, then write
it in one transaction) and prints the figures. Usage: ``python bench/import.py [--files N]
[--utterances N]``. Target (issue 2): ≤ 15 s on SQLite on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

from synthetic import make_transcript  # bench/ is on sys.path when run as a script



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--utterances", type=int, default=600)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MBTCODE_INSTANCE_PATH"] = tmp
        from mbtcode import create_app
        from mbtcode.extensions import db
        from mbtcode.migrate import upgrade_database
        from mbtcode.services.imports import SourceFile, apply_import, plan_import
        from mbtcode.services.studies import create_study

        app = create_app()
        rng = random.Random(42)
        sources = [
            SourceFile(f"session{i:03d}.txt", make_transcript(rng, args.utterances, i))
            for i in range(args.files)
        ]
        size_mb = sum(len(s.data) for s in sources) / 1e6
        with app.app_context():
            upgrade_database()
            study = create_study("Benchmark", actor=None)
            db.session.commit()

            t0 = time.perf_counter()
            plan = plan_import(study, sources)
            t1 = time.perf_counter()
            assert plan.ok, plan.problems[:5]
            apply_import(plan, actor=None)
            db.session.commit()
            t2 = time.perf_counter()
            url = db.engine.url.render_as_string(hide_password=True)
            db.engine.dispose()

    n = args.files * args.utterances
    print(f"database           {url.split('://')[0]}")
    print(f"files × utterances {args.files} × {args.utterances} = {n:,} ({size_mb:.1f} MB)")
    print(f"parse + validate   {t1 - t0:6.2f} s")
    print(f"write + commit     {t2 - t1:6.2f} s")
    print(f"total              {t2 - t0:6.2f} s  ({n / (t2 - t0):,.0f} utterances/s)")


if __name__ == "__main__":
    main()
