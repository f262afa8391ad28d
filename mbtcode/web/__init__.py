"""Blueprints, one per area of the site, and the response headers every page gets."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_login import current_user
from werkzeug.routing import IntegerConverter

# No inline scripts or styles, no eval: htmx runs with allowEval=false (see base.html).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` that only matches ids the database can hold, so ``/studies/99…9`` is a 404.

    Primary keys are INTEGER: 32-bit on PostgreSQL ("integer out of range" beyond), and
    SQLite raises OverflowError beyond 64 bits; either would be a 500.
    """

    def __init__(self, map, fixed_digits=0, min=None, max=2**31 - 1, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def register_blueprints(app: Flask) -> None:
    from . import (
        access,
        adjudication,
        api,
        api_tokens,
        assignments,
        auth,
        coding,
        exports,
        fidelity,
        quality,
        ratings,
        reliability,
        sessions,
        studies,
    )

    app.url_map.converters["int"] = BoundedIntConverter
    app.register_blueprint(auth.bp)
    app.register_blueprint(studies.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(assignments.bp)
    app.register_blueprint(coding.bp)
    app.register_blueprint(ratings.bp)
    app.register_blueprint(reliability.bp)
    app.register_blueprint(adjudication.bp)
    app.register_blueprint(api_tokens.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(fidelity.bp)
    app.register_blueprint(quality.bp)
    app.register_blueprint(exports.bp)
    app.after_request(_security_headers)
    app.add_template_filter(format_timestamp, "timestamp")
    app.add_template_global(access.user_can, "user_can")
    app.add_url_rule("/", endpoint="index", view_func=studies.home)


def format_timestamp(seconds: float | None) -> str:
    """Seconds as ``h:mm:ss`` (or ``m:ss`` under an hour)."""
    if seconds is None:
        return ""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if current_user.is_authenticated and request.endpoint != "static":
        # Transcripts are health data: never keep them in a browser or proxy cache.
        headers["Cache-Control"] = "no-store"
    headers.add("Vary", "HX-Request")
    return response
