"""Rows → tidy pandas DataFrames for the statistics (one row per rater's code or rating).

Only submitted work is read: an assignment still being coded, or withdrawn, never reaches a
reliability figure.

A large study has millions of codes (the reliability benchmark, ``bench/reliability.py``:
2,000,000 codes and 660,000 item ratings), and the report must stay fast, so the frames are
built from integers, never from a Python object per row:

* The few submitted assignments are read once into arrays (id, session, rater). Code and
  rating rows carry only their assignment, and session and rater are looked up from those
  arrays instead of being repeated in every row of the query.
* The database turns each (code set, code) of the scheme, and each (instrument, item,
  dimension), into a small number (a ``CASE`` over the scheme's ids), and packs it with the
  utterance id (codes) or the value (ratings) into **one integer per row**:
  ``utterance_id · 4096 + code number + 1`` and ``value · 4096 + key number + 1`` (N/A is a
  value no integer column can hold). The string columns become pandas Categoricals with
  ``from_codes``: no Python string per row.
* Those integers come back **aggregated per assignment** (``aggregate_strings``: SQLite's
  ``group_concat``, PostgreSQL's ``string_agg``), one comma-separated string per assignment,
  parsed by numpy in C: tens of thousands of result rows instead of millions. Packing both
  numbers into one integer makes this independent of the order in which the database
  aggregates (SQL does not promise one: two aggregates of one group need not list its rows in
  the same order). The aggregate is a correlated subquery per assignment, not a GROUP BY over
  the join: PostgreSQL hash-aggregates such a GROUP BY and spills it to disk beyond
  ``work_mem`` (4 s instead of under 2 s for two million codes), and SQLite would sort all the
  rows when grouping by the code table's column.
* Schemes with 4095 or more codes or rating keys do not fit that packing; they are read as
  plain integer rows from the DB-API cursor, never as SQLAlchemy ``Row`` objects (pandas 3's
  ``DataFrame.from_records`` probes every record with ``hasattr(row, "dtype")``, which on a
  ``Row`` raises and catches an AttributeError: seconds per million rows).
* A code or rating key the scheme does not have (say, from an older revision of it) gets
  number 0 from the ``CASE``; those rows, usually none, are read again with their strings.

Columns and dtypes: integer ids (int64), ``code_set``/``code`` and ``instrument``/``item``/
``dimension`` categorical (categories: the values present, sorted), ``value`` float64 (NaN for
N/A) and ``not_applicable`` bool. The order of rows is unspecified.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Select, String, and_, case, cast, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

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
from .schemes import as_scheme

CODE_COLUMNS = ["session_id", "utterance_id", "assignment_id", "rater_id", "code_set", "code"]
RATING_COLUMNS = [
    "session_id", "assignment_id", "rater_id", "instrument", "item", "dimension", "value",
    "not_applicable",
]

_SHIFT = 12  # bits of the packed integer that hold the code or key number + 1 (0: unknown)
_PACK = 1 << _SHIFT  # 4096
_MAX_PACKED_KEYS = _PACK - 2  # up to 4094 codes or keys are packed; more: plain rows
# N/A in the packed rating value: below any INTEGER (int4) value; ×4096 fits in 64 bits
_NA_VALUE = -(2**31) - 1
_SEP = ","


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


# ----------------------------------------------------------------------------- reading


def _raw_rows(stmt: Select) -> list[tuple]:
    """Execute a Core statement and return the DB-API cursor's plain tuples.

    The columns read here are integers and strings, which need no SQLAlchemy result
    processing; reading the cursor directly skips building a ``Row`` per database row.
    """
    result = db.session.connection().execute(stmt)
    try:
        return result.cursor.fetchall()  # type: ignore[attr-defined]
    finally:
        result.close()


def _int_columns(rows: Sequence[tuple], n_cols: int) -> list[np.ndarray]:
    """Rows of ``n_cols`` integers → one int64 array per column."""
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=n_cols * len(rows))
    return list(flat.reshape(-1, n_cols).T.copy()) if len(rows) else [flat] * n_cols


class _Assignments:
    """The submitted assignments that count: ids (sorted), their sessions and raters."""

    def __init__(self, study: Study, include_gold: bool, session_ids: Iterable[int] | None,
                 min_raters: int) -> None:
        self.query = _submitted(study, include_gold=include_gold, session_ids=session_ids,
                                min_raters=min_raters)
        ids, sessions, raters = _int_columns(_raw_rows(self.query), 3)
        order = np.argsort(ids, kind="stable")
        self.id, self.session, self.rater = ids[order], sessions[order], raters[order]
        self.subquery = self.query.subquery()

    def __len__(self) -> int:
        return len(self.id)

    def position(self, assignment_ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.id, assignment_ids)


def _packed_per_assignment(asg: _Assignments, on: ColumnElement[bool],
                           packed: ColumnElement[int]) -> tuple[np.ndarray, np.ndarray]:
    """One packed integer per joined row, aggregated per assignment.

    Each result row is (assignment id, "v1,v2,…" or NULL when it has no rows), from a
    correlated subquery per assignment rather than a GROUP BY over the join: PostgreSQL
    would hash-aggregate millions of rows (spilling to disk beyond ``work_mem``), where one
    small aggregate per assignment streams; SQLite does the same work either way. The
    values are parsed by numpy in one call. Returns each value's assignment (its position
    in ``asg``) and the values.
    """
    sub = asg.subquery
    aggregated = select(func.aggregate_strings(cast(packed, String), _SEP)).where(on)
    stmt = select(sub.c.id, aggregated.scalar_subquery()).select_from(sub)
    rows = [r for r in _raw_rows(stmt) if r[1] is not None]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    groups = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    counts = np.fromiter((r[1].count(_SEP) + 1 for r in rows), dtype=np.int64, count=len(rows))
    # text mode of fromstring (sep given) is not deprecated, unlike its binary mode
    values = np.fromstring(_SEP.join(r[1] for r in rows), dtype=np.int64, sep=_SEP)
    if len(values) != counts.sum():
        raise RuntimeError("aggregated values do not match their count")
    return np.repeat(asg.position(groups), counts), values


def _numbered(column: ColumnElement[str], numbers: dict[str, Any]) -> ColumnElement[int]:
    """``CASE column WHEN id THEN number … ELSE 0 END`` (a nested CASE as a number)."""
    if not numbers:
        return literal(0)
    return case(numbers, value=column, else_=0)


def _category(labels: list[str], numbers: np.ndarray) -> pd.Categorical:
    """Label numbers → a Categorical of the labels present, categories sorted (as astype)."""
    present = np.flatnonzero(np.bincount(numbers, minlength=len(labels))) if len(numbers) else []
    categories = sorted({labels[i] for i in present})
    where = {label: i for i, label in enumerate(categories)}
    lut = np.array([where.get(label, -1) for label in labels], dtype=np.int64)
    return pd.Categorical.from_codes(lut[numbers], categories=categories)


# ----------------------------------------------------------------------------- codes


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
    asg = _Assignments(study, include_gold, session_ids, min_raters)
    scheme = as_scheme(study.scheme_version)
    pairs = [(cs.id, c.id) for cs in scheme.code_sets for c in cs.codes]  # numbered 1, 2, …
    tree: dict[str, dict[str, int]] = {}
    for n, (code_set, code) in enumerate(pairs, start=1):
        tree.setdefault(code_set, {})[code] = n
    number = _numbered(UtteranceCode.code_set,
                       {s: _numbered(UtteranceCode.code, m) for s, m in tree.items()})
    sub = asg.subquery
    on = and_(UtteranceCode.assignment_id == sub.c.id, UtteranceCode.code.is_not(None))
    empty = np.zeros(0, np.int64)
    if not len(asg):
        pos, utt, num = empty, empty, empty
    elif len(pairs) <= _MAX_PACKED_KEYS:
        pos, packed = _packed_per_assignment(
            asg, on, cast(UtteranceCode.utterance_id, BigInteger) * _PACK + number)
        utt, num = packed >> _SHIFT, packed & (_PACK - 1)
    else:
        a_ids, utt, num = _int_columns(_raw_rows(
            select(sub.c.id, UtteranceCode.utterance_id, number).select_from(sub)
            .join(UtteranceCode, on)), 3)
        pos = asg.position(a_ids)
    labels = [("", "")] + pairs  # number 0: not in the scheme
    if len(num) and (unknown := num == 0).any():
        extra = _raw_rows(select(sub.c.id, UtteranceCode.utterance_id, UtteranceCode.code_set,
                                 UtteranceCode.code)
                          .select_from(sub).join(UtteranceCode, on).where(number == 0))
        keep = ~unknown
        new = {}
        for _a, _u, code_set, code in extra:
            new.setdefault((code_set, code), len(labels) + len(new))
        labels += list(new)
        pos = np.concatenate([pos[keep], asg.position(np.array([r[0] for r in extra], np.int64))])
        utt = np.concatenate([utt[keep], np.array([r[1] for r in extra], np.int64)])
        num = np.concatenate([num[keep], np.array([new[(r[2], r[3])] for r in extra], np.int64)])
    return pd.DataFrame({
        "session_id": asg.session[pos],
        "utterance_id": utt,
        "assignment_id": asg.id[pos],
        "rater_id": asg.rater[pos],
        "code_set": _category([s for s, _ in labels], num),
        "code": _category([c for _, c in labels], num),
    })


# ----------------------------------------------------------------------------- ratings


def rating_frame(
    study: Study,
    *,
    include_gold: bool = False,
    session_ids: Iterable[int] | None = None,
    min_raters: int = 1,
) -> pd.DataFrame:
    """One row per item rating in submitted assignments; N/A has ``value`` NaN."""
    asg = _Assignments(study, include_gold, session_ids, min_raters)
    scheme = as_scheme(study.scheme_version)
    keys = [(i.id, x.id, d) for i in scheme.instruments for x in i.items for d in x.rated_for]
    keys += [(i.id, o.id, o.dimension) for i in scheme.instruments for o in i.overall]
    keys = list(dict.fromkeys(keys))  # numbered 1, 2, …
    tree: dict[str, dict[str, dict[str, int]]] = {}
    for n, (instrument, item, dimension) in enumerate(keys, start=1):
        tree.setdefault(instrument, {}).setdefault(item, {})[dimension] = n
    number = _numbered(ItemRating.instrument, {
        ins: _numbered(ItemRating.item, {item: _numbered(ItemRating.dimension, dims)
                                         for item, dims in items.items()})
        for ins, items in tree.items()})
    # N/A rows have no value (a CHECK constraint): one integer says both
    value = cast(func.coalesce(ItemRating.value, literal(_NA_VALUE, BigInteger)), BigInteger)
    sub = asg.subquery
    on = and_(ItemRating.assignment_id == sub.c.id,
              ItemRating.value.is_not(None) | ItemRating.not_applicable)
    empty = np.zeros(0, np.int64)
    if not len(asg):
        pos, val, num = empty, empty, empty
    elif len(keys) <= _MAX_PACKED_KEYS:
        pos, packed = _packed_per_assignment(asg, on, value * _PACK + number)
        val, num = packed >> _SHIFT, packed & (_PACK - 1)
    else:
        a_ids, val, num = _int_columns(_raw_rows(
            select(sub.c.id, value, number).select_from(sub).join(ItemRating, on)), 3)
        pos = asg.position(a_ids)
    labels = [("", "", "")] + keys  # number 0: not in the scheme
    if len(num) and (unknown := num == 0).any():
        extra = _raw_rows(select(sub.c.id, ItemRating.instrument, ItemRating.item,
                                 ItemRating.dimension, value)
                          .select_from(sub).join(ItemRating, on).where(number == 0))
        keep = ~unknown
        new = {}
        for _a, instrument, item, dimension, _v in extra:
            new.setdefault((instrument, item, dimension), len(labels) + len(new))
        labels += list(new)
        pos = np.concatenate([pos[keep], asg.position(np.array([r[0] for r in extra], np.int64))])
        val = np.concatenate([val[keep], np.array([r[4] for r in extra], np.int64)])
        num = np.concatenate([num[keep], np.array([new[r[1:4]] for r in extra], np.int64)])
    na = val == _NA_VALUE
    values = val.astype(np.float64)
    values[na] = np.nan
    return pd.DataFrame({
        "session_id": asg.session[pos],
        "assignment_id": asg.id[pos],
        "rater_id": asg.rater[pos],
        "instrument": _category([k[0] for k in labels], num),
        "item": _category([k[1] for k in labels], num),
        "dimension": _category([k[2] for k in labels], num),
        "value": values,
        "not_applicable": na,
    })


def utterance_roles(study: Study, session_ids: Iterable[int]) -> pd.DataFrame:
    """Utterance id, session id, position and role for the given sessions."""
    ids = list(session_ids)
    rows = _raw_rows(
        select(Utterance.id, Transcript.session_id, Utterance.position, Utterance.role)
        .join(Transcript, Transcript.id == Utterance.transcript_id)
        .where(Transcript.study_id == study.id, Transcript.session_id.in_(ids))
    ) if ids else []
    return pd.DataFrame.from_records(rows, columns=["utterance_id", "session_id", "position", "role"])
