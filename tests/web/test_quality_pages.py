"""The program quality audit pages (issue 5): list and chart, create, edit, delete.

Who may do what, CSRF on every write, validation messages (422), stale edits (409), delete
with confirmation, audit events, escaping, and the scores over time (hand-computed).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, QualityAudit
from mbtcode.services import quality_audits as qa
from tests.conftest import csrf_token_from, row_counts
from tests.web.conftest import XSS_SCRIPT

#: organization (1–6) 4, organization/team (7–10) 2, team (11–18) 3, therapist (19–20) 5:
#: mean 66/20 = 3.30, four criteria under the cut-off 3.
MIXED = {**{str(i): "4" for i in range(1, 7)}, **{str(i): "2" for i in range(7, 11)},
         **{str(i): "3" for i in range(11, 19)}, "19": "5", "20": "5"}


def url(w, path: str = "") -> str:
    return f"/studies/{w.study.id}/quality{path}"


def html(response, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:800])
    return response.get_data(as_text=True)


def token_of(browser, w) -> str:
    return csrf_token_from(browser.get(f"/studies/{w.study.id}").get_data(as_text=True))


def form(date: str = "2026-03-31", unit: str = "", note: str = "", values: dict | None = None, **extra) -> dict:
    data = {"audit_date": date, "unit": unit, "note": note, **extra}
    data.update({f"item-{k}": v for k, v in (values or {}).items()})
    return data


def actions(prefix: str = "quality_audit") -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action.like(f"{prefix}%"))
                                   .order_by(AuditEvent.id)))


def flashes(body: str) -> str:
    return " ".join(re.findall(r'<p class="flash flash-\w+"[^>]*>(.*?)</p>', body, re.S))


@pytest.fixture
def w(coding_world):
    return coding_world


@pytest.fixture
def coord(w, client_for):
    return client_for(w.coordinator)


@pytest.fixture
def audit(w):
    row = qa.create_audit(w.study, audit_date="2026-03-31", values=MIXED, note="baseline", actor=w.coordinator)
    db.session.commit()
    return row


# --------------------------------------------------------------------------- list


def test_empty_list_says_what_to_do(w, coord, client_for):
    body = html(coord.get(url(w)))
    assert "No audits yet" in body
    assert f'<a href="{url(w, "/new")}">rate the program against the quality criteria</a>' in body
    analyst = html(client_for(w.analyst).get(url(w)))
    assert "A coordinator records audits" in analyst and url(w, "/new") not in analyst


def test_list_shows_scores_and_a_chart_over_audit_dates(w, coord, audit):
    qa.create_audit(w.study, audit_date="2026-09-30", values={**MIXED, **{str(i): "4" for i in range(7, 11)}},
                    actor=w.coordinator)
    db.session.commit()
    body = html(coord.get(url(w)))
    table = re.search(r'<table class="data fid-audit-table".*?</table>', body, re.S).group(0)
    cells = [" ".join(re.sub(r"<[^>]+>", " ", r).split())
             for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>")[1], re.S)]
    # second audit: organization/team 4 instead of 2 → (24 + 16 + 24 + 10) / 20 = 3.70, none below 3
    assert cells == [
        "2026-03-31 whole program 3.30 4.00 2.00 3.00 5.00 20 of 20 0 4 yes Cora Coordinator Edit · Delete",
        "2026-09-30 whole program 3.70 4.00 4.00 3.00 5.00 20 of 20 0 0 yes Cora Coordinator Edit · Delete",
    ]
    (svg,) = re.findall(r"<svg .*?</svg>", body, re.S)
    chart = ET.fromstring(svg)
    assert chart.get("role") == "img"
    lines = [e for e in chart.iter() if e.get("class") == "cutoff-line"]
    assert float(lines[0].get("y1")) == 120.0  # 3 on 1–5: the middle of the plot (26…214)
    points = [e for e in chart.iter() if (e.get("class") or "").startswith("point")]
    assert len(points) == 2 * 5  # two audits × (overall + four levels)
    below = [e for e in chart.iter() if e.get("class") == "point below"]
    assert len(below) == 1  # the organization/team level at 2.00 in March
    assert "2026-03-31: Organization / team 2.00 (below the cut-off 3)" in ET.tostring(below[0], encoding="unicode")
    assert "style=" not in body


# --------------------------------------------------------------------------- create


def test_new_form_groups_the_twenty_criteria_by_level(w, coord):
    body = html(coord.get(url(w, "/new")))
    legends = re.findall(r'<fieldset class="fid-level">\s*<legend>(.*?) level', body)
    assert legends == ["Organization", "Organization / team", "Team", "Therapist"]
    assert len(re.findall(r'<fieldset class="fid-criterion', body)) == 20
    assert body.count('type="radio" name="item-1"') == 6  # not rated + 1…5, no N/A (not allowed)
    assert 'value="na"' not in body
    assert re.search(r'<input type="radio" name="item-3" value="3"> <strong>3</strong> '
                     r'<span class="fid-anchor">Adequate', body)
    assert 'id="audit-date" name="audit_date" type="date" required' in body
    for input_id in re.findall(r'<(?:input|textarea) id="([^"]+)"', body):
        assert f'for="{input_id}"' in body, input_id


def test_create_an_audit(w, coord):
    response = coord.post(url(w), data={"csrf_token": token_of(coord, w),
                                        **form(unit="Day unit", note="first", values={**MIXED, "20": ""})})
    assert response.status_code == 303 and response.headers["Location"].endswith(url(w))
    row = db.session.scalar(select(QualityAudit))
    assert (row.unit, row.note, len(row.ratings), row.auditor_id) == ("Day unit", "first", 19, w.coordinator.id)
    (event,) = actions()
    assert event.action == "quality_audit.create" and event.actor_id == w.coordinator.id
    assert "Audit of the Day unit on 2026-03-31 saved (19 of 20 criteria rated)." in flashes(html(coord.get(url(w))))


@pytest.mark.parametrize(("data", "messages"), [
    (form(date=""), ["enter the date of the audit"]),
    (form(date="2026-02-30"), ["'2026-02-30' is not a date: use YYYY-MM-DD"]),
    (form(values={"3": "6", "12": "na"}), [
        "criterion 3 (Collaboration with stakeholders): 6 is outside the scale: rate from 1 to 5",
        "criterion 12 (Coherent MBT framework): MBT program quality criteria does not allow"]),
])
def test_invalid_forms_are_shown_again_with_messages_and_the_values(w, coord, data, messages):
    before = row_counts()
    response = coord.post(url(w), data={"csrf_token": token_of(coord, w), **data, "note": "keep me"})
    body = html(response, 422)
    assert "The audit was not saved" in body
    for message in messages:
        assert message in body.replace("&#39;", "'")
    assert ">keep me</textarea>" in body  # what the user typed stays
    db.session.expire_all()
    assert row_counts() == before
    assert db.session.scalar(select(QualityAudit.id)) is None and not actions()


def test_a_second_audit_of_the_unit_on_that_date_is_refused(w, coord, audit):
    body = html(coord.post(url(w), data={"csrf_token": token_of(coord, w), **form(values={"1": "5"})}), 422)
    assert "there is already an audit of the whole program on 2026-03-31" in body
    assert 'aria-invalid="true" aria-describedby="audit-date-error"' in body
    assert 'name="item-1" value="5" checked' in body
    assert len(qa.list_audits(w.study)) == 1


def test_writes_without_csrf_are_refused(w, coord, audit):
    before = row_counts()
    for path, data in (("", form(date="2026-05-01")), (f"/{audit.id}", form(version="1")),
                       (f"/{audit.id}/delete", {"confirm": "yes", "version": "1"})):
        response = coord.post(url(w, path), data=data)
        assert response.status_code == 400, path
        assert "expired" in response.get_data(as_text=True)
    db.session.expire_all()
    assert row_counts() == before


# --------------------------------------------------------------------------- edit


def test_edit_form_is_prefilled_and_saves(w, coord, audit):
    body = html(coord.get(url(w, f"/{audit.id}")))
    assert 'name="version" value="1"' in body
    assert 'name="item-7" value="2" checked' in body and 'value="2026-03-31"' in body
    response = coord.post(url(w, f"/{audit.id}"), data={
        "csrf_token": token_of(coord, w), **form(note="revised", values={**MIXED, "7": "3"}), "version": "1"})
    assert response.status_code == 303
    db.session.expire_all()
    row = db.session.get(QualityAudit, audit.id)
    assert row.version == 2 and row.note == "revised"
    assert {r.item: r.value for r in row.ratings}["7"] == 3
    event = actions("quality_audit.update")[0]
    assert event.detail["new"] == {"note": "revised", "ratings": {"7": 3}}


def test_a_stale_edit_is_409_and_keeps_the_users_values(w, coord, client_for, audit):
    other = client_for(w.admin)
    assert other.post(url(w, f"/{audit.id}"), data={
        "csrf_token": token_of(other, w), **form(note="theirs", values=MIXED), "version": "1"}).status_code == 303
    response = coord.post(url(w, f"/{audit.id}"), data={
        "csrf_token": token_of(coord, w), **form(note="mine", values={**MIXED, "1": "1"}), "version": "1"})
    body = html(response, 409)
    assert "Someone else changed this audit meanwhile" in body and "<strong>not saved</strong>" in body
    conflict = re.search(r'<section class="fid-conflict".*?</section>', body, re.S).group(0)
    assert "<th scope=\"row\">Note</th><td>theirs</td><td>mine</td>" in conflict
    assert "1. Board committed to the MBT program</th><td>4</td><td>1</td>" in conflict
    assert ">mine</textarea>" in body and 'name="item-1" value="1" checked' in body
    assert 'name="version" value="2"' in body  # saving again is a conscious overwrite
    db.session.expire_all()
    row = db.session.get(QualityAudit, audit.id)
    assert (row.note, row.version) == ("theirs", 2)
    assert {r.item: r.value for r in row.ratings}["1"] == 4
    assert len(actions("quality_audit.update")) == 1


def test_edit_validation_is_422_and_changes_nothing(w, coord, audit):
    body = html(coord.post(url(w, f"/{audit.id}"), data={
        "csrf_token": token_of(coord, w), **form(date="", values=MIXED), "version": "1"}), 422)
    assert "enter the date of the audit" in body
    db.session.expire_all()
    assert db.session.get(QualityAudit, audit.id).version == 1


def test_analysts_see_an_audit_read_only(w, client_for, audit):
    browser = client_for(w.analyst)
    body = html(browser.get(url(w, f"/{audit.id}")))
    assert "<form method=\"post\" class=\"fid-audit-form\"" not in body and 'type="radio"' not in body
    assert "<th scope=\"row\">7. Team consistency and continuity</th><td class=\"num\">2</td>" in body
    index = html(browser.get(url(w)))
    assert url(w, "/new") not in index and "/delete" not in index


# --------------------------------------------------------------------------- delete


def test_delete_asks_first_then_deletes_and_logs(w, coord, audit):
    audit_id = audit.id
    page = html(coord.get(url(w, f"/{audit_id}/delete")))
    assert "Delete the audit of the <strong>whole program</strong> on <strong>2026-03-31</strong>" in page
    token = token_of(coord, w)
    unconfirmed = coord.post(url(w, f"/{audit_id}/delete"), data={"csrf_token": token, "version": "1"})
    assert unconfirmed.status_code == 303 and unconfirmed.headers["Location"].endswith(f"/{audit_id}/delete")
    assert qa.get_audit(w.study, audit_id) is not None
    stale = coord.post(url(w, f"/{audit_id}/delete"), data={"csrf_token": token, "version": "9", "confirm": "yes"})
    assert "changed by someone else" in html(stale, 409)
    assert qa.get_audit(w.study, audit_id) is not None
    done = coord.post(url(w, f"/{audit_id}/delete"), data={"csrf_token": token, "version": "1", "confirm": "yes"})
    assert done.status_code == 303
    db.session.expire_all()
    assert qa.get_audit(w.study, audit_id) is None
    (event,) = actions("quality_audit.delete")
    assert event.actor_id == w.coordinator.id and event.detail["old"]["note"] == "baseline"
    assert "Deleted the audit of the whole program on 2026-03-31" in flashes(html(coord.get(url(w))))
    assert coord.get(url(w, f"/{audit_id}")).status_code == 404


# --------------------------------------------------------------------------- access and escaping


ROUTES = [("GET", ""), ("GET", "/new"), ("POST", ""), ("GET", "/{id}"), ("POST", "/{id}"),
          ("GET", "/{id}/delete"), ("POST", "/{id}/delete")]
VIEW = {"admin", "coordinator", "analyst"}
MANAGE = {"admin", "coordinator"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_each_role_gets_only_what_it_may(w, client_for, audit, method, path):
    allowed = VIEW if (method, path) in (("GET", ""), ("GET", "/{id}")) else MANAGE
    people = {"admin": w.admin, "coordinator": w.coordinator, "analyst": w.analyst, "rater": w.rater_a,
              "outsider": w.outsider}
    audit_id = audit.id
    target = url(w, path.format(id=audit_id))
    for day, (role, user) in enumerate(people.items(), start=10):
        browser = client_for(user)
        token = csrf_token_from(browser.get("/assignments/").get_data(as_text=True))
        before = row_counts()
        db.session.expire_all()
        version = db.session.get(QualityAudit, audit_id).version
        # a fresh date and the current version: an allowed write goes through (303)
        data = {"csrf_token": token, **form(date=f"2026-06-{day}", values={"1": "5"}), "version": str(version)} \
            if method == "POST" else None
        response = browser.open(target, method=method, data=data)
        if role in allowed:
            assert response.status_code == (200 if method == "GET" else 303), (role, response.status_code)
            continue
        assert response.status_code == (404 if role == "outsider" else 403), (role, response.status_code)
        body = response.get_data(as_text=True)
        assert "Blinded study" not in body and "baseline" not in body
        db.session.expire_all()
        assert row_counts() == before, role


def test_unknown_and_foreign_audits_are_404(w, coord):
    other = qa.create_audit(w.other_study, audit_date="2026-03-31", actor=w.outsider)
    db.session.commit()
    assert coord.get(url(w, f"/{other.id}")).status_code == 404
    assert coord.get(url(w, "/424242")).status_code == 404
    token = token_of(coord, w)
    assert coord.post(url(w, f"/{other.id}/delete"), data={"csrf_token": token, "confirm": "yes",
                                                          "version": "1"}).status_code == 404
    assert qa.get_audit(w.other_study, other.id) is not None


def test_hostile_unit_and_note_are_escaped(w, coord):
    qa.create_audit(w.study, audit_date="2026-03-31", unit=XSS_SCRIPT, note=XSS_SCRIPT, values={"1": "2"},
                    actor=w.coordinator)
    db.session.commit()
    body = html(coord.get(url(w)))
    assert XSS_SCRIPT not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    for svg in re.findall(r"<svg .*?</svg>", body, re.S):
        ET.fromstring(svg)  # well-formed with the unit in its title
    audit_id = qa.list_audits(w.study)[0].id
    page = html(coord.get(url(w, f"/{audit_id}")))
    assert XSS_SCRIPT not in page
