"""Fidelity scores on hand-worked data: which rating counts, session scores, utterance
profiles, mode-contingent responsiveness, means with CIs, trends and drift flags.

Every expected value below is worked out by hand in the comments (or taken from printed
t tables), not computed with the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mbtcode.io.schemes import Dimension, Instrument, Item, OverallRating, load_scheme_file
from mbtcode.stats import fidelity as fs

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.fixture(scope="module")
def mbt():
    return load_scheme_file(SCHEMAS / "mbt-individual.json")


#: A three-item instrument: item 1 competence only (like MBT-ACS item 1), items 2 and 3 both.
ACS = Instrument(
    id="acs", title="ACS", target="session", scale_min=1, scale_max=7, cutoff=4, allow_na=True,
    dimensions=(Dimension("adherence", "Adherence"), Dimension("competence", "Competence")),
    items=(Item("1", 1, "Warmth", ("competence",)),
           Item("2", 2, "Curiosity", ("adherence", "competence")),
           Item("3", 3, "Challenge", ("adherence", "competence"))),
    overall=(OverallRating("overall_adherence", "adherence", "Overall adherence"),
             OverallRating("overall_competence", "competence", "Overall competence")),
)

NA = "na"


def values(rows: list[tuple]) -> pd.DataFrame:
    """(session, item, dimension, value or NA) → a counting-values frame."""
    return pd.DataFrame({
        "session_id": [r[0] for r in rows],
        "instrument": "acs",
        "item": [r[1] for r in rows],
        "dimension": [r[2] for r in rows],
        "value": [np.nan if r[3] == NA else float(r[3]) for r in rows],
        "not_applicable": [r[3] == NA for r in rows],
    })


# ----------------------------------------------------------------------------- session scores


def test_session_means_exclude_na_and_keep_overall_separate():
    scores = fs.session_scores(values([
        (10, "1", "competence", 5),
        (10, "2", "adherence", 3), (10, "2", "competence", 6),
        (10, "3", "adherence", NA), (10, "3", "competence", 4),
        (10, "overall_adherence", "adherence", 5),
        (10, "overall_competence", "competence", 2),
    ]), ACS).set_index("session_id").loc[10]
    # adherence: item 2 only (item 3 N/A, item 1 not rated for adherence) → 3, below 4
    assert scores["adherence_mean"] == 3
    assert (scores["adherence_n_items"], scores["adherence_n_na"]) == (1, 1)
    assert not scores["adherence_adequate"]
    # competence: (5 + 6 + 4) / 3 = 5
    assert scores["competence_mean"] == 5
    assert (scores["competence_n_items"], scores["competence_n_na"]) == (3, 0)
    assert scores["competence_adequate"]
    # the entered overall ratings are kept as entered, not the item means
    assert scores["overall_adherence"] == 5 and scores["overall_adherence_adequate"]
    assert scores["overall_competence"] == 2 and not scores["overall_competence_adequate"]
    assert scores["item_3_adherence"] != scores["item_3_adherence"]  # NaN: N/A
    assert scores["item_2_competence"] == 6


def test_cutoff_is_inclusive_and_unrated_sessions_have_no_adequacy():
    scores = fs.session_scores(values([(1, "2", "adherence", 4), (1, "3", "adherence", 4)]), ACS,
                               session_ids=[1, 2]).set_index("session_id")
    assert scores.loc[1, "adherence_mean"] == 4 and scores.loc[1, "adherence_adequate"]  # 4 = adequate
    assert math.isnan(scores.loc[1, "competence_mean"])
    assert scores.loc[1, "competence_adequate"] is pd.NA
    assert scores.loc[2, "adherence_n_items"] == 0 and scores.loc[2, "adherence_adequate"] is pd.NA


def test_item_columns_follow_the_form_order():
    scores = fs.session_scores(values([(1, "1", "competence", 5)]), ACS)
    items = [c for c in scores.columns if c.startswith("item_")]
    assert items == ["item_1_competence", "item_2_adherence", "item_2_competence",
                     "item_3_adherence", "item_3_competence"]


# ----------------------------------------------------------------------------- which rating counts


ASSIGNMENTS = pd.DataFrame(
    [(1, 101, 1), (2, 201, 1), (2, 202, 2), (3, 301, 1), (3, 302, 2), (4, 401, 3), (4, 402, 1)],
    columns=["session_id", "assignment_id", "rater_id"],
)


def rater_ratings(rows: list[tuple]) -> pd.DataFrame:
    """(assignment, item, dimension, value or NA) → a raters' rating frame."""
    return pd.DataFrame({
        "assignment_id": [r[0] for r in rows],
        "instrument": "acs",
        "item": [r[1] for r in rows],
        "dimension": [r[2] for r in rows],
        "value": [np.nan if r[3] == NA else float(r[3]) for r in rows],
        "not_applicable": [r[3] == NA for r in rows],
    })


