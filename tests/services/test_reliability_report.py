"""The study's reliability report (services/reliability_report.py), checked against independent
computations: the krippendorff package, Cohen's kappa and ICC(1) written out by hand."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import krippendorff
import numpy as np
import pytest
from sqlalchemy import delete, update

from mbtcode.extensions import db
from mbtcode.models import GoldStandard, ItemRating, UtteranceCode
from mbtcode.services.adjudication import compare, finalize, resolve_code, resolve_rating, start
from mbtcode.services.assignments import assign_sessions, codable_roles, required_ratings, submit
from mbtcode.services.reliability_report import FORMAT_VERSION, rater_names, reliability_report
from mbtcode.services.schemes import as_scheme
from mbtcode.services.sessions import all_utterances

N_BOOT = 30
THERAPIST_CODES = ["EV", "SUP", "CLA", "EXP"]
PATIENT_CODES = ["PE", "PM", "MENT"]
BANDED = ("icc", "krippendorff_alpha", "cohen_kappa", "fleiss_kappa", "gwet_ac1", "weighted_kappa")
BOOTSTRAPPED = ("percent_agreement", "krippendorff_alpha", "gwet_ac1")
#: the statistics of continuous values (item means, session tallies)
INTERVAL_STATISTICS = ("icc1", "icc2", "icc3", "icc1k", "icc2k", "icc3k", "krippendorff_alpha")


# --------------------------------------------------------------------------- independent formulas


def hand_kappa(a: list, b: list, weights: str | None = None) -> float:
    """Cohen's kappa from its definition; quadratic weights on the ranks of the categories used."""
    cats = sorted(set(a) | set(b))
    k, n = len(cats), len(a)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    p = table / n
    i = np.arange(k)
    w = np.eye(k) if weights is None else 1 - (i[:, None] - i[None, :]) ** 2 / (k - 1) ** 2
    po = (w * p).sum()
    pe = (w * np.outer(p.sum(axis=1), p.sum(axis=0))).sum()
    return float((po - pe) / (1 - pe))


def hand_icc1(matrix: list[list[float]]) -> float:
    """ICC(1,1) from the one-way ANOVA: (MSR − MSW) / (MSR + (k − 1) MSW); complete rows only."""
    x = np.array([row for row in matrix if not any(v is None for v in row)], dtype=float)
    n, k = x.shape
    row_means = x.mean(axis=1)
    msr = k * ((row_means - x.mean()) ** 2).sum() / (n - 1)
    msw = ((x - row_means[:, None]) ** 2).sum() / (n * (k - 1))
    return float((msr - msw) / (msr + (k - 1) * msw))


# --------------------------------------------------------------------------- the world


@dataclass
class ReportWorld:
    study: Any
    coordinator: Any
    a: Any
    b: Any
    c: Any
    sessions: list = field(default_factory=list)
    #: utterance id → (session id, code set, {rater id: code}) for submitted double-coded work
    codes: dict = field(default_factory=dict)
    #: (session id, item, dimension) → {rater id: value or None (N/A)}
    ratings: dict = field(default_factory=dict)
    assignments: dict = field(default_factory=dict)  # (session id, rater id) → assignment

    def code_set_units(self, code_set: str) -> dict:
        return {u: by for u, (_, cs, by) in self.codes.items() if cs == code_set}


def write_work(assignment, codes: dict[int, str], ratings: dict, *, do_submit: bool = True) -> None:
    """Rows as the coding and rating services leave them (those are tested elsewhere)."""
    roles = codable_roles(assignment.study)
    for u in all_utterances(assignment.session):
        if u.position in codes:
            db.session.add(UtteranceCode(assignment_id=assignment.id, utterance_id=u.id,
                                         code_set=roles[u.role], code=codes[u.position]))
    for instrument, item, dimension in required_ratings(assignment.study):
        value = ratings[(item, dimension)]
        db.session.add(ItemRating(assignment_id=assignment.id, instrument=instrument, item=item,
                                  dimension=dimension, value=value, not_applicable=value is None))
    db.session.commit()
    if do_submit:
        assert submit(assignment, actor=assignment.rater, allow_uncoded=True).complete
        db.session.commit()


def _lines(tag: str, n: int = 10) -> list[str]:
    return [f"[00:00:{i:02d}] {'T' if i % 2 == 0 else 'P'}: turn {i} of {tag}" for i in range(n)]


