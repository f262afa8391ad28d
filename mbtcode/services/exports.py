"""Tidy export tables for outcome analyses: sessions, therapists, utterances, ratings, outcomes.

``export_table(study, level, actor=…)`` builds one table (a DataFrame with documented columns
and metadata); ``mbtcode.io.export_formats`` writes it as CSV, Excel, Parquet, SPSS or
Stata with codebooks and a manifest. The command line (``mbtcode export``), the export page
and the JSON API all start here. User documentation: ``docs/exports.md``.

De-identified by default: coders appear as rater codes (``R<user id>``, the codes of the
reliability report) or ``consensus``, never as names or e-mails; utterance text with the
transcript's speaker labels (which can be names: ``Dr. Müller``, ``Anna``), and the raters'
notes and rationales, only with ``include_text`` / ``include_notes``, which need the
``export_identifying`` capability (coordinators, site admins). Without them an utterance is
identified by its position and speaker role only. Therapist and patient codes are the
study's pseudonyms. Internal database ids of sessions and utterances are not
exported (the session label and the utterance position identify them).

Everything is ordered so that unchanged data give an identical table (and so identical
files): see :data:`ROW_ORDER`. The metadata holds no time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from .. import __version__
from ..extensions import db
from ..io import export_formats as ef
from ..io.schemes import Instrument, Scheme
from ..models import (
    MODALITIES,
    PHASES,
    SPEAKER_ROLES,
    Assignment,
    Consensus,
    ConsensusCode,
    ConsensusRating,
    GoldStandard,
    ItemRating,
    ItemRationale,
    Outcome,
    Participant,
    Study,
    Transcript,
    User,
    Utterance,
    UtteranceCode,
)
from ..models.reliability import CONSENSUS_BASES
from ..stats import fidelity as fs
from . import ServiceError, audit, fidelity
from .frames import _raw_rows  # reads plain tuples from the DB-API cursor (no Row objects)
from .permissions import can
from .schemes import as_scheme

LEVELS = ("session", "therapist", "utterance", "rating", "outcomes")
FORMATS = ef.FORMATS

#: Bump when a level's columns or their meaning change; written into every export.
EXPORT_FORMAT_VERSION = "2"  # 2: utterance level: speaker only with include_text

#: Rater codes in exports (``R<user id>``, as the reliability report) and the consensus coder.
CONSENSUS_CODER = "consensus"

COUNTING_RULE = (
    "Exactly one source counts for a session's scores, in this order: (1) consensus: a final "
    "adjudicated consensus; (2) gold: the session is a gold-standard session, the expert's "
    "coding counts; (3) single_rater: the one submitted coding; (4) mean_of_raters: several "
    "submitted codings and no final consensus: each rating is the mean of the raters' numeric "
    "values (a rater's N/A or missing value is no value; the item is N/A when no rater gave a "
    "number and at least one said N/A), and the codes of each of the n codings that have codes "
    "count with weight 1/n. Sessions "
    "with no submitted coding have source none and no scores. Only submitted codings and final "
    "consensuses count; the originals are never changed. Scores per dimension: the mean over "
    "the items rated for that dimension that have a value (N/A and missing excluded), with "
    "adequate = mean >= the instrument's cut-off; the overall ratings are entered by the "
    "raters, never computed from the items. (mbtcode.stats.fidelity, scoring version "
    f"{fs.SCORING_VERSION}; docs/fidelity.md.)"
)

ROW_ORDER = {
    "session": "by session date (undated sessions last), then session label (unique in the study).",
    "therapist": "by therapist code.",
    "utterance": ("sessions as in the session level (date, then label); within a session the "
                  "raters' codings by rater code number (R1, R2 …), then the consensus; within a "
                  "coding by utterance position."),
    "rating": ("sessions as in the session level; within a session the raters by rater code "
               "number, then the consensus; within a coding by instrument, item (form order, "
               "overall ratings last) and dimension, as in the scheme."),
    "outcomes": ("by patient code, measure, the outcome's study day (missing last), outcome "
                 "date (missing last), value, then the order of import."),
}


class ExportDenied(ServiceError):
    """The user may not export this (no ``export``, or text/notes without the right)."""


@dataclass(frozen=True)
class Column:
    """One column of an export table, as the codebook documents it."""

    name: str
    label: str
    type: str  # "string" | "integer" | "number" | "date" | "boolean"
    description: str
    #: Value labels ``{integer code: text}``: the text is what CSV, Excel and Parquet hold,
    #: SPSS and Stata hold the code. Empty for columns that are not categorical.
    values: dict = field(default_factory=dict)
    #: For item columns: the item id as the scheme file has it (names are sanitised).
    item_id: str | None = None


@dataclass
class ExportTable:
    """One export table: ``frame`` has exactly the columns' names, in order."""

    study: Study
    level: str
    frame: pd.DataFrame
    columns: list[Column]
    metadata: dict[str, str]


# ----------------------------------------------------------------------------- entry points


