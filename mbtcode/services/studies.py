"""Studies: create, find, list."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import func, select

from ..extensions import db
from ..models import Study, TherapySession, User
from . import ServiceError, audit
from .schemes import find_scheme_version, register_shipped_schemes

MAX_NAME_LENGTH = 200


def create_study(name: str, *, actor: User | None, scheme_ref: str | None = None) -> Study:
    """Create a study pinned to a scheme revision (default: the latest shipped MBT scheme)."""
    name = " ".join(name.split())
    if not name:
        raise ServiceError("study name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ServiceError(f"study name too long: at most {MAX_NAME_LENGTH} characters")
    if get_study_by_name(name) is not None:
        raise ServiceError(f"a study named '{name}' already exists")
    ref = scheme_ref or current_app.config["DEFAULT_SCHEME"]
    register_shipped_schemes(actor=actor)  # idempotent; shipped schemes work without 'init'
    version = find_scheme_version(ref)
    study = Study(name=name, scheme_version=version, created_by_id=actor.id if actor else None)
    db.session.add(study)
    db.session.flush()
    audit.record(
        "study.create",
        actor=actor,
        entity="study",
        entity_id=study.id,
        study_id=study.id,
        detail={"new": {"name": name, "scheme": version.ref}},
    )
    return study


def get_study_by_name(name: str) -> Study | None:
    """Find a study by exact name (white space collapsed)."""
    return db.session.scalar(select(Study).where(Study.name == " ".join(name.split())))


def require_study(name: str) -> Study:
    """Find a study by name or raise ServiceError listing the known ones."""
    study = get_study_by_name(name)
    if study is None:
        names = db.session.scalars(select(Study.name).order_by(Study.name)).all()
        known = ", ".join(f"'{n}'" for n in names) or "none yet"
        raise ServiceError(
            f"no study named '{name}' (known: {known}); create it with 'mbtcode study create NAME'"
        )
    return study


def list_studies_with_counts() -> list[tuple[Study, int]]:
    """Every study with its number of sessions, by name."""
    counts = (
        select(TherapySession.study_id, func.count(TherapySession.id).label("n"))
        .group_by(TherapySession.study_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Study, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.study_id == Study.id)
        .order_by(Study.name)
    )
    return [(study, n) for study, n in rows]


def session_counts(study_ids: list[int]) -> dict[int, int]:
    """Number of sessions per study id."""
    if not study_ids:
        return {}
    rows = db.session.execute(
        select(TherapySession.study_id, func.count(TherapySession.id))
        .where(TherapySession.study_id.in_(study_ids))
        .group_by(TherapySession.study_id)
    )
    return dict(rows.all())
