"""The MBT-ACS rating form over HTTP: fields, saves, means out of band, no-JS, escaping."""

from __future__ import annotations

import re

import markupsafe
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import ItemRating
from mbtcode.services.ratings import ratings_of, rationales_of
from tests.conftest import (
    check_each,
    code_everything,
    rate_everything,
    row_counts,
)
from tests.web.conftest import XSS_ATTR, XSS_SCRIPT, page_token


def _url(w, item, dimension, assignment=None):
    return f"/assignments/{(assignment or w.a).id}/rating/mbt-acs/{item}/{dimension}"


def _rate(browser, w, item, dimension, value, *, version=0, htmx=True, token=None):
    headers = {"HX-Request": "true"} if htmx else {}
    return browser.post(_url(w, item, dimension), data={
        "value": value, "version": str(version), "csrf_token": token or page_token(browser)},
        headers=headers)


def _why(browser, w, item, text, *, version=0, htmx=True):
    headers = {"HX-Request": "true"} if htmx else {}
    return browser.post(_url(w, item, "rationale"), data={
        "text": text, "version": str(version), "csrf_token": page_token(browser)}, headers=headers)


def _stored(w, item, dimension):
    db.session.expire_all()
    row = ratings_of(w.a).get(("mbt-acs", item, dimension))
    return None if row is None else (row.value, row.not_applicable, row.version)


def _text(response) -> str:
    return response.get_data(as_text=True)


# --------------------------------------------------------------------------- the form


def test_form_has_every_rated_dimension_na_and_a_rationale_per_item(w, rater):
    page = _text(rater.get(f"/assignments/{w.a.id}/rating/"))
    fields = re.findall(r'<form class="dimension autosave" id="r-mbt-acs-([^"]+)-(adherence|competence)"',
                        page)
    assert ("1", "competence") in fields and ("1", "adherence") not in fields
    assert ("4", "adherence") not in fields and ("5", "adherence") not in fields
    assert ("2", "adherence") in fields and ("17", "competence") in fields
    assert ("overall_adherence", "adherence") in fields
    assert ("overall_competence", "competence") in fields
    assert len(fields) == 33
    assert page.count('value="na"') == 33
    assert len(re.findall(r'<form class="rationale autosave"', page)) == 17
    form = re.search(r'<form class="dimension autosave" id="r-mbt-acs-2-adherence".*?</form>',
                     page, re.DOTALL).group(0)
    assert re.findall(r'type="radio" name="value" value="([^"]+)"', form) == [
        "1", "2", "3", "4", "5", "6", "7", "na"]


def test_form_shows_item_names_and_descriptions(w, rater):
    page = _text(rater.get(f"/assignments/{w.a.id}/rating/"))
    assert "1. Engagement, interest and warmth" in page
    assert "Overall adherence" in page and "Overall competence" in page


def test_form_shows_the_raters_saved_values(w, rater):
    _rate(rater, w, "2", "adherence", "5")
    _rate(rater, w, "3", "competence", "na")
    page = _text(rater.get(f"/assignments/{w.a.id}/rating/"))
    two = re.search(r'id="r-mbt-acs-2-adherence".*?</form>', page, re.DOTALL).group(0)
    assert re.findall(r'value="(\w+)" checked', two) == ["5"]
    assert 'id="r-mbt-acs-2-adherence-v" value="1"' in two
    three = re.search(r'id="r-mbt-acs-3-competence".*?</form>', page, re.DOTALL).group(0)
    assert re.findall(r'value="(\w+)" checked', three) == ["na"]


# --------------------------------------------------------------------------- saving


def test_saving_a_rating_updates_version_status_and_means_out_of_band(w, rater):
    response = _rate(rater, w, "2", "adherence", "5")
    assert response.status_code == 200
    body = _text(response)
    assert "<html" not in body
    assert re.search(r'<input type="hidden" name="version" id="r-mbt-acs-2-adherence-v" value="1" '
                     r'hx-swap-oob="true">', body)
    assert 'id="r-mbt-acs-2-adherence-s"' in body and "saved" in body
    means = re.search(r'<div class="means" id="means-mbt-acs" hx-swap-oob="true".*?</div>', body,
                      re.DOTALL).group(0)
    assert "<strong>5.00</strong>" in means and "(1 of 14 items rated" in means
    assert _stored(w, "2", "adherence") == (5, False, 1)


