"""Fixtures shared by the web tests of the coding workspace."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token_from

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_ATTR = '" onfocus="alert(1)" x="'


@pytest.fixture
def w(coding_world):
    """The two-rater coding world (see tests/conftest.py)."""
    return coding_world


@pytest.fixture
def rater(w, client_for):
    """Rater A's browser."""
    return client_for(w.rater_a)


def page_token(browser) -> str:
    """A CSRF token from the rater's queue page."""
    return csrf_token_from(browser.get("/assignments/").get_data(as_text=True))
