"""Gold-standard sessions: an expert's coding as the reference that raters in training meet.

A gold session is left out of the double-coding sample, the reliability report and
adjudication: its other codings measure a rater against gold, not the study's reliability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import select

from ..extensions import db
from ..models._types import utcnow
from ..models import Assignment, GoldStandard, SampledSession, Study, TherapySession, User
from ..stats.reliability import Estimate, cohen_kappa
from . import ServiceError, audit
from .assignments import _require_reason
from .double_coding import settings_for
from .frames import code_frame, rating_frame
from .schemes import as_scheme


def mark_gold(session: TherapySession, assignment: Assignment, *, actor: User | None) -> GoldStandard:
    """Make ``assignment`` (a submitted coding of ``session``) the session's gold standard."""
    if assignment.session_id != session.id:
        raise ServiceError("the gold coding must be an assignment of this session")
    if assignment.status != "submitted":
        raise ServiceError("only a submitted coding can be the gold standard")
    if db.session.scalar(select(SampledSession.id).where(SampledSession.session_id == session.id)):
        raise ServiceError("this session is in the double-coding sample; a gold session must not be")
    gold = db.session.scalar(select(GoldStandard).where(GoldStandard.session_id == session.id))
    old = None if gold is None else gold.assignment_id
    if gold is None:
        gold = GoldStandard(study_id=session.study_id, session_id=session.id, assignment_id=assignment.id,
                            marked_by_id=actor.id if actor else None)
        db.session.add(gold)
    if old != assignment.id:
        gold.assignment_id = assignment.id
        gold.marked_at = utcnow()
        gold.marked_by_id = actor.id if actor else None
    db.session.flush()
    if old != assignment.id:
        audit.record("gold.mark", actor=actor, entity="gold_standard", entity_id=gold.id,
                     study_id=session.study_id,
                     detail={"session_id": session.id, "old": old, "new": assignment.id})
    return gold


def unmark_gold(gold: GoldStandard, *, actor: User | None, reason: str) -> None:
    """Stop using a session as gold standard."""
    reason = _require_reason(reason)
    audit.record("gold.unmark", actor=actor, entity="gold_standard", entity_id=gold.id,
                 study_id=gold.study_id,
                 detail={"session_id": gold.session_id, "old": gold.assignment_id, "new": None},
                 reason=reason)
    db.session.delete(gold)
    db.session.flush()


def gold_standards(study: Study) -> list[GoldStandard]:
    return list(db.session.scalars(
        select(GoldStandard).where(GoldStandard.study_id == study.id).order_by(GoldStandard.id)))


@dataclass
class RatingAgreement:
    """A rater's ratings against gold on one item (or all items): differences rater − gold."""

    n: int
    bias: float | None  # mean signed difference
    mean_abs: float | None
    exact: float | None  # share identical
    within_one: float | None  # share within one scale point


def _rating_agreement(diff: pd.Series) -> RatingAgreement:
    if diff.empty:
        return RatingAgreement(0, None, None, None, None)
    return RatingAgreement(
        int(diff.size), float(diff.mean()), float(diff.abs().mean()),
        float((diff == 0).mean()), float((diff.abs() <= 1).mean()),
    )


@dataclass
class RaterVsGold:
    """One rater's agreement with gold over all the gold sessions they submitted."""

    rater: User
    sessions: int
    code_sets: dict[str, dict] = field(default_factory=dict)  # id → {n_units, agreement, kappa}
    items: dict[tuple[str, str, str], RatingAgreement] = field(default_factory=dict)
    ratings: RatingAgreement = field(default_factory=lambda: RatingAgreement(0, None, None, None, None))
    status: str = "incomplete"  # certified | not certified | incomplete
    reasons: list[str] = field(default_factory=list)


