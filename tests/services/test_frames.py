"""Rows → tidy DataFrames for the statistics (services/frames.py): only submitted work counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sqlalchemy import update

from mbtcode.extensions import db
from mbtcode.models import GoldStandard, ItemRating, UtteranceCode
from mbtcode.services import frames
from mbtcode.services.assignments import assign_sessions, submit
from mbtcode.services.coding import record_code
from mbtcode.services.frames import (
    CODE_COLUMNS,
    RATING_COLUMNS,
    code_frame,
    rating_frame,
    utterance_roles,
)
from mbtcode.services.ratings import record_rating
from tests.conftest import rate_everything


@pytest.fixture
def w(coding_world):
    return coding_world


def _code(assignment, rater, codes: dict[int, str | None]) -> None:
    """Give the utterances at these positions these codes (None: code, then clear)."""
    for position, code in codes.items():
        u = next(x for x in _utterances(assignment) if x.position == position)
        row = record_code(assignment, u, code or "EV", expected_version=0, actor=rater)
        if code is None:
            record_code(assignment, u, None, expected_version=row.version, actor=rater)


def _utterances(assignment):
    from mbtcode.services.sessions import all_utterances

    return all_utterances(assignment.session)


def _finish(assignment, rater, value: str = "4") -> None:
    rate_everything(assignment, rater, value)
    assert submit(assignment, actor=rater, allow_uncoded=True).complete
    db.session.commit()


@pytest.fixture
def third(w, make_user, make_member):
    """A third rater on the session (assigned, not submitted)."""
    rater = make_user("rater", name="Carla Third")
    make_member(w.study, rater, "rater")
    (assignment,) = assign_sessions(w.study, [w.session], [rater], actor=None)
    db.session.commit()
    return rater, assignment


def test_only_submitted_assignments_are_read(w, third):
    rater_c, c = third
    _code(w.a, w.rater_a, {1: "EV", 2: "PM", 3: "SUP"})
    _code(w.b, w.rater_b, {1: "ADV", 2: "PE"})
    _code(c, rater_c, {1: "CLA"})
    record_rating(c, "mbt-acs", "2", "adherence", "6", expected_version=0, actor=rater_c)
    db.session.commit()
    _finish(w.a, w.rater_a, "3")
    codes = code_frame(w.study)
    assert sorted(codes["code"].astype(str)) == ["EV", "PM", "SUP"]
    assert set(codes["assignment_id"]) == {w.a.id}
    ratings = rating_frame(w.study)
    assert set(ratings["assignment_id"]) == {w.a.id} and set(ratings["value"]) == {3.0}
    # B submits: B's rows appear; C (still coding) never does
    _finish(w.b, w.rater_b, "5")
    codes = code_frame(w.study)
    assert set(codes["rater_id"]) == {w.rater_a.id, w.rater_b.id}
    assert sorted(codes.loc[codes["rater_id"] == w.rater_b.id, "code"].astype(str)) == ["ADV", "PE"]
    assert rater_c.id not in set(rating_frame(w.study)["rater_id"])


def test_a_reopened_assignment_drops_out(w):
    from mbtcode.services.assignments import reopen

    _code(w.a, w.rater_a, {1: "EV"})
    _finish(w.a, w.rater_a)
    assert len(code_frame(w.study)) == 1
    reopen(w.a, actor=w.coordinator, reason="fix a code")
    db.session.commit()
    assert code_frame(w.study).empty and rating_frame(w.study).empty


def test_rows_carry_session_utterance_assignment_rater_code_set_and_code(w):
    _code(w.a, w.rater_a, {1: "EV", 2: "PM"})
    _finish(w.a, w.rater_a)
    codes = code_frame(w.study).sort_values("utterance_id")
    assert list(codes.columns) == CODE_COLUMNS
    assert codes[["session_id", "utterance_id", "assignment_id", "rater_id"]].values.tolist() == [
        [w.session.id, w.utterance(1).id, w.a.id, w.rater_a.id],
        [w.session.id, w.utterance(2).id, w.a.id, w.rater_a.id],
    ]
    assert list(codes["code_set"].astype(str)) == ["intervention-spectrum", "nonmentalizing-modes"]


def test_cleared_codes_are_not_rows(w):
    _code(w.a, w.rater_a, {1: "EV", 3: None})
    _finish(w.a, w.rater_a)
    assert list(code_frame(w.study)["utterance_id"]) == [w.utterance(1).id]


def test_column_types(w):
    _code(w.a, w.rater_a, {1: "EV"})
    _finish(w.a, w.rater_a)
    codes, ratings = code_frame(w.study), rating_frame(w.study)
    assert list(ratings.columns) == RATING_COLUMNS
    for column in ("session_id", "utterance_id", "assignment_id", "rater_id"):
        assert pd.api.types.is_integer_dtype(codes[column]), column
    assert isinstance(codes["code_set"].dtype, pd.CategoricalDtype)
    assert isinstance(codes["code"].dtype, pd.CategoricalDtype)
    assert ratings["value"].dtype == np.float64
    assert ratings["not_applicable"].dtype == bool
    for column in ("session_id", "assignment_id", "rater_id"):
        assert pd.api.types.is_integer_dtype(ratings[column]), column


def test_empty_frames_have_the_columns_and_types(w):
    codes, ratings = code_frame(w.study), rating_frame(w.study)
    assert codes.empty and list(codes.columns) == CODE_COLUMNS
    assert ratings.empty and list(ratings.columns) == RATING_COLUMNS
    assert ratings["value"].dtype == np.float64 and ratings["not_applicable"].dtype == bool


def test_not_applicable_is_a_nan_value(w):
    rate_everything(w.a, w.rater_a, "5")
    row = next(r for r in _ratings(w.a) if (r.item, r.dimension) == ("2", "adherence"))
    record_rating(w.a, "mbt-acs", "2", "adherence", "na", expected_version=row.version, actor=w.rater_a)
    db.session.commit()
    assert submit(w.a, actor=w.rater_a, allow_uncoded=True).complete
    db.session.commit()
    ratings = rating_frame(w.study)
    na = ratings[ratings["not_applicable"]]
    assert na[["item", "dimension"]].values.tolist() == [["2", "adherence"]]
    assert np.isnan(na["value"]).all()
    rest = ratings[~ratings["not_applicable"]]
    assert len(rest) == 32 and (rest["value"] == 5.0).all()


def _ratings(assignment):
    from mbtcode.services.ratings import ratings_of

    return ratings_of(assignment).values()


def test_gold_sessions_are_left_out_unless_asked(w, make_session, make_assignment):
    _code(w.a, w.rater_a, {1: "EV"})
    _finish(w.a, w.rater_a)
    other = make_session(w.study)
    c = make_assignment(other, w.rater_a)
    _code(c, w.rater_a, {1: "SUP"})
    _finish(c, w.rater_a)
    db.session.add(GoldStandard(study_id=w.study.id, session_id=w.session.id, assignment_id=w.a.id))
    db.session.commit()
    assert set(code_frame(w.study)["session_id"]) == {other.id}
    assert set(rating_frame(w.study)["session_id"]) == {other.id}
    assert set(code_frame(w.study, include_gold=True)["session_id"]) == {w.session.id, other.id}
    assert set(rating_frame(w.study, include_gold=True)["session_id"]) == {w.session.id, other.id}


def test_min_raters_keeps_double_coded_sessions_only(w, make_session, make_assignment, third):
    rater_c, c = third
    single = make_session(w.study)
    s = make_assignment(single, w.rater_a)
    for assignment, rater in ((w.a, w.rater_a), (s, w.rater_a)):
        _code(assignment, rater, {1: "EV"})
        _finish(assignment, rater)
    # w.session: A submitted, B and C not yet → single-coded so far
    assert set(code_frame(w.study)["session_id"]) == {w.session.id, single.id}
    assert code_frame(w.study, min_raters=2).empty
    assert rating_frame(w.study, min_raters=2).empty
    _code(w.b, w.rater_b, {1: "SUP"})
    _finish(w.b, w.rater_b)
    assert set(code_frame(w.study, min_raters=2)["session_id"]) == {w.session.id}
    assert set(rating_frame(w.study, min_raters=2)["assignment_id"]) == {w.a.id, w.b.id}
    assert code_frame(w.study, min_raters=3).empty
    _finish(c, rater_c)
    assert set(rating_frame(w.study, min_raters=3)["assignment_id"]) == {w.a.id, w.b.id, c.id}


def test_session_ids_limit_the_frame(w, make_session, make_assignment):
    other = make_session(w.study)
    c = make_assignment(other, w.rater_a)
    for assignment in (w.a, c):
        _code(assignment, w.rater_a, {1: "EV"})
        _finish(assignment, w.rater_a)
    assert set(code_frame(w.study, session_ids=[other.id])["session_id"]) == {other.id}
    assert code_frame(w.study, session_ids=[]).empty


def test_other_studies_are_never_read(w, make_assignment):
    other = make_assignment(w.other_session, w.rater_a)
    _code(other, w.rater_a, {1: "EV"})
    _finish(other, w.rater_a)
    assert code_frame(w.study).empty and rating_frame(w.study).empty
    assert len(code_frame(w.other_study)) == 1


def test_utterance_roles(w):
    roles = utterance_roles(w.study, [w.session.id]).sort_values("position")
    assert list(roles.columns) == ["utterance_id", "session_id", "position", "role"]
    assert list(roles["role"]) == ["therapist", "patient", "therapist", "patient", "other", "therapist"]
    assert set(roles["session_id"]) == {w.session.id}
    assert utterance_roles(w.study, []).empty
    assert utterance_roles(w.study, [w.other_session.id]).empty  # not this study's


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "plain-rows"])
def test_codes_and_ratings_the_scheme_does_not_have_keep_their_strings(w, monkeypatch, packed):
    """Rows of an older scheme revision: unknown codes, code sets and rating keys are read
    with their strings (in both ways of reading: packed integers, and the plain rows used for
    schemes with 4095 or more codes or rating keys)."""
    if not packed:
        monkeypatch.setattr(frames, "_MAX_PACKED_KEYS", 0)
    _code(w.a, w.rater_a, {1: "EV", 2: "PM", 3: "SUP"})
    _finish(w.a, w.rater_a, "3")
    by_position = {1: {"code": "OLD"}, 3: {"code_set": "retired-set", "code": "R1"}}
    for position, values in by_position.items():
        db.session.execute(update(UtteranceCode).where(
            UtteranceCode.assignment_id == w.a.id,
            UtteranceCode.utterance_id == w.utterance(position).id).values(**values))
    db.session.add(ItemRating(assignment_id=w.a.id, instrument="mbt-acs", item="99",
                              dimension="adherence", value=2))
    db.session.add(ItemRating(assignment_id=w.a.id, instrument="retired-instrument", item="1",
                              dimension="adherence", value=None, not_applicable=True))
    db.session.commit()
    codes = code_frame(w.study).sort_values("utterance_id")
    assert list(codes.columns) == CODE_COLUMNS
    assert list(codes["code"].astype(str)) == ["OLD", "PM", "R1"]
    assert list(codes["code_set"].astype(str)) == [
        "intervention-spectrum", "nonmentalizing-modes", "retired-set"]
    assert list(codes["code"].cat.categories) == ["OLD", "PM", "R1"]
    assert set(codes["assignment_id"]) == {w.a.id} and set(codes["rater_id"]) == {w.rater_a.id}
    ratings = rating_frame(w.study)
    assert list(ratings.columns) == RATING_COLUMNS and len(ratings) == 35
    old = ratings[ratings["item"] == "99"]
    assert old[["instrument", "dimension"]].values.tolist() == [["mbt-acs", "adherence"]]
    assert list(old["value"]) == [2.0] and not old["not_applicable"].any()
    retired = ratings[ratings["instrument"] == "retired-instrument"]
    assert retired["not_applicable"].all() and np.isnan(retired["value"]).all() and len(retired) == 1
    known = ratings[~ratings.index.isin(old.index.union(retired.index))]
    assert (known["value"] == 3.0).all() and set(known["session_id"]) == {w.session.id}


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "plain-rows"])
def test_frames_read_the_same_either_way(w, monkeypatch, packed):
    if not packed:
        monkeypatch.setattr(frames, "_MAX_PACKED_KEYS", 0)
    _code(w.a, w.rater_a, {1: "EV", 2: "PM", 4: "PE"})
    _code(w.b, w.rater_b, {1: "SUP", 2: "PM"})
    _finish(w.a, w.rater_a, "3")
    _finish(w.b, w.rater_b, "6")
    codes = code_frame(w.study).sort_values(["assignment_id", "utterance_id"])
    assert codes[["assignment_id", "utterance_id"]].values.tolist() == [
        [w.a.id, w.utterance(1).id], [w.a.id, w.utterance(2).id], [w.a.id, w.utterance(4).id],
        [w.b.id, w.utterance(1).id], [w.b.id, w.utterance(2).id]]
    assert list(codes["code"].astype(str)) == ["EV", "PM", "PE", "SUP", "PM"]
    ratings = rating_frame(w.study)
    assert len(ratings) == 66
    assert ratings.groupby("rater_id")["value"].agg(set).to_dict() == {
        w.rater_a.id: {3.0}, w.rater_b.id: {6.0}}
