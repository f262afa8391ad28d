"""The JSON API (``/api/v1``): read-only tables for analysis pipelines, by personal token.

Authentication is ``Authorization: Bearer <token>`` and nothing else: a browser's session
cookie is ignored here (``current_user`` is set from the token before anything can read the
cookie), so the API has no CSRF surface, and it only answers GET. A token acts with its
owner's rights: the studies they belong to, the tables their role may export (``export``),
utterance text and notes only with ``export_identifying``. Anything the owner may not see
does not exist (404), as on the site.

Every error is JSON: ``{"error": {"status": 401, "message": "…"}}``; a 401 carries
``WWW-Authenticate: Bearer``. Every table request is audited (``export.api``).

SQLite note: GET requests open deferred transactions, and a deferred transaction that has
read cannot wait for the write lock (SQLITE_BUSY at once, see SECURITY.md d1). So requests
read first, end that transaction, and then write (audit row, ``last_used_at``) in a fresh
one whose first statement is the write.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from flask import Blueprint, Response, current_app, g, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .. import __version__
from ..extensions import db
from ..models import Study, User
from ..services import ServiceError, api_tokens, audit
from ..services.permissions import can, study_role, visible_studies
from .transactions import commit_and_keep_loaded

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)

#: The tables (``mbtcode.services.exports.LEVELS``; a test keeps the two equal).
LEVELS = ("session", "therapist", "utterance", "rating", "outcomes")
#: Study capabilities the API reports, in this order.
API_CAPABILITIES = ("export", "export_identifying")
#: ``include=`` values and the capability each needs.
INCLUDES = {"text": "export_identifying", "notes": "export_identifying"}
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
#: Offsets beyond this are refused (ids and row counts are 32-bit on PostgreSQL anyway).
MAX_OFFSET = 2**31 - 1
TABLE_PARAMETERS = ("limit", "offset", "include")
#: Endpoints that need no token.
PUBLIC_ENDPOINTS = frozenset({"api.openapi"})

_WHOLE = re.compile(r"\d{1,10}")
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)


class ApiError(HTTPException):
    """An HTTP error with the message the client sees (and extra headers)."""

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(description=message)
        self.code = code
        self.extra_headers = headers or {}


# ----------------------------------------------------------------------------- responses


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``data`` as JSON; NaN or infinity anywhere is a bug (ValueError), never sent."""
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body + "\n", status=status, mimetype="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"status": status, "message": message}}, status, headers)


def _unauthorized(message: str, error: str | None = None) -> ApiError:
    challenge = 'Bearer realm="mbtcode"'
    if error:
        challenge += f', error="{error}"'
    return ApiError(401, message, {"WWW-Authenticate": challenge})


_DEFAULT_MESSAGES = {
    400: "bad request",
    401: "a token is required",
    403: "your role in this study does not allow this",
    404: "there is nothing here, or you have no access to it",
    405: "the API is read-only: use GET",
}


def _http_error_response(error: HTTPException) -> Response:
    status = error.code or 500
    message = error.description if isinstance(error, ApiError) else _DEFAULT_MESSAGES.get(
        status, error.name.lower())
    headers = dict(getattr(error, "extra_headers", {}))
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="mbtcode"')
    return error_response(status, message, headers)


@bp.errorhandler(HTTPException)
def _api_http_error(error: HTTPException):
    db.session.rollback()
    return _http_error_response(error)


@bp.errorhandler(Exception)
def _api_unexpected_error(error: Exception):
    db.session.rollback()
    if current_app.testing and current_app.config.get("PROPAGATE_EXCEPTIONS"):
        raise error
    current_app.logger.exception("unhandled API error on %s %s", request.method, request.path)
    return error_response(500, "internal error; it was logged, try again later")


def _is_api_path() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


@bp.before_app_request
def _api_identity_and_routing_errors():
    """On API paths: never look at the session cookie; unknown URLs and methods as JSON.

    404 and 405 raised by routing never reach a blueprint's error handlers, so they are
    answered here, before the site's HTML error pages would be.
    """
    if not _is_api_path():
        return None
    # flask-login reads the session cookie only while ``g._login_user`` is unset.
    current_app.login_manager._update_request_context_with_user(None)
    failure = request.routing_exception
    if isinstance(failure, (NotFound, MethodNotAllowed)):
        return _no_store(_http_error_response(failure))
    return None


