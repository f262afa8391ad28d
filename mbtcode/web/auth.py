"""Log in and out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from ..extensions import db
from ..models import User
from ..services import audit
from ..services.users import authenticate

bp = Blueprint("auth", __name__, url_prefix="/auth")


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def load_user(user_id: str) -> User | None:
    """flask-login loader: ``id:epoch``; a stale epoch means the login was revoked."""
    uid, _, epoch = user_id.partition(":")
    if not (uid.isdigit() and epoch.isdigit()):
        return None
    user = db.session.get(User, int(uid))
    if user is None or not user.active or user.session_epoch != int(epoch):
        return None
    return user


def unauthorized():
    """Not signed in: pages go to the login form; background saves get a 401 they can act on.

    A save answered with the login page (after a redirect) would look like success to the
    script; a 401 lets the coding page keep the unsaved work and ask for a new login.
    """
    if request.headers.get("HX-Request") or request.accept_mimetypes.best == "application/json":
        response = jsonify(error="login required")
        response.status_code = 401
        response.headers["X-Mbtcode-Error"] = "login"
        return response
    flash("Please log in to continue.", "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if not target:
        return url_for("index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or not target.isprintable():
        # isprintable: urlsplit drops tabs and newlines that browsers also drop ("/\t/x"
        # becomes "//x"), and CR/LF in a Location header is a 500 (header injection).
        return url_for("index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; sign in on valid credentials."""
    if current_user.is_authenticated:
        return redirect(url_for("index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            session.clear()  # a fresh session on login (no fixation)
            login_user(user)
            session.permanent = True
            audit.record("auth.login", actor=user, entity="user", entity_id=user.id)
            db.session.commit()
            return redirect(safe_next(request.args.get("next")))
        audit.record("auth.login_failed", actor=None, entity="user",
                     detail={"email": (form.email.data or "")[:254]})
        db.session.commit()
        flash("Wrong e-mail or password.", "error")
        status = 401
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out; the old session cookie stops working at once."""
    user = db.session.get(User, current_user.id)
    user.session_epoch += 1
    audit.record("auth.logout", actor=user, entity="user", entity_id=user.id)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.get("/csrf")
@login_required
def csrf_token():
    """A fresh CSRF token, for a page whose token died with an expired login."""
    return jsonify(token=generate_csrf())