def export_table(study: Study, level: str, *, actor: User | None, include_text: bool = False,
                 include_notes: bool = False) -> ExportTable:
    """Build the ``level`` table of ``study``.

    ``actor`` None is the command line (a server operator, who may export anything); a user
    needs the ``export`` capability in the study, and ``export_identifying`` to include
    utterance text and speaker labels (``include_text``) or notes and rationales
    (``include_notes``), else ExportDenied. Text and notes exist at the utterance level
    (and notes at the rating level); elsewhere the flags change nothing. A user's export is
    audited (``export.table``); :func:`record_file` audits each file written.
    """
    if level not in LEVELS:
        shown = level if len(level) <= 30 else level[:27] + "…"
        raise ServiceError(f"unknown level '{shown}': choose one of {', '.join(LEVELS)}")
    if actor is not None:
        if not can(actor, "export", study):
            raise ExportDenied("your role in this study does not allow exports (coordinators and "
                               "analysts export)")
        if (include_text or include_notes) and not can(actor, "export_identifying", study):
            asked = " and ".join(n for n, on in (("utterance text", include_text),
                                                ("notes", include_notes)) if on)
            raise ExportDenied(f"{asked} can identify people: only the study's coordinators "
                               "may export them; export without them (de-identified)")
    include_text = include_text and level == "utterance"
    include_notes = include_notes and level in ("utterance", "rating")
    builder = {"session": _session_level, "therapist": _therapist_level,
               "utterance": _utterance_level, "rating": _rating_level,
               "outcomes": _outcomes_level}[level]
    frame, columns = builder(study, include_text=include_text, include_notes=include_notes)
    frame = ef.normalise_frame(frame, columns)
    table = ExportTable(study, level, frame, columns,
                        _metadata(study, level, len(frame), include_text, include_notes))
    ef.check_table(table)
    if actor is not None:
        audit.record("export.table", actor=actor, entity="study", entity_id=study.id,
                     study_id=study.id, detail=_audit_detail(table))
    return table


def record_file(table: ExportTable, fmt: str, data: bytes, *, actor: User | None,
                name: str | None = None) -> None:
    """Audit one written export file (``export.file``) with its SHA-256."""
    detail = _audit_detail(table)
    detail.update({"format": fmt, "sha256": ef.sha256(data), "bytes": len(data)})
    if name:
        detail["file"] = name
    audit.record("export.file", actor=actor, entity="study", entity_id=table.study.id,
                 study_id=table.study.id, detail=detail)


def file_stem(table: ExportTable) -> str:
    """A safe ASCII base name: ``mbtcode-<study>-<level>``."""
    return f"mbtcode-{slug(table.study.name, table.study.id)}-{table.level}"


def slug(name: str, study_id: int) -> str:
    """The study name as lower-case ASCII letters, digits and dashes (``study-<id>`` if none)."""
    text = ef.safe_column_name(name).replace("_", "-")
    text = text[2:] if text.startswith("v-") else text
    return text[:50].strip("-") or f"study-{study_id}"


def _audit_detail(table: ExportTable) -> dict[str, Any]:
    return {"level": table.level, "rows": int(len(table.frame)),
            "include_text": table.metadata["include_text"] == "true",
            "include_notes": table.metadata["include_notes"] == "true"}


def _metadata(study: Study, level: str, rows: int, include_text: bool,
              include_notes: bool) -> dict[str, str]:
    version = study.scheme_version
    scheme = as_scheme(version)
    instrument = fidelity.session_instrument(scheme)
    return {
        "mbtcode_version": __version__,
        "export_format_version": EXPORT_FORMAT_VERSION,
        "study": study.name,
        "level": level,
        "rows": str(rows),
        "scheme_id": version.key,
        "scheme_revision": version.ref,
        "scheme_version": version.version,
        "scheme_title": version.title,
        "scheme_sha256": version.sha256,
        "instrument": instrument.id if instrument else "",
        "cutoff": "" if instrument is None or instrument.cutoff is None else str(instrument.cutoff),
        "scoring_version": fs.SCORING_VERSION,
        "counting_rule": COUNTING_RULE,
        "row_order": ROW_ORDER[level],
        "include_text": "true" if include_text else "false",
        "include_notes": "true" if include_notes else "false",
    }


# ----------------------------------------------------------------------------- columns


def _labels(values: list[str]) -> dict[int, str]:
    """Value labels 1, 2, 3 … for the texts in the given order."""
    return {i: v for i, v in enumerate(dict.fromkeys(values), start=1)}


SOURCES = (*fs.SOURCES, "none")
BOOLEAN = dict(ef.BOOLEAN_LABELS)


def _key_columns(names: list[str] | None = None) -> list[Column]:
    """The merge keys (``fidelity.SESSION_KEYS``), or some of them, in that order."""
    specs = {
        "study": Column("study", "Study", "string", "Name of the study in mbtcode."),
        "site": Column("site", "Site", "string", "Site (clinic) of the session; empty if not recorded."),
        "team": Column("team", "Therapist team", "string", "Therapist team of the session; empty if not recorded."),
        "therapist": Column("therapist", "Therapist code(s)", "string",
                            "Pseudonymous therapist code; co-therapists of one session joined by ';' "
                            "in code order."),
        "patient": Column("patient", "Patient code(s)", "string",
                          "Pseudonymous patient code; the patients of a group session joined by ';' "
                          "in code order."),
        "session": Column("session", "Session label", "string",
                          "The session's label, unique within the study."),
        "session_date": Column("session_date", "Session date", "date",
                               "Date of the session; empty if not recorded."),
        "study_day": Column("study_day", "Study day of the session", "integer",
                            "Days since the patient's first dated individual session in the study "
                            "(day 0: the first dated session with that patient as its only "
                            "patient). Empty for undated sessions and for sessions with more than "
                            "one patient (a group has no single treatment start)."),
        "phase": Column("phase", "Treatment phase", "string",
                        "Treatment phase of the session (initial, main, final); empty if unknown.",
                        _labels(list(PHASES))),
        "modality": Column("modality", "Modality", "string",
                           "Individual, group or psychoeducation session.", _labels(list(MODALITIES))),
        "session_number": Column("session_number", "Session number", "integer",
                                 "Ordinal number of the session in the patient's (or group's) "
                                 "treatment; empty if unknown."),
    }
    return [specs[n] for n in (names or fidelity.SESSION_KEYS)]