def add_double_coded(rw: ReportWorld, make_session, raters, *, seed: int, agree: float = 0.7,
                     uncoded: tuple[int, ...] = (), na: tuple = (), record: bool = True):
    """One session of ten turns (odd positions therapist, even patient) coded by ``raters``.

    The first rater's codes are drawn; each further rater copies them with probability
    ``agree``. Ratings scatter ±1 around a level per item. The second rater leaves the
    positions in ``uncoded`` uncoded; the first rates the (item, dimension) pairs in ``na`` N/A.
    """
    rng = random.Random(seed)
    session = make_session(rw.study, _lines(f"session {seed}"))
    created = assign_sessions(rw.study, [session], raters, actor=None)
    db.session.commit()
    utterances = {u.position: u for u in all_utterances(session)}
    first = {p: rng.choice(THERAPIST_CODES if p % 2 else PATIENT_CODES) for p in utterances}
    level = {key[1:]: rng.randint(2, 6) for key in required_ratings(rw.study)}
    for i, assignment in enumerate(created):
        codes = {p: c if i == 0 or rng.random() < agree
                 else rng.choice(THERAPIST_CODES if p % 2 else PATIENT_CODES)
                 for p, c in first.items() if not (i == 1 and p in uncoded)}
        ratings = {key: min(7, max(1, v + rng.choice([-1, 0, 0, 1]))) for key, v in level.items()}
        for key in na if i == 0 else ():
            ratings[key] = None
        write_work(assignment, codes, ratings)
        rw.assignments[(session.id, assignment.rater_id)] = assignment
        if record:
            for p, code in codes.items():
                u = utterances[p]
                cs = "intervention-spectrum" if u.role == "therapist" else "nonmentalizing-modes"
                rw.codes.setdefault(u.id, (session.id, cs, {}))[2][assignment.rater_id] = code
            for (item, dimension), value in ratings.items():
                rw.ratings.setdefault((session.id, item, dimension), {})[assignment.rater_id] = value
    rw.sessions.append(session)
    return session


@pytest.fixture
def empty_world(make_study, make_user, make_member) -> ReportWorld:
    study = make_study("Reliability study")
    coordinator = make_user("coordinator", name="Cora")
    make_member(study, coordinator, "coordinator")
    raters = [make_user("rater", name=name) for name in ("Ann", "Ben", "Cai")]
    for r in raters:
        make_member(study, r, "rater")
    return ReportWorld(study, coordinator, *raters)


@pytest.fixture
def rw(empty_world, make_session) -> ReportWorld:
    """Five sessions, all coded and rated by A and B (a crossed design)."""
    for seed in range(5):
        add_double_coded(empty_world, make_session, [empty_world.a, empty_world.b], seed=seed,
                         uncoded=(3,) if seed < 2 else (), na=(("4", "competence"),) if seed == 0 else ())
    return empty_world


def report(rw: ReportWorld, **kwargs) -> dict:
    result = reliability_report(rw.study, n_boot=kwargs.pop("n_boot", N_BOOT), **kwargs)
    json.dumps(result, allow_nan=False)  # never NaN or infinity
    return result


def _stable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "generated_at"}


def _code_set(result: dict, code_set: str) -> dict:
    return next(cs for cs in result["code_sets"] if cs["id"] == code_set)


def _item(result: dict, item: str, dimension: str) -> dict:
    return next(e for e in result["ratings"]["items"] if (e["item"], e["dimension"]) == (item, dimension))


