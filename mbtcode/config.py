"""Default configuration; every key can be overridden by ``MBTCODE_<KEY>`` in the environment."""

from __future__ import annotations

from datetime import timedelta


class Defaults:
    """Settings for the embedded single-user default (SQLite in the instance folder)."""

    #: Database URL. ``None`` means ``sqlite:///<instance>/mbtcode.db``.
    #: Set ``MBTCODE_DATABASE_URL=postgresql+psycopg://...`` for multi-user deployments.
    DATABASE_URL: str | None = None
    #: ``None`` means: read or create ``<instance>/secret_key`` (random, mode 0600).
    SECRET_KEY: str | None = None

    SQLALCHEMY_TRACK_MODIFICATIONS = False

    # CSRF tokens live as long as the login session, so a long coding session never
    # loses work to an expired token; the session lifetime does the expiring.
    WTF_CSRF_TIME_LIMIT = None

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    #: The embedded default serves plain HTTP on 127.0.0.1; set True behind TLS.
    SESSION_COOKIE_SECURE = False
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    REMEMBER_COOKIE_DURATION = timedelta(hours=12)

    #: Largest request body (transcript uploads included).
    MAX_CONTENT_LENGTH = 20 * 1024 * 1024
    #: Largest transcript file the importer accepts.
    IMPORT_MAX_BYTES = 20 * 1024 * 1024

    #: Scheme a new study uses when none is named.
    DEFAULT_SCHEME = "mbt-individual"

    #: Utterances per page on the transcript view.
    TRANSCRIPT_PAGE_SIZE = 500