def _source_columns() -> list[Column]:
    return [
        Column("source", "Which rating counts", "string",
               "The coding whose ratings and codes the session's scores count: consensus (final "
               "adjudicated consensus), gold (gold-standard expert), single_rater, mean_of_raters "
               "(several raters, no consensus), or none (no submitted coding: no scores). See the "
               "counting rule.", _labels(list(SOURCES))),
        Column("n_raters", "Submitted codings", "integer",
               "Number of submitted codings of the session (the originals; the consensus is not "
               "counted)."),
    ]


def _score_columns(instrument: Instrument | None, used: set[str]) -> list[tuple[str, Column]]:
    """(name in ``stats.fidelity.session_scores``, Column) for every score and item column."""
    if instrument is None:
        return []
    out: list[tuple[str, Column]] = []
    cutoff = instrument.cutoff
    scale = f"{instrument.scale_min}–{instrument.scale_max}"
    adequacy = (f"mean >= cut-off {cutoff}" if cutoff is not None else "no cut-off in the scheme: always empty")

    def add(raw: str, label: str, kind: str, description: str, values: dict | None = None,
            item_id: str | None = None) -> None:
        name = ef.safe_column_name(raw, used)
        out.append((raw, Column(name, label, kind, description, dict(values or {}), item_id)))

    for dim in instrument.dimensions:
        n = len(instrument.items_for(dim.id))
        add(f"{dim.id}_mean", f"{dim.label}: mean over items", "number",
            f"{instrument.title}: mean {dim.label.lower()} over the {n} items rated for it that "
            f"have a value (N/A and missing excluded); scale {scale}. Empty when no item has a value.")
        add(f"{dim.id}_n_items", f"{dim.label}: items with a value", "integer",
            f"Number of items the {dim.label.lower()} mean rests on (of {n}).")
        add(f"{dim.id}_n_na", f"{dim.label}: items N/A", "integer",
            f"Number of {dim.label.lower()} items rated N/A (not applicable).")
        add(f"{dim.id}_adequate", f"{dim.label}: adequate", "boolean",
            f"Whether the {dim.label.lower()} mean is adequate ({adequacy}); empty without a mean.",
            BOOLEAN)
    for overall in instrument.overall:
        add(f"overall_{overall.dimension}", overall.label, "number",
            f"The overall {overall.dimension} rating as entered by the rater(s) (never computed "
            f"from the items); scale {scale}.")
        add(f"overall_{overall.dimension}_adequate", f"{overall.label}: adequate", "boolean",
            f"Whether the overall rating is adequate (rating >= cut-off {cutoff}).", BOOLEAN)
    dims = {d.id: d for d in instrument.dimensions}
    for item in instrument.items:
        for dim in item.rated_for:
            provisional = " Provisional item (wording from the licensed manual)." if item.provisional else ""
            add(fs.item_column(item.id, dim), f"Item {item.number} {item.name} [{dims[dim].label}]",
                "number",
                f"{instrument.title} item {item.number} '{item.name}', {dims[dim].label.lower()}; "
                f"scale {scale}; empty for N/A or not rated.{provisional}", item_id=item.id)
    return out


# ----------------------------------------------------------------------------- sessions


def _sorted_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    """Sessions by date (undated last), then label."""
    when = pd.to_datetime(sessions["session_date"])
    keys = pd.DataFrame({"undated": when.isna(), "when": when,
                         "label": sessions["session"].astype(str)}, index=sessions.index)
    order = keys.sort_values(["undated", "when", "label"], kind="stable").index
    return sessions.loc[order].reset_index(drop=True)


def _session_rank(sessions: pd.DataFrame) -> dict[int, int]:
    """session_id → its position in the session order."""
    ordered = _sorted_sessions(sessions)
    return {int(s): i for i, s in enumerate(ordered["session_id"])}


def _session_level(study: Study, **_flags: bool) -> tuple[pd.DataFrame, list[Column]]:
    data = fidelity.load(study)
    scores = _sorted_sessions(data.scores)
    columns = _key_columns() + _source_columns()
    used = {c.name for c in columns}
    score_specs = _score_columns(data.instrument, used)
    frame = scores[[c.name for c in columns]].copy()
    for raw, column in score_specs:
        frame[column.name] = scores[raw]
    return frame, columns + [c for _, c in score_specs]


# ----------------------------------------------------------------------------- therapists


