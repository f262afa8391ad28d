"""The demo study: fictional MBT sessions and one account per role (idempotent)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from .. import paths
from ..extensions import db
from ..models import TherapySession, Transcript
from . import ServiceError, audit
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
    _fidelity_demo()
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


# ----------------------------------------------------------------------------- fidelity history

#: A second demo study with a year of simulated, rated sessions, so the fidelity dashboard,
#: the therapist pages and the program quality audits have something to show. It is a study
#: of its own because the transcript demo above promises exactly its 7 imported sessions.
FIDELITY_STUDY = "MBT fidelity demo (simulated history)"
#: The simulated rater who rated the history (single-coded, submitted).
HISTORY_RATER = "rater4@demo.example.org"
HISTORY_SEED = 20261123
HISTORY_START = date(2025, 7, 1)
HISTORY_END = date(2026, 6, 30)
#: therapist → (site, team, adherence at the start, at the end, competence start, end).
#: TH-02 drifts below the cut-off in the last sessions; TH-03 improves.
HISTORY_THERAPISTS = {
    "TH-01": ("North clinic", "Day unit", 4.9, 5.0, 5.1, 5.2),
    "TH-02": ("North clinic", "Outpatient team", 4.9, 3.0, 4.8, 3.5),
    "TH-03": ("South clinic", "Day unit", 3.9, 5.0, 4.2, 5.1),
    "TH-04": ("South clinic", "Outpatient team", 4.4, 4.5, 4.6, 4.6),
}
#: The two program audits, six months apart: (date, {criterion: value}) of the 20 criteria.
HISTORY_AUDITS = (
    (date(2025, 12, 1), dict(zip(map(str, range(1, 21)),
                                 (4, 3, 3, 2, 2, 4, 3, 3, 3, 4, 4, 3, 4, 2, 3, 2, 3, 3, 3, 4), strict=True))),
    (date(2026, 6, 1), dict(zip(map(str, range(1, 21)),
                                (4, 4, 3, 3, 3, 4, 4, 3, 4, 4, 4, 4, 4, 3, 4, 3, 4, 3, 4, 4), strict=True))),
)
_PATIENT_LINES = {
    "PE": ("He ignored me on purpose. I know exactly what he thinks of me.",
           "Everyone at work is against me, that is just how it is.",
           "I felt it, so it is true. There is nothing to discuss."),
    "PM": ("I have worked it all out: it is my attachment style, really.",
           "I understand completely why I do it. It is my childhood patterns.",
           "I have thought about it a lot and I think it is all fine now."),
    "TM": ("If she really cared she would have called me back straight away.",
           "I will only believe him when he actually turns up.",
           "I needed you to give me something for it, not to talk."),
    "MENT": ("I wonder whether I was more upset than I let on.",
             "Maybe she was tired too. I had not thought of that.",
             "I think I got angry because I felt left out."),
}
_THERAPIST_LINES = {
    "EV": "That sounds really painful.", "SUP": "It makes sense that you felt alone then.",
    "CLA": "What happened just before that?", "EXP": "I am curious what went through your mind.",
    "CHA": "Hang on, can we stop there for a moment?", "SRE": "Let us rewind to when he left the room.",
    "ALT": "Could there be another way of seeing what she did?", "AID": "What were you feeling right then?",
    "AFF": "What is it like to talk about this with me now?",
    "REL": "I wonder how you experience me when I say that.",
    "CTR": "I notice I feel a bit protective of you as you tell me this.",
    "INT": "This is because of how your father treated you.", "ADV": "You should just call him and sort it out.",
    "ARG": "That is simply not true, he does care about you.",
    "CON": "So tell me exactly what was said, word for word.",
    "COG": "Logically, the evidence does not support that.",
    "PSY": "That is a typical reaction of the attachment system.", "JOIN": "Yes, he sounds awful.",
    "OTH": "Mm-hm. Go on.",
}
_OPENERS = ("How have things been since we last met?", "Where would you like to start today?",
            "What has been on your mind this week?")
_MBT_CODES = ("EV", "SUP", "CLA", "EXP", "CHA", "SRE", "ALT", "AID", "AFF", "REL", "CTR")
_NON_MBT = ("INT", "ADV", "ARG", "CON", "COG", "PSY", "JOIN", "OTH")


def _fidelity_demo() -> None:
    """Create the fidelity demo study once: a year of rated sessions and two program audits."""
    from .permissions import add_member

    study = get_study_by_name(FIDELITY_STUDY)
    if study is None:
        study = create_study(FIDELITY_STUDY, actor=None)
        study.description = ("Simulated history for the fidelity dashboard: four therapists rated on "
                             "the MBT-ACS by a simulated rater over a year; TH-02 drifts below the "
                             "cut-off. Fictional data only.")
    coordinator, rater = get_user_by_email("coordinator@demo.example.org"), get_user_by_email(HISTORY_RATER)
    add_member(study, coordinator, "coordinator", actor=None)
    add_member(study, get_user_by_email("analyst@demo.example.org"), "analyst", actor=None)
    add_member(study, rater, "rater", actor=None)
    if db.session.scalar(select(TherapySession.id).where(TherapySession.study_id == study.id).limit(1)) is None:
        _simulate_history(study, rater)
    _demo_audits(study, coordinator)


def _simulate_history(study, rater) -> None:
    """Sessions with tiny transcripts, each coded and rated by ``rater`` and submitted (seeded).

    Written as plain rows in a few flushes rather than through the coding services: the
    services' per-save savepoints and audit rows would make ``mbtcode demo`` take many
    seconds. One audit event records what was simulated.
    """
    import random

    from ..models import Assignment, Participant, SessionParticipant, Utterance, UtteranceCode
    from .assignments import codable_roles, required_ratings
    from .schemes import as_scheme

    rng = random.Random(HISTORY_SEED)
    scheme = as_scheme(study.scheme_version)
    roles = codable_roles(study)
    modes = {c.id: c for c in scheme.code_set(roles["patient"]).codes}
    needed = required_ratings(study)
    instrument = next(i for i in scheme.instruments if i.target == "session")
    span = (HISTORY_END - HISTORY_START).days

    #: (therapist, patient, date, session number, phase, site, team, progress 0…1, index, n)
    plans = []
    participants: dict[tuple[str, str], Participant] = {}

    def participant(kind: str, code: str) -> Participant:
        if (kind, code) not in participants:
            participants[kind, code] = Participant(study_id=study.id, kind=kind, code=code)
        return participants[kind, code]

    for t_index, (therapist, (site, team, *_levels)) in enumerate(HISTORY_THERAPISTS.items(), start=1):
        n = rng.randint(12, 20)
        days = sorted(rng.sample(range(0, span + 1), n))
        patients = [f"PT-{t_index}{k:02d}" for k in range(1, 4)]
        numbers = {p: rng.randint(1, 8) for p in patients}
        for i, day in enumerate(days):
            patient = patients[i % len(patients)]
            numbers[patient] += rng.randint(2, 6)
            number = numbers[patient]
            phase = "initial" if number <= 6 else ("final" if i >= n - 2 else "main")
            plans.append((therapist, patient, HISTORY_START + timedelta(days=day), number, phase, site, team,
                          i / max(n - 1, 1), i, n))
    # One session per therapist, in the middle of their year, stays unrated ("not scored").
    unrated = {(p[0], p[9] // 2) for p in plans}
    for plan in plans:
        participant("therapist", plan[0])
        participant("patient", plan[1])
    db.session.add_all(participants.values())
    db.session.flush()

    sessions, assignments, scripts = [], [], []
    for therapist, patient, day, number, phase, site, team, progress, i, n in plans:
        session = TherapySession(
            study_id=study.id, label=f"{therapist}/{patient} #{number}", session_date=day,
            modality="individual", phase=phase, session_number=number, language="en", site=site, team=team,
        )
        session.participant_links = [SessionParticipant(participant_id=participant("therapist", therapist).id),
                                     SessionParticipant(participant_id=participant("patient", patient).id)]
        script = _script(rng, therapist, progress, modes)
        text = "".join(f"{'T' if role == 'therapist' else 'P'}: {line}\n" for role, line, _code in script)
        transcript = Transcript(
            session=session, study_id=study.id, original_filename=f"simulated-{therapist}-{i + 1:02d}.txt",
            format="txt", sha256=hashlib.sha256(f"{session.label}\n{text}".encode()).hexdigest(),
            n_utterances=len(script),
        )
        sessions.append((session, transcript, therapist, progress, (therapist, i) in unrated))
        scripts.append(script)
        db.session.add_all([session, transcript])
    db.session.flush()
    for (session, transcript, therapist, progress, skip), script in zip(sessions, scripts, strict=True):
        if skip:
            continue
        assignments.append((Assignment(study_id=study.id, session_id=session.id, rater_id=rater.id,
                                       status="submitted", submitted_at=_submitted_at(session.session_date)),
                            transcript, therapist, progress, script))
    utterances = []
    for (session, transcript, therapist, progress, skip), script in zip(sessions, scripts, strict=True):
        rows = [Utterance(transcript_id=transcript.id, position=k, speaker="T" if role == "therapist" else "P",
                          role=role, text=line) for k, (role, line, _code) in enumerate(script, start=1)]
        utterances.append(rows)
        db.session.add_all(rows)
    db.session.add_all([a[0] for a in assignments])
    db.session.flush()

    by_transcript = {rows[0].transcript_id: rows for rows in utterances}
    rated = []
    for assignment, transcript, therapist, progress, script in assignments:
        for u, (role, _line, code) in zip(by_transcript[transcript.id], script, strict=True):
            rated.append(UtteranceCode(assignment_id=assignment.id, utterance_id=u.id, code_set=roles[role],
                                       code=code))
        rated.extend(_ratings(rng, assignment.id, therapist, progress, needed, instrument))
    db.session.add_all(rated)
    db.session.flush()
    audit.record("demo.history", actor=None, entity="study", entity_id=study.id, study_id=study.id,
                 detail={"sessions": len(sessions), "submitted": len(assignments), "seed": HISTORY_SEED,
                         "rater_id": rater.id})


def _submitted_at(day: date):
    from datetime import UTC, datetime, time

    return datetime.combine(day + timedelta(days=10), time(12, 0), tzinfo=UTC)


def _quality(therapist: str, progress: float) -> tuple[float, float]:
    """(adherence, competence) level of a therapist at ``progress`` (0 first, 1 last session).

    Drifting therapists hold their level for most of the year and fall in its last 30%.
    """
    _site, _team, a0, a1, c0, c1 = HISTORY_THERAPISTS[therapist]
    if a1 < a0:  # drift: late and steep
        weight = max(0.0, (progress - 0.7) / 0.3)
    else:
        weight = progress
    return a0 + (a1 - a0) * weight, c0 + (c1 - c0) * weight


def _script(rng, therapist: str, progress: float, modes: dict) -> list[tuple[str, str, str]]:
    """A tiny session: an opener, then four patient turns each answered by the therapist.

    Returns (role, text, code) per utterance. Better therapists answer a nonmentalizing mode
    with a recommended intervention more often; the drifting one argues and advises late.
    """
    adherence, _competence = _quality(therapist, progress)
    p_good = min(0.85, max(0.15, (adherence - 2.5) / 3))
    opener = rng.choice(_OPENERS)
    script = [("therapist", opener, rng.choice(("CLA", "EXP", "OTH")))]
    for _ in range(4):
        mode = rng.choices(("PE", "PM", "TM", "MENT"), weights=(4, 2, 2, 3))[0]
        script.append(("patient", rng.choice(_PATIENT_LINES[mode]), mode))
        rule = modes[mode]
        roll = rng.random()
        if rule.recommended and roll < p_good:
            answer = rng.choice(rule.recommended)
        elif rule.iatrogenic and roll > 0.55 + 0.4 * p_good:
            answer = rng.choice(rule.iatrogenic)
        elif rng.random() < p_good:
            answer = rng.choice(_MBT_CODES)
        else:
            answer = rng.choice(_NON_MBT)
        script.append(("therapist", _THERAPIST_LINES[answer], answer))
    return script


def _ratings(rng, assignment_id: int, therapist: str, progress: float, needed, instrument) -> list:
    """MBT-ACS values around the therapist's level; item 17 (concurrent group) often N/A."""
    from ..models import ItemRating

    adherence, competence = _quality(therapist, progress)
    level = {"adherence": adherence, "competence": competence}
    rows, given = [], {"adherence": [], "competence": []}
    overall_ids = {o.id for o in instrument.overall}
    for inst_id, item, dimension in needed:
        if item in overall_ids:
            continue
        if instrument.allow_na and (item == "17" and rng.random() < 0.7 or item in ("9", "10") and rng.random() < 0.15):
            rows.append(ItemRating(assignment_id=assignment_id, instrument=inst_id, item=item,
                                   dimension=dimension, value=None, not_applicable=True))
            continue
        value = min(instrument.scale_max, max(instrument.scale_min, round(rng.gauss(level[dimension], 0.7))))
        given.setdefault(dimension, []).append(value)
        rows.append(ItemRating(assignment_id=assignment_id, instrument=inst_id, item=item, dimension=dimension,
                               value=value))
    for inst_id, item, dimension in needed:
        if item in overall_ids:
            values = given.get(dimension) or [level[dimension]]
            value = round(sum(values) / len(values) + rng.choice((-0.5, 0, 0, 0.5)))
            rows.append(ItemRating(assignment_id=assignment_id, instrument=inst_id, item=item, dimension=dimension,
                                   value=min(instrument.scale_max, max(instrument.scale_min, value))))
    return rows


def _demo_audits(study, coordinator) -> None:
    """The two program quality audits, six months apart (once)."""
    from ..models import QualityAudit
    from .quality_audits import create_audit

    if db.session.scalar(select(QualityAudit.id).where(QualityAudit.study_id == study.id).limit(1)):
        return
    for day, values in HISTORY_AUDITS:
        create_audit(study, audit_date=day, unit="", values={k: str(v) for k, v in values.items()},
                     note="Simulated audit (demo).", actor=coordinator)
