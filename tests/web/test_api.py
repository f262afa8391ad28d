"""The JSON API (/api/v1): bearer tokens only, the site's access rules, paging, JSON errors.

Most table tests run against a stand-in for ``mbtcode.services.exports.export_table`` with a
frame whose contents the test chooses (paging, NaN, dates); the tests at the end use the
real export service on the coding world, with rater A's work submitted.
"""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import event, func, select

from mbtcode.extensions import db
from mbtcode.models import ApiToken, AuditEvent
from mbtcode.services.api_tokens import create_token, revoke_token
from mbtcode.web import api
from tests.conftest import check_each

SECRET_TEXT = "He never listens"


@pytest.fixture
def w(coding_world):
    return coding_world


@pytest.fixture
def secret_for(app):
    """``secret_for(user, **kw)``: a new working token of ``user`` (committed); its secret."""

    def make(user, name="pipeline", **kwargs):
        _token, secret = create_token(user, name, actor=user, **kwargs)
        db.session.commit()
        return secret

    return make


@pytest.fixture
def call(client):
    """``call(path, secret=None, **kw)``: GET ``path`` with the token (if any)."""

    def do(path, secret=None, *, method="GET", headers=None, **kwargs):
        sent = dict(headers or {})
        if secret is not None:
            sent["Authorization"] = f"Bearer {secret}"
        return client.open(path, method=method, headers=sent, **kwargs)

    return do