def _statistics(node: Any, path: str = ""):
    """(path, name, statistic) for every statistic anywhere in the report."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "statistics" and isinstance(value, dict):
                for name, stat in value.items():
                    yield f"{path}/{name}", name, stat
            else:
                yield from _statistics(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _statistics(value, f"{path}[{i}]")


def _r(user) -> str:
    return f"R{user.id}"


# --------------------------------------------------------------------------- shape


def test_report_header_counts_and_raters(rw, make_session):
    make_session(rw.study)  # a session nobody coded
    result = report(rw)
    assert result["format"] == FORMAT_VERSION
    assert result["study"] == "Reliability study"
    version = rw.study.scheme_version
    assert result["scheme"] == f"{version.key}@{version.revision}"
    assert result["sessions"] == {"total": 6, "double_coded": 5, "gold_excluded": 0}
    assert result["raters"] == [_r(rw.a), _r(rw.b)]
    assert rater_names(rw.study, result) == {_r(rw.a): "Ann", _r(rw.b): "Ben"}
    assert [cs["id"] for cs in result["code_sets"]] == ["intervention-spectrum", "nonmentalizing-modes"]
    scheme = as_scheme(version)
    for cs, spec in zip(result["code_sets"], scheme.code_sets, strict=True):
        assert [c["code"] for c in cs["codes"]] == [c.id for c in spec.codes]
        assert cs["confusion"]["labels"] == [c.id for c in spec.codes]
        assert cs["n_sessions"] == 5
    assert [(e["item"], e["dimension"]) for e in result["ratings"]["items"]] == \
        [key[1:] for key in required_ratings(rw.study)]
    assert [(e["instrument"], e["dimension"]) for e in result["ratings"]["means"]] == \
        [("mbt-acs", "adherence"), ("mbt-acs", "competence")]
    assert {e["kind"] for e in result["ratings"]["items"]} == {"item", "overall"}
    assert _item(result, "overall_adherence", "adherence")["label"] == "Overall adherence"
    _check_intervals_and_bands(result)


# --------------------------------------------------------------------------- codes
#
# Computing the report costs about a second, so each test below checks one report against
# several independent computations (one helper per statistic).


def _check_alpha(rw, result, code_set):
    """The code set's alpha equals the krippendorff package on a raters × utterances matrix."""
    labels = _code_set(result, code_set)["confusion"]["labels"]
    units = rw.code_set_units(code_set)
    matrix = np.array([[labels.index(by[r.id]) if r.id in by else np.nan for by in units.values()]
                       for r in (rw.a, rw.b)], dtype=float)
    overall = _code_set(result, code_set)["overall"]
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert overall["statistics"]["krippendorff_alpha"]["estimate"] == pytest.approx(expected, abs=1e-9)
    assert overall["n_raters"] == 2
    assert overall["n_ratings"] == sum(len(by) for by in units.values())
    assert overall["level"] == "nominal"


def _check_per_code(rw, result, code_set):
    """Prevalence (share of all codes given) and one-vs-rest alpha of every code."""
    units = rw.code_set_units(code_set)
    given = [c for by in units.values() for c in by.values()]
    counts = Counter(given)
    for entry in _code_set(result, code_set)["codes"]:
        code = entry["code"]
        assert entry["prevalence"] == pytest.approx(counts[code] / len(given)), code
        binary = np.array([[float(by[r.id] == code) if r.id in by else np.nan for by in units.values()]
                           for r in (rw.a, rw.b)])
        alpha = entry["utterance"]["statistics"]["krippendorff_alpha"]
        if counts[code] == 0:
            assert alpha["estimate"] is None and alpha["reason"], code
        else:
            expected = krippendorff.alpha(reliability_data=binary, level_of_measurement="nominal")
            assert alpha["estimate"] == pytest.approx(expected, abs=1e-9), code
    assert sum(e["prevalence"] for e in _code_set(result, code_set)["codes"]) == pytest.approx(1.0)


def _check_pair_kappa(rw, result, code_set):
    """Cohen's kappa of the rater pair over the utterances both coded, by hand."""
    units = rw.code_set_units(code_set)
    both = [by for by in units.values() if rw.a.id in by and rw.b.id in by]
    (pair,) = _code_set(result, code_set)["pairs"]
    assert pair["raters"] == [_r(rw.a), _r(rw.b)]
    assert pair["n_units"] == len(both)
    assert pair["percent_agreement"] == pytest.approx(
        sum(by[rw.a.id] == by[rw.b.id] for by in both) / len(both))
    expected = hand_kappa([by[rw.a.id] for by in both], [by[rw.b.id] for by in both])
    assert pair["statistics"]["cohen_kappa"]["estimate"] == pytest.approx(expected, abs=1e-9)
    # crossed design, two raters: the code set's own Cohen's kappa is the same
    overall = _code_set(result, code_set)["overall"]["statistics"]
    assert overall["cohen_kappa"]["estimate"] == pytest.approx(expected, abs=1e-9)


def _check_coincidences(rw, result, code_set):
    """Symmetric, totalling the pairable codes, each pair of codes counted both ways."""
    confusion = _code_set(result, code_set)["confusion"]
    labels, matrix = confusion["labels"], np.array(confusion["matrix"])
    expected = np.zeros_like(matrix)
    pairable = 0
    for by in rw.code_set_units(code_set).values():
        if len(by) == 2:
            x, y = (labels.index(by[r.id]) for r in (rw.a, rw.b))
            expected[x, y] += 1
            expected[y, x] += 1
            pairable += 2
    assert matrix.shape == (len(labels), len(labels))
    assert (matrix == matrix.T).all()
    assert matrix.sum() == pairable
    assert matrix.tolist() == expected.tolist()


