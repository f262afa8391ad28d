"""The export page: who may, the zip it sends, de-identification, CSRF, headers."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pandas as pd
import pyreadstat
import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.io import export_formats as ef
from mbtcode.models import AuditEvent
from tests.conftest import csrf_token_from
from tests.services.test_exports import (
    HOSTILE_LABEL,
    RATER_EMAILS,
    RATER_NAMES,
    TEXT_TAG,
    build_world,
)


@pytest.fixture
def world(make_study, import_files, make_user, make_member):
    return build_world(make_study, import_files, make_user, make_member)


def url(world) -> str:
    return f"/studies/{world.study.id}/export"


def post(browser, world, **form):
    token = csrf_token_from(browser.get(url(world)).get_data(as_text=True))
    return browser.post(url(world), data={"csrf_token": token, **form})


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def export_events() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("export.%"))
                                   .order_by(AuditEvent.id)))


def test_form_for_analysts_has_no_identifying_options(world, client_for):
    page = client_for(world.analyst).get(url(world))
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    for level in ("session", "therapist", "utterance", "rating", "outcomes"):
        assert f'name="level" value="{level}"' in html
    for fmt in ef.FORMATS:
        assert f'<option value="{fmt}"' in html
    assert "include_text" not in html and "include_notes" not in html
    # CSP: no inline scripts or styles
    assert "style=" not in html and "<style" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)


def test_form_for_coordinators_offers_text_and_notes(world, client_for):
    html = client_for(world.coordinator).get(url(world)).get_data(as_text=True)
    assert 'name="include_text" value="1"' in html and 'name="include_notes" value="1"' in html


def test_download_is_a_zip_with_data_codebooks_and_manifest(world, client_for, tmp_path):
    browser = client_for(world.analyst)
    response = post(browser, world, level="session", format="sav")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/zip"
    assert response.headers["Cache-Control"] == "no-store"
    disposition = response.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="mbtcode-export-study-session-sav.zip"'
    assert disposition.isascii()
    files = members(response.data)
    stem = "mbtcode-export-study-session.sav"
    assert list(files) == [stem, f"{stem}.codebook.md", f"{stem}.codebook.json", f"{stem}.manifest.json"]
    path = tmp_path / "x.sav"
    path.write_bytes(files[stem])
    frame, meta = pyreadstat.read_sav(str(path))
    assert len(frame) == 6 and frame["session"].tolist()[0] == "s1"
    assert meta.variable_value_labels["source"][3.0] == "single_rater"
    manifest = json.loads(files[f"{stem}.manifest.json"])
    assert manifest["files"][stem]["sha256"] == ef.sha256(files[stem])
    codebook = json.loads(files[f"{stem}.codebook.json"])
    assert [c["name"] for c in codebook["columns"]] == list(frame.columns)
    events = export_events()
    assert [e.action for e in events] == ["export.table", "export.file"]
    assert all(e.actor_id == world.analyst.id for e in events)
    assert events[1].detail["sha256"] == ef.sha256(files[stem]) and events[1].detail["format"] == "sav"


def test_two_downloads_differ_only_in_the_manifest(world, client_for):
    browser = client_for(world.coordinator)
    one = members(post(browser, world, level="utterance", format="xlsx").data)
    two = members(post(browser, world, level="utterance", format="xlsx").data)
    assert list(one) == list(two)
    assert [n for n in one if one[n] != two[n]] in ([], ["mbtcode-export-study-utterance.xlsx.manifest.json"])
    with zipfile.ZipFile(io.BytesIO(post(browser, world, level="rating", format="csv").data)) as archive:
        assert {i.date_time for i in archive.infolist()} == {ef.ZIP_MEMBER_TIME}


def test_default_download_is_de_identified_and_neutralised(world, client_for):
    files = members(post(client_for(world.coordinator), world, level="utterance", format="csv").data)
    everything = b"\n".join(files.values()).decode("utf-8-sig")
    for secret in (*RATER_NAMES, *RATER_EMAILS, TEXT_TAG, "zelda-note-secret"):
        assert secret not in everything
    data = files["mbtcode-export-study-utterance.csv"]
    frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", keep_default_na=False, dtype=str)
    assert "'" + HOSTILE_LABEL in set(frame["session"]) and HOSTILE_LABEL not in set(frame["session"])
    assert f"R{world.raters[0].id}" in set(frame["coder"])


def test_coordinator_may_include_text(world, client_for):
    response = post(client_for(world.coordinator), world, level="utterance", format="csv",
                    include_text="1", include_notes="1")
    assert response.status_code == 200
    files = members(response.data)
    frame = pd.read_csv(io.BytesIO(files["mbtcode-export-study-utterance.csv"]), encoding="utf-8-sig")
    assert f"utterance 1 ({TEXT_TAG} 1)" in set(frame["text"]) and "note" in frame.columns
    assert json.loads(files["mbtcode-export-study-utterance.csv.manifest.json"])["include_text"] is True
    assert export_events()[0].detail["include_text"] is True


def test_analyst_asking_for_text_gets_403_and_nothing(world, client_for):
    browser = client_for(world.analyst)
    for flag in ("include_text", "include_notes"):
        response = post(browser, world, level="utterance", format="csv", **{flag: "1"})
        assert response.status_code == 403
        body = response.get_data(as_text=True)
        assert "only the study&#39;s coordinators" in body or "only the study's coordinators" in body
        assert TEXT_TAG not in body and response.mimetype != "application/zip"
    assert export_events() == []


def test_raters_get_403_and_outsiders_404(world, client_for, make_user, make_study, make_member):
    rater = client_for(world.raters[0])
    assert rater.get(url(world)).status_code == 403
    token = csrf_token_from(rater.get("/studies/").get_data(as_text=True))
    assert rater.post(url(world), data={"csrf_token": token, "level": "session",
                                        "format": "csv"}).status_code == 403
    outsider = make_user("coordinator", name="Otto Outsider")
    make_member(make_study("Elsewhere"), outsider, "coordinator")
    assert client_for(outsider).get(url(world)).status_code == 404
    assert export_events() == []


def test_anonymous_and_csrf(world, client):
    response = client.get(url(world))
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_post_without_csrf_token_is_refused(world, client_for):
    browser = client_for(world.analyst)
    response = browser.post(url(world), data={"level": "session", "format": "csv"})
    assert response.status_code == 400 and export_events() == []


def test_bad_choices_show_the_form_again(world, client_for):
    browser = client_for(world.analyst)
    response = post(browser, world, level="patients", format="xls")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Choose what one row of the table is." in html and "Choose a file format." in html
    assert export_events() == []


def test_study_page_links_the_export_page(world, client_for):
    for user in (world.analyst, world.coordinator):
        html = client_for(user).get(f"/studies/{world.study.id}").get_data(as_text=True)
        assert f'href="/studies/{world.study.id}/export"' in html
    rater_page = client_for(world.raters[0]).get(f"/studies/{world.study.id}").get_data(as_text=True)
    assert "/export" not in rater_page