@bp.before_request
def _authenticate():
    """Set the token's owner as the current user, or answer 401."""
    if "access_token" in request.args:
        raise ApiError(400, "send the token in the Authorization header, never in the URL "
                            "(URLs end up in logs); revoke this token and make a new one")
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization")
    if header is None:
        raise _unauthorized("a token is required: send 'Authorization: Bearer <token>' "
                            "(make a token on the API tokens page)")
    match = _BEARER.fullmatch(header)
    if match is None:
        _log_refusal("malformed Authorization header")
        raise _unauthorized("malformed Authorization header: send 'Authorization: Bearer <token>'",
                            "invalid_request")
    token = api_tokens.find_token(match.group(1))
    if token is None:
        _log_refusal("unknown, expired or revoked token")
        raise _unauthorized("the token is not valid: unknown, expired or revoked, or its "
                            "account is deactivated", "invalid_token")
    g.api_token = token
    g.api_user = token.user
    current_app.login_manager._update_request_context_with_user(token.user)


def _log_refusal(reason: str) -> None:
    """A security event in the log (never the token): who knocked, on what."""
    current_app.logger.info("API authentication refused (%s) from %s on %s %r", reason,
                            request.remote_addr, request.method, request.path)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.after_request
def _after(response: Response) -> Response:
    """No caching; note the token's use (at most once a minute) if the view did not."""
    if response.status_code < 500 and g.get("api_token") is not None \
            and not g.get("api_writes_done"):
        try:
            _write(None)
        except Exception:  # noqa: BLE001 - a missed last_used_at must not fail the answer
            db.session.rollback()
            current_app.logger.warning("could not note the use of API token %s",
                                       g.api_token.id, exc_info=True)
    if request.endpoint in PUBLIC_ENDPOINTS:
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response
    return _no_store(response)


def _write(event: dict[str, Any] | None) -> None:
    """End the read transaction; write the audit row and ``last_used_at`` in a fresh one."""
    g.api_writes_done = True
    # Rows the services added but did not flush (the export service's own ``export.table``
    # audit row) move to the write transaction too.
    pending = list(db.session.new)
    for row in pending:
        db.session.expunge(row)
    commit_and_keep_loaded()  # ends the read transaction, keeps the loaded objects
    db.session.add_all(pending)
    touched = api_tokens.touch(g.api_token)
    if event is not None:
        audit.record(actor=g.api_user, **event)
    if touched or pending or event is not None:
        commit_and_keep_loaded()


# ----------------------------------------------------------------------------- parameters


def _whole(name: str, default: int, low: int, high: int) -> int:
    values = request.args.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(400, f"give {name} once (got {len(values)} values)")
    text = values[0]
    if not _WHOLE.fullmatch(text) or not low <= int(text) <= high:
        shown = text if len(text) <= 30 else text[:27] + "…"
        raise ApiError(400, f"{name} must be a whole number from {low:,} to {high:,} "
                            f"(got '{shown}')")
    return int(text)


def _include() -> tuple[str, ...]:
    wanted: list[str] = []
    for value in request.args.getlist("include"):
        for part in value.split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in INCLUDES:
                shown = part if len(part) <= 30 else part[:27] + "…"
                raise ApiError(400, f"include takes {' and/or '.join(INCLUDES)} "
                                    f"(got '{shown}')")
            if part not in wanted:
                wanted.append(part)
    return tuple(sorted(wanted))