def _check_session_tally(rw, result, code_set):
    """How often each rater used each code per session; ICC(1) of those counts by hand."""
    used = {c for _, cs, by in rw.codes.values() if cs == code_set for c in by.values()}
    for entry in _code_set(result, code_set)["codes"]:
        tally = entry["session_tally"]
        per = defaultdict(lambda: {rw.a.id: 0, rw.b.id: 0})
        for session_id, cs, by in rw.codes.values():
            if cs == code_set:
                counts = per[session_id]  # every session counts, with zeros
                for rater_id, code in by.items():
                    counts[rater_id] += code == entry["code"]
        matrix = [[counts[rw.a.id], counts[rw.b.id]] for counts in per.values()]
        assert tally["n_units"] == 5 and tally["rater_design"] == "crossed", entry["code"]
        assert tally["n_raters"] == 2, entry["code"]
        assert set(tally["statistics"]) == {*INTERVAL_STATISTICS}, entry["code"]
        assert tally["mean_per_session"] == pytest.approx(np.mean(matrix)), entry["code"]
        icc1 = tally["statistics"]["icc1"]
        if entry["code"] not in used:
            assert icc1["estimate"] is None and icc1["reason"], entry["code"]
        else:
            assert icc1["estimate"] == pytest.approx(hand_icc1(matrix), abs=1e-9), entry["code"]


def test_codes_against_independent_computations(rw):
    result = report(rw)
    for code_set in ("intervention-spectrum", "nonmentalizing-modes"):
        _check_alpha(rw, result, code_set)
        _check_per_code(rw, result, code_set)
        _check_pair_kappa(rw, result, code_set)
        _check_coincidences(rw, result, code_set)
        _check_session_tally(rw, result, code_set)


# --------------------------------------------------------------------------- ratings


def _check_item(rw, result, item, dimension):
    """ICC(1) by the one-way ANOVA and ordinal alpha by the krippendorff package."""
    entry = _item(result, item, dimension)
    rows = [[by[rw.a.id], by[rw.b.id]] for (s, i, d), by in rw.ratings.items() if (i, d) == (item, dimension)]
    complete = [row for row in rows if None not in row]
    assert entry["rater_design"] == "crossed"
    assert entry["n_raters"] == 2 and entry["level"] == "ordinal"
    assert entry["not_applicable"] == sum(row.count(None) for row in rows)
    assert entry["n_ratings"] == sum(v is not None for row in rows for v in row)
    icc1 = entry["statistics"]["icc1"]
    assert icc1["estimate"] == pytest.approx(hand_icc1(complete), abs=1e-9)
    assert icc1["ci_low"] <= icc1["estimate"] <= icc1["ci_high"]
    matrix = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float).T
    assert entry["statistics"]["krippendorff_alpha"]["estimate"] == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal"), abs=1e-9)


def _check_means(rw, result, dimension):
    """The mean over items per session and rater (N/A left out); ICC(1) by hand."""
    items = {i.id for i in as_scheme(rw.study.scheme_version).instruments[0].items}
    means = []
    for session in rw.sessions:
        row = []
        for rater in (rw.a, rw.b):
            values = [by[rater.id] for (s, i, d), by in rw.ratings.items()
                      if s == session.id and d == dimension and i in items and by[rater.id] is not None]
            row.append(sum(values) / len(values))
        means.append(row)
    entry = next(e for e in result["ratings"]["means"] if e["dimension"] == dimension)
    assert entry["n_units"] == 5 and entry["level"] == "interval"
    assert (entry["n_raters"], entry["n_ratings"], entry["rater_design"]) == (2, 10, "crossed")
    assert entry["statistics"]["icc1"]["estimate"] == pytest.approx(hand_icc1(means), abs=1e-9)
    # continuous means: ICCs and interval alpha only (no agreement, kappas or AC1)
    assert set(entry["statistics"]) == {*INTERVAL_STATISTICS}
    assert entry["statistics"]["krippendorff_alpha"]["estimate"] == pytest.approx(
        krippendorff.alpha(reliability_data=np.array(means).T, level_of_measurement="interval"),
        abs=1e-9)


