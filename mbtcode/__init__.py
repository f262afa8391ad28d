"""mbtcode: rate Mentalization-Based Treatment sessions for fidelity research."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import paths

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the application.

    Configuration is read in this order, later wins: ``mbtcode.config.Defaults``, the
    instance file ``mbtcode.cfg``, ``MBTCODE_*`` environment variables, then ``config``.
    """
    app = Flask(
        __name__,
        instance_path=os.environ.get("MBTCODE_INSTANCE_PATH") or None,
        instance_relative_config=True,
        template_folder=str(paths.TEMPLATES_DIR),
        static_folder=str(paths.STATIC_DIR),
    )
    app.config.from_object("mbtcode.config.Defaults")
    app.config.from_pyfile("mbtcode.cfg", silent=True)
    app.config.from_prefixed_env("MBTCODE")
    if config:
        app.config.from_mapping(config)
    _finish_config(app)
    _register_extensions(app)
    _register_blueprints(app)
    _register_errorhandlers(app)
    _register_cli(app)
    return app


def _finish_config(app: Flask) -> None:
    """Derive the database URL and secret key where they were not given."""
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    url = app.config.get("DATABASE_URL") or (
        "sqlite:///" + str(Path(app.instance_path) / "mbtcode.db")
    )
    app.config["DATABASE_URL"] = url
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    from .database import engine_options

    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(url))
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path) / "secret_key")


def _instance_secret(path: Path) -> str:
    """Read the instance's secret key, creating a random one (mode 0600) on first use."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key)
        return key


def _register_extensions(app: Flask) -> None:
    from .database import configure_sqlite
    from .extensions import csrf, db, htmx, login

    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)
    csrf.init_app(app)
    htmx.init_app(app)
    login.init_app(app)
    login.login_view = "auth.login"
    login.login_message = "Please log in to continue."
    login.login_message_category = "info"
    login.session_protection = "strong"

    from .web.auth import load_user, unauthorized

    login.user_loader(load_user)
    login.unauthorized_handler(unauthorized)


def _register_blueprints(app: Flask) -> None:
    from .web import register_blueprints

    register_blueprints(app)


def _register_errorhandlers(app: Flask) -> None:
    from .web.errors import register_errorhandlers

    register_errorhandlers(app)


def _register_cli(app: Flask) -> None:
    from .cli import register_commands

    register_commands(app)
