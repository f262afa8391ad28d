"""Fidelity data of a study, read once and scored: what dashboards, exports and the API show.

Reads submitted codings, final consensuses and gold standards, decides per session which
source counts (``stats.fidelity.counting_sources``: consensus, gold, the single rater, or the
mean of raters) and hands tidy frames to ``stats/fidelity.py``. Only submitted work and final
consensuses are read: a coding in progress never moves a fidelity score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

import pandas as pd
from sqlalchemy import select

from ..extensions import db
from ..io.schemes import Instrument, Scheme
from ..models import (
    Assignment,
    Consensus,
    ConsensusCode,
    ConsensusRating,
    GoldStandard,
    Participant,
    SessionParticipant,
    Study,
    TherapySession,
)
from ..stats import fidelity as fs
from .frames import code_frame, rating_frame, utterance_roles
from .schemes import as_scheme

#: Session columns that merge fidelity scores with outcome data, in export order.
SESSION_KEYS = ["study", "site", "team", "therapist", "patient", "session", "session_date", "study_day",
                "phase", "modality", "session_number"]


def session_instrument(scheme: Scheme) -> Instrument | None:
    """The instrument rated once per session (the MBT-ACS in the MBT scheme), or None."""
    return next((i for i in scheme.instruments if i.target == "session"), None)


@dataclass
class FidelityData:
    """Everything fidelity needs about one study, with the counting source per session."""

    study: Study
    scheme: Scheme
    #: One row per session of the study: ids, merge keys, ``source`` and ``n_raters``.
    sessions: pd.DataFrame
    #: The counting rating values (``stats.fidelity.counting_ratings``).
    values: pd.DataFrame
    #: Session → therapist code, one row per (session, therapist) (group sessions: several).
    therapists: pd.DataFrame
    #: Weight of each submitted coding and the sessions with a final consensus (for ``codes``).
    weights: pd.DataFrame = field(repr=False)
    final_consensus: list[int] = field(repr=False)
    session_ids: list[int] | None = field(default=None, repr=False)
    _utterances: pd.DataFrame | None = field(default=None, repr=False)

    @cached_property
    def codes(self) -> pd.DataFrame:
        """The counting codes: session_id, utterance_id, coder, weight, code_set, code.

        Read on first use: scores and the session export need only the ratings, and a large
        study has millions of codes.
        """
        return _counting_codes(self.study, self.session_ids, self.weights, self.final_consensus)

    @property
    def instrument(self) -> Instrument | None:
        return session_instrument(self.scheme)

    @cached_property
    def scores(self) -> pd.DataFrame:
        """Session metadata joined with the session scores (one row per session)."""
        if self.instrument is None:
            return self.sessions.copy()
        scored = fs.session_scores(self.values, self.instrument, list(self.sessions["session_id"]))
        return self.sessions.merge(scored, on="session_id", how="left")

    @property
    def utterances(self) -> pd.DataFrame:
        """Utterance id, session id, position and role of the sessions with counting codes."""
        if self._utterances is None:
            ids = sorted(set(self.codes["session_id"].tolist()))
            self._utterances = utterance_roles(self.study, ids) if ids else pd.DataFrame(
                columns=["utterance_id", "session_id", "position", "role"])
        return self._utterances


def load(study: Study, *, session_ids: list[int] | None = None) -> FidelityData:
    """Read and resolve the fidelity data of ``study`` (optionally of some sessions)."""
    scheme = as_scheme(study.scheme_version)
    sessions = _session_frame(study, session_ids)
    assignments = _submitted_assignments(study, session_ids)
    final = _final_consensus_sessions(study, session_ids)
    gold = dict(db.session.execute(
        select(GoldStandard.session_id, GoldStandard.assignment_id).where(GoldStandard.study_id == study.id)
    ).all())
    sources, weights = fs.counting_sources(assignments, final, gold)

    sessions = sessions.merge(sources, on="session_id", how="left")
    sessions["source"] = sessions["source"].fillna("none")
    sessions["n_raters"] = sessions["n_raters"].fillna(0).astype("int64")

    ratings = rating_frame(study, include_gold=True, session_ids=session_ids)
    values = fs.counting_ratings(ratings, weights, _consensus_ratings(study, final))
    therapists = _therapist_links(study, session_ids)
    return FidelityData(study, scheme, sessions, values, therapists, weights, final, session_ids)


# ----------------------------------------------------------------------------- reading


def _tuples(query) -> list[tuple]:
    """Result rows as plain tuples (types processed, e.g. dates on SQLite).

    pandas 3 probes every record with ``hasattr(row, "dtype")``, which on a SQLAlchemy
    ``Row`` raises and catches an AttributeError: about 4 µs a row, seconds on a large study.
    """
    return [tuple(row) for row in db.session.execute(query)]


def _session_frame(study: Study, session_ids: list[int] | None) -> pd.DataFrame:
    # every session of the study is read: a patient's study day counts from their first
    # session, which need not be among ``session_ids``
    query = select(
        TherapySession.id, TherapySession.label, TherapySession.session_date, TherapySession.phase,
        TherapySession.modality, TherapySession.session_number, TherapySession.site, TherapySession.team,
    ).where(TherapySession.study_id == study.id)
    rows = _tuples(query.order_by(TherapySession.id))
    frame = pd.DataFrame(rows, columns=["session_id", "session", "session_date", "phase", "modality",
                                        "session_number", "site", "team"])
    frame["session_id"] = frame["session_id"].astype("int64")
    frame["session_number"] = frame["session_number"].astype("Int64")
    links = _tuples(
        select(SessionParticipant.session_id, Participant.kind, Participant.code)
        .join(Participant, Participant.id == SessionParticipant.participant_id)
        .where(Participant.study_id == study.id)
        .order_by(SessionParticipant.session_id, Participant.kind, Participant.code)
    )
    codes: dict[tuple[int, str], list[str]] = {}
    for session_id, kind, code in links:
        codes.setdefault((session_id, kind), []).append(code)
    for kind in ("therapist", "patient"):
        frame[kind] = [";".join(codes.get((sid, kind), [])) for sid in frame["session_id"]]
    frame.insert(0, "study", study.name)
    frame["study_day"] = _study_days(frame, links)
    if session_ids is not None:
        frame = frame[frame["session_id"].isin(list(session_ids))].reset_index(drop=True)
    return frame


def _study_days(frame: pd.DataFrame, links: list[tuple[int, str, str]]) -> pd.Series:
    """Days since the patient's first dated session in the study (day 0).

    Sessions with no date or not exactly one patient (group sessions) have none: a group has
    no single treatment start.
    """
    patients = pd.DataFrame([(sid, code) for sid, kind, code in links if kind == "patient"],
                            columns=["session_id", "patient_code"])
    n_patients = patients.groupby("session_id")["patient_code"].transform("size")
    one = patients[n_patients == 1]
    dated = frame[["session_id", "session_date"]].merge(one, on="session_id", how="left")
    when = pd.to_datetime(dated["session_date"])
    first = when.groupby(dated["patient_code"]).transform("min")
    days = (when - first).dt.days
    return pd.Series(days.to_numpy(), index=frame.index).astype("Int64")


def patient_first_session_dates(study: Study) -> dict[str, date]:
    """Patient code → date of the patient's first dated one-patient session (study day 0)."""
    sessions = _session_frame(study, None)
    first: dict[str, date] = {}
    for patient, d, day in zip(sessions["patient"], sessions["session_date"], sessions["study_day"],
                               strict=True):
        if d is not None and day is not pd.NA and day == 0:
            first[patient] = d
    return first


