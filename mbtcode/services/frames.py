"""Rows → tidy pandas DataFrames for the statistics (one row per rater's code or rating).

Only submitted work is read: an assignment still being coded, or withdrawn, never reaches a
reliability figure. The queries select plain columns (no ORM objects), because a large study
has millions of codes and the report must stay fast.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import Select, and_, func, select

from ..extensions import db
from ..models import (
    Assignment,
    GoldStandard,
    ItemRating,
    Study,
    Transcript,
    Utterance,
    UtteranceCode,
)

CODE_COLUMNS = ["session_id", "utterance_id", "assignment_id", "rater_id", "code_set", "code"]
RATING_COLUMNS = [
    "session_id", "assignment_id", "rater_id", "instrument", "item", "dimension", "value",
    "not_applicable",
]


def _submitted(study: Study, *, include_gold: bool, session_ids: Iterable[int] | None,
               min_raters: int) -> Select:
    """Submitted assignments of the study, optionally limited to some sessions."""
    query = select(Assignment.id, Assignment.session_id, Assignment.rater_id).where(
        Assignment.study_id == study.id, Assignment.status == "submitted"
    )
    if not include_gold:
        query = query.where(
            Assignment.session_id.not_in(
                select(GoldStandard.session_id).where(GoldStandard.study_id == study.id)
            )
        )
    if session_ids is not None:
        query = query.where(Assignment.session_id.in_(list(session_ids)))
    if min_raters > 1:
        multi = (
            select(Assignment.session_id)
            .where(Assignment.study_id == study.id, Assignment.status == "submitted")
            .group_by(Assignment.session_id)
            .having(func.count() >= min_raters)
        )
        query = query.where(Assignment.session_id.in_(multi))
    return query


def code_frame(
    study: Study,
    *,
    include_gold: bool = False,
    session_ids: Iterable[int] | None = None,
    min_raters: int = 1,
) -> pd.DataFrame:
    """One row per non-empty utterance code in submitted assignments.

    ``min_raters=2`` keeps only sessions with at least two submitted assignments (the
    double-coded ones), which is all reliability needs. Gold-standard sessions are left
    out unless ``include_gold``: they measure training, not the study's coding.
    """
    sub = _submitted(study, include_gold=include_gold, session_ids=session_ids,
                     min_raters=min_raters).subquery()
    query = (
        select(sub.c.session_id, UtteranceCode.utterance_id, sub.c.id, sub.c.rater_id,
               UtteranceCode.code_set, UtteranceCode.code)
        .join(UtteranceCode, and_(UtteranceCode.assignment_id == sub.c.id,
                                  UtteranceCode.code.is_not(None)))
    )
    rows = db.session.execute(query).all()
    frame = pd.DataFrame.from_records(rows, columns=CODE_COLUMNS)
    for column in ("code_set", "code"):
        frame[column] = frame[column].astype("category")
    return frame


def rating_frame(
    study: Study,
    *,
    include_gold: bool = False,
    session_ids: Iterable[int] | None = None,
    min_raters: int = 1,
) -> pd.DataFrame:
    """One row per item rating in submitted assignments; N/A has ``value`` NaN."""
    sub = _submitted(study, include_gold=include_gold, session_ids=session_ids,
                     min_raters=min_raters).subquery()
    query = (
        select(sub.c.session_id, sub.c.id, sub.c.rater_id, ItemRating.instrument, ItemRating.item,
               ItemRating.dimension, ItemRating.value, ItemRating.not_applicable)
        .join(ItemRating, ItemRating.assignment_id == sub.c.id)
        .where((ItemRating.value.is_not(None)) | ItemRating.not_applicable)
    )
    rows = db.session.execute(query).all()
    frame = pd.DataFrame.from_records(rows, columns=RATING_COLUMNS)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["not_applicable"] = frame["not_applicable"].astype(bool)
    return frame


def utterance_roles(study: Study, session_ids: Iterable[int]) -> pd.DataFrame:
    """Utterance id, session id, position and role for the given sessions."""
    ids = list(session_ids)
    rows = db.session.execute(
        select(Utterance.id, Transcript.session_id, Utterance.position, Utterance.role)
        .join(Transcript, Transcript.id == Utterance.transcript_id)
        .where(Transcript.study_id == study.id, Transcript.session_id.in_(ids))
    ).all() if ids else []
    return pd.DataFrame.from_records(rows, columns=["utterance_id", "session_id", "position", "role"])