def _check_rating_pair(rw, result, dimension):
    """Quadratic weighted kappa over all items of a dimension, pooled, by hand."""
    items = {i.id for i in as_scheme(rw.study.scheme_version).instruments[0].items}
    pairs = [(by[rw.a.id], by[rw.b.id]) for (s, i, d), by in rw.ratings.items()
             if d == dimension and i in items and None not in (by[rw.a.id], by[rw.b.id])]
    (row,) = [p for p in result["ratings"]["pairs"] if p["dimension"] == dimension]
    assert row["raters"] == [_r(rw.a), _r(rw.b)] and row["instrument"] == "mbt-acs"
    assert row["n_units"] == len(pairs)
    assert row["percent_agreement"] == pytest.approx(sum(x == y for x, y in pairs) / len(pairs))
    assert row["within_one"] == pytest.approx(sum(abs(x - y) <= 1 for x, y in pairs) / len(pairs))
    expected = hand_kappa([x for x, _ in pairs], [y for _, y in pairs], "quadratic")
    assert row["statistics"]["weighted_kappa_quadratic"]["estimate"] == pytest.approx(expected, abs=1e-9)


def test_ratings_against_independent_computations(rw):
    result = report(rw)
    for item, dimension in (("2", "adherence"), ("7", "competence"), ("4", "competence"),
                            ("overall_competence", "competence"), ("1", "competence")):
        _check_item(rw, result, item, dimension)
    na = _item(result, "4", "competence")  # rater A said N/A in one session: a missing value
    assert (na["not_applicable"], na["n_units"], na["n_ratings"]) == (1, 5, 9)
    for dimension in ("adherence", "competence"):
        _check_means(rw, result, dimension)
        _check_rating_pair(rw, result, dimension)


# --------------------------------------------------------------------------- rater designs


def test_different_raters_per_session_use_slots_and_list_each_actual_pair(rw, make_session):
    extra = add_double_coded(rw, make_session, [rw.a, rw.c], seed=99)
    result = report(rw)
    assert result["raters"] == [_r(rw.a), _r(rw.b), _r(rw.c)]
    assert result["sessions"]["double_coded"] == 6
    entry = _item(result, "2", "adherence")
    assert entry["rater_design"] == "slots"
    rows = [[by[r] for r in sorted(by)]
            for (s, i, d), by in rw.ratings.items() if (i, d) == ("2", "adherence")]
    assert entry["statistics"]["icc1"]["estimate"] == pytest.approx(hand_icc1(rows), abs=1e-9)
    overall = _code_set(result, "intervention-spectrum")["overall"]
    assert overall["n_raters"] == 3
    assert "cohen_kappa" not in overall["statistics"]  # three raters in the set
    pairs = {tuple(p["raters"]): p for p in _code_set(result, "intervention-spectrum")["pairs"]}
    assert set(pairs) == {(_r(rw.a), _r(rw.b)), (_r(rw.a), _r(rw.c))}  # B and C share nothing
    ac = [by for u, (s, cs, by) in rw.codes.items() if s == extra.id and cs == "intervention-spectrum"]
    assert pairs[(_r(rw.a), _r(rw.c))]["n_units"] == len(ac) == 5
    tally = _code_set(result, "intervention-spectrum")["codes"][0]["session_tally"]
    assert tally["rater_design"] == "slots" and tally["n_units"] == 6
    assert tally["n_raters"] == 2  # two slots, three actual raters
    (mean,) = [e for e in result["ratings"]["means"] if e["dimension"] == "adherence"]
    assert (mean["rater_design"], mean["n_raters"], mean["n_units"]) == ("slots", 2, 6)


def test_a_not_applicable_rating_keeps_a_crossed_design_crossed(empty_world, make_session):
    """A and B rate every session, B's assignment first in half of them. One N/A must not turn
    the item into rater slots: slots would pair A's values with B's in those sessions."""
    w = empty_world
    for seed in range(6):
        add_double_coded(w, make_session, [w.a, w.b] if seed % 2 else [w.b, w.a], seed=seed + 10,
                         na=(("2", "adherence"),) if seed == 0 else ())
    rows = [(by[w.a.id], by[w.b.id]) for (s, i, d), by in w.ratings.items() if (i, d) == ("2", "adherence")]
    complete = [row for row in rows if None not in row]
    actual = hand_kappa([x for x, _ in complete], [y for _, y in complete])
    slots = hand_kappa([x if k % 2 else y for k, (x, y) in enumerate(complete)],
                       [y if k % 2 else x for k, (x, y) in enumerate(complete)])
    assert slots != pytest.approx(actual)  # the data tell the two apart
    entry = _item(report(w), "2", "adherence")
    assert entry["not_applicable"] == 1
    assert entry["rater_design"] == "crossed"
    assert entry["statistics"]["cohen_kappa"]["estimate"] == pytest.approx(actual, abs=1e-9)