def _submitted_assignments(study: Study, session_ids: list[int] | None) -> pd.DataFrame:
    query = select(Assignment.session_id, Assignment.id, Assignment.rater_id).where(
        Assignment.study_id == study.id, Assignment.status == "submitted")
    if session_ids is not None:
        query = query.where(Assignment.session_id.in_(session_ids))
    return pd.DataFrame(_tuples(query), columns=["session_id", "assignment_id", "rater_id"]).astype("int64")


def _final_consensus_sessions(study: Study, session_ids: list[int] | None) -> list[int]:
    query = select(Consensus.session_id).where(Consensus.study_id == study.id, Consensus.status == "final")
    if session_ids is not None:
        query = query.where(Consensus.session_id.in_(session_ids))
    return list(db.session.scalars(query))


def _consensus_ratings(study: Study, final: list[int]) -> pd.DataFrame:
    rows = _tuples(
        select(Consensus.session_id, ConsensusRating.instrument, ConsensusRating.item,
               ConsensusRating.dimension, ConsensusRating.value, ConsensusRating.not_applicable)
        .join(Consensus, Consensus.id == ConsensusRating.consensus_id)
        .where(Consensus.study_id == study.id, Consensus.status == "final")
    ) if final else []
    frame = pd.DataFrame(rows, columns=["session_id", "instrument", "item", "dimension", "value",
                                        "not_applicable"])
    return frame[frame["session_id"].isin(final)]


