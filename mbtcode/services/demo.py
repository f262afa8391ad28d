"""The demo study: fictional MBT sessions and one account per role (idempotent)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .. import paths
from ..extensions import db
from ..models import Transcript
from . import ServiceError
from .imports import SourceFile, apply_import, plan_import
from .schemes import register_shipped_schemes
from .studies import create_study, get_study_by_name
from .users import create_user, get_user_by_email

DEMO_STUDY = "MBT demo study"
DEMO_ACCOUNTS = (
    ("admin@demo.example.org", "Demo Admin", "admin"),
    ("coordinator@demo.example.org", "Demo Coordinator", "coordinator"),
    ("rater1@demo.example.org", "Demo Rater One", "rater"),
    ("rater2@demo.example.org", "Demo Rater Two", "rater"),
    ("analyst@demo.example.org", "Demo Analyst", "analyst"),
    # Two raters whose double-coding of two sessions the demo simulates, so the reliability
    # report and the adjudication queue have something to show on first start.
    ("rater3@demo.example.org", "Demo Rater Three (simulated)", "rater"),
    ("rater4@demo.example.org", "Demo Rater Four (simulated)", "rater"),
)
TRANSCRIPTS_DIR = paths.DEMO_DIR / "transcripts"


@dataclass(frozen=True)
class DemoResult:
    study_name: str
    imported: int
    accounts: list[tuple[str, str, str]]  # (email, role, password)


def load_demo(instance_path: str | os.PathLike) -> DemoResult:
    """Create the demo study, its sessions and accounts; running it again adds nothing.

    Passwords are random on first run and kept in ``<instance>/demo-accounts.json`` (mode
    0600), so that a second run can print them again. The demo is for trying mbtcode out:
    never load it into a database that holds real data.
    """
    register_shipped_schemes()
    study = get_study_by_name(DEMO_STUDY) or create_study(DEMO_STUDY, actor=None)
    known = set(db.session.scalars(select(Transcript.sha256).where(Transcript.study_id == study.id)))
    manifest_path = TRANSCRIPTS_DIR / "manifest.csv"
    sources = [
        SourceFile(path.name, path.read_bytes())
        for path in sorted(TRANSCRIPTS_DIR.iterdir())
        if path.suffix in {".txt", ".vtt", ".srt", ".csv", ".docx"} and path.name != "manifest.csv"
    ]
    # The stored hash is the SHA-256 of the file's bytes; a broken file is reported by the plan.
    fresh = [s for s in sources if hashlib.sha256(s.data).hexdigest() not in known]
    imported = 0
    if fresh:
        plan = plan_import(
            study, fresh, manifest=SourceFile(manifest_path.name, manifest_path.read_bytes())
        )
        if not plan.ok:
            raise ServiceError(
                "the demo transcripts do not import cleanly: " + "; ".join(map(str, plan.problems))
            )
        imported = len(apply_import(plan, actor=None))
    accounts = _demo_accounts(Path(instance_path))
    _demo_team(study)
    return DemoResult(DEMO_STUDY, imported, accounts)


#: Which demo sessions (by position in the study) each demo rater codes; 2 and 3 are
#: double-coded, as about a fifth of a real study's sessions would be.
DEMO_ASSIGNMENTS = {"rater1@demo.example.org": (0, 1, 2, 3), "rater2@demo.example.org": (1, 2, 4)}
#: Sessions the two simulated raters code and submit (double-coded, ready for adjudication).
SIMULATED_ASSIGNMENTS = {"rater3@demo.example.org": (5, 6), "rater4@demo.example.org": (5, 6)}


def _demo_team(study) -> None:
    """Give each demo account its study role and the raters their assignments (idempotent)."""
    from sqlalchemy import select as _select

    from ..models import TherapySession
    from .assignments import assign_sessions
    from .permissions import add_member

    for email, _name, role in DEMO_ACCOUNTS:
        if role != "admin":
            add_member(study, get_user_by_email(email), role, actor=None)
    sessions = list(db.session.scalars(
        _select(TherapySession).where(TherapySession.study_id == study.id).order_by(TherapySession.id)
    ))
    for email, positions in DEMO_ASSIGNMENTS.items():
        chosen = [sessions[i] for i in positions if i < len(sessions)]
        if chosen:
            assign_sessions(study, chosen, [get_user_by_email(email)], actor=None)
    _simulated_double_coding(study, sessions)


def _simulated_double_coding(study, sessions) -> None:
    """Code, rate and submit the simulated raters' sessions once (seeded: same every time).

    The second rater agrees with the first on about three codes in four and rates within a
    point or so: enough agreement for a plausible report, enough disagreement to adjudicate.
    """
    import random

    from ..models import Assignment
    from .assignments import assign_sessions, codable_roles, required_ratings, submit
    from .coding import record_code
    from .ratings import record_rating
    from .schemes import as_scheme
    from .sessions import all_utterances

    scheme = as_scheme(study.scheme_version)
    roles = codable_roles(study)
    rng = random.Random(20261122)
    first: dict[tuple[int, int], str] = {}
    base: dict[tuple[int, str, str], int] = {}
    for email, positions in SIMULATED_ASSIGNMENTS.items():
        rater = get_user_by_email(email)
        for i in positions:
            if i >= len(sessions):
                continue
            session = sessions[i]
            if db.session.scalar(select(Assignment.id).where(
                    Assignment.session_id == session.id, Assignment.rater_id == rater.id)):
                continue  # already simulated on an earlier run
            (assignment,) = assign_sessions(study, [session], [rater], actor=None)
            for u in all_utterances(session):
                if u.role not in roles:
                    continue
                codes = [c.id for c in scheme.code_set(roles[u.role]).codes]
                key = (session.id, u.id)
                if key in first and rng.random() < 0.75:
                    code = first[key]
                else:
                    code = codes[min(int(rng.expovariate(0.7)), len(codes) - 1)]
                first.setdefault(key, code)
                record_code(assignment, u, code, expected_version=0, actor=rater)
            for instrument, item, dimension in required_ratings(study):
                key = (session.id, item, dimension)
                value = base.setdefault(key, rng.randint(3, 6))
                if rng.random() < 0.4:
                    value = min(7, max(1, value + rng.choice((-2, -1, 1))))
                record_rating(assignment, instrument, item, dimension, str(value),
                              expected_version=0, actor=rater)
            submit(assignment, actor=rater)


def _demo_accounts(instance_path: Path) -> list[tuple[str, str, str]]:
    store = instance_path / "demo-accounts.json"
    passwords: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    changed = False
    accounts = []
    for email, name, role in DEMO_ACCOUNTS:
        user = get_user_by_email(email)
        if user is None:
            password = passwords.get(email) or _passphrase()
            create_user(email, name=name, role=role, password=password, actor=None)
        elif email not in passwords:
            raise ServiceError(
                f"demo account {email} exists but its password is not in {store}; "
                "delete the demo database (or that account) and run 'mbtcode demo' again"
            )
        else:
            password = passwords[email]
        if passwords.get(email) != password:
            passwords[email] = password
            changed = True
        accounts.append((email, role, password))
    if changed:
        fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(passwords, fh, indent=2)
    return accounts


def _passphrase() -> str:
    """A random 16-character password (96 bits), copyable from the terminal."""
    return secrets.token_urlsafe(12)
