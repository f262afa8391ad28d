"""Fidelity scores: session scores, utterance profiles, mode-contingent responsiveness, trends.

Pure functions on tidy pandas frames (no Flask, no database); ``services/fidelity.py`` reads
the frames and ``docs/fidelity.md`` explains every score to users. Everything the scores
depend on comes from the scheme file (items, the dimensions each item is rated for, scale and
cut-off, code levels, the recommended and iatrogenic responses of each nonmentalizing mode):
nothing MBT-specific is written here.

Which rating counts (``counting_sources``)
-------------------------------------------
A session may have one rater, several (double-coding) and an adjudicated consensus. Exactly
one *source* counts for its scores, in this order:

1. ``consensus`` — a **final** adjudicated consensus (its codes and ratings);
2. ``gold`` — the session is a gold-standard session: the expert's coding;
3. ``single_rater`` — the one submitted coding;
4. ``mean_of_raters`` — several submitted codings and no consensus: each rating is the mean of
   the raters' numeric values (a rater's N/A or missing value is no value; the item is N/A
   when no rater gave a number and at least one said N/A), and the codes of each of the n
   codings that have codes count with weight 1/n, so counts and tables are means over them.

The originals are never changed; ``n_raters`` (submitted codings) is reported with the source.

Session scores (``session_scores``)
-----------------------------------
Per dimension (adherence, competence…): the mean over the items rated for that dimension that
have a value (N/A and missing excluded), the number of items it rests on, the number N/A, and
``adequate`` = mean ≥ the instrument's cut-off. The entered overall ratings are kept separate
(``overall_<dimension>``), with their own adequacy; they are never computed from the items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..io.schemes import CodeSet, Instrument, Scheme

#: Bump when a score's definition changes; written into every export's metadata.
SCORING_VERSION = "1.0"

SOURCES = ("consensus", "gold", "single_rater", "mean_of_raters")

#: Level label of codes a levelled code set puts outside its levels (non-MBT moves).
OUTSIDE_LEVELS = "none"


# ----------------------------------------------------------------------------- which rating counts


def counting_sources(
    assignments: pd.DataFrame,
    consensus_sessions: Iterable[int] = (),
    gold: Mapping[int, int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Which source counts per session, and the weight of each submitted coding.

    ``assignments``: one row per submitted coding (``session_id``, ``assignment_id``,
    ``rater_id``). ``consensus_sessions``: sessions with a final consensus. ``gold``: session →
    the gold-standard assignment. Returns ``sessions`` (session_id, source, n_raters) and the
    assignments with a ``weight`` column (0 for codings that do not count).
    """
    asg = assignments[["session_id", "assignment_id", "rater_id"]].drop_duplicates("assignment_id")
    # a gold coding counts only while it is submitted (a reopened one is work in progress)
    submitted = set(asg["assignment_id"].tolist())
    gold = {s: a for s, a in (gold or {}).items() if a in submitted}
    n_raters = asg.groupby("session_id").size().rename("n_raters")
    consensus_ids = sorted(set(int(s) for s in consensus_sessions))
    index = n_raters.index.union(pd.Index(consensus_ids, dtype="int64"))
    sessions = pd.DataFrame(index=index.rename("session_id"))
    sessions["n_raters"] = n_raters.reindex(index).fillna(0).astype("int64")
    in_consensus = sessions.index.isin(consensus_ids)
    in_gold = sessions.index.isin(list(gold))
    sessions["source"] = np.select(
        [in_consensus, in_gold, sessions["n_raters"].to_numpy() == 1],
        ["consensus", "gold", "single_rater"],
        default="mean_of_raters",
    )
    sessions = sessions.reset_index()[["session_id", "source", "n_raters"]]

    weighted = asg.merge(sessions, on="session_id", how="left")
    gold_assignment = weighted["session_id"].map(gold)
    weight = np.where(
        weighted["source"] == "consensus", 0.0,
        np.where(weighted["source"] == "gold",
                 (weighted["assignment_id"] == gold_assignment).astype(float),
                 1.0 / weighted["n_raters"].clip(lower=1)),
    )
    weighted = weighted[["session_id", "assignment_id", "rater_id"]].assign(weight=weight)
    return sessions, weighted.reset_index(drop=True)


