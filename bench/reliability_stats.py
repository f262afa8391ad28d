"""Reliability statistics at scale: wall time and peak memory of ``mbtcode.stats.reliability``.

Synthetic nominal ratings: every unit has a true code (uniform over ``--codes``), and each
of ``--raters`` raters gives it with probability 0.8, otherwise one of the other codes at
random. Timed, for each ``--units`` size:

* ``irr_summary``: the full nominal summary (percent agreement, Krippendorff's alpha,
  Fleiss' kappa, Gwet's AC1, with bootstrap intervals, ``--n-boot`` replicates);
* ``krippendorff_alpha`` alone (with its bootstrap interval) and ``fleiss_kappa`` alone;
* ``one_vs_rest``: ``irr_summary_one_vs_rest`` (one binary summary per code);
* ``per_code``: what a report does without it: ``irr_summary`` of the code set, then for
  each code ``irr_summary`` of a 0/1 "this code" column (building that column included);

and ``icc`` (all six forms) for ``--icc-units`` sessions × ``--raters`` raters with normal
scores. Each measurement runs in a fresh subprocess: it builds the DataFrame (not timed),
runs the call ``--repeat`` times and reports the fastest wall time, then runs it once more
under ``tracemalloc`` (numpy reports its buffers to tracemalloc) for the peak of memory
allocated by the call itself, and reports the process's peak resident set size
(``ru_maxrss``: interpreter, libraries, the input DataFrame and the call) after the imports,
after building the input and after the calls. Prints figures; asserts nothing.

Usage: ``python bench/reliability_stats.py [--units 1000000 10000000] [--raters 3]
[--codes 10] [--repeat 3] [--n-boot 1000] [--icc-units 100000]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd

CALLS = ("irr_summary", "krippendorff_alpha", "fleiss_kappa", "one_vs_rest", "per_code")


def nominal_ratings(units: int, raters: int, codes: int, seed: int = 0) -> pd.DataFrame:
    """Long format, ``units`` × ``raters`` rows; 80% of ratings are the unit's true code."""
    rng = np.random.default_rng(seed)
    value = np.repeat(rng.integers(0, codes, units), raters)
    wrong = np.flatnonzero(rng.random(units * raters) >= 0.8)
    value[wrong] = (value[wrong] + rng.integers(1, codes, len(wrong))) % codes  # another code
    return pd.DataFrame(
        {
            "unit": np.repeat(np.arange(units), raters),
            "rater": np.tile(np.arange(raters), units),
            "value": value,
        }
    )


def interval_ratings(units: int, raters: int, seed: int = 0) -> pd.DataFrame:
    """Long format; score = true score + rater noise (ICC(1) = 1 / 1.25 = 0.8)."""
    rng = np.random.default_rng(seed)
    value = np.repeat(rng.normal(size=units), raters) + rng.normal(scale=0.5, size=units * raters)
    return pd.DataFrame(
        {
            "unit": np.repeat(np.arange(units), raters),
            "rater": np.tile(np.arange(raters), units),
            "value": value,
        }
    )


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args: argparse.Namespace) -> None:
    """Run one call on one size in this (fresh) process; print one JSON line."""
    from mbtcode.stats import reliability as rel

    rss_libs = maxrss_mb()
    if args.worker == "icc":
        df = interval_ratings(args.units, args.raters)

        def call() -> object:
            return rel.icc(df)
    else:
        df = nominal_ratings(args.units, args.raters, args.codes)
        if args.worker == "irr_summary":

            def call() -> object:
                return rel.irr_summary(df, n_boot=args.n_boot)
        elif args.worker == "krippendorff_alpha":

            def call() -> object:
                return rel.krippendorff_alpha(df, n_boot=args.n_boot)
        elif args.worker == "fleiss_kappa":

            def call() -> object:
                return rel.fleiss_kappa(df)
        elif args.worker == "one_vs_rest":

            def call() -> object:
                return rel.irr_summary_one_vs_rest(df, n_boot=args.n_boot)
        else:

            def call() -> object:
                out = [rel.irr_summary(df, n_boot=args.n_boot)]
                for code in range(args.codes):
                    binary = df.assign(value=(df["value"] == code).astype(int))
                    out.append(rel.irr_summary(binary, n_boot=args.n_boot))
                return out

    gc.collect()
    rss_before = maxrss_mb()
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
        del result
        gc.collect()
    rss_after = maxrss_mb()
    tracemalloc.start()
    call()
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "best_s": min(times),
                "times_s": times,
                "input_mb": df.memory_usage(deep=True).sum() / 2**20,
                "maxrss_libs_mb": rss_libs,
                "maxrss_before_mb": rss_before,
                "maxrss_after_mb": rss_after,
                "traced_peak_mb": traced_peak,
            }
        )
    )


def measure(call: str, units: int, args: argparse.Namespace) -> dict[str, object] | None:
    cmd = [
        sys.executable, __file__, "--worker", call, "--units", str(units),
        "--raters", str(args.raters), "--codes", str(args.codes),
        "--repeat", str(args.repeat), "--n-boot", str(args.n_boot),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        print(f"  {call:<20} {units:>11,}  failed: {tail[0]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(call: str, units: int, raters: int, res: dict[str, object] | None) -> None:
    if res is None:
        return
    print(
        f"  {call:<20} {units:>11,} × {raters}  {res['best_s']:8.3f} s"
        f"   (runs: {', '.join(f'{t:.3f}' for t in res['times_s'])})"  # type: ignore[union-attr]
        f"   call peak {res['traced_peak_mb']:7.1f} MB (tracemalloc)"
        f"   process peak {res['maxrss_after_mb']:7.1f} MB (ru_maxrss; after imports "
        f"{res['maxrss_libs_mb']:.0f} MB, after building the {res['input_mb']:.0f} MB input "
        f"{res['maxrss_before_mb']:.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--raters", type=int, default=3)
    parser.add_argument("--codes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--icc-units", type=int, default=100_000)
    parser.add_argument("--calls", nargs="+", choices=(*CALLS, "icc"), default=[*CALLS, "icc"])
    parser.add_argument("--worker", choices=(*CALLS, "icc"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.units = args.units[0]
        worker(args)
        return

    import numpy
    import pandas
    import scipy

    from mbtcode.stats import reliability

    print(f"mbtcode.stats.reliability from {reliability.__file__}")
    print(
        f"python {sys.version.split()[0]}, numpy {numpy.__version__}, pandas {pandas.__version__}, "
        f"scipy {scipy.__version__}; {args.codes} nominal codes, n_boot={args.n_boot}, "
        f"best of {args.repeat}"
    )
    for units in args.units:
        for call in args.calls:
            if call != "icc":
                report(call, units, args.raters, measure(call, units, args))
    if "icc" in args.calls:
        report("icc", args.icc_units, args.raters, measure("icc", args.icc_units, args))


if __name__ == "__main__":
    main()
