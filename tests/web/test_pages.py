"""Studies, sessions and transcripts in the browser: content, paging, htmx, escaping, 404s."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from mbtcode.extensions import db
from mbtcode.models import Utterance

MANIFEST = (
    "file,label,therapist,patient,date,modality,phase,session_number,language\n"
    "s1.txt,TH-01/PT-101 #14,TH-01,PT-101,2026-04-21,individual,main,14,de\n"
)
TRANSCRIPT = (
    "[00:00:05] T: Wie war Ihre Woche?\n"
    "[00:01:10] P: Schwierig.\n"
    "[01:02:03] Co-T: Was war schwierig?\n"
)
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"


def _html(client, url: str, **kwargs) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def _positions(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<li class="utterance[^"]*" id="u(\d+)"', html)]


@pytest.fixture
def study(make_study):
    return make_study("Pilot study")


@pytest.fixture
def coordinator(study, signed_in_as):
    """A coordinator of the pilot study, signed in (studies are visible to members only)."""
    return signed_in_as("coordinator", study)


@pytest.fixture
def session(study, import_files):
    (session,) = import_files(study, {"s1.txt": TRANSCRIPT}, manifest=MANIFEST,
                              speaker_map={"Co-T": "therapist"})
    return session


def _url(session) -> str:
    return f"/studies/{session.study_id}/sessions/{session.id}"


@pytest.fixture
def long_session(study, make_session):
    """A session of 7 utterances, u1…u7."""
    return make_session(study, [f"{'T' if i % 2 else 'P'}: line {i}" for i in range(1, 8)])


# --------------------------------------------------------------------------- content


def test_start_page_lists_studies_with_session_counts(client, coordinator, session, make_study,
                                                      make_member):
    make_member(make_study("Empty study"), coordinator, "coordinator")
    html = _html(client, "/", follow_redirects=True)
    assert "Pilot study" in html and "Empty study" in html
    row = re.search(r"Pilot study</a></td>.*?</tr>", html, re.S).group(0)
    assert re.search(r'<td class="num">1</td>', row)


def test_studies_list_links_to_each_study(client, coordinator, study):
    html = _html(client, "/studies/")
    assert f'href="/studies/{study.id}"' in html
    assert "mbt-individual@1" in html


def test_study_detail_shows_session_metadata(client, coordinator, session):
    html = _html(client, f"/studies/{session.study_id}")
    row = re.search(r"<tbody>.*</tbody>", html, re.S).group(0)
    for value in ("TH-01/PT-101 #14", "2026-04-21", "individual", "main", "14", "TH-01",
                  "PT-101", "de", ">3<"):
        assert value in row, value
    assert f'href="{_url(session)}"' in row


def test_study_detail_shows_speakers_with_roles(client, coordinator, session):
    html = _html(client, f"/studies/{session.study_id}")
    speakers = re.findall(r'class="speaker role-(\w+)"[^>]*>([^<]*)<', html)
    assert speakers == [("therapist", "T"), ("patient", "P"), ("therapist", "Co-T")]


def test_study_without_sessions(client, coordinator, study):
    assert "No sessions yet" in _html(client, f"/studies/{study.id}")


def _utterance_rows(html: str) -> list[tuple[str | None, ...]]:
    """(time, speaker, role, text) per utterance, read from the elements' class names."""
    rows = []
    for item in re.findall(r'<li class="utterance[^"]*" id="u\d+">(.*?)</li>', html, re.S):
        def part(cls: str) -> str | None:
            found = re.search(rf'class="{cls}(?: [^"]*)?"[^>]*>([^<]*)<', item)
            return found.group(1).strip() if found else None
        rows.append((part("time"), part("speaker"), part("role-name"), part("text")))
    return rows


def test_transcript_shows_speakers_roles_timestamps_and_text(client, coordinator, session):
    assert _utterance_rows(_html(client, _url(session))) == [
        ("0:05", "T", "therapist", "Wie war Ihre Woche?"),
        ("1:10", "P", "patient", "Schwierig."),
        ("1:02:03", "Co-T", "therapist", "Was war schwierig?"),
    ]


def test_transcript_page_shows_session_metadata(client, coordinator, session):
    html = _html(client, _url(session))
    for value in ("TH-01/PT-101 #14", "2026-04-21", "TH-01", "PT-101", "s1.txt", "3 utterances"):
        assert value in html, value


# --------------------------------------------------------------------------- paging and htmx


def test_transcript_pages(app, client, coordinator, long_session):
    app.config["TRANSCRIPT_PAGE_SIZE"] = 3
    url = _url(long_session)
    assert _positions(_html(client, url)) == [1, 2, 3]
    assert _positions(_html(client, url + "?page=2")) == [4, 5, 6]
    assert _positions(_html(client, url + "?page=3")) == [7]


def test_transcript_pager_links(app, client, coordinator, long_session):
    app.config["TRANSCRIPT_PAGE_SIZE"] = 3
    url = _url(long_session)
    html = _html(client, url + "?page=2")
    assert "Page 2 of 3 (7 utterances)" in html
    assert f'href="{url}?page=1"' in html and f'href="{url}?page=3"' in html
    assert f'hx-get="{url}?page=3"' in html
    assert 'rel="prev"' not in _html(client, url)


def test_no_pager_when_one_page_is_enough(client, coordinator, long_session):
    assert 'class="pager"' not in _html(client, _url(long_session))