def assert_error(response, status: int) -> str:
    """A JSON error of ``status``; returns its message."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = strict_json(response)
    assert set(body) == {"error"} and set(body["error"]) == {"status", "message"}
    assert body["error"]["status"] == status and body["error"]["message"]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.headers["Cache-Control"] == "no-store"
    return body["error"]["message"]


def _refuse_constant(name):
    raise AssertionError(f"{name} in the JSON")


def strict_json(response):
    """The body as JSON, refusing NaN and Infinity (which ``json.loads`` accepts)."""
    return json.loads(response.get_data(as_text=True), parse_constant=_refuse_constant)


def table_url(study, level="session", **query) -> str:
    url = f"/api/v1/studies/{study.id}/tables/{level}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


# ----------------------------------------------------------------------------- a stand-in export


@dataclass(frozen=True)
class FakeColumn:
    name: str
    label: str
    type: str
    description: str = ""
    values: dict = field(default_factory=dict)


@dataclass
class FakeTable:
    study: object
    level: str
    frame: pd.DataFrame
    columns: list
    metadata: dict


@pytest.fixture
def fake_export(monkeypatch):
    """Replace ``export_table`` by one that returns ``fake.frame``; ``fake.calls`` records calls."""
    from mbtcode.services import exports

    fake = types.SimpleNamespace(calls=[], frame=None, columns=None, deny=None)
    fake.frame = pd.DataFrame({
        "session_id": np.arange(1, 26),
        "score": [i / 4 for i in range(25)],
        "label": [f"S{i:02d}" for i in range(25)],
    })
    fake.columns = [
        FakeColumn("session_id", "Session", "integer", "The session's id."),
        FakeColumn("score", "Adherence", "number", "Mean adherence.", {1: "low", 7: "high"}),
        FakeColumn("label", "Label", "string"),
    ]

    def export_table(study, level, *, actor, include_text=False, include_notes=False):
        fake.calls.append({"study": study.id, "level": level, "actor": actor.id,
                           "include_text": include_text, "include_notes": include_notes})
        if fake.deny:
            raise exports.ExportDenied(fake.deny)
        return FakeTable(study, level, fake.frame, fake.columns,
                         {"scheme": "mbt-individual@1", "exported_at": "2026-01-01T00:00:00Z"})

    monkeypatch.setattr(exports, "export_table", export_table)
    return fake


# ----------------------------------------------------------------------------- authentication


def test_no_token_is_401_with_a_bearer_challenge(w, call):
    for path in ("/api/v1/studies", table_url(w.study)):
        message = assert_error(call(path), 401)
        assert "Authorization: Bearer" in message


def test_malformed_authorization_headers_are_401(w, call, secret_for):
    secret = secret_for(w.coordinator)

    def refused(header):
        response = call("/api/v1/studies", headers={"Authorization": header})
        assert_error(response, 401)
        assert "invalid" in response.headers["WWW-Authenticate"]

    check_each(["", "Bearer", "Bearer ", f"Basic {secret}", f"Token {secret}", secret,
                f"Bearer {secret} extra", f"Bearer\t{secret}", f"Bearer {secret},x",
                "Bearer mbt_" + "é" * 43], refused)


def test_the_scheme_name_is_case_insensitive(w, call, secret_for):
    secret = secret_for(w.coordinator)
    response = call("/api/v1/studies", headers={"Authorization": f"bearer {secret}"})
    assert response.status_code == 200


def test_a_wrong_token_is_401(w, call, secret_for):
    secret = secret_for(w.coordinator)
    for wrong in ("mbt_" + "A" * 43, secret[:-1] + ("A" if secret[-1] != "A" else "B")):
        response = call("/api/v1/studies", wrong)
        assert_error(response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_revoked_expired_and_deactivated_tokens_are_401(w, call, secret_for):
    revoked = secret_for(w.coordinator, "revoked")
    expired = secret_for(w.coordinator, "expired", expires_in_days=1)
    deactivated = secret_for(w.analyst, "deactivated")
    for secret in (revoked, expired, deactivated):
        assert call("/api/v1/studies", secret).status_code == 200
    tokens = {t.name: t for t in db.session.scalars(select(ApiToken))}
    revoke_token(tokens["revoked"], actor=w.coordinator)
    tokens["expired"].expires_at = datetime.now(UTC) - timedelta(seconds=1)
    w.analyst.active = False
    db.session.commit()
    for secret in (revoked, expired, deactivated):
        for path in ("/api/v1/studies", table_url(w.study)):
            assert_error(call(path, secret), 401)


def test_the_session_cookie_alone_does_not_authenticate(w, client_for):
    browser = client_for(w.coordinator)
    assert browser.get("/studies/").status_code == 200  # signed in on the site
    for path in ("/api/v1/studies", table_url(w.study)):
        assert_error(browser.get(path), 401)
        assert_error(browser.get(path, headers={"HX-Request": "true"}), 401)


def test_the_token_decides_who_you_are_not_the_cookie(w, client_for, secret_for):
    browser = client_for(w.admin)  # signed in as admin, but sending the outsider's token
    response = browser.get("/api/v1/studies",
                           headers={"Authorization": f"Bearer {secret_for(w.outsider)}"})
    assert [s["name"] for s in strict_json(response)["studies"]] == ["Outside study"]


def test_a_token_in_the_url_is_refused(w, call, secret_for):
    secret = secret_for(w.coordinator)
    message = assert_error(call(f"/api/v1/studies?access_token={secret}"), 400)
    assert "header" in message and secret not in message
    assert_error(call(f"/api/v1/studies?access_token={secret}", secret), 400)


def test_last_use_is_noted_at_most_once_a_minute(w, call, secret_for):
    secret = secret_for(w.coordinator)
    token = db.session.scalar(select(ApiToken))
    assert token.last_used_at is None
    call("/api/v1/studies", secret)
    db.session.expire_all()
    first = token.last_used_at
    assert first is not None
    call("/api/v1/studies", secret)
    db.session.expire_all()
    assert token.last_used_at == first
    token.last_used_at = first - timedelta(minutes=2)
    db.session.commit()
    call("/api/v1/studies/424242/tables/session", secret)  # refused calls count too
    db.session.expire_all()
    assert token.last_used_at > first


# ----------------------------------------------------------------------------- errors


def test_unknown_api_urls_are_json_404s(w, call, secret_for):
    secret = secret_for(w.coordinator)
    for path in ("/api/v1", "/api/v1/", "/api/v1/nothing", "/api/v1/studies/abc/tables/session",
                 f"/api/v1/studies/{w.study.id}", "/api/v1/studies/99999999999/tables/session"):
        assert_error(call(path), 404)
        assert_error(call(path, secret), 404)


def test_the_api_is_read_only_405_in_json_without_csrf(w, call, client_for, secret_for):
    secret = secret_for(w.coordinator)
    browser = client_for(w.coordinator)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/api/v1/studies", table_url(w.study), "/api/v1/openapi.json"):
            response = call(path, secret, method=method)
            assert_error(response, 405)
            assert "GET" in response.headers["Allow"]
            assert_error(browser.open(path, method=method), 405)  # not a CSRF 400


def test_the_site_keeps_its_html_errors(client, signed_in):
    response = client.get("/no/such/page")
    assert response.status_code == 404 and response.mimetype == "text/html"


def test_responses_are_not_cached(w, call, secret_for):
    secret = secret_for(w.coordinator)
    assert call("/api/v1/studies", secret).headers["Cache-Control"] == "no-store"
    assert call("/api/v1/studies").headers["Cache-Control"] == "no-store"


# ----------------------------------------------------------------------------- studies


def _studies(call, secret) -> dict:
    response = call("/api/v1/studies", secret)
    assert response.status_code == 200
    return {s["name"]: s for s in strict_json(response)["studies"]}


def test_studies_are_those_the_owner_belongs_to(w, call, secret_for):
    coordinator = _studies(call, secret_for(w.coordinator))
    assert set(coordinator) == {"Blinded study"}
    study = coordinator["Blinded study"]
    assert study["id"] == w.study.id and study["role"] == "coordinator"
    assert study["scheme"] == {"id": w.study.scheme_version.key,
                               "version": w.study.scheme_version.version,
                               "revision": w.study.scheme_version.revision}
    assert study["capabilities"] == ["export", "export_identifying"]
    assert set(study["tables"]) == set(api.LEVELS)
    assert study["tables"]["session"].endswith(table_url(w.study))

    analyst = _studies(call, secret_for(w.analyst))["Blinded study"]
    assert analyst["role"] == "analyst" and analyst["capabilities"] == ["export"]
    rater = _studies(call, secret_for(w.rater_a))["Blinded study"]
    assert rater["role"] == "rater" and rater["capabilities"] == [] and rater["tables"] == {}
    assert set(_studies(call, secret_for(w.outsider))) == {"Outside study"}
    admin = _studies(call, secret_for(w.admin))
    assert set(admin) == {"Blinded study", "Outside study"}
    assert admin["Outside study"]["role"] == "admin"


def test_studies_takes_no_parameters(w, call, secret_for):
    assert_error(call("/api/v1/studies?limit=5", secret_for(w.coordinator)), 400)


# ----------------------------------------------------------------------------- tables: rights


def test_raters_may_not_export(w, call, secret_for, fake_export):
    for level in api.LEVELS:
        assert_error(call(table_url(w.study, level), secret_for(w.rater_a)), 403)
    assert fake_export.calls == []


def test_non_members_get_404_as_for_a_missing_study(w, call, secret_for, fake_export):
    secret = secret_for(w.outsider)
    for study_id in (w.study.id, 424242):
        message = assert_error(call(f"/api/v1/studies/{study_id}/tables/session", secret), 404)
        assert "Blinded" not in message
    assert fake_export.calls == []


def test_analysts_get_tables_but_no_text_or_notes(w, call, secret_for, fake_export):
    secret = secret_for(w.analyst)
    assert call(table_url(w.study), secret).status_code == 200
    for include in ("text", "notes", "text,notes", "notes,text"):
        message = assert_error(call(table_url(w.study, "utterance", include=include), secret), 403)
        assert "de-identified" in message
    assert [c["include_text"] or c["include_notes"] for c in fake_export.calls] == [False]


def test_coordinators_and_admins_may_include_text_and_notes(w, call, secret_for, fake_export):
    for user in (w.coordinator, w.admin):
        response = call(table_url(w.study, "utterance", include="text,notes"), secret_for(user))
        assert response.status_code == 200
    assert [(c["include_text"], c["include_notes"]) for c in fake_export.calls] \
        == [(True, True)] * 2
    call(table_url(w.study, "utterance", include="notes"), secret_for(w.coordinator))
    assert fake_export.calls[-1]["include_text"] is False
    assert fake_export.calls[-1]["include_notes"] is True


def test_the_export_service_has_the_last_word(w, call, secret_for, fake_export):
    fake_export.deny = "not for you"
    message = assert_error(call(table_url(w.study), secret_for(w.coordinator)), 403)
    assert message == "not for you"
    assert fake_export.calls[0]["actor"] == w.coordinator.id


def test_unknown_levels_are_404(w, call, secret_for, fake_export):
    secret = secret_for(w.coordinator)
    for level in ("sessions", "SESSION", "x" * 200, "..", "%00"):
        message = assert_error(call(table_url(w.study, level), secret), 404)
        assert "session, therapist" in message
    assert fake_export.calls == []


# ----------------------------------------------------------------------------- tables: parameters


def test_bad_limits_offsets_and_includes_are_400(w, call, secret_for, fake_export):
    secret = secret_for(w.coordinator)

    def refused(query):
        message = assert_error(call(table_url(w.study) + "?" + query, secret), 400)
        assert len(message) < 200

    check_each([
        "limit=0", "limit=-1", "limit=10001", "limit=abc", "limit=", "limit=1.5", "limit=1e3",
        "limit=%2B5", "limit=%205", "limit=99999999999999999999", "limit=10&limit=20",
        "offset=-1", "offset=x", "offset=1.0", "offset=", "offset=2147483648",
        "offset=0x10", "include=everything", "include=text,secrets", "ofset=10", "page=2",
        "limit=" + "9" * 5000,
    ], refused)
    assert fake_export.calls == []


def test_limits_at_the_bounds_are_fine(w, call, secret_for, fake_export):
    secret = secret_for(w.coordinator)
    for query, limit, offset in (("limit=1", 1, 0), ("limit=10000", 10000, 0), ("", 1000, 0),
                                 ("offset=0", 1000, 0), ("offset=2147483647", 1000, 2147483647)):
        body = strict_json(call(table_url(w.study) + "?" + query, secret))
        assert (body["limit"], body["offset"]) == (limit, offset), query


def test_empty_include_is_no_include(w, call, secret_for, fake_export):
    response = call(table_url(w.study, include=""), secret_for(w.analyst))
    assert response.status_code == 200


# ----------------------------------------------------------------------------- tables: content


def test_a_table_page_has_its_codebook_and_rows(w, call, secret_for, fake_export):
    body = strict_json(call(table_url(w.study), secret_for(w.analyst)))
    assert body["study"] == {"id": w.study.id, "name": "Blinded study"}
    assert body["level"] == "session"
    assert body["metadata"] == {"scheme": "mbt-individual@1",
                                "exported_at": "2026-01-01T00:00:00Z"}
    assert body["columns"][1] == {"name": "score", "label": "Adherence", "type": "number",
                                  "description": "Mean adherence.",
                                  "values": {"1": "low", "7": "high"}}
    assert (body["total"], body["offset"], body["limit"], body["next"]) == (25, 0, 1000, None)
    assert body["rows"][3] == {"session_id": 4, "score": 0.75, "label": "S03"}
    assert len(body["rows"]) == 25


def test_paging_follows_next_to_the_end(w, call, secret_for, fake_export):
    secret = secret_for(w.coordinator)
    url, rows, pages = table_url(w.study, limit=10), [], 0
    while url:
        body = strict_json(call(url, secret))
        assert body["total"] == 25
        rows += body["rows"]
        pages += 1
        url = body["next"]
        if url:
            parts = urlsplit(url)
            assert parts.scheme == "http" and parts.path == table_url(w.study)
            assert parse_qs(parts.query) == {"limit": ["10"], "offset": [str(10 * pages)]}
            url = parts.path + "?" + parts.query
    assert pages == 3 and [r["session_id"] for r in rows] == list(range(1, 26))


def test_next_keeps_include(w, call, secret_for, fake_export):
    body = strict_json(call(table_url(w.study, "utterance", limit=5, include="notes,text"),
                            secret_for(w.coordinator)))
    assert parse_qs(urlsplit(body["next"]).query) == {
        "limit": ["5"], "offset": ["5"], "include": ["notes,text"]}


def test_pages_at_and_beyond_the_end(w, call, secret_for, fake_export):
    secret = secret_for(w.coordinator)
    last = strict_json(call(table_url(w.study, limit=5, offset=20), secret))
    assert len(last["rows"]) == 5 and last["next"] is None
    beyond = strict_json(call(table_url(w.study, limit=5, offset=500), secret))
    assert beyond["rows"] == [] and beyond["next"] is None and beyond["total"] == 25
    fake_export.frame = fake_export.frame.iloc[0:0]
    empty = strict_json(call(table_url(w.study), secret))
    assert empty["total"] == 0 and empty["rows"] == [] and empty["next"] is None


def test_missing_values_are_null_and_dates_iso(w, call, secret_for, fake_export):
    fake_export.frame = pd.DataFrame({
        "n": [1.5, np.nan, np.inf, -np.inf],
        "i": pd.array([1, None, 3, 4], dtype="Int64"),
        "s": pd.array(["a", None, "c", pd.NA], dtype="string"),
        "b": pd.array([True, None, False, True], dtype="boolean"),
        "d": [date(2024, 1, 2), None, pd.NaT, date(2024, 12, 31)],
        "dt": pd.to_datetime(["2024-01-02", None, "2024-03-04", "2024-03-05"]),
        "o": [1, "x", None, float("nan")],
    })
    fake_export.columns = [FakeColumn(name, name, kind) for name, kind in (
        ("n", "number"), ("i", "integer"), ("s", "string"), ("b", "boolean"), ("d", "date"),
        ("dt", "date"), ("o", "string"))]
    response = call(table_url(w.study), secret_for(w.coordinator))
    text = response.get_data(as_text=True)
    assert "NaN" not in text and "Infinity" not in text and "NaT" not in text
    rows = strict_json(response)["rows"]
    assert rows[0] == {"n": 1.5, "i": 1, "s": "a", "b": True, "d": "2024-01-02",
                       "dt": "2024-01-02", "o": 1}
    assert rows[1] == {"n": None, "i": None, "s": None, "b": None, "d": None, "dt": None,
                       "o": "x"}
    assert rows[2]["n"] is None and rows[2]["d"] is None and rows[2]["dt"] == "2024-03-04"
    assert rows[3]["n"] is None and rows[3]["s"] is None and rows[3]["o"] is None
    assert rows[3]["d"] == "2024-12-31"


def test_floats_keep_their_full_precision(w, call, secret_for, fake_export):
    values = [0.1 + 0.2, 1 / 3, 1e-20, 123456789.123456789, -0.0]
    fake_export.frame = pd.DataFrame({"x": values})
    fake_export.columns = [FakeColumn("x", "x", "number")]
    rows = strict_json(call(table_url(w.study), secret_for(w.coordinator)))["rows"]
    assert [r["x"] for r in rows] == values


def test_every_table_request_is_audited_without_the_secret(w, call, secret_for, fake_export):
    secret = secret_for(w.coordinator)
    call(table_url(w.study, "utterance", limit=10, offset=5, include="text"), secret)
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.api"))
    token = db.session.scalar(select(ApiToken))
    assert event.actor_id == w.coordinator.id and event.study_id == w.study.id
    assert event.entity == "study" and event.entity_id == w.study.id
    assert event.detail == {"level": "utterance", "rows": 10, "total": 25, "offset": 5,
                            "limit": 10, "include_text": True, "include_notes": False,
                            "token_id": token.id}
    for detail in db.session.scalars(select(AuditEvent.detail)):
        assert secret not in json.dumps(detail) and secret[12:] not in json.dumps(detail)


def test_refused_requests_export_nothing_and_audit_no_export(w, call, secret_for, fake_export):
    call(table_url(w.study), secret_for(w.rater_a))
    call(table_url(w.study, include="text"), secret_for(w.analyst))
    call(table_url(w.study, limit=0), secret_for(w.coordinator))
    call("/api/v1/studies", secret_for(w.coordinator))
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.api")) is None


def test_a_response_that_cannot_be_json_is_an_error_and_not_audited(w, app, call, secret_for,
                                                                     fake_export, monkeypatch):
    """Should a NaN ever slip through the conversion, json refuses it: a 500, no export."""
    monkeypatch.setattr(api, "table_rows", lambda frame, columns: [{"x": float("nan")}])
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    response = call(table_url(w.study), secret_for(w.coordinator))
    assert_error(response, 500)
    assert "nan" not in response.get_data(as_text=True).lower()
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.api")) is None


@pytest.mark.skipif("postgresql" in str(__import__("os").environ.get(
    "MBTCODE_TEST_DATABASE_URL", "")), reason="SQLite locking")
def test_sqlite_writes_start_their_own_transaction(w, call, secret_for, fake_export):
    """A deferred read transaction cannot wait for the write lock (SQLITE_BUSY at once), so
    the API's writes run in a transaction whose first statement is a write."""
    secret = secret_for(w.coordinator)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert call(table_url(w.study), secret).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    transactions, current = [], None
    for statement in statements:
        if statement == "BEGIN":
            current = []
            transactions.append(current)
        elif current is not None:
            current.append(statement)
    writing = [t for t in transactions if {"INSERT", "UPDATE", "DELETE"} & set(t)]
    assert writing, statements
    for t in writing:
        assert t[0] in ("INSERT", "UPDATE"), transactions