_RATING_KEYS = ["session_id", "instrument", "item", "dimension"]


def counting_ratings(
    ratings: pd.DataFrame,
    weights: pd.DataFrame,
    consensus_ratings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One value per (session, instrument, item, dimension): the value that counts.

    ``ratings``: the raters' rows (``assignment_id``, ``instrument``, ``item``, ``dimension``,
    ``value`` NaN for N/A, ``not_applicable``); ``weights`` from :func:`counting_sources`;
    ``consensus_ratings``: rows of final consensuses (``session_id`` instead of the
    assignment). Returns ``session_id, instrument, item, dimension, value, not_applicable``
    (string columns as plain Python strings; rows in no particular order).

    Most sessions have one counting coding, whose rows are taken as they are; only sessions
    with several (the mean of raters) are grouped: a study of 20,000 sessions has 800,000
    rating rows, and grouping them all costs seconds.
    """
    counted = weights.loc[weights["weight"] > 0, ["assignment_id", "session_id"]]
    rows = ratings[["assignment_id", "instrument", "item", "dimension", "value", "not_applicable"]].merge(
        counted, on="assignment_id")
    rows = pd.DataFrame({
        "session_id": rows["session_id"].to_numpy(dtype="int64"),
        **{col: _strings(rows[col]) for col in ("instrument", "item", "dimension")},
        "value": rows["value"].to_numpy(dtype=float),
        "not_applicable": rows["not_applicable"].to_numpy(dtype=bool),
    })
    per_session = counted.groupby("session_id").size()
    several = rows["session_id"].isin(per_session.index[per_session > 1])
    parts = [rows[~several]]
    if several.any():
        grouped = rows[several].groupby(_RATING_KEYS, sort=False)
        mean = pd.DataFrame({"value": grouped["value"].mean(), "any_na": grouped["not_applicable"].any()})
        mean["not_applicable"] = mean["value"].isna() & mean["any_na"]
        parts.append(mean.drop(columns="any_na").reset_index())
    out = pd.concat(parts, ignore_index=True)
    if consensus_ratings is not None and len(consensus_ratings):
        cons = pd.DataFrame({
            "session_id": consensus_ratings["session_id"].to_numpy(dtype="int64"),
            **{col: _strings(consensus_ratings[col]) for col in ("instrument", "item", "dimension")},
            "value": consensus_ratings["value"].to_numpy(dtype=float),
            "not_applicable": consensus_ratings["not_applicable"].to_numpy(dtype=bool),
        })
        out = pd.concat([out[~out["session_id"].isin(cons["session_id"])], cons], ignore_index=True)
    return out.reset_index(drop=True)


def _strings(column: pd.Series) -> pd.Series:
    """A (categorical or text) column as Python strings in an object column, cheaply.

    pandas 3 turns text into Arrow strings element by element (seconds per million rows);
    a categorical's few categories are converted once and taken by code instead.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = np.asarray([str(c) for c in column.cat.categories] + [None], dtype=object)
        return pd.Series(categories[column.cat.codes.to_numpy()], dtype=object)
    return pd.Series(column.to_numpy(dtype=object), dtype=object)


# ----------------------------------------------------------------------------- session scores


def item_column(item_id: str, dimension: str) -> str:
    """Column name of one item's value on one dimension in :func:`session_scores`."""
    return f"item_{item_id}_{dimension}"


