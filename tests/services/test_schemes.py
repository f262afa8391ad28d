"""Scheme versions: immutable revisions, lookup by reference, pinning by studies."""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.io.schemes import load_scheme_file
from mbtcode.models import AuditEvent, SchemeVersion
from mbtcode.services import ServiceError
from mbtcode.services.schemes import (
    find_scheme_version,
    register_scheme,
    register_shipped_schemes,
)
from tests.conftest import MINIMAL_SCHEME


def _count_versions() -> int:
    return db.session.scalar(select(func.count(SchemeVersion.id)))


@pytest.fixture
def register(app, scheme_file):
    """Register a scheme file (MINIMAL_SCHEME with overrides) and commit."""

    def do(doc: dict | None = None, **overrides):
        version, created = register_scheme(load_scheme_file(scheme_file(doc, **overrides)), actor=None)
        db.session.commit()
        return version, created

    return do


def _changed() -> dict:
    doc = copy.deepcopy(MINIMAL_SCHEME)
    doc["version"] = "2"
    doc["code_sets"][0]["codes"].append({"id": "ASK", "label": "Ask", "key": "2", "mbt": True})
    return doc


def test_first_registration_is_revision_1(register):
    version, created = register()
    assert created
    assert (version.key, version.revision, version.ref) == ("test-scheme", 1, "test-scheme@1")


def test_identical_content_is_registered_once(register):
    first, _ = register()
    again, created = register()
    assert not created
    assert again.id == first.id
    assert _count_versions() == 1


def test_changed_file_with_same_id_becomes_revision_2(register):
    register()
    version, created = register(_changed())
    assert created
    assert version.ref == "test-scheme@2"
    assert version.version == "2"


def test_revision_1_stays_byte_identical_after_revision_2(register):
    first, _ = register()
    document_before = copy.deepcopy(first.document)
    sha_before = first.sha256
    register(_changed())
    db.session.expire_all()  # read revision 1 back from the database
    stored = db.session.scalars(
        select(SchemeVersion).where(SchemeVersion.key == "test-scheme", SchemeVersion.revision == 1)
    ).one()
    assert stored.document == document_before
    assert stored.sha256 == sha_before
    assert [c["id"] for c in stored.document["code_sets"][0]["codes"]] == ["VAL", "ARG"]


def test_study_pinned_to_revision_1_keeps_it(register, make_study):
    register()
    study = make_study(scheme="test-scheme")
    register(_changed())
    db.session.expire_all()
    assert study.scheme_version.ref == "test-scheme@1"
    assert make_study(scheme="test-scheme").scheme_version.ref == "test-scheme@2"


def test_registration_writes_a_scheme_add_audit_row(register):
    version, _ = register()
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "scheme.add")).one()
    assert event.entity_id == version.id
    assert event.detail["new"]["ref"] == "test-scheme@1"
    assert event.detail["new"]["sha256"] == version.sha256


def test_find_by_id_returns_latest_revision(register):
    register()
    register(_changed())
    assert find_scheme_version("test-scheme").revision == 2


def test_find_by_id_and_revision(register):
    register()
    register(_changed())
    assert find_scheme_version("test-scheme@1").revision == 1
    assert find_scheme_version("test-scheme@2").revision == 2


def test_find_unknown_scheme_names_the_known_ones(register):
    register()
    with pytest.raises(ServiceError, match=r"no scheme 'nope' \(known: test-scheme@1\)"):
        find_scheme_version("nope")


def test_find_unknown_revision(register):
    register()
    with pytest.raises(ServiceError, match="no scheme 'test-scheme@7'"):
        find_scheme_version("test-scheme@7")


@pytest.mark.parametrize("ref", ["test-scheme@x", "test-scheme@", "test-scheme@-1", "test-scheme@1.0", "test-scheme@²"])
def test_find_bad_reference(register, ref):
    register()
    with pytest.raises(ServiceError, match="bad scheme reference"):
        find_scheme_version(ref)


def test_shipped_schemes_register_idempotently(app):
    first = register_shipped_schemes()
    db.session.commit()
    again = register_shipped_schemes()
    assert {v.key for v in first} >= {"mbt-individual", "mbt-program-quality", "miti-example"}
    assert [v.id for v in again] == [v.id for v in first]
    assert _count_versions() == len(first)


def test_study_can_pin_the_miti_example(make_study):
    study = make_study(scheme="miti-example")
    assert study.scheme_version.key == "miti-example"
    assert study.scheme_version.document["id"] == "miti-example"


def test_study_defaults_to_the_mbt_scheme(make_study):
    assert make_study().scheme_version.key == "mbt-individual"