def _check_parameters(allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        shown = ", ".join(f"'{name[:30]}'" for name in unknown[:5])
        takes = ", ".join(allowed) if allowed else "no parameters"
        raise ApiError(400, f"unknown query parameter {shown}: this endpoint takes {takes}")


# ----------------------------------------------------------------------------- values


def _iso(value: Any, date_only: bool) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat() if date_only else value.isoformat()
    return value.isoformat()


def _plain(value: Any, date_only: bool) -> Any:
    """One cell as a JSON value: missing and non-finite numbers are None, dates ISO."""
    if value is None:
        return None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, date):  # datetime and pandas.Timestamp included
        if value != value:  # NaT
            return None
        return _iso(value, date_only)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def column_values(series, column_type: str) -> list[Any]:
    """A column of the page as JSON-ready Python values."""
    dtype = series.dtype
    date_only = column_type == "date"
    if dtype.kind in "iub" and isinstance(dtype, np.dtype):  # no missing values possible
        return series.tolist()
    if dtype.kind == "f" and isinstance(dtype, np.dtype):
        data = series.to_numpy()
        values = data.tolist()
        for i in np.flatnonzero(~np.isfinite(data)).tolist():
            values[i] = None
        return values
    if dtype.kind == "M" and isinstance(dtype, np.dtype):
        text = series.dt.strftime("%Y-%m-%d") if date_only else series.map(
            lambda v: v.isoformat(), na_action="ignore")
        return [v if isinstance(v, str) else None for v in text.astype(object).tolist()]
    values = series.astype(object).tolist()
    if isinstance(dtype, pd.StringDtype):  # str or missing (NaN, None or NA)
        return [v if type(v) is str else None for v in values]
    plain = (str, int, bool)
    return [v if type(v) in plain else _plain(v, date_only) for v in values]


def table_rows(frame, columns) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts, in the order of ``columns`` (then any others)."""
    names = [c.name for c in columns if c.name in frame.columns]
    names += [str(name) for name in frame.columns if name not in set(names)]
    types = {c.name: c.type for c in columns}
    data = [column_values(frame[name], types.get(name, "string")) for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*data, strict=True)]


# ----------------------------------------------------------------------------- endpoints


def _capabilities(user: User, study: Study) -> list[str]:
    return [c for c in API_CAPABILITIES if can(user, c, study)]


@bp.get("/studies")
def studies():
    """The studies the token's owner belongs to, with their role and what the API offers."""
    _check_parameters(())
    user = g.api_user
    listing = []
    for study in visible_studies(user):
        capabilities = _capabilities(user, study)
        scheme = study.scheme_version
        listing.append({
            "id": study.id,
            "name": study.name,
            "scheme": {"id": scheme.key, "version": scheme.version, "revision": scheme.revision},
            "role": study_role(study, user),
            "capabilities": capabilities,
            "tables": {
                level: url_for("api.table", study_id=study.id, level=level, _external=True)
                for level in LEVELS
            } if "export" in capabilities else {},
        })
    return json_response({"studies": listing})


def _load_study(study_id: int, user: User) -> Study:
    study = db.session.get(Study, study_id)
    if study is None or study_role(study, user) is None:
        raise ApiError(404, f"there is no study {study_id}, or you are not a member of it")
    return study


