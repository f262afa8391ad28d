"""Where templates, static files, schemes and demo data live, in a checkout and in a wheel.

The product keeps ``templates/``, ``static/`` and ``schemas/`` at the top of the repository.
A wheel carries them inside the package as ``mbtcode/_templates`` etc. (see ``pyproject.toml``,
``[tool.setuptools.package-dir]``), so we look inside the package first and fall back to the
checkout's top level.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def _resolve(top_level: str) -> Path:
    packaged = PACKAGE_DIR / f"_{top_level}"
    if packaged.is_dir():
        return packaged
    return PROJECT_ROOT / top_level


TEMPLATES_DIR = _resolve("templates")
STATIC_DIR = _resolve("static")
SCHEMAS_DIR = _resolve("schemas")
DEMO_DIR = PACKAGE_DIR / "demo"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
