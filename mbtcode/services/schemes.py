"""Register scheme files as immutable, numbered revisions and look them up."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from ..extensions import db
from ..io.schemes import Scheme, load_scheme_file, shipped_scheme_files
from ..models import SchemeVersion, User
from . import ServiceError, audit


def register_scheme(
    scheme: Scheme, *, actor: User | None, source_filename: str | None = None
) -> tuple[SchemeVersion, bool]:
    """Store a validated scheme; return ``(version, created)``.

    Identical content (same canonical SHA-256) is stored once. A changed file with a known
    id becomes the next revision; existing revisions are never modified, so studies that
    pinned one keep coding with exactly what they started with.
    """
    existing = db.session.scalar(select(SchemeVersion).where(SchemeVersion.sha256 == scheme.sha256))
    if existing is not None:
        if existing.key != scheme.id:
            raise ServiceError(
                f"identical content is already stored as scheme '{existing.ref}', under another id"
            )
        return existing, False
    last = db.session.scalar(
        select(func.max(SchemeVersion.revision)).where(SchemeVersion.key == scheme.id)
    )
    version = SchemeVersion(
        key=scheme.id,
        revision=(last or 0) + 1,
        version=scheme.version,
        title=scheme.title,
        sha256=scheme.sha256,
        document=scheme.document,
        source_filename=source_filename,
        created_by_id=actor.id if actor else None,
    )
    db.session.add(version)
    db.session.flush()
    audit.record(
        "scheme.add",
        actor=actor,
        entity="scheme_version",
        entity_id=version.id,
        detail={"new": {"ref": version.ref, "version": scheme.version, "sha256": scheme.sha256}},
    )
    return version, True


def register_shipped_schemes(*, actor: User | None = None) -> list[SchemeVersion]:
    """Make sure every scheme file shipped with mbtcode is stored (idempotent)."""
    return [
        register_scheme(load_scheme_file(path), actor=actor, source_filename=Path(path).name)[0]
        for path in shipped_scheme_files()
    ]


def find_scheme_version(ref: str) -> SchemeVersion:
    """Resolve ``key`` (latest revision) or ``key@revision``; raise ServiceError if unknown."""
    key, at, revision = ref.partition("@")
    query = select(SchemeVersion).where(SchemeVersion.key == key)
    if at:
        if not (revision.isascii() and revision.isdigit()):
            raise ServiceError(f"bad scheme reference '{ref}': use ID or ID@REVISION, e.g. {key}@1")
        query = query.where(SchemeVersion.revision == int(revision))
    found = db.session.scalar(query.order_by(SchemeVersion.revision.desc()).limit(1))
    if found is None:
        known = ", ".join(v.ref for v in list_scheme_versions()) or "none"
        raise ServiceError(f"no scheme '{ref}' (known: {known}); add one with 'mbtcode scheme add FILE'")
    return found


def list_scheme_versions() -> list[SchemeVersion]:
    """All stored revisions, by key then revision."""
    return list(
        db.session.scalars(select(SchemeVersion).order_by(SchemeVersion.key, SchemeVersion.revision))
    )


_parsed: dict[str, Scheme] = {}


def as_scheme(version: SchemeVersion) -> Scheme:
    """The parsed, typed view of a stored revision.

    Revisions never change, so the parse (JSON Schema validation included) is cached by the
    revision's SHA-256; every save in the coding workspace needs the scheme.
    """
    cached = _parsed.get(version.sha256)
    if cached is None:
        import json

        from ..io.schemes import parse_scheme

        cached = parse_scheme(json.dumps(version.document).encode(), f"{version.ref} (stored)")
        _parsed[version.sha256] = cached
    return cached