def session_scores(values: pd.DataFrame, instrument: Instrument,
                   session_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Scores per session from the counting values of one instrument (one row per session).

    Columns: for each dimension ``d``: ``{d}_mean``, ``{d}_n_items`` (items with a value),
    ``{d}_n_na``, ``{d}_adequate`` (mean ≥ cut-off; missing when no item has a value);
    for each overall rating: ``overall_{d}`` and ``overall_{d}_adequate``; then one column per
    item and dimension (:func:`item_column`), NaN for N/A or not rated.
    """
    v = values[values["instrument"] == instrument.id]
    ids = pd.Index(sorted(set(v["session_id"]) | set(session_ids or ())), name="session_id", dtype="int64")
    out = pd.DataFrame(index=ids)
    item_cols: dict[str, pd.Series] = {}
    for dim in instrument.dimensions:
        items = instrument.items_for(dim.id)
        sub = v[(v["dimension"] == dim.id) & v["item"].isin([i.id for i in items])]
        val = sub.pivot(index="session_id", columns="item", values="value").reindex(
            index=ids, columns=[i.id for i in items])
        na = sub.pivot(index="session_id", columns="item", values="not_applicable").reindex(
            index=ids, columns=[i.id for i in items])
        n_items = val.notna().sum(axis=1)
        mean = val.mean(axis=1, skipna=True)
        out[f"{dim.id}_mean"] = mean
        out[f"{dim.id}_n_items"] = n_items.astype("int64")
        out[f"{dim.id}_n_na"] = na.eq(True).sum(axis=1).astype("int64")
        out[f"{dim.id}_adequate"] = _adequate(mean, instrument.cutoff)
        for item in items:
            item_cols[item_column(item.id, dim.id)] = val[item.id]
    for overall in instrument.overall:
        sub = v[(v["item"] == overall.id) & (v["dimension"] == overall.dimension)]
        value = sub.set_index("session_id")["value"].reindex(ids)
        out[f"overall_{overall.dimension}"] = value
        out[f"overall_{overall.dimension}_adequate"] = _adequate(value, instrument.cutoff)
    for item in instrument.items:  # form order, each item's dimensions together
        for dim in item.rated_for:
            out[item_column(item.id, dim)] = item_cols[item_column(item.id, dim)]
    return out.reset_index()


def _adequate(values: pd.Series, cutoff: int | None) -> pd.Series:
    """``values ≥ cutoff`` as a nullable boolean; missing where the value is (or no cut-off)."""
    result = pd.Series(pd.NA, index=values.index, dtype="boolean")
    if cutoff is None:
        return result
    known = values.notna()
    result[known] = values[known] >= cutoff
    return result


# ----------------------------------------------------------------------------- utterance profile


def code_levels(code_set: CodeSet) -> dict[str, str]:
    """Code id → level id; codes outside the levels of a levelled set → ``OUTSIDE_LEVELS``."""
    if not code_set.levels:
        return {}
    return {c.id: c.level if c.level is not None else OUTSIDE_LEVELS for c in code_set.codes}


def code_profile(codes: pd.DataFrame, by: Sequence[str] = ("session_id",)) -> pd.DataFrame:
    """Counts and shares per code: ``by + [code_set, code, count, share]``.

    ``codes`` has one row per counting code with a ``weight`` (1, or 1/n for n raters
    without consensus). ``share`` is the count over all coded utterances of that code set
    in the group.
    """
    by = list(by)
    counts = (codes.groupby(by + ["code_set", "code"], observed=True, sort=True)["weight"]
              .sum().rename("count").reset_index())
    totals = counts.groupby(by + ["code_set"], observed=True)["count"].transform("sum")
    counts["share"] = counts["count"] / totals
    return counts


def level_profile(codes: pd.DataFrame, scheme: Scheme, by: Sequence[str] = ("session_id",)) -> pd.DataFrame:
    """Counts and shares per level of each levelled code set (e.g. the spectrum levels 1–4).

    Codes outside the levels (non-MBT moves) form level ``OUTSIDE_LEVELS``; ``share`` is over
    all coded utterances of the set, so the shares of a group add up to 1.
    """
    by = list(by)
    frames = []
    for code_set in scheme.code_sets:
        levels = code_levels(code_set)
        if not levels:
            continue
        sub = codes[codes["code_set"].astype(str) == code_set.id]
        level = sub["code"].astype(str).map(levels).fillna(OUTSIDE_LEVELS)
        counts = (sub.assign(level=level).groupby(by + ["level"], observed=True, sort=True)["weight"]
                  .sum().rename("count").reset_index())
        counts.insert(len(by), "code_set", code_set.id)
        counts["share"] = counts["count"] / counts.groupby(by, observed=True)["count"].transform("sum")
        frames.append(counts)
    if not frames:
        return pd.DataFrame(columns=by + ["code_set", "level", "count", "share"])
    return pd.concat(frames, ignore_index=True)


def response_links(utterances: pd.DataFrame) -> pd.DataFrame:
    """Each patient utterance and the therapist utterance that answers it.

    The answer is the next utterance of the session, among patient and therapist turns (other
    speakers are skipped), when it is a therapist's. ``utterances``: ``utterance_id,
    session_id, position, role``. Returns ``utterance_id, response_id``.
    """
    turns = utterances[utterances["role"].isin(["patient", "therapist"])].sort_values(
        ["session_id", "position"], kind="stable")
    next_id = turns["utterance_id"].shift(-1)
    next_role = turns["role"].shift(-1)
    next_session = turns["session_id"].shift(-1)
    answered = (turns["role"] == "patient") & (next_role == "therapist") & (next_session == turns["session_id"])
    return pd.DataFrame({
        "utterance_id": turns.loc[answered, "utterance_id"].to_numpy(dtype="int64"),
        "response_id": next_id[answered].to_numpy(dtype="int64"),
    })


def mode_response_table(codes: pd.DataFrame, links: pd.DataFrame, scheme: Scheme,
                        by: Sequence[str] = ("session_id",)) -> pd.DataFrame:
    """The patient mode × next therapist code table, long: ``by + [mode, response, count]``.

    For every code set whose codes name responses (the nonmentalizing modes), each coded
    patient utterance is paired with the same coder's code of the therapist's answer
    (``coder``: the assignment, or the consensus). Unanswered or uncoded answers are left out.
    """
    by = list(by)
    mode_sets = {cs.id for cs in scheme.code_sets if any(c.responses_code_set for c in cs.codes)}
    mode_rows = codes[codes["code_set"].astype(str).isin(mode_sets)]
    # one answer per coder and utterance, whatever grouping rows ``codes`` repeats (a group
    # session with two therapists is in the frame once per therapist)
    answers = codes[["coder", "utterance_id", "code_set", "code"]].drop_duplicates(["coder", "utterance_id"])
    pairs = mode_rows.merge(links, on="utterance_id").merge(
        answers.rename(
            columns={"utterance_id": "response_id", "code_set": "response_set", "code": "response"}),
        on=["coder", "response_id"],
    )
    pairs["mode"] = pairs["code"].astype(str)
    pairs["response"] = pairs["response"].astype(str)
    return (pairs.groupby(by + ["mode", "response"], observed=True, sort=True)["weight"]
            .sum().rename("count").reset_index())


def responsiveness(table: pd.DataFrame, scheme: Scheme, by: Sequence[str] = ("session_id",)) -> pd.DataFrame:
    """Mode-contingent responsiveness from :func:`mode_response_table`.

    Per group and nonmentalizing mode that lists responses, and ``all`` modes together: the
    coded therapist answers (``n_responses``), how many the scheme marks recommended and
    iatrogenic for that mode, and their shares of the answers (neither: the rest).
    """
    by = list(by)
    rules = {}
    for cs in scheme.code_sets:
        for code in cs.codes:
            if code.nonmentalizing and code.responses_code_set:
                rules[code.id] = (set(code.recommended), set(code.iatrogenic))
    t = table[table["mode"].isin(list(rules))].copy()
    t["recommended"] = [r in rules[m][0] for m, r in zip(t["mode"], t["response"], strict=True)]
    t["iatrogenic"] = [r in rules[m][1] for m, r in zip(t["mode"], t["response"], strict=True)]
    t["n_recommended"] = t["count"] * t["recommended"]
    t["n_iatrogenic"] = t["count"] * t["iatrogenic"]
    cols = ["count", "n_recommended", "n_iatrogenic"]
    per_mode = t.groupby(by + ["mode"], observed=True, sort=True)[cols].sum().reset_index()
    overall = t.groupby(by, observed=True, sort=True)[cols].sum().reset_index() if by else \
        pd.DataFrame([t[cols].sum()])
    overall["mode"] = "all"
    out = pd.concat([per_mode, overall[per_mode.columns]], ignore_index=True)
    out = out.rename(columns={"count": "n_responses"})
    with np.errstate(invalid="ignore", divide="ignore"):
        out["share_recommended"] = out["n_recommended"] / out["n_responses"].where(out["n_responses"] > 0)
        out["share_iatrogenic"] = out["n_iatrogenic"] / out["n_responses"].where(out["n_responses"] > 0)
    return out.sort_values(by + ["mode"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- over time


@dataclass(frozen=True)
class MeanCI:
    """A mean with its t-based 95% confidence interval (None where not computable)."""

    n: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None


def mean_ci(values: Iterable[float], level: float = 0.95) -> MeanCI:
    """Mean, SD and the t interval ``mean ± t(n-1) · sd/√n`` of the non-missing values."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return MeanCI(0, None, None, None, None)
    mean = float(x.mean())
    if n == 1:
        return MeanCI(1, mean, None, None, None)
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return MeanCI(n, mean, sd, mean - half, mean + half)


@dataclass(frozen=True)
class Trend:
    """Least-squares change per session of a score across a therapist's sessions in order."""

    n: int
    slope: float | None
    low: float | None
    high: float | None
    p: float | None


def trend(values: Sequence[float], level: float = 0.95) -> Trend:
    """OLS slope of the scores against their order (1, 2, …), with a t interval; needs ≥ 3."""
    y = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(y)
    if n < 3:
        return Trend(n, None, None, None, None)
    x = np.arange(1, n + 1, dtype=float)
    if np.ptp(y) == 0:
        return Trend(n, 0.0, 0.0, 0.0, 1.0)
    fit = sps.linregress(x, y)
    half = float(sps.t.ppf(0.5 + level / 2, n - 2)) * float(fit.stderr)
    return Trend(n, float(fit.slope), float(fit.slope) - half, float(fit.slope) + half, float(fit.pvalue))


@dataclass(frozen=True)
class DriftFlag:
    kind: str  # "below_cutoff" or "trending_down"
    message: str


def drift_flags(values: Sequence[float], cutoff: float | None, *, recent: int = 3,
                min_for_trend: int = 4) -> list[DriftFlag]:
    """Flags for one therapist's scores in session order.

    ``below_cutoff``: the mean of the last ``recent`` scored sessions is under the cut-off
    (needs ``recent`` scored sessions: one weak session is not yet a pattern).
    ``trending_down``: over at least ``min_for_trend`` sessions the slope is negative and its
    95% interval excludes zero.
    """
    y = [v for v in values if v is not None and np.isfinite(v)]
    flags = []
    if cutoff is not None and len(y) >= recent:
        last = y[-recent:]
        mean = float(np.mean(last))
        if mean < cutoff:
            flags.append(DriftFlag(
                "below_cutoff",
                f"mean {mean:.2f} over the last {len(last)} scored session(s) is below the cut-off {cutoff:g}"))
    if len(y) >= min_for_trend:
        t = trend(y)
        if t.slope is not None and t.slope < 0 and t.high is not None and t.high < 0:
            flags.append(DriftFlag(
                "trending_down",
                f"falling by {abs(t.slope):.2f} per session over {t.n} sessions "
                f"(95% CI {t.low:.2f} to {t.high:.2f})"))
    return flags


# ----------------------------------------------------------------------------- program audits


def audit_scores(ratings: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """Per audit: the mean over rated criteria, per level means, counts and adequacy.

    ``ratings``: ``audit_id, item, value`` (NaN for N/A or not rated) and ``not_applicable``.
    Columns: ``audit_id, mean, n_items, n_na, adequate, n_below_cutoff`` and
    ``mean_<level>`` for each item level of the instrument.
    """
    known = [i.id for i in instrument.items]
    r = ratings[ratings["item"].astype(str).isin(known)]
    val = r.pivot(index="audit_id", columns="item", values="value").reindex(columns=known).astype(float)
    na = r.pivot(index="audit_id", columns="item", values="not_applicable").reindex(columns=known)
    out = pd.DataFrame(index=val.index)
    out["mean"] = val.mean(axis=1)
    out["n_items"] = val.notna().sum(axis=1).astype("int64")
    out["n_na"] = na.eq(True).sum(axis=1).astype("int64")
    out["adequate"] = _adequate(out["mean"], instrument.cutoff)
    cutoff = instrument.cutoff
    out["n_below_cutoff"] = (val < cutoff).sum(axis=1).astype("int64") if cutoff is not None else 0
    for level in instrument.levels:
        ids = [i.id for i in instrument.items if i.level == level.id]
        out[f"mean_{level.id}"] = val[ids].mean(axis=1) if ids else np.nan
    return out.reset_index()