def _therapist_level(study: Study, **_flags: bool) -> tuple[pd.DataFrame, list[Column]]:
    data = fidelity.load(study)
    dims = [d for d in (data.instrument.dimensions if data.instrument else ())]
    cutoff = data.instrument.cutoff if data.instrument else None
    columns = [
        Column("therapist", "Therapist code", "string", "Pseudonymous therapist code."),
        Column("site", "Site(s)", "string",
               "Site of the therapist's sessions; several joined by ';' (sorted)."),
        Column("team", "Team(s)", "string",
               "Team of the therapist's sessions; several joined by ';' (sorted)."),
        Column("n_sessions", "Scored sessions", "integer",
               "Scored sessions of the therapist: a counting coding (source other than none) "
               "with at least one dimension mean or overall rating (a session that was only "
               "coded is not scored); a group session with two therapists counts for both. "
               "0: none scored yet."),
        Column("first_session_date", "First scored session", "date",
               "Date of the therapist's first scored session."),
        Column("last_session_date", "Last scored session", "date",
               "Date of the therapist's last scored session."),
    ]
    used = {c.name for c in columns}
    specs: list[tuple[str, str, Column]] = []
    for dim in dims:
        d, lab = dim.id, dim.label
        entries = [
            ("n", "integer", f"{lab}: sessions", f"Scored sessions with a {lab.lower()} mean."),
            ("mean", "number", f"{lab}: mean", f"Mean of the session {lab.lower()} means."),
            ("sd", "number", f"{lab}: SD", "Standard deviation of the session means (n-1)."),
            ("ci_low", "number", f"{lab}: 95% CI low", "Lower end of the t-based 95% interval of the mean."),
            ("ci_high", "number", f"{lab}: 95% CI high", "Upper end of the t-based 95% interval of the mean."),
            ("slope", "number", f"{lab}: trend per session",
             "Least-squares change of the session mean per session, sessions in time order "
             "(needs 3 or more; 0 when all are equal)."),
            ("slope_ci_low", "number", f"{lab}: trend 95% CI low", "Lower end of the slope's 95% t interval."),
            ("slope_ci_high", "number", f"{lab}: trend 95% CI high", "Upper end of the slope's 95% t interval."),
            ("slope_p", "number", f"{lab}: trend p", "Two-sided p value of the slope (t test)."),
            ("below_cutoff", "boolean", f"{lab}: below cut-off",
             f"Flag: the mean of the last 3 scored sessions is below the cut-off ({cutoff}). "
             "Empty without scored sessions."),
            ("trending_down", "boolean", f"{lab}: trending down",
             "Flag: over 4 or more sessions the slope is negative and its 95% interval excludes 0. "
             "Empty without scored sessions."),
        ]
        for key, kind, label, description in entries:
            name = ef.safe_column_name(f"{d}_{key}", used)
            specs.append((d, key, Column(name, label, kind, description,
                                         BOOLEAN if kind == "boolean" else {})))
    columns += [c for _, _, c in specs]

    summaries = {s.therapist: s for s in fidelity.therapist_summaries(data)}
    ordered = fidelity.ordered_scores(data)
    links = data.therapists.merge(data.sessions[["session_id", "site", "team"]], on="session_id")
    codes = sorted(set(links["therapist_code"].astype(str)) | set(summaries))
    records = []
    for code in codes:
        mine = links[links["therapist_code"].astype(str) == code]
        scored = ordered[ordered["therapist_code"].astype(str) == code]
        dates = sorted(d for d in scored["session_date"] if d is not None and not pd.isna(d))
        row: dict[str, Any] = {
            "therapist": code,
            "site": _joined(mine["site"]), "team": _joined(mine["team"]),
            "n_sessions": len(scored),
            "first_session_date": dates[0] if dates else None,
            "last_session_date": dates[-1] if dates else None,
        }
        summary = summaries.get(code)
        for d, key, column in specs:
            if summary is None:
                row[column.name] = 0 if key == "n" else None
                continue
            mean, trend = summary.means[d], summary.trends[d]
            kinds = {f.kind for f in summary.flags[d]}
            row[column.name] = {
                "n": mean.n, "mean": mean.mean, "sd": mean.sd, "ci_low": mean.low, "ci_high": mean.high,
                "slope": trend.slope, "slope_ci_low": trend.low, "slope_ci_high": trend.high,
                "slope_p": trend.p,
                "below_cutoff": "below_cutoff" in kinds if mean.n else None,
                "trending_down": "trending_down" in kinds if mean.n else None,
            }[key]
        records.append(row)
    return pd.DataFrame.from_records(records, columns=[c.name for c in columns]), columns


def _joined(values: pd.Series) -> str | None:
    present = sorted({str(v) for v in values if v is not None and not pd.isna(v) and str(v)})
    return ";".join(present) or None


# ----------------------------------------------------------------------------- codings