@bp.get("/studies/<int:study_id>/tables/<level>")
def table(study_id: int, level: str):
    """One export table of a study, a page of rows at a time."""
    user = g.api_user
    study = _load_study(study_id, user)
    if not can(user, "export", study):
        raise ApiError(403, "your role in this study does not allow exports "
                            "(coordinators and analysts export)")
    if level not in LEVELS:
        shown = level if len(level) <= 30 else level[:27] + "…"
        raise ApiError(404, f"there is no table '{shown}': choose one of {', '.join(LEVELS)}")
    _check_parameters(TABLE_PARAMETERS)
    limit = _whole("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _whole("offset", 0, 0, MAX_OFFSET)
    include = _include()
    if include and not all(can(user, INCLUDES[name], study) for name in include):
        raise ApiError(403, "utterance text and notes can identify people: your role in this "
                            "study exports de-identified tables only (leave out include)")

    from ..services import exports

    try:
        exported = exports.export_table(study, level, actor=user,
                                        include_text="text" in include,
                                        include_notes="notes" in include)
    except exports.ExportDenied as exc:
        raise ApiError(403, str(exc)) from None
    except ServiceError as exc:
        raise ApiError(400, str(exc)) from None

    frame = exported.frame
    total = len(frame)
    rows = table_rows(frame.iloc[offset:offset + limit], exported.columns)
    following = None
    if offset + len(rows) < total:
        query = {"limit": limit, "offset": offset + limit}
        if include:
            query["include"] = ",".join(include)
        following = url_for("api.table", study_id=study.id, level=level, _external=True, **query)
    data = {
        "study": {"id": study.id, "name": study.name},
        "level": level,
        "metadata": {str(k): v for k, v in exported.metadata.items()},
        "columns": [
            {"name": c.name, "label": c.label, "type": c.type, "description": c.description,
             "values": {str(k): v for k, v in (c.values or {}).items()}}
            for c in exported.columns
        ],
        "total": total,
        "offset": offset,
        "limit": limit,
        "rows": rows,
        "next": following,
    }
    response = json_response(data)  # serialise first: a bad value is a 500, not an audited export
    _write({
        "action": "export.api", "entity": "study", "entity_id": study.id, "study_id": study.id,
        "detail": {"level": level, "rows": len(rows), "total": total, "offset": offset,
                   "limit": limit, "include_text": "text" in include,
                   "include_notes": "notes" in include, "token_id": g.api_token.id},
    })
    return response


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API (public)."""
    _check_parameters(())
    return json_response(openapi_document(request.url_root.rstrip("/") + PREFIX))


# ----------------------------------------------------------------------------- OpenAPI


def _error_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def openapi_document(server_url: str) -> dict[str, Any]:
    """The API's description; ``tests/web/test_api.py`` checks it against the routes."""
    error_schema = {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "additionalProperties": False,
                "properties": {
                    "status": {"type": "integer", "examples": [401]},
                    "message": {"type": "string", "description": "What went wrong, for a person."},
                },
            },
        },
    }

    def error(description: str, extra_headers: dict | None = None) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if extra_headers:
            response["headers"] = extra_headers
        return response

    standard_errors = {
        "401": _error_ref("Unauthorized"),
        "405": _error_ref("MethodNotAllowed"),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mbtcode API",
            "version": f"1 (mbtcode {__version__})",
            "summary": "Read-only fidelity tables for analysis pipelines.",
            "description": (
                "Pull the tables of the exports (session, therapist, utterance, rating and "
                "outcome level) as JSON. Authenticate with a personal API token "
                "(`Authorization: Bearer mbt_…`), made on the *API tokens* page of mbtcode; "
                "the token acts with its owner's rights. Every table request is written to "
                "the audit log. See docs/api.md."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerToken": []}],
        "tags": [{"name": "studies"}, {"name": "tables"}, {"name": "meta"}],
        "paths": {
            "/studies": {
                "get": {
                    "operationId": "listStudies",
                    "tags": ["studies"],
                    "summary": "Studies you belong to",
                    "description": "Every study the token's owner is a member of (all studies "
                                   "for site admins), with the owner's role and capabilities.",
                    "responses": {
                        "200": {
                            "description": "The studies, by name.",
                            "content": {"application/json": {"schema": {
                                "type": "object",
                                "required": ["studies"],
                                "properties": {"studies": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Study"},
                                }},
                            }}},
                        },
                        "400": _error_ref("BadRequest"),
                        **standard_errors,
                    },
                },
            },
            "/studies/{study_id}/tables/{level}": {
                "parameters": [
                    {"$ref": "#/components/parameters/StudyId"},
                    {"$ref": "#/components/parameters/Level"},
                ],
                "get": {
                    "operationId": "getTable",
                    "tags": ["tables"],
                    "summary": "One export table, a page of rows at a time",
                    "description": (
                        "Needs the `export` capability in the study (coordinators, analysts, "
                        "site admins). Rows come in the export's order; follow `next` until it "
                        "is null. The table is computed fresh on every request, so pages "
                        "taken while raters submit may shift: compare `total` across pages. "
                        "`include=text` / `include=notes` add utterance text and rater notes "
                        "and need `export_identifying` (coordinators, site admins). "
                        "Audited as `export.api`."
                    ),
                    "parameters": [
                        {"$ref": "#/components/parameters/Limit"},
                        {"$ref": "#/components/parameters/Offset"},
                        {"$ref": "#/components/parameters/Include"},
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of the table with its codebook.",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Table"}}},
                        },
                        "400": _error_ref("BadRequest"),
                        "403": _error_ref("Forbidden"),
                        "404": _error_ref("NotFound"),
                        **standard_errors,
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "tags": ["meta"],
                    "summary": "This description",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error_ref("BadRequest"),
                        "405": _error_ref("MethodNotAllowed"),
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (`mbt_` and 43 characters) from the "
                                   "API tokens page. Only its SHA-256 is stored; revoke it there.",
                },
            },
            "parameters": {
                "StudyId": {
                    "name": "study_id", "in": "path", "required": True,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                    "description": "The study's id (see `GET /studies`).",
                },
                "Level": {
                    "name": "level", "in": "path", "required": True,
                    "schema": {"type": "string", "enum": list(LEVELS)},
                    "description": "The table: one row per session, therapist, utterance, "
                                   "rating or outcome value.",
                },
                "Limit": {
                    "name": "limit", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                               "default": DEFAULT_LIMIT},
                    "description": "Rows per page.",
                },
                "Offset": {
                    "name": "offset", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                               "default": 0},
                    "description": "Rows to skip.",
                },
                "Include": {
                    "name": "include", "in": "query", "required": False,
                    "style": "form", "explode": False,
                    "schema": {"type": "array", "uniqueItems": True,
                               "items": {"type": "string", "enum": list(INCLUDES)}},
                    "description": "Identifying columns to add: `text` (utterance text and speaker labels), "
                                   "`notes` (rater notes), comma-separated. Needs the "
                                   "`export_identifying` capability (403 otherwise).",
                },
            },
            "responses": {
                "BadRequest": error("A query parameter is missing its rules (bad limit, offset "
                                    "or include, an unknown parameter, a token in the URL)."),
                "Unauthorized": error(
                    "No token, a malformed Authorization header, or a token that is unknown, "
                    "expired, revoked or of a deactivated account.",
                    {"WWW-Authenticate": {"schema": {"type": "string"},
                                          "description": "`Bearer realm=\"mbtcode\"` with an "
                                                         "`error` where one applies."}},
                ),
                "Forbidden": error("A study you belong to, but your role does not allow this "
                                   "(raters never export; `include` needs "
                                   "`export_identifying`)."),
                "NotFound": error("No such study, or you are not a member of it; or no such "
                                  "table."),
                "MethodNotAllowed": error("The API is read-only: only GET (and HEAD)."),
            },
            "schemas": {
                "Error": error_schema,
                "Study": {
                    "type": "object",
                    "required": ["id", "name", "scheme", "role", "capabilities", "tables"],
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "scheme": {
                            "type": "object",
                            "required": ["id", "version", "revision"],
                            "properties": {
                                "id": {"type": "string", "examples": ["mbt-individual"]},
                                "version": {"type": "string",
                                            "description": "The version its author declared."},
                                "revision": {"type": "integer",
                                             "description": "mbtcode's revision number of "
                                                            "the scheme file."},
                            },
                        },
                        "role": {"type": "string",
                                 "enum": ["admin", "coordinator", "analyst", "rater"]},
                        "capabilities": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(API_CAPABILITIES)},
                            "description": "`export`: may read the tables; "
                                           "`export_identifying`: may add text and notes.",
                        },
                        "tables": {
                            "type": "object",
                            "description": "URL of each table (empty without `export`).",
                            "propertyNames": {"enum": list(LEVELS)},
                            "additionalProperties": {"type": "string", "format": "uri"},
                        },
                    },
                },
                "Column": {
                    "type": "object",
                    "required": ["name", "label", "type", "description", "values"],
                    "properties": {
                        "name": {"type": "string", "description": "The key in each row."},
                        "label": {"type": "string"},
                        "type": {"type": "string",
                                 "enum": ["string", "integer", "number", "date", "boolean"]},
                        "description": {"type": "string"},
                        "values": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "Value labels (code → label); may be empty.",
                        },
                    },
                },
                "Table": {
                    "type": "object",
                    "required": ["study", "level", "metadata", "columns", "total", "offset",
                                 "limit", "rows", "next"],
                    "properties": {
                        "study": {
                            "type": "object",
                            "required": ["id", "name"],
                            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
                        },
                        "level": {"type": "string", "enum": list(LEVELS)},
                        "metadata": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": "Scheme and codebook versions, filters, time of "
                                           "export and the like.",
                        },
                        "columns": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/Column"}},
                        "total": {"type": "integer", "minimum": 0,
                                  "description": "Rows in the whole table."},
                        "offset": {"type": "integer", "minimum": 0},
                        "limit": {"type": "integer", "minimum": 1},
                        "rows": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": ["string", "integer", "number", "boolean", "null"],
                                },
                            },
                            "description": "One object per row, keyed by column name. Missing "
                                           "values are null; dates are ISO 8601 strings.",
                        },
                        "next": {"type": ["string", "null"], "format": "uri",
                                 "description": "The next page, or null on the last one."},
                    },
                },
            },
        },
    }
