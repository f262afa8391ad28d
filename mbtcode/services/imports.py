"""Transcript import: validate a whole batch first, then write it in one transaction.

``plan_import`` parses and checks every file (and the manifest) and collects every problem;
``apply_import`` writes a clean plan. The caller commits once, so a batch is all-or-nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from sqlalchemy import insert, select

from ..extensions import db
from ..io.manifest import ManifestRow, parse_manifest
from ..io.transcripts import (
    CsvColumns,
    ParsedTranscript,
    Problem,
    TranscriptError,
    parse_transcript,
    resolve_roles,
)
from ..models import (
    Participant,
    SessionParticipant,
    Study,
    TherapySession,
    Transcript,
    User,
    Utterance,
)
from . import audit


@dataclass(frozen=True)
class SourceFile:
    """A file named as the user gave it, with its bytes."""

    name: str
    data: bytes


@dataclass
class PlannedSession:
    """One transcript that passed every check, with the session it will become."""

    source: str
    transcript: ParsedTranscript
    roles: dict[str, str]
    label: str
    therapists: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()
    session_date: dt.date | None = None
    modality: str = "individual"
    phase: str | None = None
    session_number: int | None = None
    language: str | None = None
    site: str | None = None
    team: str | None = None


@dataclass
class ImportPlan:
    study: Study
    sessions: list[PlannedSession] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def plan_import(
    study: Study,
    files: Sequence[SourceFile],
    *,
    manifest: SourceFile | None = None,
    speaker_map: Mapping[str, str] | None = None,
    fmt: str = "auto",
    csv_columns: CsvColumns | None = None,
    max_bytes: int = 20 * 1024 * 1024,
) -> ImportPlan:
    """Parse and validate every file against the study; nothing is written."""
    plan = ImportPlan(study=study)
    rows: dict[str, ManifestRow] = {}
    if manifest is not None:
        try:
            rows = parse_manifest(manifest.data, manifest.name)
        except TranscriptError as exc:
            plan.problems.extend(exc.problems)
    if not files:
        plan.problems.append(Problem(file="(command line)", line=None, message="no files given"))
        return plan

    seen_hashes: dict[str, str] = {}
    seen_labels: dict[str, str] = {}
    for source in files:
        basename = PurePath(source.name.replace("\\", "/")).name
        row = rows.get(basename)
        if manifest is not None and row is None and rows:
            plan.problems.append(
                Problem(
                    file=source.name,
                    line=None,
                    message=f"not listed in the manifest {manifest.name}",
                    hint="add a row with this file name in the 'file' column, or import it separately",
                )
            )
            continue
        try:
            transcript = parse_transcript(
                source.data, source.name, fmt=fmt, csv_columns=csv_columns, max_bytes=max_bytes
            )
            mapping = dict(speaker_map or {})
            if row is not None:
                mapping.update(row.speaker_map)
            roles = resolve_roles(transcript, mapping)
        except TranscriptError as exc:
            plan.problems.extend(exc.problems)
            continue
        planned = _plan_session(source.name, transcript, roles, row)
        plan.problems.extend(_duplicate_problems(study, planned, seen_hashes, seen_labels))
        seen_hashes.setdefault(transcript.sha256, source.name)
        seen_labels.setdefault(planned.label, source.name)
        plan.sessions.append(planned)
    return plan


def _plan_session(
    source: str, transcript: ParsedTranscript, roles: dict[str, str], row: ManifestRow | None
) -> PlannedSession:
    n_patient_speakers = sum(1 for role in roles.values() if role == "patient")
    inferred_modality = "group" if n_patient_speakers > 1 else "individual"
    planned = PlannedSession(
        source=source,
        transcript=transcript,
        roles=roles,
        label=PurePath(source.replace("\\", "/")).stem[:200],
        modality=inferred_modality,
    )
    if row is not None:
        planned.label = row.label or planned.label
        planned.therapists = row.therapists
        planned.patients = row.patients
        planned.session_date = row.date
        planned.modality = row.modality or inferred_modality
        planned.phase = row.phase
        planned.session_number = row.session_number
        planned.language = row.language
        planned.site = row.site
        planned.team = row.team
    return planned


def _duplicate_problems(
    study: Study,
    planned: PlannedSession,
    seen_hashes: dict[str, str],
    seen_labels: dict[str, str],
) -> list[Problem]:
    problems = []
    sha = planned.transcript.sha256
    if sha in seen_hashes:
        problems.append(
            Problem(planned.source, None, f"identical content to {seen_hashes[sha]} in this batch",
                    "import each transcript once")
        )
    existing = db.session.scalar(
        select(TherapySession.label)
        .join(Transcript, Transcript.session_id == TherapySession.id)
        .where(Transcript.study_id == study.id, Transcript.sha256 == sha)
    )
    if existing is not None:
        problems.append(
            Problem(planned.source, None,
                    f"already imported into study '{study.name}' as session '{existing}' (identical content)",
                    "nothing to do for this file; leave it out of the batch")
        )
    if planned.label in seen_labels:
        problems.append(
            Problem(planned.source, None,
                    f"session label '{planned.label}' is also used by {seen_labels[planned.label]} in this batch",
                    "give each session its own label (manifest column 'label')")
        )
    label_taken = db.session.scalar(
        select(TherapySession.id).where(
            TherapySession.study_id == study.id, TherapySession.label == planned.label
        )
    )
    if label_taken is not None and existing is None:
        problems.append(
            Problem(planned.source, None,
                    f"study '{study.name}' already has a session labelled '{planned.label}'",
                    "choose another label in the manifest, or rename the file")
        )
    return problems


def apply_import(plan: ImportPlan, *, actor: User | None) -> list[TherapySession]:
    """Write a validated plan: sessions, participants, transcripts, utterances, audit rows."""
    if not plan.ok:
        raise ValueError("refusing to apply an import plan that has problems")
    study = plan.study
    participants: dict[tuple[str, str], Participant] = {}
    created = []
    for planned in plan.sessions:
        session = TherapySession(
            study_id=study.id,
            label=planned.label,
            session_date=planned.session_date,
            modality=planned.modality,
            phase=planned.phase,
            session_number=planned.session_number,
            language=planned.language,
            site=planned.site,
            team=planned.team,
        )
        db.session.add(session)
        for kind, codes in (("therapist", planned.therapists), ("patient", planned.patients)):
            for code in codes:
                participant = _participant(study, kind, code, participants)
                session.participant_links.append(SessionParticipant(participant=participant))
        transcript = Transcript(
            session=session,
            study_id=study.id,
            original_filename=PurePath(planned.source.replace("\\", "/")).name[:300],
            format=planned.transcript.format,
            sha256=planned.transcript.sha256,
            n_utterances=len(planned.transcript.utterances),
            imported_by_id=actor.id if actor else None,
        )
        db.session.add(transcript)
        db.session.flush()
        db.session.execute(
            insert(Utterance),
            [
                {
                    "transcript_id": transcript.id,
                    "position": u.position,
                    "speaker": u.speaker,
                    "role": planned.roles[u.speaker],
                    "start_s": u.start,
                    "end_s": u.end,
                    "text": u.text,
                }
                for u in planned.transcript.utterances
            ],
        )
        audit.record(
            "transcript.import",
            actor=actor,
            entity="therapy_session",
            entity_id=session.id,
            study_id=study.id,
            detail={
                "new": {
                    "label": session.label,
                    "file": transcript.original_filename,
                    "format": transcript.format,
                    "sha256": transcript.sha256,
                    "n_utterances": transcript.n_utterances,
                    "speakers": planned.roles,
                }
            },
        )
        created.append(session)
    return created


def _participant(
    study: Study, kind: str, code: str, cache: dict[tuple[str, str], Participant]
) -> Participant:
    key = (kind, code)
    if key not in cache:
        found = db.session.scalar(
            select(Participant).where(
                Participant.study_id == study.id, Participant.kind == kind, Participant.code == code
            )
        )
        if found is None:
            found = Participant(study_id=study.id, kind=kind, code=code)
            db.session.add(found)
        cache[key] = found
    return cache[key]
