"""Study roles and what each may do (services/permissions.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, StudyMember
from mbtcode.services import ServiceError
from mbtcode.services.permissions import (
    CAPABILITIES,
    add_member,
    can,
    members,
    study_role,
    visible_studies,
)
from tests.conftest import check_each

ALL_CAPABILITIES = sorted(set().union(*CAPABILITIES.values()))


@pytest.fixture
def study(make_study):
    return make_study("Roles study")


def test_study_role_is_the_membership_role(study, make_user, make_member):
    user = make_user("coordinator")
    make_member(study, user, "analyst")
    assert study_role(study, user) == "analyst"  # the study role, not the site role


def test_non_member_has_no_role(study, make_user):
    assert study_role(study, make_user("coordinator")) is None


def test_site_admin_is_admin_in_every_study_without_membership(study, make_user):
    assert study_role(study, make_user("admin")) == "admin"


def test_deactivated_member_has_no_role(study, make_user, make_member):
    user = make_user("rater")
    make_member(study, user, "rater")
    user.active = False
    db.session.commit()
    assert study_role(study, user) is None
    assert not can(user, "code", study)


@pytest.mark.parametrize("capability", ALL_CAPABILITIES)
def test_admin_may_do_everything(study, make_user, capability):
    assert can(make_user("admin"), capability, study)


@pytest.mark.parametrize(("role", "allowed"), [
    ("coordinator", {"view_sessions", "read_transcripts", "manage_assignments", "view_progress",
                     "manage_reliability", "adjudicate", "view_reliability",
                     "view_fidelity", "export", "export_identifying", "manage_quality_audits"}),
    ("rater", {"code"}),
    ("analyst", {"view_sessions", "view_progress", "view_reliability", "view_fidelity", "export"}),
])
def test_capabilities_of_each_study_role(study, make_user, make_member, role, allowed):
    user = make_user(role)
    make_member(study, user, role)
    assert {c for c in ALL_CAPABILITIES if can(user, c, study)} == allowed


def test_reliability_capabilities(study, make_user, make_member):
    """Coordinators run the sample, gold standards and adjudication; analysts only read the
    report; raters get none of it (they are not told which sessions are double-coded)."""
    assert {"manage_reliability", "adjudicate", "view_reliability"} <= set(ALL_CAPABILITIES)
    who = {}
    for role in ("coordinator", "rater", "analyst"):
        who[role] = make_user(role)
        make_member(study, who[role], role)
    who["admin"] = make_user("admin")
    allowed = {role: {c for c in ("manage_reliability", "adjudicate", "view_reliability")
                      if can(user, c, study)} for role, user in who.items()}
    assert allowed == {
        "coordinator": {"manage_reliability", "adjudicate", "view_reliability"},
        "admin": {"manage_reliability", "adjudicate", "view_reliability"},
        "analyst": {"view_reliability"},
        "rater": set(),
    }


def test_non_member_may_do_nothing(study, make_user):
    user = make_user("coordinator")
    assert not any(can(user, c, study) for c in ALL_CAPABILITIES)


def test_role_in_one_study_gives_nothing_in_another(study, make_study, make_user, make_member):
    user = make_user("coordinator")
    make_member(make_study("Elsewhere"), user, "coordinator")
    assert not can(user, "manage_assignments", study)


def test_visible_studies_are_the_users_studies(study, make_study, make_user, make_member):
    other = make_study("Another study")
    make_study("Third study")
    user = make_user("rater")
    make_member(other, user, "rater")
    assert [s.name for s in visible_studies(user)] == ["Another study"]


def test_admin_sees_every_study(study, make_study, make_user):
    make_study("Another study")
    assert [s.name for s in visible_studies(make_user("admin"))] == ["Another study", "Roles study"]


def test_add_member_changes_an_existing_role_and_audits_old_and_new(study, make_user):
    user = make_user("rater")
    add_member(study, user, "rater", actor=None)
    add_member(study, user, "analyst", actor=None)
    db.session.commit()
    assert db.session.scalars(select(StudyMember.role).where(StudyMember.user_id == user.id)).all() \
        == ["analyst"]
    details = [e.detail for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "study.member").order_by(AuditEvent.id))]
    assert [(d["old"], d["new"]) for d in details] == [(None, "rater"), ("rater", "analyst")]


def test_adding_the_same_role_again_writes_no_audit_row(study, make_user):
    user = make_user("rater")
    add_member(study, user, "rater", actor=None)
    add_member(study, user, "rater", actor=None)
    db.session.commit()
    assert db.session.scalar(
        select(db.func.count()).select_from(AuditEvent).where(AuditEvent.action == "study.member")
    ) == 1


def test_unknown_study_role_is_refused(study, make_user):
    user = make_user("rater")

    def check(role):
        with pytest.raises(ServiceError, match="unknown study role"):
            add_member(study, user, role, actor=None)

    check_each(["admin", "supervisor", "", "Rater"], check)
    assert study_role(study, user) is None


def test_members_lists_users_with_roles_by_name(study, make_user, make_member):
    b = make_user("rater", name="Bea")
    a = make_user("analyst", name="Abe")
    make_member(study, b, "rater")
    make_member(study, a, "analyst")
    assert [(u.name, r) for u, r in members(study)] == [("Abe", "analyst"), ("Bea", "rater")]
    assert [u.name for u, _ in members(study, "rater")] == ["Bea"]
