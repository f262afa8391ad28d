"""Error pages: short, specific, and never a stack trace or data."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..extensions import db


def register_errorhandlers(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _csrf_error(error: CSRFError):
    if request.headers.get("HX-Request"):
        # The coding page refreshes its token and retries; nothing was written.
        return "csrf", 400, {"X-Mbtcode-Error": "csrf"}
    return render_template(
        "errors/error.html",
        code=400,
        title="Your form expired",
        message="The page was open too long or you were signed out. Reload it and try again; "
        "nothing was changed.",
    ), 400


def _http_error(error: HTTPException):
    titles = {404: "Not found", 403: "Not allowed", 405: "Not allowed", 413: "Too large"}
    return render_template(
        "errors/error.html",
        code=error.code,
        title=titles.get(error.code or 500, error.name),
        message=error.description if error.code != 404 else
        "There is nothing here, or you have no access to it.",
    ), error.code


def _unexpected_error(error: Exception):
    db.session.rollback()
    if isinstance(error, HTTPException):  # pragma: no cover - handled above
        return _http_error(error)
    from flask import current_app

    if current_app.testing and current_app.config.get("PROPAGATE_EXCEPTIONS"):
        raise error
    current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
    return render_template(
        "errors/error.html",
        code=500,
        title="Something went wrong",
        message="The error was logged. Nothing you saved before is lost; try again.",
    ), 500