def _codings(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Submitted assignments with their coder code, weight and counts; final consensuses.

    The weights follow ``stats.fidelity.counting_sources`` on the same inputs as
    ``services.fidelity.load``.
    """
    assignments = fidelity._submitted_assignments(study, None)
    final = fidelity._final_consensus_sessions(study, None)
    gold = dict(db.session.execute(
        select(GoldStandard.session_id, GoldStandard.assignment_id).where(GoldStandard.study_id == study.id)
    ).all())
    _sources, weights = fs.counting_sources(assignments, final, gold)
    weights = weights.copy()
    weights["coder"] = [f"R{int(r)}" for r in weights["rater_id"]]
    weights["counts"] = weights["weight"] > 0
    consensus_ids = dict(db.session.execute(
        select(Consensus.session_id, Consensus.id).where(Consensus.study_id == study.id,
                                                          Consensus.status == "final")).all())
    consensus = pd.DataFrame({"session_id": pd.Series(sorted(consensus_ids), dtype="int64")})
    consensus["consensus_id"] = [consensus_ids[s] for s in consensus["session_id"]]
    return weights, consensus


def _coding_rows(weights: pd.DataFrame, consensus: pd.DataFrame) -> pd.DataFrame:
    """One row per coding: session_id, coder, weight, counts, assignment_id, consensus_id, rank."""
    raters = pd.DataFrame({
        "session_id": weights["session_id"].astype("int64"),
        "coder": weights["coder"], "weight": weights["weight"].astype(float),
        "counts": weights["counts"].astype(bool),
        "assignment_id": weights["assignment_id"].astype("Int64"),
        "consensus_id": pd.array([None] * len(weights), dtype="Int64"),
        "coder_rank": weights["rater_id"].astype("int64"),
    })
    cons = pd.DataFrame({
        "session_id": consensus["session_id"].astype("int64"),
        "coder": CONSENSUS_CODER, "weight": 1.0, "counts": True,
        "assignment_id": pd.array([None] * len(consensus), dtype="Int64"),
        "consensus_id": consensus["consensus_id"].astype("Int64"),
        "coder_rank": np.iinfo(np.int64).max,
    })
    frames = [f for f in (raters, cons) if len(f)]
    if not frames:
        return raters
    return pd.concat(frames, ignore_index=True)


def _coder_columns() -> list[Column]:
    return [
        Column("coder", "Coder", "string",
               "Whose coding: R<number> is a rater's submitted coding (the rater codes of the "
               "reliability report; names are never exported), consensus the final adjudicated "
               "consensus."),
        Column("counts", "Counts for the scores", "boolean",
               "Whether this coding is (part of) what the session's scores count (see the "
               "counting rule): the consensus, the gold-standard coding, the single rater, or "
               "each rater of a session without consensus.", BOOLEAN),
        Column("weight", "Weight in the scores", "number",
               "The coding's weight in the session's code counts: 1, 1/n for each of the n "
               "counting codings that have codes (raters without consensus), 0 when another "
               "coding counts or the coding has no codes."),
    ]


def _basis_column() -> Column:
    return Column("basis", "Consensus basis", "string",
                  "Consensus rows: where the value came from (agreement: the raters agreed; "
                  "within_threshold: differences within the threshold, the raters' mean; picked: "
                  "the adjudicator picked one rater's value; entered: the adjudicator entered "
                  "another). Empty for raters' rows.", _labels(list(CONSENSUS_BASES)))


def _records(rows: list[tuple], columns: list[str], *, ints: tuple[str, ...] = (),
             nullable: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows → a DataFrame with the id columns typed (also when there are no rows)."""
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for name in ints:
        frame[name] = frame[name].astype("int64")
    for name in nullable:
        frame[name] = frame[name].astype("Int64")
    return frame


def _session_keys_frame(study: Study) -> pd.DataFrame:
    return fidelity._session_frame(study, None)


def _utterance_level(study: Study, *, include_text: bool, include_notes: bool
                     ) -> tuple[pd.DataFrame, list[Column]]:
    scheme = as_scheme(study.scheme_version)
    sessions = _session_keys_frame(study)
    weights, consensus = _codings(study)
    codings = _coding_rows(weights, consensus)
    set_values = [cs.id for cs in scheme.code_sets]
    code_values = [c.id for cs in scheme.code_sets for c in cs.codes]
    level_values = _level_values(scheme)
    columns = _key_columns() + _coder_columns() + [
        Column("position", "Utterance position", "integer",
               "1-based position of the utterance in the session's transcript."),
        Column("role", "Speaker role", "string",
               "Role the transcript's speaker label was mapped to at import (which code set "
               "applies).", _labels(list(SPEAKER_ROLES))),
        Column("code_set", "Code set", "string",
               "The scheme's code set for the speaker role; empty for roles that are not coded. "
               + "; ".join(f"{cs.id} = {cs.title}" for cs in scheme.code_sets), {}),
        Column("code", "Code", "string",
               "The coder's code; empty when that coder left the utterance uncoded (or the "
               "consensus is that it takes no code). "
               + "; ".join(f"{c.id} = {c.label}" for cs in scheme.code_sets for c in cs.codes), {}),
        Column("level", "Level", "string",
               "Level of the code in a levelled code set (the MBT intervention spectrum 1–4); "
               f"'{fs.OUTSIDE_LEVELS}' for codes outside the levels (non-MBT moves); empty for "
               "code sets without levels or no code. "
               + "; ".join(f"{lv.id} = {lv.label}" for cs in scheme.code_sets for lv in cs.levels), {}),
        _basis_column(),
    ]
    if include_text:
        columns.append(Column("speaker", "Speaker label", "string",
                              "Speaker label as written in the transcript; it can be a name "
                              "(identifying: exported on request only, with the text)."))
        columns.append(Column("text", "Utterance text", "string",
                              "The utterance as transcribed (identifying: exported on request only)."))
    if include_notes:
        columns.append(Column("note", "Coder's note", "string",
                              "The rater's (or adjudicator's) free-text note on this utterance "
                              "(identifying: exported on request only)."))

    coded_sessions = sorted(set(codings["session_id"]))
    # speaker labels can be names: read (and exported) only with the text
    utt_cols = [Utterance.id, Transcript.session_id, Utterance.position, Utterance.role]
    if include_text:
        utt_cols += [Utterance.speaker, Utterance.text]
    rows = _raw_rows(
        select(*utt_cols).join(Transcript, Transcript.id == Utterance.transcript_id)
        .where(Transcript.study_id == study.id, Transcript.session_id.in_(coded_sessions))
    ) if coded_sessions else []
    names = ["utterance_id", "session_id", "position", "role"] + (["speaker", "text"] if include_text else [])
    utterances = _records(rows, names, ints=("utterance_id", "session_id", "position"))

    # every coding × every utterance of its session
    grid = codings.merge(utterances, on="session_id", how="inner")
    code_cols = [UtteranceCode.assignment_id, UtteranceCode.utterance_id, UtteranceCode.code_set,
                 UtteranceCode.code]
    if include_notes:
        code_cols.append(UtteranceCode.note)
    submitted = select(Assignment.id).where(Assignment.study_id == study.id,
                                            Assignment.status == "submitted")
    code_rows = _raw_rows(select(*code_cols).where(UtteranceCode.assignment_id.in_(submitted)))
    code_names = ["assignment_id", "utterance_id", "code_set_coded", "code"] + (["note"] if include_notes else [])
    rater_codes = _records(code_rows, code_names, ints=("utterance_id",), nullable=("assignment_id",))
    cons_cols = [ConsensusCode.consensus_id, ConsensusCode.utterance_id, ConsensusCode.code_set,
                 ConsensusCode.code, ConsensusCode.basis]
    if include_notes:
        cons_cols.append(ConsensusCode.note)
    cons_rows = _raw_rows(
        select(*cons_cols).join(Consensus, Consensus.id == ConsensusCode.consensus_id)
        .where(Consensus.study_id == study.id, Consensus.status == "final"))
    cons_names = ["consensus_id", "utterance_id", "code_set_coded", "code", "basis"] + (
        ["note"] if include_notes else [])
    cons_codes = _records(cons_rows, cons_names, ints=("utterance_id",), nullable=("consensus_id",))

    # a code weighs 1/n over the n counting codings of the session that have codes (as in
    # services.fidelity): a rater who only rated the session has weight 0 here
    with_codes = set(rater_codes.loc[rater_codes["code"].notna(), "assignment_id"].dropna().astype("int64"))
    coding = grid[["session_id", "assignment_id", "counts"]].drop_duplicates("assignment_id")
    coding = coding[coding["assignment_id"].notna()]
    coding = coding.assign(coded=coding["counts"] & coding["assignment_id"].astype("int64").isin(with_codes))
    n_coded = coding.groupby("session_id")["coded"].transform("sum")
    code_weight = dict(zip(coding["assignment_id"].astype("int64"),
                           np.where(coding["coded"], 1.0 / n_coded.clip(lower=1), 0.0), strict=True))
    has_assignment = grid["assignment_id"].notna()
    grid.loc[has_assignment, "weight"] = grid.loc[has_assignment, "assignment_id"].astype("int64").map(code_weight)

    is_cons = grid["coder"] == CONSENSUS_CODER
    parts = []
    rater_part = grid[~is_cons].merge(rater_codes, on=["assignment_id", "utterance_id"], how="left")
    rater_part["basis"] = None
    parts.append(rater_part)
    if is_cons.any():
        parts.append(grid[is_cons].merge(cons_codes, on=["consensus_id", "utterance_id"], how="left"))
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    for_role = {role: (scheme.code_set_for_role(role).id if scheme.code_set_for_role(role) else None)
                for role in SPEAKER_ROLES}
    role_set = frame["role"].map(for_role)
    coded_set = frame["code_set_coded"].where(frame["code_set_coded"].notna(), None)
    frame["code_set"] = coded_set.where(coded_set.notna(), role_set)
    levels = {(cs.id, code): level for cs in scheme.code_sets
              for code, level in fs.code_levels(cs).items()}
    frame["level"] = [levels.get((s, c)) if isinstance(c, str) and c else None
                      for s, c in zip(frame["code_set"], frame["code"], strict=True)]

    # row order: sessions, coders (raters by number, consensus last), positions
    rank = _session_rank(sessions)
    frame["_session"] = frame["session_id"].map(rank)
    frame = frame.sort_values(["_session", "coder_rank", "position"], kind="stable")
    frame = frame.merge(sessions, on="session_id", how="left", sort=False)

    columns = _categorical(columns, frame, {"code_set": set_values, "code": code_values,
                                            "level": level_values})
    return frame.reset_index(drop=True), columns


def _level_values(scheme: Scheme) -> list[str]:
    """Level ids of every levelled code set by rank, then ``none``."""
    values: list[str] = []
    for cs in scheme.code_sets:
        ranked = sorted(cs.levels, key=lambda lv: (lv.rank is None, lv.rank or 0))
        values += [lv.id for lv in ranked]
        if cs.levels:
            values.append(fs.OUTSIDE_LEVELS)
    return list(dict.fromkeys(values))


def _categorical(columns: list[Column], frame: pd.DataFrame,
                 known: dict[str, list[str]]) -> list[Column]:
    """Give the named string columns value labels: the scheme's values in scheme order, then
    any other value present in the data (e.g. from an older scheme revision), sorted."""
    out = []
    for column in columns:
        if column.name in known:
            present = {str(v) for v in frame[column.name] if isinstance(v, str) and v}
            ordered = list(dict.fromkeys(known[column.name]))
            extra = sorted(present - set(ordered))
            column = Column(column.name, column.label, column.type, column.description,
                            _labels(ordered + extra), column.item_id)
        out.append(column)
    return out


# ----------------------------------------------------------------------------- ratings


def _rating_level(study: Study, *, include_notes: bool, **_flags: bool
                  ) -> tuple[pd.DataFrame, list[Column]]:
    scheme = as_scheme(study.scheme_version)
    sessions = _session_keys_frame(study)
    weights, consensus = _codings(study)
    codings = _coding_rows(weights, consensus)
    columns = _key_columns() + _coder_columns() + [
        Column("instrument", "Instrument", "string",
               "Rating instrument of the scheme. " + "; ".join(f"{i.id} = {i.title}" for i in scheme.instruments)),
        Column("item", "Item", "string",
               "Item id as in the scheme file, or the id of an overall rating (e.g. overall_adherence)."),
        Column("item_number", "Item number", "integer",
               "Number of the item on the form; empty for overall ratings."),
        Column("dimension", "Dimension", "string",
               "What the value rates (e.g. adherence, competence)."),
        Column("value", "Value", "number",
               "The rating (scale of the instrument); empty for N/A. Consensus values may be "
               "fractional (the raters' mean within the threshold)."),
        Column("not_applicable", "N/A", "boolean", "Rated not applicable.", BOOLEAN),
        _basis_column(),
    ]
    if include_notes:
        columns.append(Column("rationale", "Rationale", "string",
                              "The rater's free-text rationale for the item (the same on every "
                              "dimension of the item), or the adjudicator's note on a consensus "
                              "value (identifying: exported on request only)."))
    submitted = select(Assignment.id).where(Assignment.study_id == study.id,
                                            Assignment.status == "submitted")
    present = ItemRating.value.is_not(None) | ItemRating.not_applicable
    rows = _raw_rows(select(ItemRating.assignment_id, ItemRating.instrument, ItemRating.item,
                            ItemRating.dimension, ItemRating.value, ItemRating.not_applicable)
                     .where(ItemRating.assignment_id.in_(submitted), present))
    ratings = _records(rows, ["assignment_id", "instrument", "item", "dimension", "value",
                              "not_applicable"], nullable=("assignment_id",))
    ratings["basis"] = None
    if include_notes:
        notes = _records(
            _raw_rows(select(ItemRationale.assignment_id, ItemRationale.instrument, ItemRationale.item,
                             ItemRationale.text).where(ItemRationale.assignment_id.in_(submitted))),
            ["assignment_id", "instrument", "item", "rationale"], nullable=("assignment_id",))
        ratings = ratings.merge(notes, on=["assignment_id", "instrument", "item"], how="left")
    cons_present = ConsensusRating.value.is_not(None) | ConsensusRating.not_applicable
    cons_cols = [ConsensusRating.consensus_id, ConsensusRating.instrument, ConsensusRating.item,
                 ConsensusRating.dimension, ConsensusRating.value, ConsensusRating.not_applicable,
                 ConsensusRating.basis] + ([ConsensusRating.note] if include_notes else [])
    cons_rows = _raw_rows(select(*cons_cols)
                          .join(Consensus, Consensus.id == ConsensusRating.consensus_id)
                          .where(Consensus.study_id == study.id, Consensus.status == "final",
                                 cons_present))
    cons = _records(cons_rows, ["consensus_id", "instrument", "item", "dimension", "value",
                                "not_applicable", "basis"] + (["rationale"] if include_notes else []),
                    nullable=("consensus_id",))

    is_cons = codings["coder"] == CONSENSUS_CODER
    parts = [codings[~is_cons].merge(ratings, on="assignment_id", how="inner")]
    if is_cons.any() and len(cons):
        parts.append(codings[is_cons].merge(cons, on="consensus_id", how="inner"))
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    frame["not_applicable"] = frame["not_applicable"].astype(bool)

    # form order of (instrument, item, dimension): items, then overall ratings
    form: list[tuple[str, str, str]] = []
    numbers: dict[tuple[str, str], int] = {}
    for ins in scheme.instruments:
        for item in ins.items:
            numbers[(ins.id, item.id)] = item.number
            form += [(ins.id, item.id, d) for d in item.rated_for]
        form += [(ins.id, o.id, o.dimension) for o in ins.overall]
    position = {key: i for i, key in enumerate(form)}
    keys = list(zip(frame["instrument"].astype(str), frame["item"].astype(str),
                    frame["dimension"].astype(str), strict=True))
    frame["_form"] = [position.get(k, len(form)) for k in keys]
    frame["item_number"] = [numbers.get(k[:2]) for k in keys]
    rank = _session_rank(sessions)
    frame["_session"] = frame["session_id"].map(rank)
    frame = frame.sort_values(["_session", "coder_rank", "_form", "instrument", "item", "dimension"],
                              kind="stable")
    frame = frame.merge(sessions, on="session_id", how="left", sort=False)
    columns = _categorical(columns, frame, {
        "instrument": [i.id for i in scheme.instruments],
        "item": list(dict.fromkeys(k[1] for k in form)),
        "dimension": list(dict.fromkeys([d.id for i in scheme.instruments for d in i.dimensions]
                                        + [k[2] for k in form])),
    })
    return frame.reset_index(drop=True), columns


# ----------------------------------------------------------------------------- outcomes


def _outcomes_level(study: Study, **_flags: bool) -> tuple[pd.DataFrame, list[Column]]:
    data = fidelity.load(study)
    outcome_columns = [
        Column("study", "Study", "string", "Name of the study in mbtcode."),
        Column("patient", "Patient code", "string", "Pseudonymous patient code."),
        Column("measure", "Outcome measure", "string",
               "Name of the outcome measure as imported (e.g. BSI-GSI, GAF)."),
        Column("outcome_date", "Outcome date", "date", "Date of the outcome measurement, if imported."),
        Column("study_day", "Study day of the outcome", "integer",
               "Days since the patient's first dated individual session in the study (day 0; "
               "negative before it): as imported, or derived from the outcome date and the patient's "
               "first one-patient session date (see study_day_derived). Empty when neither "
               "is possible."),
        Column("study_day_derived", "Study day derived", "boolean",
               "True when study_day was computed from outcome_date (the file gave only a date).",
               BOOLEAN),
        Column("value", "Outcome value", "number", "The outcome value as imported."),
        Column("matched_by", "Matched by", "string",
               "How the nearest scored session was found: study_day (both have one) or date; "
               "empty when the patient has no scored session to match.",
               _labels(["study_day", "date"])),
        Column("days_from_session", "Days from the session", "integer",
               "Outcome minus session, in days (on the matching axis): positive when the outcome "
               "was measured after the session."),
    ]
    session_columns = [
        Column(c.name if c.name != "study_day" else "session_study_day",
               c.label if c.name != "study_day" else "Study day of the session", c.type,
               c.description, c.values)
        for c in _key_columns(["site", "team", "therapist", "session", "session_date", "study_day",
                               "phase", "modality", "session_number"])
    ]
    columns = outcome_columns + session_columns + _source_columns()
    used = {c.name for c in columns}
    score_specs = _score_columns(data.instrument, used)
    columns += [c for _, c in score_specs]

    rows = db.session.execute(
        select(Outcome.id, Participant.code, Outcome.measure, Outcome.outcome_date,
               Outcome.study_day, Outcome.value)
        .join(Participant, Participant.id == Outcome.patient_id)
        .where(Outcome.study_id == study.id)
    ).all()
    outcomes = pd.DataFrame(rows, columns=["outcome_id", "patient", "measure", "outcome_date",
                                           "study_day", "value"])
    outcomes["study_day"] = outcomes["study_day"].astype("Int64")
    first = fidelity.patient_first_session_dates(study)
    derive = outcomes["study_day"].isna() & outcomes["outcome_date"].notna()
    derived = [(d - first[p]).days if p in first else None
               for p, d in zip(outcomes.loc[derive, "patient"], outcomes.loc[derive, "outcome_date"],
                               strict=True)]
    outcomes.loc[derive, "study_day"] = pd.array(derived, dtype="Int64")
    outcomes["study_day_derived"] = derive & outcomes["study_day"].notna()
    outcomes["study"] = study.name
    outcomes = _sort_outcomes(outcomes)

    scored = fidelity.scored_sessions(data).copy()  # a session that was only coded has no score
    scored = scored.rename(columns={"study_day": "session_study_day"})
    match = nearest_sessions(outcomes, scored)
    frame = outcomes.merge(match, on="outcome_id", how="left", sort=False)
    frame = frame.merge(scored.drop(columns=["patient", "study"]), on="session_id", how="left", sort=False)
    for raw, column in score_specs:
        frame[column.name] = frame[raw]
    return frame, columns


def _sort_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    day = outcomes["study_day"]
    when = pd.to_datetime(outcomes["outcome_date"])
    keys = pd.DataFrame({
        "patient": outcomes["patient"].astype(str), "measure": outcomes["measure"].astype(str),
        "no_day": day.isna(), "day": day.fillna(0).astype("int64"),
        "no_date": when.isna(), "when": when,
        "value": outcomes["value"].astype(float), "id": outcomes["outcome_id"].astype("int64"),
    }, index=outcomes.index)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return outcomes.loc[order].reset_index(drop=True)


def nearest_sessions(outcomes: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """Each outcome's nearest-in-time scored session of the same patient.

    ``outcomes``: outcome_id, patient, outcome_date, study_day. ``sessions``: session_id,
    patient (codes joined by ';': a group session belongs to each of its patients),
    session_date, session_study_day, session_number, session. By study day when the outcome
    and some of the patient's sessions have one, else by date; equally near → the earlier
    session; several sessions on the same day → the first by session number, then label.
    Returns outcome_id, session_id, matched_by, days_from_session (outcome minus session) for
    the outcomes that found a session.
    """
    columns = ["outcome_id", "session_id", "matched_by", "days_from_session"]
    if not len(outcomes) or not len(sessions):
        return pd.DataFrame(columns=columns)
    s = sessions[["session_id", "patient", "session_date", "session_study_day", "session_number",
                  "session"]].copy()
    s["patient"] = s["patient"].astype(str).str.split(";")
    s = s.explode("patient")
    s = s[s["patient"].astype(str) != ""]
    o = outcomes[["outcome_id", "patient", "outcome_date", "study_day"]].copy()
    o["patient"] = o["patient"].astype(str)
    results = []
    remaining = o
    for matched_by, o_key, s_key in (("study_day", "study_day", "session_study_day"),
                                     ("date", "outcome_date", "session_date")):
        left = remaining[remaining[o_key].notna()].copy()
        right = s[s[s_key].notna()].copy()
        if matched_by == "study_day":
            left["_t"] = left[o_key].astype("int64")
            right["_t"] = right[s_key].astype("int64")
        else:
            left["_t"] = (pd.to_datetime(left[o_key]) - pd.Timestamp(0)).dt.days.astype("int64")
            right["_t"] = (pd.to_datetime(right[s_key]) - pd.Timestamp(0)).dt.days.astype("int64")
        left = left[left["patient"].isin(set(right["patient"]))]
        if not len(left):
            continue
        # one session per patient and day: the first by session number, then label
        right = right.sort_values(["patient", "_t", "session_number", "session"], kind="stable",
                                  na_position="last")
        right = right.drop_duplicates(["patient", "_t"], keep="first")
        right = right.sort_values("_t", kind="stable")[["patient", "_t", "session_id"]]
        left = left.sort_values("_t", kind="stable")[["outcome_id", "patient", "_t"]]
        back = pd.merge_asof(left, right.rename(columns={"_t": "_tb", "session_id": "_sb"})
                             .assign(_t=lambda f: f["_tb"]), on="_t", by="patient",
                             direction="backward")
        ahead = pd.merge_asof(left, right.rename(columns={"_t": "_tf", "session_id": "_sf"})
                              .assign(_t=lambda f: f["_tf"]), on="_t", by="patient",
                              direction="forward")
        both = back.merge(ahead[["outcome_id", "_tf", "_sf"]], on="outcome_id")
        d_back = both["_t"] - both["_tb"]
        d_ahead = both["_tf"] - both["_t"]
        # equally near → the earlier (backward) session
        take_ahead = both["_sb"].isna() | (both["_sf"].notna() & (d_ahead < d_back))
        session_id = both["_sb"].where(~take_ahead, both["_sf"])
        days = d_back.where(~take_ahead, -d_ahead)
        found = session_id.notna()
        results.append(pd.DataFrame({
            "outcome_id": both.loc[found, "outcome_id"].to_numpy(),
            "session_id": session_id[found].astype("int64").to_numpy(),
            "matched_by": matched_by,
            "days_from_session": days[found].astype("int64").to_numpy(),
        }))
        remaining = remaining[~remaining["outcome_id"].isin(set(both.loc[found, "outcome_id"]))]
    if not results:
        return pd.DataFrame(columns=columns)
    return pd.concat(results, ignore_index=True)[columns]