def _counting_codes(study: Study, session_ids: list[int] | None, weights: pd.DataFrame,
                    final: list[int]) -> pd.DataFrame:
    columns = ["session_id", "utterance_id", "coder", "weight", "code_set", "code"]
    raw = code_frame(study, include_gold=True, session_ids=session_ids)
    counted = weights.loc[weights["weight"] > 0, ["assignment_id"]]
    rows = raw.merge(counted, on="assignment_id")
    # each counting coding that has codes weighs 1/n: a second rater who only rated the
    # session (no codes) must not halve the first rater's codes
    n_coders = rows.groupby("session_id")["assignment_id"].transform("nunique")
    rows = pd.DataFrame({
        "session_id": rows["session_id"].astype("int64"),
        "utterance_id": rows["utterance_id"].astype("int64"),
        "coder": rows["assignment_id"].astype("int64"),
        "weight": 1.0 / n_coders.to_numpy(dtype=float),
        "code_set": rows["code_set"].astype(str),
        "code": rows["code"].astype(str),
    })
    if final:
        cons = _tuples(
            select(Consensus.session_id, ConsensusCode.utterance_id, ConsensusCode.code_set, ConsensusCode.code)
            .join(Consensus, Consensus.id == ConsensusCode.consensus_id)
            .where(Consensus.study_id == study.id, Consensus.status == "final",
                   ConsensusCode.code.is_not(None))
        )
        cons_frame = pd.DataFrame(cons, columns=["session_id", "utterance_id", "code_set", "code"])
        cons_frame = cons_frame[cons_frame["session_id"].isin(final)]
        # the consensus is one coder per session; negative ids never collide with assignments
        cons_frame["coder"] = -cons_frame["session_id"].astype("int64")
        cons_frame["weight"] = 1.0
        rows = pd.concat([rows, cons_frame[columns]], ignore_index=True)
    return rows[columns].sort_values(["session_id", "coder", "utterance_id"], kind="stable").reset_index(drop=True)


def _therapist_links(study: Study, session_ids: list[int] | None) -> pd.DataFrame:
    query = (select(SessionParticipant.session_id, Participant.code)
             .join(Participant, Participant.id == SessionParticipant.participant_id)
             .where(Participant.study_id == study.id, Participant.kind == "therapist"))
    if session_ids is not None:
        query = query.where(SessionParticipant.session_id.in_(session_ids))
    return pd.DataFrame(_tuples(query), columns=["session_id", "therapist_code"])


# ----------------------------------------------------------------------------- profiles