# --------------------------------------------------------------------------- what counts


def test_work_that_does_not_count_changes_nothing(rw, make_session, make_user, make_member,
                                                 make_assignment):
    """An unsubmitted third rater, a withdrawn one, a single-coded session and an adjudicated
    consensus: the report is the same but for the number of sessions."""
    from mbtcode.services.assignments import withdraw

    before = _stable(report(rw))
    # a final consensus on the third session, different from both raters wherever they differ
    adjudicated = rw.sessions[2]
    consensus = start(adjudicated, actor=rw.coordinator)
    comparison = compare(adjudicated)
    assert comparison.n_disagreements > 0
    for unit in comparison.code_disagreements:
        resolve_code(consensus, unit.utterance.id, actor=rw.coordinator,
                     code="CHA" if unit.code_set == "intervention-spectrum" else "NC")
    for unit in comparison.rating_disagreements:
        resolve_rating(consensus, unit.instrument, unit.item, unit.dimension, actor=rw.coordinator,
                       raw_value="1")
    finalize(consensus, actor=rw.coordinator)
    # rater C codes the first session but has not submitted
    (c,) = assign_sessions(rw.study, [rw.sessions[0]], [rw.c], actor=None)
    db.session.commit()
    write_work(c, {p: "CHA" if p % 2 else "NC" for p in range(1, 11)},
               {key[1:]: 1 for key in required_ratings(rw.study)}, do_submit=False)
    # rater D's work on the second session was withdrawn
    d_user = make_user("rater", name="Dee")
    make_member(rw.study, d_user, "rater")
    (d,) = assign_sessions(rw.study, [rw.sessions[1]], [d_user], actor=None)
    write_work(d, {1: "CHA"}, {key[1:]: 7 for key in required_ratings(rw.study)}, do_submit=False)
    withdraw(d, actor=None, reason="left the study")
    # a session only A coded and submitted
    single = make_session(rw.study, _lines("single"))
    write_work(make_assignment(single, rw.a), {p: "EV" if p % 2 else "PE" for p in range(1, 11)},
               {key[1:]: 4 for key in required_ratings(rw.study)})
    db.session.commit()
    after = _stable(report(rw))
    assert after["sessions"] == {**before["sessions"], "total": before["sessions"]["total"] + 1}
    after["sessions"] = before["sessions"]
    assert after == before


def test_a_code_the_scheme_no_longer_has(rw):
    """A code from an older scheme revision is a code like any other for agreement and the
    rater pairs; it has no row of its own, and no place in the coincidence matrix."""
    units = rw.code_set_units("intervention-spectrum")
    utterance_id, by = next((u, by) for u, by in units.items() if len(by) == 2)
    db.session.execute(update(UtteranceCode).where(
        UtteranceCode.assignment_id == rw.assignments[(rw.codes[utterance_id][0], rw.a.id)].id,
        UtteranceCode.utterance_id == utterance_id).values(code="OLD"))
    db.session.commit()
    by[rw.a.id] = "OLD"
    result = report(rw)
    cs = _code_set(result, "intervention-spectrum")
    assert "OLD" not in [c["code"] for c in cs["codes"]] and "OLD" not in cs["confusion"]["labels"]
    given = [c for codes in units.values() for c in codes.values()]
    assert cs["overall"]["n_ratings"] == len(given)
    assert sum(c["prevalence"] for c in cs["codes"]) == pytest.approx(1 - 1 / len(given))
    assert np.array(cs["confusion"]["matrix"]).sum() == 2 * sum(
        len(b) == 2 and "OLD" not in b.values() for b in units.values())
    both = [b for b in units.values() if len(b) == 2]
    (pair,) = cs["pairs"]
    assert pair["n_units"] == len(both)
    expected = hand_kappa([b[rw.a.id] for b in both], [b[rw.b.id] for b in both])
    assert pair["statistics"]["cohen_kappa"]["estimate"] == pytest.approx(expected, abs=1e-9)


