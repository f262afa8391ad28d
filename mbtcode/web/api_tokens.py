"""The API tokens page: every signed-in user makes and revokes their own tokens.

A new token's secret is shown once, in the answer to the form that made it (never in a
flash message: those travel in the session cookie), and every page here is ``no-store``.
Another user's token does not exist for you (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..models import ApiToken, User
from ..services import ServiceError, api_tokens
from .api import PREFIX as API_PREFIX
from .transactions import commit_and_keep_loaded

bp = Blueprint("api_tokens", __name__, url_prefix="/account/api-tokens")

#: Lifetimes offered by the form: value (days, "" for none) → label.
EXPIRY_CHOICES = [
    ("", "Never (until revoked)"),
    ("7", "7 days"),
    ("30", "30 days"),
    ("90", "90 days"),
    ("180", "180 days"),
    ("365", "1 year"),
]


@dataclass
class TokenForm:
    """What the create form holds, and what was wrong with it."""

    name: str = ""
    expires: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_request(cls) -> TokenForm:
        form = cls(name=request.form.get("name", "")[:1000],
                   expires=request.form.get("expires", ""))
        if form.expires not in dict(EXPIRY_CHOICES):
            form.errors["expires"] = "Choose one of the lifetimes offered."
            form.expires = ""
        return form


@bp.after_request
def _no_store(response):
    # A token's secret is on these pages once; no browser or proxy may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _me() -> User:
    return db.session.get(User, current_user.id)


def _page(form: TokenForm, status: int = 200):
    user = _me()
    tokens = api_tokens.tokens_for(user)
    active = sum(api_tokens.token_status(t) == "active" for t in tokens)
    return render_template(
        "api_tokens/index.html", form=form, tokens=tokens, status_of=api_tokens.token_status,
        active=active, max_active=api_tokens.MAX_ACTIVE_TOKENS,
        max_name=api_tokens.MAX_NAME_LENGTH, expiry_choices=EXPIRY_CHOICES,
        api_root=request.url_root.rstrip("/") + API_PREFIX,
    ), status


@bp.get("/")
@login_required
def index():
    """The user's tokens and the form to make one."""
    return _page(TokenForm())


@bp.post("/")
@login_required
def create():
    """Make a token and show its secret, once."""
    form = TokenForm.from_request()
    if form.errors:
        return _page(form)
    user = _me()
    try:
        token, secret = api_tokens.create_token(
            user, form.name, expires_in_days=int(form.expires) if form.expires else None,
            actor=user,
        )
    except ServiceError as exc:
        db.session.rollback()
        form.errors["name"] = f"{str(exc)[0].upper()}{str(exc)[1:]}."
        return _page(form)
    commit_and_keep_loaded()
    return render_template("api_tokens/created.html", token=token, secret=secret,
                           status=api_tokens.token_status(token))


def _own_token_or_404(token_id: int) -> ApiToken:
    token = api_tokens.get_own_token(current_user, token_id)
    if token is None:
        abort(404)
    return token


@bp.get("/<int:token_id>/revoke")
@login_required
def confirm_revoke(token_id: int):
    """Ask before revoking: a pipeline using the token stops working at once."""
    token = _own_token_or_404(token_id)
    return render_template("api_tokens/revoke.html", token=token,
                           status=api_tokens.token_status(token))


@bp.post("/<int:token_id>/revoke")
@login_required
def revoke(token_id: int):
    """Revoke one of the user's own tokens."""
    token = _own_token_or_404(token_id)
    name = token.name
    try:
        api_tokens.revoke_token(token, actor=_me())
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Nothing changed: {exc}.", "info")
        return redirect(url_for("api_tokens.index"), 303)
    db.session.commit()
    flash(f"Token “{name}” is revoked: requests with it are refused from now on.", "info")
    return redirect(url_for("api_tokens.index"), 303)