def profile_codes(data: FidelityData, by: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The counting codes with the grouping column ``by`` (therapist_code, team, site) added."""
    codes = data.codes
    if by is None:
        return codes.assign(all="all"), ["all"]
    if by == "session_id":
        return codes, ["session_id"]
    if by == "therapist_code":
        return codes.merge(data.therapists, on="session_id"), ["therapist_code"]
    groups = data.sessions[["session_id", by]].dropna()
    return codes.merge(groups, on="session_id"), [by]


@dataclass(frozen=True)
class Profile:
    """The utterance profile of a group of sessions."""

    codes: pd.DataFrame
    levels: pd.DataFrame
    table: pd.DataFrame
    responsiveness: pd.DataFrame


def profile(data: FidelityData, by: str | None = None) -> Profile:
    """Code and level profile, mode × response table and responsiveness, per group ``by``."""
    codes, keys = profile_codes(data, by)
    links = fs.response_links(data.utterances)
    table = fs.mode_response_table(codes, links, data.scheme, keys)
    return Profile(
        codes=fs.code_profile(codes, keys),
        levels=fs.level_profile(codes, data.scheme, keys),
        table=table,
        responsiveness=fs.responsiveness(table, data.scheme, keys),
    )


# ----------------------------------------------------------------------------- over time


def scored_sessions(data: FidelityData) -> pd.DataFrame:
    """The sessions that have a score: a counting source and at least one dimension mean or
    overall rating (a session that was only coded has a source but no score)."""
    scores = data.scores
    columns = [c for dim in score_dimensions(data) for c in (f"{dim}_mean", f"overall_{dim}")
               if c in scores]
    has_score = scores[columns].notna().any(axis=1) if columns else pd.Series(False, index=scores.index)
    return scores[(scores["source"] != "none") & has_score]


def ordered_scores(data: FidelityData) -> pd.DataFrame:
    """Scored sessions per therapist in time order (date, then session number, then label).

    One row per (therapist, session): a group session with two therapists counts for both.
    """
    rows = scored_sessions(data).merge(data.therapists, on="session_id")
    rows["_date"] = pd.to_datetime(rows["session_date"])
    rows = rows.sort_values(["therapist_code", "_date", "session_number", "session"],
                            kind="stable", na_position="last")
    return rows.drop(columns="_date").reset_index(drop=True)


@dataclass(frozen=True)
class TherapistSummary:
    """One therapist's fidelity: per dimension mean with CI, trend, and drift flags."""

    therapist: str
    n_sessions: int
    last_date: date | None
    means: dict[str, fs.MeanCI]
    trends: dict[str, fs.Trend]
    flags: dict[str, list[fs.DriftFlag]]

    @property
    def flagged(self) -> bool:
        return any(self.flags.values())


def score_dimensions(data: FidelityData) -> list[str]:
    """The dimensions scored per session (``adherence``, ``competence`` in MBT-ACS)."""
    return [d.id for d in data.instrument.dimensions] if data.instrument else []


def therapist_summaries(data: FidelityData, *, recent: int = 3) -> list[TherapistSummary]:
    """Per therapist, in code order: means with CIs, trend across sessions and drift flags."""
    rows = ordered_scores(data)
    cutoff = data.instrument.cutoff if data.instrument else None
    out = []
    for therapist, group in rows.groupby("therapist_code", sort=True):
        means, trends, flags = {}, {}, {}
        for dim in score_dimensions(data):
            values = [float(v) for v in group[f"{dim}_mean"].dropna()]
            means[dim] = fs.mean_ci(values)
            trends[dim] = fs.trend(values)
            flags[dim] = fs.drift_flags(values, cutoff, recent=recent)
        dates = [d for d in group["session_date"] if d is not None and not pd.isna(d)]
        out.append(TherapistSummary(str(therapist), len(group), max(dates) if dates else None,
                                    means, trends, flags))
    return out


def group_means(data: FidelityData, by: str) -> pd.DataFrame:
    """Per value of ``by`` (team, site, phase…) and dimension: n, mean, sd and 95% CI."""
    scored = scored_sessions(data)
    records = []
    keys = sorted(scored[by].dropna().unique().tolist()) if by in scored else []
    for key in keys:
        group = scored[scored[by] == key]
        for dim in score_dimensions(data):
            ci = fs.mean_ci(group[f"{dim}_mean"].dropna().astype(float))
            records.append({by: key, "dimension": dim, "n": ci.n, "mean": ci.mean, "sd": ci.sd,
                            "ci_low": ci.low, "ci_high": ci.high})
    return pd.DataFrame(records, columns=[by, "dimension", "n", "mean", "sd", "ci_low", "ci_high"])


def study_means(data: FidelityData) -> dict[str, fs.MeanCI]:
    """Study-wide mean per dimension over the scored sessions."""
    scored = scored_sessions(data)
    return {dim: fs.mean_ci(scored[f"{dim}_mean"].dropna().astype(float)) for dim in score_dimensions(data)}