def test_sources_in_order_consensus_gold_single_mean():
    sessions, weights = fs.counting_sources(ASSIGNMENTS, consensus_sessions=[3], gold={4: 401})
    got = sessions.set_index("session_id")
    assert got.loc[1].tolist() == ["single_rater", 1]
    assert got.loc[2].tolist() == ["mean_of_raters", 2]
    assert got.loc[3].tolist() == ["consensus", 2]
    assert got.loc[4].tolist() == ["gold", 2]
    w = weights.set_index("assignment_id")["weight"].to_dict()
    assert w == {101: 1.0, 201: 0.5, 202: 0.5, 301: 0.0, 302: 0.0, 401: 1.0, 402: 0.0}


def test_a_reopened_gold_coding_does_not_count():
    # the expert's assignment 401 was reopened: it is not among the submitted codings
    sessions, weights = fs.counting_sources(ASSIGNMENTS[ASSIGNMENTS["assignment_id"] != 401],
                                            gold={4: 401})
    assert sessions.set_index("session_id").loc[4].tolist() == ["single_rater", 1]
    assert weights.set_index("assignment_id").loc[402, "weight"] == 1.0


def test_a_consensus_without_submitted_codings_still_counts():
    sessions, _ = fs.counting_sources(ASSIGNMENTS.iloc[:0], consensus_sessions=[9])
    assert sessions.to_dict("records") == [{"session_id": 9, "source": "consensus", "n_raters": 0}]


def test_counting_values_mean_of_raters_consensus_and_gold():
    _, weights = fs.counting_sources(ASSIGNMENTS, consensus_sessions=[3], gold={4: 401})
    ratings = rater_ratings([
        (101, "2", "adherence", 5),
        (201, "2", "adherence", 3), (202, "2", "adherence", 6),      # mean 4.5
        (201, "3", "adherence", NA), (202, "3", "adherence", 5),     # N/A is no value → 5
        (201, "3", "competence", NA), (202, "3", "competence", NA),  # nobody gave a number → N/A
        (201, "1", "competence", 4),                                  # the other rater left it out → 4
        (301, "2", "adherence", 2), (302, "2", "adherence", 7),      # consensus says 5
        (401, "2", "adherence", 6), (402, "2", "adherence", 2),      # gold: 6
    ])
    consensus = pd.DataFrame([{"session_id": 3, "instrument": "acs", "item": "2", "dimension": "adherence",
                               "value": 5.0, "not_applicable": False}])
    got = fs.counting_ratings(ratings, weights, consensus)
    table = {(r.session_id, r.item, r.dimension): (None if r.not_applicable else r.value)
             for r in got.itertuples()}
    assert table == {
        (1, "2", "adherence"): 5.0,
        (2, "1", "competence"): 4.0,
        (2, "2", "adherence"): 4.5,
        (2, "3", "adherence"): 5.0,
        (2, "3", "competence"): None,
        (3, "2", "adherence"): 5.0,
        (4, "2", "adherence"): 6.0,
    }


# ----------------------------------------------------------------------------- utterance profile


