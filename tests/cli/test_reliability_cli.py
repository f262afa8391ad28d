"""``mbtcode reliability --study NAME [--json] [--boot N] [--seed S]``: JSON shape, text, errors."""

from __future__ import annotations

import json
import random

import pytest

from mbtcode.cli import main
from mbtcode.extensions import db
from mbtcode.models import ItemRating, UtteranceCode
from mbtcode.services.assignments import assign_sessions, codable_roles, required_ratings, submit
from mbtcode.services.reliability_report import reliability_report
from mbtcode.services.schemes import as_scheme
from mbtcode.services.sessions import all_utterances
from tests.conftest import row_counts

REPORT_KEYS = {"format", "study", "scheme", "generated_at", "conventions", "sessions", "raters",
               "code_sets", "ratings"}
CODE_SET_KEYS = {"id", "title", "roles", "n_sessions", "overall", "codes", "confusion", "pairs"}
SUMMARY_KEYS = {"n_units", "n_raters", "n_ratings", "level", "statistics"}
BOOTSTRAPPED = {"percent_agreement", "krippendorff_alpha", "gwet_ac1"}
STUDY = "CLI reliability study"


def _strict_json(text: str):
    """Parse JSON, refusing NaN and infinity (which ``json.loads`` would accept)."""

    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines, f"no reason on stderr; stdout was {result.stdout!r}"
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


@pytest.fixture
def cli(runner):
    """Invoke ``mbtcode ARGS...``; a crash (anything but a clean exit) fails the test."""

    def invoke(*args: str):
        result = runner.invoke(args=list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


@pytest.fixture
def study(make_study, make_session, make_user, make_member):
    """Three sessions coded, rated and submitted by two raters (rows written directly)."""
    study = make_study(STUDY)
    raters = [make_user("rater", name=n) for n in ("Ann", "Ben")]
    for r in raters:
        make_member(study, r, "rater")
    roles = codable_roles(study)
    rng = random.Random(1)
    for s in range(3):
        session = make_session(study, [f"{'T' if i % 2 == 0 else 'P'}: turn {i} of {s}" for i in range(10)])
        assignments = assign_sessions(study, [session], raters, actor=None)
        level = {key: rng.randint(2, 6) for key in required_ratings(study)}
        first = {}
        for i, assignment in enumerate(assignments):
            for u in all_utterances(session):
                choices = ["EV", "SUP", "CLA"] if u.role == "therapist" else ["PE", "PM"]
                code = first.setdefault(u.id, rng.choice(choices))
                if i and rng.random() < 0.3:
                    code = rng.choice(choices)
                db.session.add(UtteranceCode(assignment_id=assignment.id, utterance_id=u.id,
                                             code_set=roles[u.role], code=code))
            for (instrument, item, dimension), v in level.items():
                db.session.add(ItemRating(assignment_id=assignment.id, instrument=instrument,
                                          item=item, dimension=dimension,
                                          value=min(7, max(1, v + rng.choice([-1, 0, 1])))))
        db.session.commit()
        for assignment in assignments:
            assert submit(assignment, actor=assignment.rater, allow_uncoded=True).complete
        db.session.commit()
    return study


def _stable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "generated_at"}


def _statistics(node, path: str = ""):
    """(path, name, statistic) for every statistic in the report."""
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


def test_json_is_the_only_output_and_has_the_report_shape(cli, study):
    result = cli("reliability", "--study", STUDY, "--json", "--boot", "20")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report = _strict_json(result.stdout)
    assert set(report) == REPORT_KEYS
    assert report["study"] == STUDY
    assert report["sessions"] == {"total": 3, "double_coded": 3, "gold_excluded": 0}
    assert len(report["raters"]) == 2 and all(r.startswith("R") for r in report["raters"])
    assert [cs["id"] for cs in report["code_sets"]] == ["intervention-spectrum", "nonmentalizing-modes"]
    for cs in report["code_sets"]:
        assert set(cs) == CODE_SET_KEYS
        assert SUMMARY_KEYS <= set(cs["overall"])
        assert set(cs["confusion"]) == {"labels", "matrix"}
        for code in cs["codes"]:
            assert {"code", "label", "prevalence", "utterance", "session_tally"} <= set(code)
            assert SUMMARY_KEYS <= set(code["utterance"])
            assert {"n_units", "statistics"} <= set(code["session_tally"])
        for pair in cs["pairs"]:
            assert {"raters", "n_units", "percent_agreement", "statistics"} <= set(pair)
    assert set(report["ratings"]) == {"items", "means", "pairs"}
    assert len(report["ratings"]["items"]) == len(required_ratings(study)) == 33
    for entry in report["ratings"]["items"]:
        assert SUMMARY_KEYS | {"rater_design", "instrument", "item", "dimension", "label", "kind",
                               "not_applicable"} <= set(entry)
    for path, name, stat in _statistics(report):
        assert {"estimate", "ci_low", "ci_high"} <= set(stat), path
        if stat["estimate"] is None:
            assert stat["reason"], path
        elif name != "percent_agreement":  # every other statistic has a named band
            assert stat["band"] and stat["scale"], path