def test_codes_without_ratings(rw):
    db.session.execute(delete(ItemRating))
    db.session.commit()
    result = report(rw)
    _assert_clean(result)
    assert result["ratings"]["means"] == [] and result["ratings"]["pairs"] == []
    assert all(e["n_units"] == 0 for e in result["ratings"]["items"])
    assert _code_set(result, "intervention-spectrum")["overall"]["n_units"] > 0
    assert result["sessions"]["double_coded"] == 5


def test_ratings_without_codes(empty_world, make_session):
    w = empty_world
    rng = random.Random(7)
    for seed in range(3):
        session = make_session(w.study, _lines(f"ratings only {seed}"))
        for assignment in assign_sessions(w.study, [session], [w.a, w.b], actor=None):
            write_work(assignment, {}, {key[1:]: rng.randint(1, 7) for key in required_ratings(w.study)})
    result = report(w)
    _assert_clean(result)
    assert result["sessions"]["double_coded"] == 3
    for cs in result["code_sets"]:
        assert cs["overall"]["n_units"] == 0 and cs["pairs"] == []
    assert _item(result, "2", "adherence")["n_units"] == 3
    assert len(result["ratings"]["means"]) == 2 and result["ratings"]["pairs"]


def test_gold_sessions_are_excluded(rw):
    gold = rw.sessions[0]
    db.session.add(GoldStandard(study_id=rw.study.id, session_id=gold.id,
                                assignment_id=rw.assignments[(gold.id, rw.a.id)].id))
    db.session.commit()
    result = report(rw)
    assert result["sessions"] == {"total": 5, "double_coded": 4, "gold_excluded": 1}
    units = {u: v for u, v in rw.code_set_units("intervention-spectrum").items()
             if rw.codes[u][0] != gold.id}
    overall = _code_set(result, "intervention-spectrum")["overall"]
    assert overall["n_ratings"] == sum(len(by) for by in units.values())
    assert _item(result, "2", "adherence")["n_units"] == 4
    assert _code_set(result, "intervention-spectrum")["codes"][0]["session_tally"]["n_units"] == 4


# --------------------------------------------------------------------------- intervals and bands


def test_the_same_seed_gives_the_same_report(rw):
    first = _stable(report(rw, seed=5))
    assert _stable(report(rw, seed=5)) == first
    assert first["conventions"]["ci"].endswith(f"({N_BOOT} replicates, seed 5) for agreement, alpha and AC1")


def test_no_bootstrap_gives_null_bootstrap_intervals_only(rw):
    result = report(rw, n_boot=0)
    seen = Counter()
    for path, name, stat in _statistics(result):
        if stat["estimate"] is None:
            continue
        if name in BOOTSTRAPPED:
            assert stat["ci_low"] is None and stat["ci_high"] is None, path
            seen["boot"] += 1
        elif name.startswith("icc1") or name == "cohen_kappa":
            assert stat["ci_low"] is not None, path
            seen["other"] += 1
    assert seen["boot"] > 50 and seen["other"] > 50


def _check_intervals_and_bands(result: dict) -> None:
    """Every statistic has its interval (or a reason) and, where a scale applies, a named band."""
    names = set()
    for path, name, stat in _statistics(result):
        assert {"estimate", "ci_low", "ci_high"} <= set(stat), path
        if stat["estimate"] is None:
            assert stat["reason"], path
            assert "band" not in stat, path
            continue
        names.add(name)
        if stat["ci_low"] is not None and name not in BOOTSTRAPPED and name != "icc2k":
            # F-based and asymptotic intervals contain their estimate (a percentile bootstrap
            # need not). ICC(2,k) is left out: its interval is wrong when the lower bound of
            # ICC(2,1) is below −1/(k−1) (reported; mbtcode/stats is not changed here).
            assert stat["ci_low"] - 1e-9 <= stat["estimate"] <= stat["ci_high"] + 1e-9, path
        if stat["ci_low"] is not None and name != "icc2k":
            assert stat["ci_low"] <= stat["ci_high"], path
        if name.startswith(BANDED):
            assert stat.get("band"), path
            scale = ("Koo & Li" if name.startswith("icc") else
                     "Krippendorff" if name == "krippendorff_alpha" else "Landis & Koch")
            assert stat["scale"] == scale, path
        else:
            assert "band" not in stat and "scale" not in stat, path
    assert {"icc1", "krippendorff_alpha", "cohen_kappa", "fleiss_kappa", "gwet_ac1",
            "weighted_kappa_quadratic", "percent_agreement"} <= names


