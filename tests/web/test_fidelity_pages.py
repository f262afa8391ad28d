"""The fidelity dashboard and therapist pages (issue 5): figures, flags, charts, access.

A small study, rated by hand-chosen values, so every figure on the pages can be computed by
hand (the computations are in the comments):

* TH-A: four sessions, every MBT-ACS rating 5, 5, 3, 3 (in date order), therapist turns all
  coded EV (level 1), patient turns MENT;
* TH-B: two sessions, one rated 6 with hand-picked codes (responsiveness), one not rated;
* the world's own session (no therapist) is not rated either.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pytest

from mbtcode.extensions import db
from mbtcode.models import Participant, SessionParticipant
from tests.conftest import code_everything, csrf_token_from, rate_everything
from tests.web.conftest import XSS_SCRIPT

#: The session of TH-B with hand-picked codes: (speaker, text, code).
B1_SCRIPT = [
    ("T", "Welcome back.", "CLA"),  # level 2
    ("P", "He hates me, I know it.", "PE"),
    ("T", "That sounds painful.", "EV"),  # recommended for PE, level 1
    ("P", "Everyone is against me.", "PE"),
    ("T", "That is not true.", "ARG"),  # iatrogenic for PE, non-MBT
    ("P", "Only if he calls will I believe it.", "TM"),
    ("T", "Just call him.", "ADV"),  # iatrogenic for TM, non-MBT
]
MANIFEST = """file,label,therapist,patient,date,team
a1.txt,TH-A/P1 #1,TH-A,P1,2026-01-10,Red
a2.txt,TH-A/P1 #2,TH-A,P1,2026-02-10,Red
a3.txt,TH-A/P2 #1,TH-A,P2,2026-03-10,Red
a4.txt,TH-A/P2 #2,TH-A,P2,2026-04-10,Red
b1.txt,TH-B/P3 #1,TH-B,P3,2026-02-01,Blue
b2.txt,TH-B/P3 #2,TH-B,P3,2026-05-01,Blue
"""
A_VALUES = {"a1.txt": "5", "a2.txt": "5", "a3.txt": "3", "a4.txt": "3"}


@dataclass
class FidelityWorld:
    w: Any
    sessions: dict[str, Any]

    @property
    def study(self):
        return self.w.study

    def url(self, path: str = "") -> str:
        return f"/studies/{self.w.study.id}/fidelity{path}"


def _submit_with_codes(assignment, rater, script) -> None:
    from mbtcode.services.assignments import submit
    from mbtcode.services.coding import record_code
    from mbtcode.services.sessions import all_utterances

    for u, (_speaker, _text, code) in zip(all_utterances(assignment.session), script, strict=True):
        record_code(assignment, u, code, expected_version=0, actor=rater)
    rate_everything(assignment, rater, "6")
    assert submit(assignment, actor=rater).complete
    db.session.commit()


@pytest.fixture
def fw(coding_world, import_files) -> FidelityWorld:
    from mbtcode.services.assignments import assign_sessions, submit
    from tests.conftest import transcript_text

    w = coding_world
    files = {name: transcript_text(6) for name in ("a1.txt", "a2.txt", "a3.txt", "a4.txt", "b2.txt")}
    files["b1.txt"] = "".join(f"{s}: {text}\n" for s, text, _ in B1_SCRIPT)
    imported = import_files(w.study, files, manifest=MANIFEST)
    by_label = {s.label: s for s in imported}
    sessions = {name: by_label[label] for name, label in
                (line.split(",")[:2] for line in MANIFEST.strip().splitlines()[1:])}
    for name, value in A_VALUES.items():
        (a,) = assign_sessions(w.study, [sessions[name]], [w.rater_a], actor=w.coordinator)
        db.session.commit()
        code_everything(a, w.rater_a)
        rate_everything(a, w.rater_a, value)
        assert submit(a, actor=w.rater_a).complete
        db.session.commit()
    (b,) = assign_sessions(w.study, [sessions["b1.txt"]], [w.rater_a], actor=w.coordinator)
    db.session.commit()
    _submit_with_codes(b, w.rater_a, B1_SCRIPT)
    return FidelityWorld(w, sessions)


def html(response) -> str:
    assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:800])
    return response.get_data(as_text=True)


def text_of(fragment: str) -> str:
    """Visible text of an HTML fragment, white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