def test_json_equals_the_service_report(cli, study):
    result = cli("reliability", "--study", STUDY, "--json", "--boot", "15", "--seed", "4")
    assert result.exit_code == 0, result.output
    expected = json.loads(json.dumps(reliability_report(study, n_boot=15, seed=4)))
    assert _stable(_strict_json(result.stdout)) == _stable(expected)


def test_no_bootstrap_gives_null_bootstrap_intervals(cli, study):
    """--boot 0: bootstrap intervals are null; F-based and asymptotic ones are unchanged."""
    results = [cli("reliability", "--study", STUDY, "--json", "--boot", n) for n in ("0", "20")]
    assert [r.exit_code for r in results] == [0, 0]
    without, with_boot = (_strict_json(r.stdout) for r in results)
    booted = dict(((path, stat) for path, _, stat in _statistics(with_boot)))
    checked = {"boot": 0, "other": 0}
    for path, name, stat in _statistics(without):
        assert stat["estimate"] == booted[path]["estimate"], path
        if name in BOOTSTRAPPED:
            assert (stat["ci_low"], stat["ci_high"]) == (None, None), path
            if booted[path]["ci_low"] is not None:
                checked["boot"] += 1
        else:
            assert stat == booted[path], path
            checked["other"] += stat["ci_low"] is not None
    assert checked["boot"] > 20 and checked["other"] > 20
    assert "(0 replicates, seed 0)" in without["conventions"]["ci"]


def test_the_seed_makes_the_report_reproducible(cli, study):
    args = ("reliability", "--study", STUDY, "--json", "--boot", "20", "--seed", "7")
    runs = [_strict_json(cli(*args).stdout) for _ in range(2)]
    assert _stable(runs[0]) == _stable(runs[1])


def test_text_output_names_the_code_sets_codes_and_items(cli, study):
    result = cli("reliability", "--study", STUDY, "--boot", "10")
    assert result.exit_code == 0, result.output
    out = result.stdout
    scheme = as_scheme(study.scheme_version)
    assert out.startswith(f"{STUDY} (")
    assert "3 of 3 sessions double-coded, 2 raters" in out
    for code_set in scheme.code_sets:
        assert code_set.title in out
        for code in code_set.codes:
            assert f"    {code.id} " in out, code.id
    (instrument,) = [i for i in scheme.instruments if i.target == "session"]
    for item in instrument.items:
        assert f"{item.number}. {item.name}"[:40] in out, item.id
    assert "krippendorff_alpha" in out and "ICC(1)" in out
    assert "Mean adherence over items" in out
    assert "{" not in out  # not JSON


def test_text_without_double_coded_sessions(cli, make_study, make_session):
    study = make_study("Nothing coded")
    make_session(study)
    result = cli("reliability", "--study", "Nothing coded")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"Nothing coded ({study.scheme_version.key}@{study.scheme_version.revision}): 0 of 1 sessions "
        "double-coded, 0 raters",
        "No double-coded sessions with submitted work yet.",
    ]
    report = _strict_json(cli("reliability", "--study", "Nothing coded", "--json").stdout)
    assert report["sessions"]["double_coded"] == 0


def test_unknown_study_is_one_error_line(cli, make_study):
    make_study(STUDY)
    result = cli("reliability", "--study", "No such study", "--json")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert "No such study" in _error_line(result)


@pytest.mark.parametrize("args", [
    ["reliability"],  # --study is required
    ["reliability", "--study", STUDY, "--boot", "-1"],
    ["reliability", "--study", STUDY, "--boot", "many"],
    ["reliability", "--study", STUDY, "--seed", "-3"],
])
def test_bad_options_are_one_error_line(runner, args):
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert result.stdout == ""
    _error_line(result)


def test_the_report_changes_nothing(cli, study):
    before = row_counts()
    assert cli("reliability", "--study", STUDY, "--json", "--boot", "5").exit_code == 0
    assert row_counts() == before