def agreement_with_gold(study: Study) -> list[RaterVsGold]:
    """Every rater who submitted a gold session, compared with gold, with certification status.

    Codes: per code set, Cohen's kappa and percent agreement over the utterances both the
    rater and gold coded (pooled over gold sessions). Ratings: differences rater − gold over
    the items both rated (N/A on either side leaves the item out): bias is the mean signed
    difference (positive: the rater rates higher than gold).
    """
    golds = gold_standards(study)
    if not golds:
        return []
    settings = settings_for(study)
    gold_assignment = {g.session_id: g.assignment_id for g in golds}
    session_ids = list(gold_assignment)
    codes = code_frame(study, include_gold=True, session_ids=session_ids)
    ratings = rating_frame(study, include_gold=True, session_ids=session_ids)
    is_gold_code = codes["assignment_id"].isin(gold_assignment.values())
    gold_codes = codes[is_gold_code][["utterance_id", "code_set", "code"]].astype({"code": str})
    rater_codes = codes[~is_gold_code]
    is_gold_rating = ratings["assignment_id"].isin(gold_assignment.values())
    keys = ["session_id", "instrument", "item", "dimension"]
    gold_ratings = ratings[is_gold_rating & ratings["value"].notna()][keys + ["value"]]
    rater_ratings = ratings[~is_gold_rating & ratings["value"].notna()]

    raters = db.session.scalars(
        select(User).join(Assignment, Assignment.rater_id == User.id)
        .where(Assignment.session_id.in_(session_ids), Assignment.status == "submitted",
               Assignment.id.not_in(list(gold_assignment.values())))
        .distinct().order_by(User.name)
    ).all()
    code_set_ids = sorted(set(gold_codes["code_set"].astype(str)))
    titles = {cs.id: cs.title for cs in as_scheme(study.scheme_version).code_sets}
    results = []
    for rater in raters:
        mine = rater_codes[rater_codes["rater_id"] == rater.id]
        n_sessions = int(
            pd.concat([mine["session_id"], rater_ratings.loc[rater_ratings["rater_id"] == rater.id,
                                                             "session_id"]]).nunique()
        )
        result = RaterVsGold(rater=rater, sessions=n_sessions)
        paired = mine[["utterance_id", "code"]].astype({"code": str}).merge(
            gold_codes, on="utterance_id", suffixes=("", "_gold"))
        for cs in code_set_ids:
            pairs = paired[paired["code_set"].astype(str) == cs]
            long = pd.DataFrame({
                "unit": np.concatenate([pairs["utterance_id"].to_numpy()] * 2),
                "rater": ["rater"] * len(pairs) + ["gold"] * len(pairs),
                "value": np.concatenate([pairs["code"].to_numpy(), pairs["code_gold"].to_numpy()]),
            })
            kappa: Estimate = cohen_kappa(long, "unit", "rater", "value") if len(pairs) else None
            result.code_sets[cs] = {
                "n_units": int(len(pairs)),
                "agreement": float((pairs["code"] == pairs["code_gold"]).mean()) if len(pairs) else None,
                "kappa": kappa,
            }
        rated = rater_ratings[rater_ratings["rater_id"] == rater.id][keys + ["value"]].merge(
            gold_ratings, on=keys, suffixes=("", "_gold"))
        diff = rated["value"] - rated["value_gold"]
        for key, group in diff.groupby([rated["instrument"], rated["item"], rated["dimension"]]):
            result.items[tuple(key)] = _rating_agreement(group)
        result.ratings = _rating_agreement(diff)
        _certify(result, settings, titles)
        results.append(result)
    return results


def _certify(result: RaterVsGold, settings, titles: dict[str, str]) -> None:
    """Certified when every criterion of the study's settings is met; reasons say which failed."""
    if result.sessions < settings.certify_min_sessions:
        result.status = "incomplete"
        result.reasons = [f"{result.sessions} of {settings.certify_min_sessions} gold session(s) submitted"]
        return
    reasons = []
    for cs, figures in result.code_sets.items():
        kappa = figures["kappa"]
        if kappa is None or kappa.estimate is None:
            reasons.append(f"{titles.get(cs, cs)}: kappa not estimable")
        elif kappa.estimate < settings.certify_min_kappa:
            reasons.append(
                f"{titles.get(cs, cs)}: kappa {kappa.estimate:.2f} < {settings.certify_min_kappa:.2f}")
    within = result.ratings.within_one
    if within is None:
        reasons.append("no ratings to compare with gold")
    elif within < settings.certify_min_within_one:
        reasons.append(f"ratings within one point {within:.0%} < {settings.certify_min_within_one:.0%}")
    result.status = "not certified" if reasons else "certified"
    result.reasons = reasons