# ----------------------------------------------------------------------------- OpenAPI


def _openapi(call) -> dict:
    response = call("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return strict_json(response)


def _api_rules(app) -> dict[str, set[str]]:
    """OpenAPI path (relative to the server) → methods, for every rule of the api blueprint."""
    paths: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            assert path.startswith(api.PREFIX)
            paths.setdefault(path[len(api.PREFIX):], set()).update(
                m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return paths


def test_openapi_is_public_json_31(w, call):
    doc = _openapi(call)
    assert doc["openapi"].startswith("3.1.")
    assert doc["servers"] == [{"url": "http://localhost/api/v1"}]


def test_openapi_lists_every_route_of_the_api(app, call):
    doc = _openapi(call)
    documented = {path: {m for m in item if m in ("get", "put", "post", "delete", "patch")}
                  for path, item in doc["paths"].items()}
    assert documented == _api_rules(app)
    assert set(_api_rules(app)) == {"/studies", "/studies/{study_id}/tables/{level}",
                                    "/openapi.json"}


def test_openapi_declares_bearer_security(call):
    doc = _openapi(call)
    assert doc["components"]["securitySchemes"]["bearerToken"] == {
        **doc["components"]["securitySchemes"]["bearerToken"], "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearerToken": []}]
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    for path in ("/studies", "/studies/{study_id}/tables/{level}"):
        responses = doc["paths"][path]["get"]["responses"]
        assert "security" not in doc["paths"][path]["get"]
        assert {"200", "400", "401", "405"} <= set(responses)
    table = doc["paths"]["/studies/{study_id}/tables/{level}"]["get"]["responses"]
    assert {"403", "404"} <= set(table)


def test_openapi_document_is_valid(call):
    from openapi_spec_validator import validate

    validate(_openapi(call))


def test_openapi_levels_and_parameters(call):
    doc = _openapi(call)
    parameters = doc["components"]["parameters"]
    assert parameters["Level"]["schema"]["enum"] == list(api.LEVELS)
    assert parameters["Limit"]["schema"]["maximum"] == api.MAX_LIMIT
    assert parameters["Limit"]["schema"]["default"] == api.DEFAULT_LIMIT
    assert parameters["Include"]["schema"]["items"]["enum"] == ["text", "notes"]


def _schema_validator(doc, name):
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": doc["components"]})


def test_answers_match_the_openapi_schemas(w, call, secret_for, fake_export):
    doc = _openapi(call)
    secret = secret_for(w.coordinator)
    studies = strict_json(call("/api/v1/studies", secret))["studies"]
    for study in studies:
        _schema_validator(doc, "Study").validate(study)
    _schema_validator(doc, "Table").validate(strict_json(call(table_url(w.study, limit=3), secret)))
    for response in (call("/api/v1/studies"), call(table_url(w.study, limit=0), secret)):
        _schema_validator(doc, "Error").validate(strict_json(response))


# ----------------------------------------------------------------------------- the real exports


@pytest.fixture
def exports():
    from mbtcode.services import exports

    return exports


def test_levels_are_the_export_services(exports):
    assert tuple(exports.LEVELS) == api.LEVELS


def test_every_table_of_the_real_export(w, call, secret_for, exports):
    doc = _openapi(call)
    secret = secret_for(w.analyst)
    for level in api.LEVELS:
        response = call(table_url(w.study, level), secret)
        assert response.status_code == 200, (level, response.get_data(as_text=True))
        body = strict_json(response)
        _schema_validator(doc, "Table").validate(body)
        assert body["level"] == level and body["total"] >= len(body["rows"])
        names = [c["name"] for c in body["columns"]]
        for row in body["rows"]:
            assert list(row)[:len(names)] == names
        assert SECRET_TEXT not in response.get_data(as_text=True)
        assert "Alice Rater" not in response.get_data(as_text=True)


@pytest.fixture
def submitted(w):
    """Rater A's coding and rating of the world's session, submitted (so tables have rows)."""
    from mbtcode.services.assignments import submit
    from mbtcode.services.coding import record_note
    from tests.conftest import code_everything, rate_everything

    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    record_note(w.a, w.utterance(2), "private-note-4711", expected_version=1, actor=w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    return w


SPEAKER_NAME = "Dr Hannah Speakerlabel"  # a transcript's speaker label that is a name


def test_coordinators_get_text_and_notes_analysts_never(submitted, call, secret_for, exports):
    w = submitted
    w.utterance(1).speaker = SPEAKER_NAME
    db.session.commit()
    coordinator, analyst = secret_for(w.coordinator), secret_for(w.analyst)
    plain = call(table_url(w.study, "utterance"), coordinator)
    full = call(table_url(w.study, "utterance", include="text,notes"), coordinator)
    de_identified = call(table_url(w.study, "utterance"), analyst)
    assert plain.status_code == full.status_code == de_identified.status_code == 200
    assert strict_json(full)["total"] == strict_json(plain)["total"] >= len(w.utterances) - 1
    for response in (plain, de_identified):
        assert SECRET_TEXT not in response.get_data(as_text=True)
        assert "private-note-4711" not in response.get_data(as_text=True)
        assert SPEAKER_NAME not in response.get_data(as_text=True)
        assert "speaker" not in [c["name"] for c in strict_json(response)["columns"]]
    assert SECRET_TEXT in full.get_data(as_text=True)
    assert strict_json(full)["rows"][0]["speaker"] == SPEAKER_NAME
    assert "private-note-4711" in full.get_data(as_text=True)
    assert len(strict_json(full)["columns"]) > len(strict_json(plain)["columns"])
    assert_error(call(table_url(w.study, "utterance", include="text"), analyst), 403)
    for response in (plain, full, de_identified):
        assert "Alice Rater" not in response.get_data(as_text=True)


def test_real_tables_page_like_the_whole(submitted, call, secret_for, exports):
    w = submitted
    secret = secret_for(w.coordinator)
    whole = strict_json(call(table_url(w.study, "rating", limit=10000), secret))
    assert whole["total"] > 3 and whole["next"] is None
    url, rows = table_url(w.study, "rating", limit=3), []
    while url:
        page = strict_json(call(url, secret))
        rows += page["rows"]
        url = page["next"] and urlsplit(page["next"]).path + "?" + urlsplit(page["next"]).query
    assert rows == whole["rows"]


def test_real_exports_are_audited_in_one_late_transaction(submitted, call, secret_for, exports):
    w = submitted
    secret = secret_for(w.analyst)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        body = strict_json(call(table_url(w.study, "session"), secret))
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    actions = [e.action for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("export.%")).order_by(AuditEvent.id))]
    assert set(actions) == {"export.api", "export.table"}
    api_event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.api"))
    assert api_event.detail["rows"] == len(body["rows"]) and api_event.actor_id == w.analyst.id
    if db.engine.dialect.name == "sqlite":
        # Every write in one transaction, which starts with a write.
        writes = [i for i, s in enumerate(statements) if s in ("INSERT", "UPDATE", "DELETE")]
        begins = [i for i, s in enumerate(statements) if s == "BEGIN"]
        assert writes, statements
        assert max(i for i in begins if i < writes[0]) == writes[0] - 1, statements
        assert not [i for i in begins if writes[0] < i < writes[-1]], statements


def test_refused_tokens_are_logged_without_the_token(w, call, secret_for, caplog):
    secret = secret_for(w.coordinator)
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    audited = db.session.scalar(select(func.count()).select_from(AuditEvent))
    with caplog.at_level("INFO", logger="mbtcode"):
        call("/api/v1/studies", wrong)
        call("/api/v1/studies", headers={"Authorization": f"Basic {wrong}"})
        call(f"/api/v1/studies/{w.study.id}/tables/x%0Afake", wrong)
    logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(logged) == 3 and all("\n" not in line for line in logged)
    assert not any(wrong[4:] in line or wrong[:12] in line for line in logged)
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == audited