def utterances(sessions: dict[int, str]) -> pd.DataFrame:
    """{session: "PTPOT…"} → utterance frame; ids are session·100 + position."""
    rows = []
    roles = {"P": "patient", "T": "therapist", "O": "other"}
    for session, pattern in sessions.items():
        for position, letter in enumerate(pattern, start=1):
            rows.append((session * 100 + position, session, position, roles[letter]))
    return pd.DataFrame(rows, columns=["utterance_id", "session_id", "position", "role"])


def test_the_answer_is_the_next_therapist_turn_skipping_other_speakers():
    # session 1: P1 T2 P3 O4 T5 P6 P7 T8 T9 P10; session 2 starts with a therapist turn
    links = fs.response_links(utterances({1: "PTPOTPPTTP", 2: "TP"}))
    assert sorted(zip(links["utterance_id"], links["response_id"], strict=True)) == [
        (101, 102), (103, 105), (107, 108)]  # P6 is followed by P7; P10 is the last of its session


def codes(rows: list[tuple]) -> pd.DataFrame:
    """(session, utterance, coder, weight, code_set, code)."""
    return pd.DataFrame(rows, columns=["session_id", "utterance_id", "coder", "weight", "code_set", "code"])


IS, NM = "intervention-spectrum", "nonmentalizing-modes"


def test_mode_response_table_and_responsiveness_by_hand(mbt):
    # session 1 "PTPTPTPT", one coder (weight 1):
    #   P1 PE → T2 EV  (recommended for PE)
    #   P3 PE → T4 ARG (iatrogenic for PE)
    #   P5 PM → T6 CHA (recommended for PM)
    #   P7 PE → T8 uncoded (left out)
    # session 2 "PT", two raters without consensus (weight ½ each):
    #   rater 21: PE → EXP (recommended); rater 22: PE → SUP (neither)
    c = codes([
        (1, 101, 11, 1.0, NM, "PE"), (1, 102, 11, 1.0, IS, "EV"),
        (1, 103, 11, 1.0, NM, "PE"), (1, 104, 11, 1.0, IS, "ARG"),
        (1, 105, 11, 1.0, NM, "PM"), (1, 106, 11, 1.0, IS, "CHA"),
        (1, 107, 11, 1.0, NM, "PE"),
        (2, 201, 21, 0.5, NM, "PE"), (2, 202, 21, 0.5, IS, "EXP"),
        (2, 201, 22, 0.5, NM, "PE"), (2, 202, 22, 0.5, IS, "SUP"),
    ])
    links = fs.response_links(utterances({1: "PTPTPTPT", 2: "PT"}))
    table = fs.mode_response_table(c, links, mbt)
    cells = {(r.session_id, r.mode, r.response): r.count for r in table.itertuples()}
    assert cells == {(1, "PE", "EV"): 1.0, (1, "PE", "ARG"): 1.0, (1, "PM", "CHA"): 1.0,
                     (2, "PE", "EXP"): 0.5, (2, "PE", "SUP"): 0.5}

    resp = fs.responsiveness(table, mbt).set_index(["session_id", "mode"])
    pe1 = resp.loc[(1, "PE")]
    assert (pe1.n_responses, pe1.n_recommended, pe1.n_iatrogenic) == (2, 1, 1)
    assert (pe1.share_recommended, pe1.share_iatrogenic) == (0.5, 0.5)
    all1 = resp.loc[(1, "all")]  # 3 answers: EV, CHA recommended; ARG iatrogenic
    assert (all1.n_responses, all1.n_recommended, all1.n_iatrogenic) == (3, 2, 1)
    pe2 = resp.loc[(2, "PE")]  # mean over raters: ½ recommended, ½ neither
    assert (pe2.n_responses, pe2.share_recommended, pe2.share_iatrogenic) == (1.0, 0.5, 0.0)

    # pooled over the study (no grouping): PE 3 answers, 1.5 recommended, 1 iatrogenic
    pooled = fs.responsiveness(fs.mode_response_table(c.assign(all="all"), links, mbt, ["all"]), mbt,
                               ["all"]).set_index("mode")
    assert pooled.loc["PE", "share_recommended"] == pytest.approx(1.5 / 3)
    assert pooled.loc["PE", "share_iatrogenic"] == pytest.approx(1 / 3)


