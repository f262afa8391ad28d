"""One place that decides between a full page and an htmx fragment."""

from __future__ import annotations

from typing import Any

from flask import render_template

from ..extensions import htmx


def render(page: str, fragment: str | None = None, /, **context: Any) -> str:
    """Render ``fragment`` for htmx requests, else the full ``page``.

    Positional-only, so the context may use any name (``page`` for pagination, say).
    """
    if fragment is not None and htmx and not htmx.boosted:
        return render_template(fragment, **context)
    return render_template(page, **context)
