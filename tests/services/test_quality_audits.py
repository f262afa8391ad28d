"""Program quality audits (mbtcode/services/quality_audits.py): the instrument, validation,
optimistic versioning, audit events and the scores over time (hand-computed)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, QualityAudit, QualityAuditRating, SchemeVersion
from mbtcode.services import quality_audits as qa
from tests.conftest import row_counts


@pytest.fixture
def study(make_study):
    return make_study("Audited program")


@pytest.fixture
def coordinator(make_user):
    return make_user("coordinator", name="Cora Auditor")


def values(spec: dict[range | tuple, int | str]) -> dict[str, str]:
    """{range(1, 7): 4, …} → {"1": "4", …}."""
    out = {}
    for keys, v in spec.items():
        for k in keys:
            out[str(k)] = str(v)
    return out


#: organization (1–6) 4, organization/team (7–10) 2, team (11–18) 3, therapist (19–20) 5.
MIXED = values({range(1, 7): 4, range(7, 11): 2, range(11, 19): 3, range(19, 21): 5})


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_the_default_instrument_is_the_shipped_program_quality_list(study):
    chosen = qa.program_instrument(study)
    assert chosen.version.key == "mbt-program-quality"
    inst = chosen.instrument
    assert inst.target == "program" and (inst.scale_min, inst.scale_max, inst.cutoff) == (1, 5, 3)
    assert len(inst.items) == 20 and not inst.allow_na
    assert [lv.id for lv in inst.levels] == ["organization", "organization-team", "team", "therapist"]


def test_create_stores_the_values_and_writes_an_audit_event(study, coordinator):
    row = qa.create_audit(study, audit_date="2026-03-31", unit="  Day   unit ", note="first audit",
                          values={**MIXED, "20": ""}, actor=coordinator)
    db.session.commit()
    assert (row.audit_date, row.unit, row.note, row.version) == (date(2026, 3, 31), "Day unit", "first audit", 1)
    assert row.instrument == "mbt-program-quality" and row.auditor_id == coordinator.id
    stored = {r.item: r.value for r in row.ratings}
    assert len(stored) == 19 and "20" not in stored and stored["7"] == 2  # "" = not rated
    (event,) = events("quality_audit.create")
    assert (event.actor_id, event.entity, event.entity_id, event.study_id) == (coordinator.id, "quality_audit",
                                                                              row.id, study.id)
    new = event.detail["new"]
    assert new["audit_date"] == "2026-03-31" and new["unit"] == "Day unit" and new["ratings"]["19"] == 5
    assert new["scheme"].startswith("mbt-program-quality@")


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"audit_date": ""}, "audit_date", "enter the date of the audit"),
    ({"audit_date": "31.03.2026"}, "audit_date", "'31.03.2026' is not a date: use YYYY-MM-DD"),
    ({"audit_date": "0202-03-01"}, "audit_date", "not a plausible audit date"),
    ({"values": {"3": "6"}}, "item-3", "criterion 3 (Collaboration with stakeholders): 6 is outside the scale: "
                                       "rate from 1 to 5"),
    ({"values": {"1": "0"}}, "item-1", "0 is outside the scale"),
    ({"values": {"1": "four"}}, "item-1", "'four' is not a rating: choose a whole number from 1 to 5"),
    ({"values": {"1": "٣"}}, "item-1", "is not a rating"),  # an Arabic-Indic three
    ({"values": {"2": "na"}}, "item-2", "does not allow 'not applicable'"),
    ({"values": {"99": "3"}}, "items", "has no criterion '99'"),
    ({"unit": "x" * 101}, "unit", "at most 100 characters"),
    ({"note": "n" * 5001}, "note", "at most 5,000 characters"),
])
def test_invalid_audits_are_refused_with_a_message_per_field(study, coordinator, kwargs, field, message):
    before = row_counts()
    args = {"audit_date": "2026-03-31", "values": {}, **kwargs}
    with pytest.raises(qa.AuditInvalid) as caught:
        qa.create_audit(study, actor=coordinator, **args)
    assert message in caught.value.errors[field]
    db.session.rollback()
    assert row_counts() == before


def test_one_audit_per_unit_and_date(study, coordinator):
    qa.create_audit(study, audit_date="2026-03-31", values=MIXED, actor=coordinator)
    qa.create_audit(study, audit_date="2026-03-31", unit="Day unit", actor=coordinator)  # another unit
    qa.create_audit(study, audit_date="2026-04-01", actor=coordinator)  # another date
    db.session.commit()
    with pytest.raises(qa.AuditInvalid) as caught:
        qa.create_audit(study, audit_date="2026-03-31", unit=" ", actor=coordinator)
    assert caught.value.errors["audit_date"] == (
        "there is already an audit of the whole program on 2026-03-31: open that one, or choose "
        "another date or unit")


def test_audits_of_two_studies_do_not_clash(make_study, coordinator):
    a, b = make_study("A"), make_study("B")
    qa.create_audit(a, audit_date="2026-03-31", actor=coordinator)
    qa.create_audit(b, audit_date="2026-03-31", actor=coordinator)
    db.session.commit()
    assert qa.list_audits(a)[0].study_id == a.id and len(qa.list_audits(b)) == 1
    assert qa.get_audit(a, qa.list_audits(b)[0].id) is None


def test_update_changes_values_bumps_the_version_and_logs_only_the_changes(study, coordinator):
    row = qa.create_audit(study, audit_date="2026-03-31", values=MIXED, actor=coordinator)
    db.session.commit()
    changed = {**MIXED, "7": "3", "20": ""}
    qa.update_audit(row, expected_version=1, audit_date="2026-03-31", unit="", note="revised",
                    values=changed, actor=coordinator)
    db.session.commit()
    assert row.version == 2 and row.note == "revised"
    assert {r.item: r.value for r in row.ratings}["7"] == 3 and "20" not in {r.item for r in row.ratings}
    (event,) = events("quality_audit.update")
    assert event.detail == {"old": {"note": "", "ratings": {"7": 2, "20": 5}},
                            "new": {"note": "revised", "ratings": {"7": 3, "20": None}}}


def test_a_ratings_only_change_makes_other_open_forms_stale(study, coordinator):
    row = qa.create_audit(study, audit_date="2026-03-31", values=MIXED, actor=coordinator)
    db.session.commit()
    qa.update_audit(row, expected_version=1, audit_date="2026-03-31", values={**MIXED, "1": "5"},
                    actor=coordinator)
    db.session.commit()
    assert row.version == 2
    with pytest.raises(qa.StaleAudit):
        qa.update_audit(row, expected_version=1, audit_date="2026-03-31", values={**MIXED, "1": "1"},
                        actor=coordinator)
    db.session.rollback()
    db.session.expire_all()
    assert {r.item: r.value for r in db.session.get(QualityAudit, row.id).ratings}["1"] == 5


def test_an_unchanged_save_writes_nothing(study, coordinator):
    row = qa.create_audit(study, audit_date="2026-03-31", values=MIXED, note="n", actor=coordinator)
    db.session.commit()
    qa.update_audit(row, expected_version=1, audit_date="2026-03-31", note="n", values=MIXED, actor=coordinator)
    db.session.commit()
    assert row.version == 1 and not events("quality_audit.update")


def test_update_may_not_move_onto_another_audits_unit_and_date(study, coordinator):
    qa.create_audit(study, audit_date="2026-03-31", actor=coordinator)
    other = qa.create_audit(study, audit_date="2026-09-30", actor=coordinator)
    db.session.commit()
    with pytest.raises(qa.AuditInvalid) as caught:
        qa.update_audit(other, expected_version=1, audit_date="2026-03-31", actor=coordinator)
    assert "already an audit of the whole program on 2026-03-31" in caught.value.errors["audit_date"]
    # its own date is no clash
    qa.update_audit(other, expected_version=1, audit_date="2026-09-30", note="x", actor=coordinator)


def test_delete_removes_the_audit_and_its_ratings_and_logs_them(study, coordinator):
    row = qa.create_audit(study, audit_date="2026-03-31", values=MIXED, actor=coordinator)
    db.session.commit()
    audit_id = row.id
    with pytest.raises(qa.StaleAudit):
        qa.delete_audit(row, expected_version=7, actor=coordinator)
    qa.delete_audit(row, expected_version=1, actor=coordinator)
    db.session.commit()
    assert db.session.get(QualityAudit, audit_id) is None
    assert db.session.scalar(select(func.count()).select_from(QualityAuditRating)) == 0
    (event,) = events("quality_audit.delete")
    assert event.entity_id == audit_id and event.detail["old"]["ratings"]["20"] == 5


def test_scores_over_time_match_the_hand_computation(study, coordinator):
    first = qa.create_audit(study, audit_date="2026-03-31", values=MIXED, actor=coordinator)
    # a partial audit: five criteria, one below the cut-off 3
    second = qa.create_audit(study, audit_date="2026-09-30", values={"1": "5", "2": "4", "11": "2", "19": "3",
                                                                    "20": "4"}, actor=coordinator)
    empty = qa.create_audit(study, audit_date="2026-10-01", unit="Day unit", actor=coordinator)
    db.session.commit()
    (series,) = qa.audit_series(qa.list_audits(study))
    assert series.units == ["", "Day unit"]
    by_id = {s.audit.id: s for s in series.scores}
    s = by_id[first.id]
    # (6·4 + 4·2 + 8·3 + 2·5) / 20 = 66 / 20
    assert s.mean == pytest.approx(3.3) and (s.n_items, s.n_na, s.n_below_cutoff) == (20, 0, 4)
    assert s.adequate is True
    assert s.level_means == {"organization": 4, "organization-team": 2, "team": 3, "therapist": 5}
    s = by_id[second.id]
    # (5 + 4 + 2 + 3 + 4) / 5 = 3.6; organization (5 + 4) / 2; team 2; therapist (3 + 4) / 2
    assert s.mean == pytest.approx(3.6) and (s.n_items, s.n_below_cutoff) == (5, 1)
    assert s.level_means == {"organization": 4.5, "organization-team": None, "team": 2, "therapist": 3.5}
    s = by_id[empty.id]
    assert (s.mean, s.n_items, s.adequate) == (None, 0, None)


def test_a_missing_program_scheme_is_registered_when_the_first_audit_is_recorded(study, coordinator):
    db.session.execute(db.delete(SchemeVersion).where(SchemeVersion.key == "mbt-program-quality"))
    db.session.commit()
    assert qa.program_instrument(study) is None  # page views do not write
    row = qa.create_audit(study, audit_date="2026-03-31", values=MIXED, actor=coordinator)
    db.session.commit()
    assert row.scheme_version.key == "mbt-program-quality"
    assert "scheme.add" in [e.action for e in db.session.scalars(select(AuditEvent))]


def test_known_units_are_the_sites_and_teams_of_the_sessions(study, import_files):
    import_files(study, {"a.txt": "T: one\nP: two\n", "b.txt": "T: three\nP: four\n"},
                 manifest="file,site,team\na.txt,North,Day unit\nb.txt,South,\n")
    assert qa.known_units(study) == ["Day unit", "North", "South"]
    assert qa.unit_label("") == "whole program" and qa.unit_label("North") == "North"