def test_a_group_session_counts_once_for_each_of_its_therapists(mbt):
    # session 1 (group, TH-A and TH-B): PE → EV twice; session 2 (TH-A alone): PE → ARG
    c = codes([
        (1, 101, 11, 1.0, NM, "PE"), (1, 102, 11, 1.0, IS, "EV"),
        (1, 103, 11, 1.0, NM, "PE"), (1, 104, 11, 1.0, IS, "EV"),
        (2, 201, 21, 1.0, NM, "PE"), (2, 202, 21, 1.0, IS, "ARG"),
    ])
    therapists = pd.DataFrame({"session_id": [1, 1, 2], "therapist": ["TH-A", "TH-B", "TH-A"]})
    per_therapist = c.merge(therapists, on="session_id")  # session 1's rows twice
    links = fs.response_links(utterances({1: "PTPT", 2: "PT"}))
    table = fs.mode_response_table(per_therapist, links, mbt, ["therapist"])
    cells = {(r.therapist, r.response): r.count for r in table.itertuples()}
    assert cells == {("TH-A", "EV"): 2.0, ("TH-A", "ARG"): 1.0, ("TH-B", "EV"): 2.0}
    resp = fs.responsiveness(table, mbt, ["therapist"]).set_index(["therapist", "mode"])
    assert resp.loc[("TH-A", "PE"), "share_recommended"] == pytest.approx(2 / 3)
    assert resp.loc[("TH-B", "PE"), "n_responses"] == 2


def test_mentalizing_answers_are_in_the_table_but_not_in_responsiveness(mbt):
    c = codes([(1, 101, 11, 1.0, NM, "MENT"), (1, 102, 11, 1.0, IS, "EV")])
    table = fs.mode_response_table(c, fs.response_links(utterances({1: "PT"})), mbt)
    assert table[["mode", "response", "count"]].values.tolist() == [["MENT", "EV", 1.0]]
    assert fs.responsiveness(table, mbt).empty


def test_codes_of_another_coder_never_answer(mbt):
    c = codes([(1, 101, 11, 1.0, NM, "PE"), (1, 102, 12, 1.0, IS, "EV")])
    assert fs.mode_response_table(c, fs.response_links(utterances({1: "PT"})), mbt).empty


def test_level_profile_counts_non_mbt_moves_apart(mbt):
    # EV, SUP: level 1; EXP: level 2; AFF: level 3; ADV and INT: no level (non-MBT)
    c = codes([(1, 100 + i, 11, 1.0, IS, code) for i, code in
               enumerate(["EV", "SUP", "EV", "EXP", "AFF", "ADV", "INT", "EV"])]
              + [(1, 200, 11, 1.0, NM, "PE")])
    levels = fs.level_profile(c, mbt).set_index("level")
    assert levels["count"].to_dict() == {"1": 4.0, "2": 1.0, "3": 1.0, fs.OUTSIDE_LEVELS: 2.0}
    assert levels.loc["1", "share"] == 0.5 and levels["share"].sum() == pytest.approx(1)
    assert set(levels["code_set"]) == {IS}  # the modes have no levels

    profile = fs.code_profile(c).set_index(["code_set", "code"])
    assert profile.loc[(IS, "EV"), "count"] == 3 and profile.loc[(IS, "EV"), "share"] == 3 / 8
    assert profile.loc[(NM, "PE"), "share"] == 1.0


# ----------------------------------------------------------------------------- over time


