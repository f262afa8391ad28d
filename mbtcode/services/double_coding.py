"""The double-coding sample: settings, drawing sessions, second raters and progress.

Raters are never told which of their sessions are double-coded: nothing here is visible on
their pages, and an assignment made for the sample is an ordinary assignment.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, true

from ..extensions import db
from ..models import (
    Assignment,
    GoldStandard,
    ReliabilitySample,
    ReliabilitySettings,
    SampledSession,
    Study,
    StudyMember,
    TherapySession,
    User,
)
from . import ServiceError, audit
from .assignments import assign_sessions

STRATIFIERS = ("therapist", "phase")


def settings_for(study: Study) -> ReliabilitySettings:
    """The study's settings, with the defaults when none were saved (not added to the session)."""
    stored = db.session.get(ReliabilitySettings, study.id)
    if stored is not None:
        return stored
    defaults = ReliabilitySettings(study_id=study.id)
    for column in ReliabilitySettings.__table__.columns:
        if getattr(defaults, column.key) is None and column.default is not None and column.default.is_scalar:
            setattr(defaults, column.key, column.default.arg)
    return defaults


#: Field → (type, check, message) for :func:`update_settings`.
_SETTING_RULES = {
    "sample_fraction": (float, lambda v: 0 < v <= 1, "must be above 0 and at most 1"),
    "raters_per_session": (int, lambda v: 2 <= v <= 10, "must be 2 to 10"),
    "rating_threshold": (int, lambda v: 0 <= v <= 10, "must be 0 to 10 scale points"),
    "hide_rater_names": (bool, lambda v: True, ""),
    "certify_min_kappa": (float, lambda v: -1 <= v <= 1, "must be between -1 and 1"),
    "certify_min_within_one": (float, lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "certify_min_sessions": (int, lambda v: 1 <= v <= 100, "must be 1 to 100"),
}


def _shown(raw) -> str:
    """User input quoted back in a message, cut short (flash messages live in a cookie)."""
    text = str(raw)
    return text if len(text) <= 40 else text[:40] + "…"


def update_settings(study: Study, changes: dict, *, actor: User | None) -> ReliabilitySettings:
    """Validate every change first, then store them; one audit row lists old and new values."""
    values = {}
    for key, raw in changes.items():
        if key not in _SETTING_RULES:
            raise ServiceError(f"unknown setting '{_shown(key)}'")
        kind, check, message = _SETTING_RULES[key]
        label = key.replace("_", " ")
        try:
            value = _coerce(kind, raw)
        except (TypeError, ValueError):
            raise ServiceError(f"{label}: '{_shown(raw)}' is not a valid {kind.__name__}") from None
        if not check(value):
            raise ServiceError(f"{label} {message} (got {_shown(raw)})")
        values[key] = value
    current = settings_for(study)
    old, new = {}, {}
    for key, value in values.items():
        if getattr(current, key) != value:
            old[key], new[key] = getattr(current, key), value
            setattr(current, key, value)
    if new:
        if current not in db.session:
            db.session.add(current)
        db.session.flush()
        audit.record(
            "reliability.settings", actor=actor, entity="reliability_settings",
            entity_id=study.id, study_id=study.id, detail={"old": old, "new": new},
        )
    return current


def _coerce(kind, raw):
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(raw)
    if kind is int and isinstance(raw, float) and not raw.is_integer():
        raise ValueError(raw)
    value = kind(raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(raw)
    return value


def gold_session_ids(study: Study) -> set[int]:
    return set(db.session.scalars(select(GoldStandard.session_id).where(GoldStandard.study_id == study.id)))


def sampled_session_ids(study: Study) -> set[int]:
    return set(
        db.session.scalars(select(SampledSession.session_id).where(SampledSession.study_id == study.id))
    )


def _stratum(session: TherapySession, stratify: tuple[str, ...]) -> str:
    parts = []
    for variable in stratify:
        if variable == "therapist":
            value = "+".join(session.participant_codes("therapist")) or "unknown"
        else:
            value = session.phase or "unknown"
        parts.append(f"{variable}={value}")
    return "|".join(parts)


def _allocate(sizes: dict[str, int], total: int, rng: random.Random) -> dict[str, int]:
    """Split ``total`` draws over strata proportionally (largest remainder, ties by seed)."""
    population = sum(sizes.values())
    if population == 0:
        return {}
    exact = {s: total * n / population for s, n in sizes.items()}
    counts = {s: min(sizes[s], math.floor(x)) for s, x in exact.items()}
    left = total - sum(counts.values())
    order = sorted(sizes, key=lambda s: (-(exact[s] - math.floor(exact[s])), rng.random()))
    while left > 0:
        progressed = False
        for s in order:
            if left and counts[s] < sizes[s]:
                counts[s] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts


def draw_sample(
    study: Study,
    *,
    actor: User | None,
    seed: int,
    fraction: float | None = None,
    stratify: Iterable[str] = (),
) -> ReliabilitySample:
    """Add sessions to the double-coding sample until it holds ``fraction`` of the study.

    The target is ``ceil(fraction × sessions)`` over sessions that are not gold standards;
    sessions already sampled count toward it, so drawing again after an import tops the
    sample up. Within each stratum (therapist, phase or both) sessions are drawn without
    replacement, proportionally to the stratum's size; the same data and seed give the same
    sample.
    """
    stratify = tuple(dict.fromkeys(stratify))
    for variable in stratify:
        if variable not in STRATIFIERS:
            raise ServiceError(f"cannot stratify by '{_shown(variable)}': choose from {', '.join(STRATIFIERS)}")
    if fraction is None:
        fraction = settings_for(study).sample_fraction
    if not 0 < fraction <= 1:
        raise ServiceError(f"the sample fraction must be above 0 and at most 1 (got {fraction})")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ServiceError("the seed must be a whole number from 0")
    gold = gold_session_ids(study)
    already = sampled_session_ids(study)
    sessions = [
        s for s in db.session.scalars(
            select(TherapySession).where(TherapySession.study_id == study.id).order_by(TherapySession.id)
        )
        if s.id not in gold
    ]
    if not sessions:
        raise ServiceError("the study has no sessions to sample (gold-standard sessions are not sampled)")
    target = math.ceil(fraction * len(sessions) - 1e-9)
    wanted = target - len(already & {s.id for s in sessions})
    if wanted <= 0:
        raise ServiceError(
            f"the sample already holds {len(already)} of the {target} sessions that "
            f"{fraction:.0%} of {len(sessions)} requires; nothing to draw"
        )
    rng = random.Random(seed)
    strata: dict[str, list[TherapySession]] = defaultdict(list)
    for session in sessions:
        if session.id not in already:
            strata[_stratum(session, stratify)].append(session)
    counts = _allocate({k: len(v) for k, v in sorted(strata.items())}, wanted, rng)
    sample = ReliabilitySample(
        study_id=study.id, seed=seed, fraction=fraction, stratify=",".join(stratify),
        created_by_id=actor.id if actor else None,
    )
    db.session.add(sample)
    db.session.flush()
    drawn = []
    for name in sorted(strata):
        for session in rng.sample(strata[name], counts.get(name, 0)):
            db.session.add(SampledSession(
                sample_id=sample.id, study_id=study.id, session_id=session.id, stratum=name,
            ))
            drawn.append(session.id)
    db.session.flush()
    audit.record(
        "reliability.sample", actor=actor, entity="reliability_sample", entity_id=sample.id,
        study_id=study.id,
        detail={"seed": seed, "fraction": fraction, "stratify": list(stratify),
                "session_ids": sorted(drawn), "target": target},
    )
    return sample


@dataclass(frozen=True)
class RaterPlan:
    """What :func:`assign_second_raters` did: new assignments and sessions it could not staff."""

    created: list[Assignment]
    unstaffed: list[TherapySession]


def _active_assignments(session_ids: Iterable[int]) -> dict[int, list[Assignment]]:
    by_session: dict[int, list[Assignment]] = defaultdict(list)
    ids = list(session_ids)
    if ids:
        for a in db.session.scalars(
            select(Assignment).where(Assignment.session_id.in_(ids), Assignment.status != "withdrawn")
            .order_by(Assignment.id)
        ):
            by_session[a.session_id].append(a)
    return by_session


def assign_second_raters(
    study: Study, raters: Iterable[User], *, actor: User | None, seed: int = 0
) -> RaterPlan:
    """Give every sampled session enough independent raters, never the same rater twice.

    Each sampled session that has fewer than ``raters_per_session`` active assignments gets
    raters from ``raters`` who are not already on it, the least loaded first (ties broken by
    the seed), so the extra work spreads evenly.
    """
    raters = list(dict.fromkeys(raters))
    if not raters:
        raise ServiceError("choose at least one rater")
    needed = settings_for(study).raters_per_session
    sampled = list(
        db.session.scalars(
            select(TherapySession)
            .join(SampledSession, SampledSession.session_id == TherapySession.id)
            .where(SampledSession.study_id == study.id)
            .order_by(TherapySession.id)
        )
    )
    if not sampled:
        raise ServiceError("draw a double-coding sample first")
    active = _active_assignments(s.id for s in sampled)
    load = dict(
        db.session.execute(
            select(Assignment.rater_id, func.count())
            .where(Assignment.study_id == study.id, Assignment.status != "withdrawn")
            .group_by(Assignment.rater_id)
        ).all()
    )
    rng = random.Random(seed)
    tiebreak = {r.id: rng.random() for r in raters}
    created, unstaffed = [], []
    for session in sampled:
        have = {a.rater_id for a in active.get(session.id, [])}
        missing = needed - len(have)
        if missing <= 0:
            continue
        candidates = sorted(
            (r for r in raters if r.id not in have),
            key=lambda r: (load.get(r.id, 0), tiebreak[r.id]),
        )[:missing]
        if candidates:
            created.extend(assign_sessions(study, [session], candidates, actor=actor))
            for r in candidates:
                load[r.id] = load.get(r.id, 0) + 1
        if len(candidates) < missing:
            unstaffed.append(session)
    return RaterPlan(created, unstaffed)


@dataclass(frozen=True)
class SampleProgress:
    """The sample against its target, for the coordinator."""

    eligible: int  # sessions that are not gold standards
    target: int
    sampled: int
    staffed: int  # sampled sessions with enough active raters
    complete: int  # sampled sessions whose raters have all submitted (enough of them)
    fraction: float
    rows: list[dict]

    @property
    def percent_complete(self) -> int:
        return 0 if self.target == 0 else min(100, round(100 * self.complete / self.target))


def sample_progress(study: Study) -> SampleProgress:
    """How many sessions are sampled, staffed with enough raters and fully submitted."""
    settings = settings_for(study)
    latest = db.session.scalar(
        select(ReliabilitySample.fraction).where(ReliabilitySample.study_id == study.id)
        .order_by(ReliabilitySample.id.desc()).limit(1)
    )
    # The target is what the latest draw aimed at; before any draw, the study's setting.
    fraction = latest if latest is not None else settings.sample_fraction
    gold = gold_session_ids(study)
    eligible = db.session.scalar(
        select(func.count()).select_from(TherapySession).where(
            TherapySession.study_id == study.id,
            TherapySession.id.not_in(gold) if gold else true(),
        )
    ) or 0
    target = math.ceil(fraction * eligible - 1e-9)
    sampled = list(
        db.session.execute(
            select(SampledSession, TherapySession)
            .join(TherapySession, TherapySession.id == SampledSession.session_id)
            .where(SampledSession.study_id == study.id)
            .order_by(TherapySession.label)
        ).all()
    )
    active = _active_assignments(s.session_id for s, _ in sampled)
    rows, staffed, complete = [], 0, 0
    for link, session in sampled:
        assignments = active.get(session.id, [])
        submitted = sum(a.status == "submitted" for a in assignments)
        is_staffed = len(assignments) >= settings.raters_per_session
        is_complete = is_staffed and submitted == len(assignments)
        staffed += is_staffed
        complete += is_complete
        rows.append({
            "session": session, "stratum": link.stratum, "raters": len(assignments),
            "submitted": submitted, "staffed": is_staffed, "complete": is_complete,
        })
    return SampleProgress(eligible, target, len(sampled), staffed, complete, fraction, rows)


def study_raters(study: Study) -> list[User]:
    """The study's raters, by name."""
    return list(
        db.session.scalars(
            select(User).join(StudyMember, StudyMember.user_id == User.id)
            .where(StudyMember.study_id == study.id, StudyMember.role == "rater", User.active)
            .order_by(User.name)
        )
    )