@pytest.mark.parametrize("page", ["0", "-1", "abc", "", "1.5"])
def test_invalid_page_numbers_show_the_first_page(app, client, coordinator, long_session, page):
    app.config["TRANSCRIPT_PAGE_SIZE"] = 3
    assert _positions(_html(client, f"{_url(long_session)}?page={page}")) == [1, 2, 3]


@pytest.mark.parametrize("page", ["4", "99", "99999999999999999999"])
def test_page_beyond_the_end_shows_the_last_page(app, client, coordinator, long_session, page):
    app.config["TRANSCRIPT_PAGE_SIZE"] = 3
    html = _html(client, f"{_url(long_session)}?page={page}")
    assert _positions(html) == [7]
    assert "Page 3 of 3" in html


def test_htmx_request_gets_only_the_fragment(app, client, coordinator, long_session):
    app.config["TRANSCRIPT_PAGE_SIZE"] = 3
    html = _html(client, _url(long_session) + "?page=2", headers={"HX-Request": "true"})
    assert "<html" not in html and "<head" not in html
    assert html.lstrip().startswith('<section id="transcript"')
    assert _positions(html) == [4, 5, 6]


def test_plain_request_gets_the_full_page(client, coordinator, long_session):
    html = _html(client, _url(long_session))
    assert html.lstrip().startswith("<!doctype html>")
    assert '<section id="transcript"' in html


def test_boosted_htmx_request_gets_the_full_page(client, coordinator, long_session):
    html = _html(client, _url(long_session), headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in html


def test_responses_vary_on_hx_request(client, coordinator, long_session):
    response = client.get(_url(long_session))
    assert "HX-Request" in response.headers.get("Vary", "")


# --------------------------------------------------------------------------- escaping


def test_utterance_text_is_escaped(client, coordinator, study, make_session):
    session = make_session(study, [f"P: {XSS_SCRIPT}", f"T: {XSS_IMG}"])
    html = _html(client, _url(session))
    assert XSS_SCRIPT not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_speaker_label_is_escaped_everywhere(client, coordinator, study, make_session):
    # The importer refuses such labels; the pages must still escape whatever is stored.
    session = make_session(study, ["Dr X: hello", "P: hi"], speaker_map={"Dr X": "therapist"})
    db.session.execute(update(Utterance).where(Utterance.speaker == "Dr X").values(speaker=XSS_IMG))
    db.session.commit()
    for url in (f"/studies/{study.id}", _url(session)):
        html = _html(client, url)
        assert "<img src=x" not in html, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, url


def test_importer_refuses_markup_in_speaker_labels(study, plan_files):
    plan = plan_files(study, {"x.csv": f'speaker,text\n"{XSS_IMG}",hello\nP,hi\n'},
                      speaker_map={"P": "patient"})
    assert not plan.ok


def test_study_name_is_escaped_everywhere(client, coordinator, make_study, make_session,
                                          make_member):
    study = make_study(f"Study {XSS_IMG}")
    make_member(study, coordinator, "coordinator")
    session = make_session(study)
    for url in ("/studies/", f"/studies/{study.id}", _url(session)):
        html = _html(client, url)
        assert "<img src=x" not in html, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, url


def test_session_label_and_metadata_are_escaped(client, coordinator, study, import_files):
    manifest = ("file,label,therapist,patient,language\n"
                f'x.txt,"{XSS_SCRIPT}",TH-{XSS_IMG},PT-1,"{XSS_IMG}"\n')
    (session,) = import_files(study, {"x.txt": "T: hi\nP: hello\n"}, manifest=manifest)
    for url in (f"/studies/{study.id}", _url(session)):
        html = _html(client, url)
        assert XSS_SCRIPT not in html and "<img src=x" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url


def test_user_name_is_escaped(client, make_user, login, study):
    user = make_user(name=XSS_IMG)
    login(user)
    html = _html(client, "/studies/")
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


# --------------------------------------------------------------------------- not found


@pytest.mark.parametrize("path", [
    "/studies/99999999999999999999",
    "/studies/9223372036854775808",
    "/studies/2147483648",
    "/studies/abc",
    "/studies/-1",
    "/studies/0",
    "/studies/424242",
    "/studies/1/sessions/99999999999999999999",
    "/studies/1/sessions/abc",
    "/studies/1/sessions/424242",
    "/static/../instance/mbtcode.db",
    "/static/%2e%2e/instance/mbtcode.db",
    "/static/..%2finstance/mbtcode.db",
    "/instance/mbtcode.db",
    "/mbtcode.db-wal",
    "/.git/config",
    "/static/../.git/config",
])
def test_not_found(client, coordinator, study, path):
    response = client.get(path)
    assert response.status_code == 404, path
    assert b"There is nothing here" in response.data


def test_session_of_another_study_is_not_found_under_this_study(client, coordinator, study,
                                                                 make_study, make_session,
                                                                 make_member):
    other = make_study("Other")
    make_member(other, coordinator, "coordinator")
    theirs = make_session(other, ["T: secret words", "P: more"])
    mine = make_session(study)
    response = client.get(f"/studies/{study.id}/sessions/{theirs.id}")
    assert response.status_code == 404
    assert b"secret words" not in response.data
    assert client.get(_url(theirs)).status_code == 200  # the right URL works
    assert client.get(f"/studies/{study.id}/sessions/{mine.id}").status_code == 200