# --------------------------------------------------------------------------- degenerate data


def _assert_clean(result: dict) -> None:
    json.dumps(result, allow_nan=False)
    for path, _name, stat in _statistics(result):
        for key in ("estimate", "ci_low", "ci_high"):
            value = stat.get(key)
            assert value is None or math.isfinite(value), path
        if stat["estimate"] is None:
            assert isinstance(stat.get("reason"), str) and stat["reason"], path


def test_no_double_coded_sessions(empty_world, make_session, make_assignment):
    result = report(empty_world)
    _assert_clean(result)
    assert result["sessions"] == {"total": 0, "double_coded": 0, "gold_excluded": 0}
    single = make_session(empty_world.study, _lines("single"))
    write_work(make_assignment(single, empty_world.a), {1: "EV"},
               {key[1:]: 4 for key in required_ratings(empty_world.study)})
    result = report(empty_world)
    _assert_clean(result)
    assert result["sessions"] == {"total": 1, "double_coded": 0, "gold_excluded": 0}
    assert result["raters"] == []
    for cs in result["code_sets"]:
        assert cs["overall"]["n_units"] == 0 and cs["pairs"] == []
        assert cs["overall"]["statistics"]["krippendorff_alpha"]["estimate"] is None
        assert all(c["prevalence"] is None and c["session_tally"]["n_units"] == 0 for c in cs["codes"])
        assert np.array(cs["confusion"]["matrix"]).sum() == 0
    assert result["ratings"]["means"] == [] and result["ratings"]["pairs"] == []
    assert all(e["statistics"]["icc1"]["estimate"] is None for e in result["ratings"]["items"])


def test_every_rater_used_one_code(empty_world, make_session):
    w = empty_world
    for seed in range(3):
        session = make_session(w.study, _lines(f"one code {seed}"))
        for assignment in assign_sessions(w.study, [session], [w.a, w.b], actor=None):
            write_work(assignment, {p: "EV" if p % 2 else "PE" for p in range(1, 11)},
                       {key[1:]: 4 for key in required_ratings(w.study)})
    result = report(w)
    _assert_clean(result)
    cs = _code_set(result, "intervention-spectrum")
    alpha = cs["overall"]["statistics"]["krippendorff_alpha"]
    assert alpha["estimate"] is None and "same value" in alpha["reason"]
    assert cs["overall"]["statistics"]["percent_agreement"]["estimate"] == 1.0
    assert cs["pairs"][0]["statistics"]["cohen_kappa"]["estimate"] is None
    ev = next(c for c in cs["codes"] if c["code"] == "EV")
    assert ev["prevalence"] == 1.0
    assert ev["utterance"]["statistics"]["krippendorff_alpha"]["estimate"] is None
    assert ev["session_tally"]["mean_per_session"] == 5.0
    assert ev["session_tally"]["statistics"]["icc1"]["estimate"] is None  # 5 and 5 everywhere
    assert all(c["prevalence"] == 0.0 for c in cs["codes"] if c["code"] != "EV")
    assert np.array(cs["confusion"]["matrix"])[0, 0] == 30  # 15 utterances, two codes each
    item = _item(result, "2", "adherence")
    assert item["statistics"]["icc1"]["estimate"] is None
    assert item["statistics"]["icc1"]["reason"]


def test_one_double_coded_session_only(empty_world, make_session):
    add_double_coded(empty_world, make_session, [empty_world.a, empty_world.b], seed=3)
    result = report(empty_world)
    _assert_clean(result)
    assert result["sessions"]["double_coded"] == 1
    # utterance-level reliability works with five utterances ...
    assert _code_set(result, "intervention-spectrum")["overall"]["n_units"] == 5
    # ... session-level reliability of one session does not
    item = _item(result, "2", "adherence")
    assert item["n_units"] == 1
    for name in ("icc1", "krippendorff_alpha"):
        assert item["statistics"][name]["estimate"] is None, name
    tally = _code_set(result, "intervention-spectrum")["codes"][0]["session_tally"]
    assert tally["n_units"] == 1
    assert tally["statistics"]["icc1"]["estimate"] is None
    for mean in result["ratings"]["means"]:
        assert mean["statistics"]["icc1"]["estimate"] is None