def test_mean_ci_matches_the_t_table():
    # 1..5: mean 3, sd √2.5 = 1.5811; t(4, .975) = 2.7764 (printed t table)
    ci = fs.mean_ci([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert ci.n == 5 and ci.mean == 3 and ci.sd == pytest.approx(math.sqrt(2.5))
    assert (ci.low, ci.high) == (pytest.approx(3 - half, abs=1e-5), pytest.approx(3 + half, abs=1e-5))
    assert fs.mean_ci([4.0]) == fs.MeanCI(1, 4.0, None, None, None)
    assert fs.mean_ci([]) == fs.MeanCI(0, None, None, None, None)
    assert fs.mean_ci([float("nan"), 2.0, None]).n == 1


def test_trend_by_hand():
    # y = 5 4 4 3 2 on x = 1..5: Sxy = −7, Sxx = 10 → slope −0.7; SSE = 0.30, s² = 0.1,
    # SE = √(0.1/10) = 0.1; t(3, .975) = 3.1824 → [−1.0182, −0.3818]
    t = fs.trend([5, 4, 4, 3, 2])
    assert t.slope == pytest.approx(-0.7)
    assert (t.low, t.high) == (pytest.approx(-1.01824, abs=1e-4), pytest.approx(-0.38176, abs=1e-4))
    assert np.polyfit(np.arange(5), [5, 4, 4, 3, 2], 1)[0] == pytest.approx(t.slope)
    assert fs.trend([4, 3]).slope is None  # two points: no interval
    flat = fs.trend([4, 4, 4])
    assert (flat.slope, flat.low, flat.high) == (0.0, 0.0, 0.0)


def test_drift_flags():
    kinds = lambda values: [f.kind for f in fs.drift_flags(values, 4)]  # noqa: E731
    assert kinds([5, 4, 4, 3, 2]) == ["below_cutoff", "trending_down"]  # last 3: mean 3
    assert kinds([3, 5, 3, 5, 3]) == ["below_cutoff"]  # last three 3.67; slope exactly 0
    assert kinds([4, 5, 4, 5]) == []
    assert kinds([7, 6.5, 6, 5.5, 5.1]) == ["trending_down"]  # still adequate, falling
    assert kinds([3.9]) == [] and kinds([3.9, 3.0]) == []  # fewer than three: not yet a pattern
    assert fs.drift_flags([1, 1, 1], None) == []  # no cut-off, no below-cut-off flag
    (flag,) = fs.drift_flags([3, 3, 3], 4)
    assert "mean 3.00 over the last 3" in flag.message and "cut-off 4" in flag.message


# ----------------------------------------------------------------------------- program audits


def test_audit_scores_by_hand():
    quality = load_scheme_file(SCHEMAS / "mbt-program-quality.json").instrument("mbt-program-quality")
    # audit 1: criterion 1 = 5, criterion 2 N/A, the other 18 = 3 → (5 + 54) / 19
    # audit 2: organization criteria 1–6 = 2, nothing else rated
    rows = [(1, str(i), 5 if i == 1 else (None if i == 2 else 3)) for i in range(1, 21)]
    rows += [(2, str(i), 2) for i in range(1, 7)]
    ratings = pd.DataFrame({
        "audit_id": [r[0] for r in rows], "item": [r[1] for r in rows],
        "value": [np.nan if r[2] is None else r[2] for r in rows],
        "not_applicable": [r[2] is None for r in rows],
    })
    got = fs.audit_scores(ratings, quality).set_index("audit_id")
    assert got.loc[1, "mean"] == pytest.approx(59 / 19)
    assert (got.loc[1, "n_items"], got.loc[1, "n_na"], got.loc[1, "n_below_cutoff"]) == (19, 1, 0)
    assert got.loc[1, "adequate"]  # 3.1 ≥ 3
    assert got.loc[1, "mean_organization"] == pytest.approx((5 + 3 * 4) / 5)  # 1, 3–6
    assert got.loc[2, "mean"] == 2 and not got.loc[2, "adequate"] and got.loc[2, "n_below_cutoff"] == 6
    assert math.isnan(got.loc[2, "mean_team"])