def test_the_means_in_the_response_follow_hand_worked_numbers(w, rater):
    _rate(rater, w, "2", "adherence", "2")
    _rate(rater, w, "3", "adherence", "5")
    _rate(rater, w, "6", "adherence", "na")
    body = _text(_rate(rater, w, "7", "adherence", "6"))
    adherence = re.search(r"Mean adherence</span>\s*<strong>([^<]+)</strong>\s*"
                          r'<span class="muted">\((\d+) of (\d+)', body)
    assert adherence.groups() == ("4.33", "3", "14")  # (2 + 5 + 6) / 3; N/A left out


def test_overall_ratings_are_not_filled_in_from_the_means(w, rater):
    rate_everything(w.a, w.rater_a, "7", skip={("overall_adherence", "adherence")})
    page = _text(rater.get(f"/assignments/{w.a.id}/rating/"))
    overall = re.search(r'id="r-mbt-acs-overall_adherence-adherence".*?</form>', page, re.DOTALL).group(0)
    assert " checked" not in overall
    assert _stored(w, "overall_adherence", "adherence") is None


def test_a_bad_value_is_422_with_a_message_and_nothing_written(w, rater):
    before = row_counts()
    token = page_token(rater)

    def check(value):
        response = _rate(rater, w, "2", "adherence", value, token=token)
        assert response.status_code == 422, response.status_code
        body = _text(response)
        assert re.search(r'class="save-state bad" id="r-mbt-acs-2-adherence-s"[^>]*>[^<]*'
                         r'(whole number|outside the scale)', body), body
        assert row_counts() == before

    check_each(["-1", "8", "3.5", "NaN", "Infinity", "1e309", "\u0664", "\uff14", "4 5"], check)


def test_accepted_spellings(w, rater):
    assert _rate(rater, w, "2", "adherence", " 4 ").status_code == 200
    assert _stored(w, "2", "adherence") == (4, False, 1)
    assert _rate(rater, w, "3", "adherence", "na").status_code == 200
    assert _stored(w, "3", "adherence") == (None, True, 1)


def test_an_empty_value_clears_the_rating(w, rater):
    _rate(rater, w, "2", "adherence", "5")
    assert _rate(rater, w, "2", "adherence", "", version=1).status_code == 200
    assert _stored(w, "2", "adherence") == (None, False, 2)


def test_a_dimension_the_item_is_not_rated_for_is_404(w, rater):
    before = row_counts()
    token = page_token(rater)

    def check(path):
        response = rater.post(f"/assignments/{w.a.id}/rating/mbt-acs/{path}", data={
            "value": "4", "version": "0", "csrf_token": token}, headers={"HX-Request": "true"})
        assert response.status_code == 404, response.status_code
        assert row_counts() == before

    check_each(["1/adherence", "4/adherence", "99/competence", "2/warmth",
                "overall_adherence/competence", "99/rationale"], check)


def test_an_unknown_instrument_is_404(w, rater):
    response = rater.post(f"/assignments/{w.a.id}/rating/miti/2/adherence", data={
        "value": "4", "version": "0", "csrf_token": page_token(rater)})
    assert response.status_code == 404


def test_a_stale_rating_is_409_and_shows_the_saved_value(w, rater):
    _rate(rater, w, "2", "adherence", "5")
    _rate(rater, w, "2", "adherence", "6", version=1)
    response = _rate(rater, w, "2", "adherence", "3", version=1)
    assert response.status_code == 409
    body = _text(response)
    form = re.search(r'<form class="dimension autosave" id="r-mbt-acs-2-adherence".*?</form>', body,
                     re.DOTALL).group(0)
    assert re.findall(r'value="(\w+)" checked', form) == ["6"]      # saved
    assert "your choice was 3" in form                                 # mine
    assert _stored(w, "2", "adherence") == (6, False, 2)