def section(body: str, element_id: str) -> str:
    match = re.search(rf'<(table|section)[^>]*id="{element_id}".*?</\1>', body, re.S)
    assert match, f"no #{element_id}"
    return match.group(0)


def rows(table: str) -> list[str]:
    body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
    return [text_of(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def svgs(body: str) -> list[ET.Element]:
    found = re.findall(r"<svg .*?</svg>", body, re.S)
    return [ET.fromstring(s) for s in found]


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


# --------------------------------------------------------------------------- dashboard figures


def test_dashboard_shows_hand_computed_means_flags_and_groups(fw, client_for):
    body = html(client_for(fw.w.coordinator).get(fw.url()))
    assert "<strong>5 of 7</strong> session(s) scored" in body
    # Study means over 5, 5, 3, 3, 6: 22/5 = 4.40; sd √(7.2/4) = 1.342, se 0.6,
    # t(4) = 2.7764 → ± 1.666 → [2.73, 6.07]. Every item has the session's value, so
    # adherence and competence agree.
    means = rows(section(body, "study-means"))
    assert means == ["Adherence 4.40 [2.73, 6.07] 5 yes", "Competence / quality 4.40 [2.73, 6.07] 5 yes"]

    therapists = rows(section(body, "therapists"))
    assert [r.split()[0] for r in therapists] == ["TH-A", "TH-B"]  # flagged first
    # TH-A: 5, 5, 3, 3 → mean 4.00, sd √(4/3), se 0.577, t(3) = 3.1824 → ± 1.837 → [2.16, 5.84];
    # slope −0.8 per session, SSE 0.8, se √(0.4/5) = 0.283, t(2) = 4.3027 → ± 1.217 →
    # [−2.02, +0.42] (includes 0: no "trending down"); last three 3.67 < 4: below cut-off.
    th_a = therapists[0]
    assert th_a.startswith("TH-A 4 2026-04-10 4.00 [2.16, 5.84] 4.00 [2.16, 5.84] −0.80 [−2.02, +0.42]")
    assert "Adherence: below cut-off mean 3.67 over the last 3 scored session(s) is below the cut-off 4" in th_a
    assert "Competence / quality: below cut-off" in th_a and "trending down" not in th_a
    # TH-B: one scored session of two, 6.00 without an interval, no trend, no flag.
    assert therapists[1] == ("TH-B 1 of 2 2026-02-01 6.00 (no interval: n = 1) 6.00 (no interval: n = 1) "
                             "— needs 3 scored sessions — needs 3 scored sessions none")
    assert re.search(r'<tr class="fid-flagged">\s*<th scope="row"><a href="[^"]+/therapists/TH-A">', body)
    attention = re.search(r'<section class="fid-attention".*?</section>', body, re.S).group(0)
    assert "1 therapist(s) flagged" in attention and "TH-B" not in attention
    assert "Adherence below cut-off" in text_of(attention)

    # Per team: Red = TH-A's four sessions, Blue = TH-B's one scored session; no sites, no table.
    assert rows(section(body, "group-team")) == ["Blue 6.00 1 6.00 1", "Red 4.00 [2.16, 5.84] 4 4.00 [2.16, 5.84] 4"]
    assert 'id="group-site"' not in body

    # Sources: five single-rater sessions, two unscored (TH-B's second, the world session).
    table = re.search(r'<table class="data fid-sources-table">.*?</table>', body, re.S).group(0)
    assert "Single rater 5 the one submitted coding" in rows(table)
    assert "Not scored 2 no submitted coding yet" in rows(table)
    assert "Adjudicated consensus 0" in rows(table)[0]
    assert "All sessions 7" in text_of(table)
    assert "docs/fidelity.md" in body


def test_dashboard_profile_and_responsiveness(fw, client_for):
    body = html(client_for(fw.w.analyst).get(fw.url()))
    levels = rows(section(body, "levels-1-table"))
    # Whole study: 12 EV (TH-A) + CLA, EV, ARG, ADV (TH-B) = 16 therapist turns:
    # level 1 13/16 = 81%, level 2 1/16 = 6%, levels 3 and 4 none, non-MBT 2/16.
    assert levels[0].startswith("Whole study 81% 6% 0% 0%") and levels[0].endswith(" 16")
    assert levels[1] == "TH-A 100% 0% 0% 0% 0% 12"
    assert levels[2] == "TH-B 25% 25% 0% 0% 50% 4"
    # Responsiveness (TH-B's session): PE answered by EV (recommended) and ARG (iatrogenic);
    # TM by ADV (iatrogenic); MENT is no nonmentalizing mode.
    resp = rows(section(body, "responsiveness-table"))
    assert resp == [
        "Psychic equivalence 50% 0% 50% 2 EV, EXP ARG, CON, COG",
        "Teleological mode 0% 0% 100% 1 EV, EXP, AFF ADV",
        "All nonmentalizing modes 33% 0% 67% 3",
    ]
    charts = svgs(body)
    assert len(charts) == 2 and all(c.get("role") == "img" for c in charts)
    assert charts[1].find("{http://www.w3.org/2000/svg}title").text == "Mode-contingent responsiveness, whole study"
    assert "style=" not in body and "<script>" not in body.split("</head>")[1]


# --------------------------------------------------------------------------- therapist page


def test_therapist_page_chart_has_the_cutoff_below_points_and_trend(fw, client_for):
    body = html(client_for(fw.w.coordinator).get(fw.url("/therapists/TH-A")))
    assert "<h1>Therapist TH-A" in body
    summary = rows(section(body, "therapist-means"))
    assert summary[0].startswith("Adherence 4.00 [2.16, 5.84] 4 −0.80 [−2.02, +0.42] Adherence: below cut-off")
    adherence, competence, levels = svgs(body)  # no responsiveness: TH-A has no nonmentalizing turns
    assert levels.get("id") == "levels-1"
    assert adherence.get("aria-labelledby") == "scores-adherence-title"
    assert adherence.find("{http://www.w3.org/2000/svg}title").text == "Adherence of TH-A per session"
    (cutoff,) = by_class(adherence, "cutoff-line")
    assert float(cutoff.get("y1")) == float(cutoff.get("y2")) == 120.0  # 4 on 1–7: the middle of 26…214
    assert len(by_class(adherence, "point")) == 4
    below = by_class(adherence, "below")
    assert len(below) == 2
    assert [b.find("{http://www.w3.org/2000/svg}title").text for b in below] == [
        "TH-A/P2 #1, 2026-03-10: Adherence 3.00 (below the cut-off 4)",
        "TH-A/P2 #2, 2026-04-10: Adherence 3.00 (below the cut-off 4)"]
    # OLS: y = 6 − 0.8·x → 5.2 at x 1 (y 26 + 1.8/6·188 = 82.4), 2.8 at x 4 (157.6)
    (trend,) = by_class(adherence, "trend-line")
    assert (float(trend.get("y1")), float(trend.get("y2"))) == (82.4, 157.6)
    ticks = [t.text for t in by_class(adherence, "tick-label")]
    assert "2026-01-10" in ticks and "2026-04-10" in ticks
    # The sessions table, in date order, with the source and the cells below the cut-off marked.
    sessions = rows(section(body, "therapist-sessions"))
    assert sessions[0] == ("2026-01-10 TH-A/P1 #1 — Single rater 1 5.00 5.00 5.0 5.0 "
                           "Adherence: yes; Competence / quality: yes")
    assert sessions[3].startswith("2026-04-10 TH-A/P2 #2 — Single rater 1 3.00 3.00 3.0 3.0 Adherence: no")
    assert body.count('class="num fid-below"') == 4
    assert f'href="/studies/{fw.study.id}/sessions/{fw.sessions["a1.txt"].id}"' in body  # coordinators read


def test_therapist_page_of_a_partly_rated_therapist_and_the_analyst_view(fw, client_for):
    body = html(client_for(fw.w.analyst).get(fw.url("/therapists/TH-B")))
    sessions = rows(section(body, "therapist-sessions"))
    assert sessions == [
        "2026-02-01 TH-B/P3 #1 — Single rater 1 6.00 6.00 6.0 6.0 Adherence: yes; Competence / quality: yes",
        "2026-05-01 TH-B/P3 #2 — Not scored 0 — — — — Adherence: —; Competence / quality: —",
    ]
    assert "/sessions/" not in body  # analysts never read transcripts
    assert rows(section(body, "levels-1-table")) == ["TH-B 25% 25% 0% 0% 50% 4"]
    assert rows(section(body, "responsiveness-table"))[-1] == "All nonmentalizing modes 33% 0% 67% 3"
    assert len(by_class(svgs(body)[0], "trend-line")) == 0  # one session: no trend


def test_unknown_therapists_and_patients_are_404(fw, client_for):
    browser = client_for(fw.w.coordinator)
    assert browser.get(fw.url("/therapists/TH-Z")).status_code == 404
    assert browser.get(fw.url("/therapists/P1")).status_code == 404  # a patient code


def test_codes_with_a_slash_or_markup_are_encoded_and_escaped(fw, client_for):
    for code in ("TH/7", XSS_SCRIPT):
        p = Participant(study_id=fw.study.id, kind="therapist", code=code)
        db.session.add(p)
        db.session.flush()
        db.session.add(SessionParticipant(session_id=fw.sessions["a1.txt"].id, participant_id=p.id))
    db.session.commit()
    browser = client_for(fw.w.coordinator)
    dashboard = html(browser.get(fw.url()))
    assert "<script>alert(1)</script>" not in dashboard
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dashboard
    assert 'href="/studies/%d/fidelity/therapists/%%3Cscript%%3Ealert(1)%%3C/script%%3E"' % fw.study.id in dashboard
    assert f'href="/studies/{fw.study.id}/fidelity/therapists/TH/7"' in dashboard
    page = html(browser.get(fw.url("/therapists/%3Cscript%3Ealert(1)%3C/script%3E")))
    assert "<script>alert(1)" not in page
    titles = [chart.find("{http://www.w3.org/2000/svg}title").text for chart in svgs(page)]  # well-formed
    assert titles[:2] == [f"Adherence of {XSS_SCRIPT} per session",  # the code as text
                          f"Competence / quality of {XSS_SCRIPT} per session"]
    assert titles[2].startswith(f"Spectrum level profile of {XSS_SCRIPT}: ")
    slash = html(browser.get(fw.url("/therapists/TH/7")))
    assert "<h1>Therapist TH/7" in slash and "5.00" in slash


# --------------------------------------------------------------------------- empty states


def test_a_study_without_submitted_ratings_says_what_to_do(coding_world, client_for):
    w = coding_world
    body = html(client_for(w.coordinator).get(f"/studies/{w.study.id}/fidelity"))
    assert "No submitted ratings yet" in body
    assert f'href="/studies/{w.study.id}">assign sessions to raters</a>' in body
    assert "Not scored 1 no submitted coding yet" in rows(
        re.search(r'<table class="data fid-sources-table">.*?</table>', body, re.S).group(0))
    assert "<svg" not in body
    analyst = html(client_for(w.analyst).get(f"/studies/{w.study.id}/fidelity"))
    assert "a coordinator assigns sessions to raters" in analyst


def test_a_therapist_without_scored_sessions(coding_world, client_for):
    w = coding_world
    p = Participant(study_id=w.study.id, kind="therapist", code="TH-NEW")
    db.session.add(p)
    db.session.flush()
    db.session.add(SessionParticipant(session_id=w.session.id, participant_id=p.id))
    db.session.commit()
    browser = client_for(w.coordinator)
    body = html(browser.get(f"/studies/{w.study.id}/fidelity/therapists/TH-NEW"))
    assert "No scored session yet" in body and "TH-NEW has 1 session(s) in this study" in body
    dashboard = html(browser.get(f"/studies/{w.study.id}/fidelity"))
    assert "TH-NEW" in dashboard  # listed although not scored
    db.session.add(Participant(study_id=w.study.id, kind="therapist", code="TH-NONE"))  # no session at all
    db.session.commit()
    body = html(browser.get(f"/studies/{w.study.id}/fidelity/therapists/TH-NONE"))
    # one clear message, not "0 session(s) … none with a submitted rating" beside "no sessions"
    assert "No sessions yet" in body and body.count("TH-NONE has no sessions in this study") == 1
    assert "session(s)" not in body and "No scored session yet" not in body
    assert 'id="therapist-sessions"' not in body and "Spectrum level profile" not in body


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize("path", ["", "/therapists/TH-A"])
def test_who_may_see_the_fidelity_pages(fw, client, client_for, path):
    w = fw.w
    expected = {w.admin: 200, w.coordinator: 200, w.analyst: 200, w.rater_a: 403, w.rater_b: 403,
                w.outsider: 404}
    for user, status in expected.items():
        response = client_for(user).get(fw.url(path))
        assert response.status_code == status, (user.name, response.status_code)
        if status != 200:
            body = response.get_data(as_text=True)
            assert "TH-A" not in body and "4.00" not in body and "Blinded study" not in body
    anonymous = client.get(fw.url(path))
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/auth/login")
    assert client.get(fw.url(path), headers={"HX-Request": "true"}).status_code == 401


def test_pages_refuse_writes(fw, client_for):
    browser = client_for(fw.w.coordinator)
    token = csrf_token_from(browser.get(f"/studies/{fw.study.id}").get_data(as_text=True))
    for path in ("", "/therapists/TH-A"):
        assert browser.post(fw.url(path), data={"csrf_token": token}).status_code == 405


def test_study_page_links_for_coordinators_and_analysts_never_for_raters(fw, client_for):
    w = fw.w
    for user in (w.coordinator, w.analyst, w.admin):
        body = html(client_for(user).get(f"/studies/{w.study.id}"))
        nav = re.search(r'<nav class="study-tools" aria-label="Fidelity">.*?</nav>', body, re.S).group(0)
        assert f'href="/studies/{w.study.id}/fidelity"' in nav and f'href="/studies/{w.study.id}/quality"' in nav
    rater = client_for(w.rater_a)
    pages = [f"/studies/{w.study.id}", "/assignments/", "/studies/", f"/assignments/{w.a.id}",
             f"/assignments/{w.a.id}/rating/"]
    for page in pages:
        body = html(rater.get(page))
        assert "/fidelity" not in body and "/quality" not in body and "Fidelity" not in body, page


def test_another_scheme_gets_the_same_pages_without_a_cutoff(make_study, import_files, make_member, make_user,
                                                             client_for):
    """Nothing MBT-specific: a MITI-style study (two dimensions, no cut-off, levelled codes)."""
    from mbtcode.services.assignments import assign_sessions, submit
    from mbtcode.services.coding import record_code
    from mbtcode.services.schemes import as_scheme
    from mbtcode.services.sessions import all_utterances

    study = make_study("MI study", scheme="miti-example")
    (session,) = import_files(study, {"m.txt": "T: What brings you here?\nP: My wife.\nT: Tell me more.\n"},
                              manifest="file,therapist,date\nm.txt,MI-1,2026-01-05\n")
    rater, coordinator = make_user("rater"), make_user("coordinator")
    make_member(study, rater, "rater")
    make_member(study, coordinator, "coordinator")
    (a,) = assign_sessions(study, [session], [rater], actor=None)
    db.session.commit()
    codes = as_scheme(study.scheme_version).code_sets[0].codes
    for u in all_utterances(session):
        if u.role == "therapist":
            record_code(a, u, codes[0].id, expected_version=0, actor=rater)
    rate_everything(a, rater, "3")
    assert submit(a, actor=rater).complete
    db.session.commit()
    browser = client_for(coordinator)
    body = html(browser.get(f"/studies/{study.id}/fidelity"))
    assert rows(section(body, "study-means")) == ["Technical 3.00 (no interval: n = 1) 1",
                                                  "Relational 3.00 (no interval: n = 1) 1"]
    assert "cut-off" not in text_of(section(body, "study-means"))
    assert rows(section(body, "therapists"))[0].startswith("MI-1 1 2026-01-05 3.00")
    page = html(browser.get(f"/studies/{study.id}/fidelity/therapists/MI-1"))
    charts = svgs(page)
    assert charts and not by_class(charts[0], "cutoff-line") and not by_class(charts[0], "below")
