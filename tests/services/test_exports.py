"""Export tables from the database, worked by hand.

A study of six sessions, two raters (names and e-mails that must never leave mbtcode), a
coordinator and an analyst. MBT-ACS has 14 items rated for adherence and 17 for competence.

* s1 (TH-A, PT-1, 2026-01-05, day 0): one rater; every rating 5 but item 2 adherence 3 and
  item 3 adherence N/A → adherence (3 + 12·5)/13 = 63/13 on 13 items, 1 N/A; competence 5.
* s2 (TH-A, PT-1, 2026-01-19, day 14): two raters, 4 and 6, no consensus → mean of raters 5;
  rater 0 says N/A on item 2 adherence, rater 1 says 6 → that item is 6 (N/A is no value) and
  adherence (6 + 13·5)/14 = 71/14.
* s3 (TH-A, PT-1, 2026-02-02, day 28): raters 2 and 7, a final consensus of 3 → 3 (not 4.5).
* s4 (TH-B, PT-2, 2026-03-01, day 0): raters 4 and 6, the second is the gold standard → 6.
* s5 (TH-B, PT-2, undated): one rater still coding → source none, no scores, listed last.
* s6 (TH-B, PT-3, 2026-03-10, day 0): one rater, 4 everywhere → 4, adequate (cut-off 4).
  Its label, site, team and a speaker label are spreadsheet formulas.

The transcript of s1 labels its first two speakers with names (``Dr. Müller``, a patient's
full name), as real transcripts do: speaker labels leave mbtcode only with the text.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.io import export_formats as ef
from mbtcode.models import (
    AuditEvent,
    Consensus,
    ConsensusCode,
    ConsensusRating,
    GoldStandard,
    ItemRating,
    ItemRationale,
    Outcome,
    Participant,
    UtteranceCode,
)
from mbtcode.services import exports
from mbtcode.services.assignments import assign_sessions, codable_roles, required_ratings
from mbtcode.services.sessions import all_utterances
from tests.conftest import transcript_text

MANIFEST = """file,label,therapist,patient,date,phase,session_number
s1.txt,s1,TH-A,PT-1,2026-01-05,initial,1
s2.txt,s2,TH-A,PT-1,2026-01-19,main,3
s3.txt,s3,TH-A,PT-1,2026-02-02,main,5
s4.txt,s4,TH-B,PT-2,2026-03-01,main,1
s5.txt,s5,TH-B,PT-2,,final,9
s6.txt,s6,TH-B,PT-3,2026-03-10,final,2
"""
HOSTILE_LABEL = '=HYPERLINK("http://evil.example","x")'
HOSTILE_SPEAKER = "@SUM(A1:A2)"
SPEAKER_NAMES = ("Dr. Müller", "Annalena Transcriptname")  # transcript labels that are names
RATER_NAMES = ("Zelda Secretname", "Yorick Hiddenname")
RATER_EMAILS = ("zelda.secret@example.org", "yorick.hidden@example.org")
TEXT_TAG = "whisperword"
NOTE = "zelda-note-secret"
RATIONALE = "rationale-secret-zelda"
N_ADHERENCE, N_COMPETENCE = 14, 17


@dataclass
class World:
    study: object
    sessions: dict
    raters: list
    coordinator: object
    analyst: object
    assignments: dict

    def code(self, rater_index: int) -> str:
        return f"R{self.raters[rater_index].id}"


def build_world(make_study, import_files, make_user, make_member, name="Export study") -> World:
    """The study of the module docstring (committed)."""
    study = make_study(name)
    files = {f"s{i}.txt": transcript_text(6, tag=f"{TEXT_TAG} {i}") for i in range(1, 7)}
    sessions = {s.label: s for s in import_files(study, files, manifest=MANIFEST)}
    raters = [make_user("rater", name=n, email=e) for n, e in zip(RATER_NAMES, RATER_EMAILS, strict=True)]
    for r in raters:
        make_member(study, r, "rater")
    coordinator = make_user("coordinator", name="Cora Coordinator")
    analyst = make_user("analyst", name="Ana Analyst")
    make_member(study, coordinator, "coordinator")
    make_member(study, analyst, "analyst")
    for label, session in sessions.items():
        hostile = label in ("s4", "s5", "s6")
        session.site = "-2+3" if hostile else "Oslo"
        session.team = "@SUM(A1)" if hostile else "T1"
    sessions["s6"].label = HOSTILE_LABEL
    all_utterances(sessions["s6"])[0].speaker = HOSTILE_SPEAKER
    for utterance, name in zip(all_utterances(sessions["s1"]), SPEAKER_NAMES, strict=False):
        utterance.speaker = name
    assignments = {}
    for label, who in [("s1", [0]), ("s2", [0, 1]), ("s3", [0, 1]), ("s4", [0, 1]), ("s5", [0]),
                       ("s6", [1])]:
        for a in assign_sessions(study, [sessions[label]], [raters[i] for i in who], actor=None):
            assignments[(label, raters.index(a.rater))] = a
    db.session.commit()
    needed = required_ratings(study)
    roles = codable_roles(study)

    def rate(key, value, changes=None, submit=True):
        a = assignments[key]
        for instrument, item, dimension in needed:
            v = (changes or {}).get((item, dimension), value)
            db.session.add(ItemRating(assignment_id=a.id, instrument=instrument, item=item,
                                      dimension=dimension, value=None if v == "NA" else v,
                                      not_applicable=v == "NA"))
        if submit:
            a.status = "submitted"

    def code(key, therapist, patient, skip=(), notes=None):
        a = assignments[key]
        for u in all_utterances(a.session):
            if u.position in skip:
                continue
            value = therapist if u.role == "therapist" else patient
            db.session.add(UtteranceCode(assignment_id=a.id, utterance_id=u.id, code_set=roles[u.role],
                                         code=value, note=(notes or {}).get(u.position, "")))

    rate(("s1", 0), 5, {("2", "adherence"): 3, ("3", "adherence"): "NA"})
    rate(("s2", 0), 4, {("2", "adherence"): "NA"})
    rate(("s2", 1), 6)
    rate(("s3", 0), 2)
    rate(("s3", 1), 7)
    rate(("s4", 0), 4)
    rate(("s4", 1), 6)
    rate(("s5", 0), 1, submit=False)
    rate(("s6", 1), 4)
    code(("s1", 0), "EV", "PE", skip=(6,), notes={5: NOTE})
    code(("s2", 0), "EV", "PE")
    code(("s2", 1), "REL", "MENT")
    code(("s3", 0), "ADV", "PE")
    code(("s3", 1), "EV", "PE")
    code(("s4", 0), "EV", "PE")
    code(("s4", 1), "EV", "PM")
    code(("s6", 1), "EV", "PE")
    db.session.add(ItemRationale(assignment_id=assignments[("s1", 0)].id, instrument="mbt-acs",
                                 item="2", text=RATIONALE))
    db.session.flush()
    consensus = Consensus(study_id=study.id, session_id=sessions["s3"].id,
                          adjudicator_id=coordinator.id, status="final")
    db.session.add(consensus)
    db.session.flush()
    for instrument, item, dimension in needed:
        db.session.add(ConsensusRating(consensus_id=consensus.id, instrument=instrument, item=item,
                                       dimension=dimension, value=3.0, basis="entered"))
    for u in all_utterances(sessions["s3"]):
        if u.role == "therapist":
            db.session.add(ConsensusCode(consensus_id=consensus.id, utterance_id=u.id,
                                         code_set=roles["therapist"], code="AFF", basis="picked"))
        else:
            db.session.add(ConsensusCode(consensus_id=consensus.id, utterance_id=u.id,
                                         code_set=roles["patient"], code="PE", basis="agreement"))
    db.session.add(GoldStandard(study_id=study.id, session_id=sessions["s4"].id,
                                assignment_id=assignments[("s4", 1)].id))
    db.session.commit()
    return World(study, sessions, raters, coordinator, analyst, assignments)


@pytest.fixture
def world(make_study, import_files, make_user, make_member) -> World:
    return build_world(make_study, import_files, make_user, make_member)


def table(world, level, **kwargs):
    return exports.export_table(world.study, level, actor=kwargs.pop("actor", None), **kwargs)


def by_session(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("session")


# ----------------------------------------------------------------------------- session level


def test_session_scores_follow_the_counting_rule(world):
    t = table(world, "session")
    assert list(t.frame.columns) == [c.name for c in t.columns]
    assert [c.name for c in t.columns][:13] == [
        "study", "site", "team", "therapist", "patient", "session", "session_date", "study_day",
        "phase", "modality", "session_number", "source", "n_raters"]
    s = by_session(t.frame)
    assert s.loc["s1", "source"] == "single_rater" and s.loc["s1", "n_raters"] == 1
    assert s.loc["s1", "adherence_mean"] == pytest.approx(63 / 13)
    assert (s.loc["s1", "adherence_n_items"], s.loc["s1", "adherence_n_na"]) == (13, 1)
    assert s.loc["s1", "competence_mean"] == 5 and s.loc["s1", "competence_n_items"] == N_COMPETENCE
    assert pd.isna(s.loc["s1", "item_3_adherence"]) and s.loc["s1", "item_2_adherence"] == 3
    assert s.loc["s2", "source"] == "mean_of_raters" and s.loc["s2", "n_raters"] == 2
    assert s.loc["s2", "item_2_adherence"] == 6 and s.loc["s2", "item_6_competence"] == 5
    assert s.loc["s2", "adherence_mean"] == pytest.approx(71 / 14)
    assert s.loc["s2", "adherence_n_na"] == 0 and s.loc["s2", "overall_adherence"] == 5
    assert s.loc["s3", "source"] == "consensus" and s.loc["s3", "adherence_mean"] == 3
    assert not s.loc["s3", "adherence_adequate"] and not s.loc["s3", "overall_competence_adequate"]
    assert s.loc["s4", "source"] == "gold" and s.loc["s4", "competence_mean"] == 6
    assert s.loc["s5", "source"] == "none" and s.loc["s5", "n_raters"] == 0
    assert pd.isna(s.loc["s5", "adherence_mean"]) and pd.isna(s.loc["s5", "adherence_adequate"])
    assert s.loc[HOSTILE_LABEL, "source"] == "single_rater"
    assert s.loc[HOSTILE_LABEL, "adherence_mean"] == 4 and s.loc[HOSTILE_LABEL, "adherence_adequate"]
    # merge keys
    assert s.loc["s2", ["study", "site", "team", "therapist", "patient", "phase", "modality"]].tolist() == [
        "Export study", "Oslo", "T1", "TH-A", "PT-1", "main", "individual"]
    assert s.loc["s2", "session_date"] == date(2026, 1, 19) and s.loc["s2", "study_day"] == 14
    assert s.loc["s2", "session_number"] == 3 and pd.isna(s.loc["s5", "study_day"])
    # row order: by date, undated last
    assert t.frame["session"].tolist() == ["s1", "s2", "s3", "s4", HOSTILE_LABEL, "s5"]


def test_columns_are_documented_valid_and_labelled(world):
    t = table(world, "session")
    names = [c.name for c in t.columns]
    assert len(names) == len(set(names))
    assert all(len(n) <= 32 and n[0].isalpha() and n == n.lower() for n in names)
    items = [c for c in t.columns if c.name.startswith("item_")]
    assert len(items) == N_ADHERENCE + N_COMPETENCE
    assert items[0].name == "item_1_competence" and items[0].item_id == "1"
    assert {c.name: c.values for c in t.columns}["source"] == {
        1: "consensus", 2: "gold", 3: "single_rater", 4: "mean_of_raters", 5: "none"}
    assert {c.name: c.values for c in t.columns}["phase"] == {1: "initial", 2: "main", 3: "final"}
    m = t.metadata
    assert m["scoring_version"] == "1.0" and m["scheme_id"] == "mbt-individual"
    assert m["scheme_sha256"] == world.study.scheme_version.sha256 and m["level"] == "session"
    assert m["include_text"] == "false" and "consensus" in m["counting_rule"]
    assert all(isinstance(v, str) for v in m.values())


DOCS = Path(__file__).resolve().parents[2] / "docs" / "exports.md"


def _doc_section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def test_docs_name_every_column_and_the_categorical_ones(world):
    """docs/exports.md describes the columns export_table really makes (level by level, with
    and without text and notes) and calls categorical exactly the codebook's categorical
    text columns."""
    docs = DOCS.read_text(encoding="utf-8")
    sections = {
        "session": _doc_section(docs, "### `session`", "### `therapist`"),
        "therapist": _doc_section(docs, "### `therapist`", "### `utterance`"),
        "utterance": _doc_section(docs, "### `utterance`", "### `rating`"),
        "rating": _doc_section(docs, "### `rating`", "### `outcomes`"),
        "outcomes": _doc_section(docs, "### `outcomes`", "## Formats"),
    }
    keys = sections["session"]  # "the session keys" of the other levels
    patterns = [r"item_\d+_(adherence|competence)",  # item_<item>_<dimension>
                r"(adherence|competence)_(mean|n_items|n_na|adequate|n|sd|ci_low|ci_high|slope|"
                r"slope_ci_low|slope_ci_high|slope_p|below_cutoff|trending_down)",
                r"overall_(adherence|competence)(_adequate)?"]
    categorical_in_docs = set(re.findall(r"`(\w+)`", re.search(
        r"Categorical text columns \((.*?)\) and\s+booleans", docs, re.S).group(1)))
    categorical = set()
    for level in exports.LEVELS:
        seen = set()
        for flags in ({}, {"include_text": True, "include_notes": True}):
            t = table(world, level, **flags)
            book = ef.codebook_json(t)
            categorical |= {c["name"] for c in book["columns"] if c["categorical"] and c["type"] == "string"}
            seen |= {c.name for c in t.columns}
        for name in sorted(seen):
            if any(re.fullmatch(p, name) for p in patterns):
                continue
            assert f"`{name}`" in sections[level] + (keys if level in ("utterance", "rating") else ""), (level, name)
    assert categorical_in_docs == categorical, (categorical_in_docs ^ categorical)
    assert "`speaker` (the label as written in the transcript) and `text`" in sections["utterance"]


# ----------------------------------------------------------------------------- therapist level


def test_therapist_level(world):
    t = by_session(table(world, "therapist").frame.rename(columns={"therapist": "session"}))
    a = t.loc["TH-A"]
    adherence = [63 / 13, 71 / 14, 3.0]  # s1, s2, s3 in time order
    mean = sum(adherence) / 3
    sd = (sum((x - mean) ** 2 for x in adherence) / 2) ** 0.5
    t_975_2 = 4.302652729911275
    assert (a["n_sessions"], a["site"], a["team"]) == (3, "Oslo", "T1")
    assert a["first_session_date"] == date(2026, 1, 5) and a["last_session_date"] == date(2026, 2, 2)
    assert a["adherence_n"] == 3 and a["adherence_mean"] == pytest.approx(mean)
    assert a["adherence_sd"] == pytest.approx(sd)
    assert a["adherence_ci_low"] == pytest.approx(mean - t_975_2 * sd / 3 ** 0.5)
    # OLS slope over x = 1, 2, 3 is (y3 − y1) / 2
    assert a["adherence_slope"] == pytest.approx((3 - 63 / 13) / 2)
    # the last three average (63/13 + 71/14 + 3)/3 ≈ 4.30 ≥ 4: no flag; 3 sessions: no trend flag
    assert a["adherence_below_cutoff"] == False and a["adherence_trending_down"] == False  # noqa: E712
    b = t.loc["TH-B"]  # s4 (gold, 6) and s6 (4); s5 is not scored
    assert b["n_sessions"] == 2 and b["competence_mean"] == 5 and pd.isna(b["competence_slope"])
    assert b["site"] == "-2+3" and b["last_session_date"] == date(2026, 3, 10)


# ----------------------------------------------------------------------------- utterance level


def test_utterance_level_rows_coders_and_counts(world):
    t = table(world, "utterance")
    f = t.frame
    assert "text" not in f.columns and "note" not in f.columns
    r0, r1 = world.code(0), world.code(1)
    # s1: 6, s2: 12, s3: 12 + 6 consensus, s4: 12, s6: 6; s5 (not submitted): none
    assert len(f) == 54 and "s5" not in set(f["session"])
    s1 = f[f["session"] == "s1"]
    assert s1["coder"].unique().tolist() == [r0] and s1["position"].tolist() == [1, 2, 3, 4, 5, 6]
    assert s1["code"].tolist()[:5] == ["EV", "PE", "EV", "PE", "EV"] and pd.isna(s1["code"].iloc[5])
    assert s1["code_set"].tolist()[5] == "nonmentalizing-modes"  # uncoded: the role's set
    assert s1["level"].tolist()[:2] == ["1", None] and s1["counts"].all()
    s2 = f[f["session"] == "s2"]
    assert s2["coder"].tolist() == [r0] * 6 + [r1] * 6
    assert s2["weight"].tolist() == [0.5] * 12 and s2["counts"].all()
    assert s2[s2["coder"] == r1]["level"].tolist()[0] == "4"  # REL: mentalizing the relationship
    s3 = f[f["session"] == "s3"]
    assert s3["coder"].tolist() == [r0] * 6 + [r1] * 6 + ["consensus"] * 6
    assert s3["counts"].tolist() == [False] * 12 + [True] * 6
    cons = s3[s3["coder"] == "consensus"]
    assert cons["code"].tolist() == ["AFF", "PE"] * 3 and cons["basis"].tolist()[:2] == ["picked", "agreement"]
    assert cons["level"].tolist()[0] == "3"
    assert s3[s3["coder"] == r0]["level"].tolist()[0] == "none"  # ADV: outside the spectrum
    s4 = f[f["session"] == "s4"]
    assert s4.groupby("coder")["counts"].first().to_dict() == {r0: False, r1: True}
    # an utterance is its position and role: the transcript's speaker label can be a name
    assert "speaker" not in f.columns
    assert f["role"].tolist()[:2] == ["therapist", "patient"]
    codes = {c.name: c.values for c in t.columns}
    assert codes["code"][1] == "EV" and codes["level"][1] == "1" and codes["role"][1] == "therapist"


def test_a_rater_who_only_rated_has_no_weight_in_the_code_counts(world):
    # s2: rater 1's codes removed; rater 0's codes now count fully, rater 1's coding weighs 0
    db.session.query(UtteranceCode).filter(
        UtteranceCode.assignment_id == world.assignments[("s2", 1)].id).delete()
    db.session.commit()
    f = table(world, "utterance").frame
    s2 = f[f["session"] == "s2"]
    weights = s2.groupby("coder")["weight"].unique().to_dict()
    assert {k: v.tolist() for k, v in weights.items()} == {world.code(0): [1.0], world.code(1): [0.0]}
    assert s2["counts"].all()  # both codings' ratings still count (mean of raters)


def test_text_and_notes_need_the_right_and_a_request(world):
    plain = table(world, "utterance", actor=world.coordinator)
    assert "text" not in plain.frame.columns and "speaker" not in plain.frame.columns
    notes_only = table(world, "utterance", actor=world.coordinator, include_notes=True)
    assert "speaker" not in notes_only.frame.columns and "note" in notes_only.frame.columns
    full = table(world, "utterance", actor=world.coordinator, include_text=True, include_notes=True)
    assert [c.name for c in full.columns][-3:] == ["speaker", "text", "note"]
    s1 = full.frame[full.frame["session"] == "s1"]
    assert s1["text"].tolist()[0] == f"utterance 1 ({TEXT_TAG} 1)"
    assert s1["speaker"].tolist()[:3] == [*SPEAKER_NAMES, "T"]
    assert full.frame[full.frame["session"] == HOSTILE_LABEL]["speaker"].tolist()[0] == HOSTILE_SPEAKER
    assert s1["note"].tolist()[4] == NOTE and full.metadata["include_text"] == "true"
    for flags in ({"include_text": True}, {"include_notes": True}):
        with pytest.raises(exports.ExportDenied, match="only the study's coordinators"):
            table(world, "utterance", actor=world.analyst, **flags)
    with pytest.raises(exports.ExportDenied, match="does not allow exports"):
        table(world, "session", actor=world.raters[0])
    analyst = table(world, "utterance", actor=world.analyst)
    assert "text" not in analyst.frame.columns and "speaker" not in analyst.frame.columns
    assert len(analyst.frame) == 54


def test_outsiders_cannot_export(world, make_study, make_user, make_member):
    other = make_study("Other study")
    outsider = make_user("coordinator", name="Otto")
    make_member(other, outsider, "coordinator")
    with pytest.raises(exports.ExportDenied):
        table(world, "session", actor=outsider)


def test_unknown_level_is_refused(world):
    with pytest.raises(exports.ServiceError, match="choose one of session, therapist"):
        table(world, "patients")


# ----------------------------------------------------------------------------- rating level


def test_rating_level(world):
    t = table(world, "rating")
    f = t.frame
    per_coding = N_ADHERENCE + N_COMPETENCE + 2
    # s1: 1, s2: 2, s3: 2 + consensus, s4: 2, s6: 1 codings
    assert len(f) == 9 * per_coding and "rationale" not in f.columns
    s1 = f[f["session"] == "s1"]
    assert s1["item"].tolist()[:3] == ["1", "2", "2"]
    assert s1["dimension"].tolist()[:3] == ["competence", "adherence", "competence"]
    assert s1["item_number"].tolist()[:2] == [1, 2] and pd.isna(s1["item_number"].iloc[-1])
    assert s1["item"].tolist()[-2:] == ["overall_adherence", "overall_competence"]
    na = s1[(s1["item"] == "3") & (s1["dimension"] == "adherence")]
    assert na["not_applicable"].tolist() == [True] and pd.isna(na["value"].iloc[0])
    cons = f[(f["session"] == "s3") & (f["coder"] == "consensus")]
    assert len(cons) == per_coding and set(cons["value"]) == {3.0} and set(cons["basis"]) == {"entered"}
    assert cons["counts"].all() and not f[(f["session"] == "s3") & (f["coder"] != "consensus")]["counts"].any()
    assert f[(f["session"] == "s2")]["weight"].unique().tolist() == [0.5]
    with_notes = table(world, "rating", actor=world.coordinator, include_notes=True).frame
    item2 = with_notes[(with_notes["session"] == "s1") & (with_notes["item"] == "2")]
    assert item2["rationale"].tolist() == [RATIONALE, RATIONALE]


# ----------------------------------------------------------------------------- de-identification


def _all_text(fmt: str, data: bytes, tmp_path) -> str:
    """Everything a reader could find in a file: raw bytes, unzipped members, values, metadata."""
    parts = [data.decode("latin-1")]
    if fmt == "xlsx":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts += [archive.read(n).decode("utf-8", "replace") for n in archive.namelist()]
    elif fmt == "parquet":
        arrow = pq.read_table(io.BytesIO(data))
        parts.append(arrow.to_pandas().to_csv())
        parts += [v.decode("utf-8", "replace") for v in (arrow.schema.metadata or {}).values()]
    elif fmt in ("sav", "dta"):
        import pyreadstat

        path = tmp_path / f"x.{fmt}"
        path.write_bytes(data)
        frame, meta = (pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta)(str(path))
        parts += [frame.to_csv(), json.dumps(meta.column_names_to_labels), str(meta.file_label)]
    else:
        parts.append(data.decode("utf-8"))
    return "\n".join(parts)


def test_no_names_text_or_notes_in_any_default_export(world, tmp_path):
    secrets = [*RATER_NAMES, *RATER_EMAILS, "Cora Coordinator", "Ana Analyst", *SPEAKER_NAMES, "Müller",
               HOSTILE_SPEAKER, TEXT_TAG, NOTE, RATIONALE]
    for level in exports.LEVELS:
        t = table(world, level, actor=world.analyst)
        bundle = ef.bundle(t, "csv", "x.csv")
        for fmt in ef.FORMATS:
            text = _all_text(fmt, ef.write(t, fmt), tmp_path)
            assert not [s for s in secrets if s in text], (level, fmt)
        for name, content in bundle.items():
            assert not [s for s in secrets if s in content.decode("utf-8")], (level, name)
    # the rater codes are there instead
    assert world.code(0) in ef.write(table(world, "utterance"), "csv").decode("utf-8-sig")


def test_formulas_are_neutralised_in_csv_and_xlsx(world):
    t = table(world, "utterance", include_text=True)  # with the speaker labels
    csv = pd.read_csv(io.BytesIO(ef.write(t, "csv")), encoding="utf-8-sig", keep_default_na=False,
                      dtype=str)
    hostile = csv[csv["session"] == "'" + HOSTILE_LABEL]
    assert len(hostile) == 6 and set(hostile["site"]) == {"'-2+3"} and set(hostile["team"]) == {"'@SUM(A1)"}
    assert hostile["speaker"].tolist()[0] == "'" + HOSTILE_SPEAKER
    assert set(hostile["position"]) == {"1", "2", "3", "4", "5", "6"}  # numbers untouched
    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(ef.write(t, "xlsx")))["data"]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, [c.value for c in r], strict=True)) for r in sheet.iter_rows(min_row=2)]
    bad = [r for r in rows if r["session"] == "'" + HOSTILE_LABEL]
    assert len(bad) == 6 and bad[0]["speaker"] == "'" + HOSTILE_SPEAKER and bad[0]["site"] == "'-2+3"
    assert bad[0]["position"] == 1
    # statistics formats keep the exact text
    assert HOSTILE_LABEL in set(pd.read_parquet(io.BytesIO(ef.write(t, "parquet")))["session"])


# ----------------------------------------------------------------------------- identical re-exports, audit


def test_unchanged_data_give_identical_files_a_second_later(world):
    first = {level: table(world, level) for level in ("session", "utterance")}
    files = {(lv, fmt): ef.write(t, fmt) for lv, t in first.items() for fmt in ef.FORMATS}
    time.sleep(1.1)
    for level in ("session", "utterance"):
        again = table(world, level)
        for fmt in ef.FORMATS:
            assert ef.write(again, fmt) == files[(level, fmt)], (level, fmt)


def test_exports_are_audited(world):
    t = table(world, "session", actor=world.analyst)
    data = ef.write(t, "sav")
    exports.record_file(t, "sav", data, actor=world.analyst, name="scores.sav")
    db.session.commit()
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("export.%"))
                                .order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == ["export.table", "export.file"]
    assert all(e.actor_id == world.analyst.id and e.study_id == world.study.id for e in events)
    assert events[0].detail == {"level": "session", "rows": 6, "include_text": False, "include_notes": False}
    assert events[1].detail["sha256"] == ef.sha256(data) and events[1].detail["format"] == "sav"
    # the command line (actor None) audits files only
    table(world, "session")
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.table")
                             .order_by(AuditEvent.id.desc())).actor_id == world.analyst.id


# ----------------------------------------------------------------------------- outcomes


def test_outcomes_merge_with_the_nearest_scored_session(world):
    study = world.study
    patients = {p.code: p for p in db.session.scalars(select(Participant).where(
        Participant.study_id == study.id, Participant.kind == "patient"))}
    patients["PT-9"] = Participant(study_id=study.id, kind="patient", code="PT-9")
    db.session.add(patients["PT-9"])
    db.session.flush()
    rows = [  # (patient, measure, date, study day, value)
        ("PT-1", "BSI", None, 7, 1.5),                 # day 7: s1 (0) and s2 (14) equally near → s1
        ("PT-1", "BSI", date(2026, 1, 30), None, 1.2),  # derived day 25 → s3 (28), −3
        ("PT-1", "GAF", None, 100, 60.0),              # → s3, 72
        ("PT-1", "GAF", None, -10, 45.0),              # before treatment → s1, −10
        ("PT-2", "BSI", date(2026, 2, 20), None, 2.0),  # derived −9 → s4 (gold); s5 is not scored
        ("PT-9", "BSI", date(2026, 1, 1), None, 0.5),   # no sessions: no study day, no match
        ("PT-3", "BSI", None, 3, 0.9),                 # → s6, 3
    ]
    for patient, measure, when, day, value in rows:
        db.session.add(Outcome(study_id=study.id, patient_id=patients[patient].id, measure=measure,
                               outcome_date=when, study_day=day, value=value))
    db.session.commit()
    t = table(world, "outcomes")
    f = t.frame
    assert list(f.columns) == [c.name for c in t.columns]
    got = list(zip(f["patient"], f["measure"], f["study_day"].astype(object), f["session"],
                   f["days_from_session"].astype(object), f["matched_by"], strict=True))
    na = pd.NA
    assert got == [
        ("PT-1", "BSI", 7, "s1", 7, "study_day"),
        ("PT-1", "BSI", 25, "s3", -3, "study_day"),
        ("PT-1", "GAF", -10, "s1", -10, "study_day"),
        ("PT-1", "GAF", 100, "s3", 72, "study_day"),
        ("PT-2", "BSI", -9, "s4", -9, "study_day"),
        ("PT-3", "BSI", 3, HOSTILE_LABEL, 3, "study_day"),
        ("PT-9", "BSI", na, None, na, None),
    ]
    assert f["study_day_derived"].tolist() == [False, True, False, False, True, False, False]
    assert f["session_study_day"].tolist()[:2] == [0, 28]
    assert f["adherence_mean"].tolist()[1] == 3 and f["source"].tolist()[4] == "gold"
    assert f["competence_mean"].tolist()[4] == 6 and pd.isna(f["adherence_mean"].tolist()[6])
    assert f["value"].tolist()[0] == 1.5 and f["session_date"].tolist()[0] == date(2026, 1, 5)


def test_nearest_session_by_date_and_the_tie_rules():
    sessions = pd.DataFrame({
        "session_id": [1, 2, 3],
        "patient": ["P;Q", "P", "P"],  # session 1 is a group session of P and Q
        "session_date": [date(2026, 1, 10), date(2026, 1, 10), date(2026, 1, 20)],
        "session_study_day": pd.array([None, None, None], dtype="Int64"),
        "session_number": pd.array([1, 2, 3], dtype="Int64"),
        "session": ["z", "a", "m"],
    })
    outcomes = pd.DataFrame({
        "outcome_id": [10, 11, 12, 13],
        "patient": ["P", "Q", "P", "R"],
        "outcome_date": [date(2026, 1, 15), date(2026, 1, 25), None, date(2026, 1, 15)],
        "study_day": pd.array([None, None, 3, None], dtype="Int64"),
    })
    got = exports.nearest_sessions(outcomes, sessions).set_index("outcome_id")
    # 10: 5 days from both days → the earlier day; two sessions that day → the lower number
    assert got.loc[10].tolist() == [1, "date", 5]
    assert got.loc[11].tolist() == [1, "date", 15]  # Q only has the group session
    assert 12 not in got.index and 13 not in got.index  # no study days to match / no sessions