def test_after_submit_a_rating_is_409_locked(w, rater):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    assert rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)}
                      ).status_code == 303
    before = row_counts()
    response = _rate(rater, w, "2", "adherence", "1", version=1)
    assert response.status_code == 409 and "locked" in _text(response)
    assert _why(rater, w, "2", "late").status_code == 409
    assert row_counts() == before
    page = _text(rater.get(f"/assignments/{w.a.id}/rating/"))
    assert page.count("<fieldset disabled>") == 33


def test_a_rating_without_csrf_token_is_400_and_writes_nothing(w, rater):
    before = row_counts()
    response = rater.post(_url(w, "2", "adherence"), data={"value": "4", "version": "0"},
                          headers={"HX-Request": "true"})
    assert response.status_code == 400 and response.headers["X-Mbtcode-Error"] == "csrf"
    assert row_counts() == before


# --------------------------------------------------------------------------- no JavaScript


def test_the_plain_form_post_redirects_back_to_the_item(w, rater):
    response = _rate(rater, w, "3", "competence", "6", htmx=False)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/assignments/{w.a.id}/rating/#item-mbt-acs-3"
    assert _stored(w, "3", "competence") == (6, False, 1)


def test_the_plain_rationale_post_redirects_back_to_the_item(w, rater):
    response = _why(rater, w, "3", "because", htmx=False)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/assignments/{w.a.id}/rating/#item-mbt-acs-3"


def test_every_field_works_without_javascript(w, rater):
    page = _text(rater.get(f"/assignments/{w.a.id}/rating/"))
    forms = re.findall(r'<form class="(?:dimension|rationale) autosave"[^>]*>', page)
    assert forms and all('method="post"' in f and 'action="/assignments/' in f for f in forms)
    assert page.count("<noscript><button type=\"submit\">Save</button></noscript>") == len(forms)


# --------------------------------------------------------------------------- rationales


def test_saving_a_rationale_keeps_the_textarea_and_updates_the_version(w, rater):
    response = _why(rater, w, "2", "curious, not knowing")
    assert response.status_code == 200
    body = _text(response)
    assert "<textarea" not in body
    assert 'id="why-mbt-acs-2-v" value="1" hx-swap-oob="true"' in body
    db.session.expire_all()
    assert rationales_of(w.a)[("mbt-acs", "2")].text == "curious, not knowing"


def test_a_stale_rationale_is_409_and_shows_the_saved_text(w, rater):
    _why(rater, w, "2", "first")
    _why(rater, w, "2", "second", version=1)
    response = _why(rater, w, "2", "mine", version=1)
    assert response.status_code == 409
    assert "“second”" in _text(response)
    db.session.expire_all()
    assert rationales_of(w.a)[("mbt-acs", "2")].text == "second"


# --------------------------------------------------------------------------- escaping


def test_a_rationale_is_escaped_in_every_fragment(w, rater):
    def check(case):
        item, payload = case
        saved = _why(rater, w, item, payload)
        conflict = _why(rater, w, item, "other", version=0)   # shows the saved text
        page = rater.get(f"/assignments/{w.a.id}/rating/")
        assert conflict.status_code == 409
        for response in (saved, conflict, page):
            body = _text(response)
            assert payload not in body and "<script>alert" not in body
        assert str(markupsafe.escape(payload)) in _text(page)
        assert str(markupsafe.escape(payload)) in _text(conflict)

    check_each([("2", XSS_SCRIPT), ("3", XSS_ATTR)], check)


def test_a_bad_value_is_escaped_in_the_conflict_message(w, rater):
    _rate(rater, w, "2", "adherence", "5")
    response = _rate(rater, w, "2", "adherence", XSS_SCRIPT, version=0)
    assert response.status_code in (409, 422)
    assert XSS_SCRIPT not in _text(response)


def test_no_rating_rows_for_the_other_rater(w, rater):
    _rate(rater, w, "2", "adherence", "5")
    assert db.session.scalars(select(ItemRating).where(ItemRating.assignment_id == w.b.id)).all() == []
