"""Scheme files: the shipped schemes load, and bad files fail with specific, located messages."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from mbtcode import paths
from mbtcode.io.schemes import (
    MAX_SCHEME_BYTES,
    RESERVED_KEYS,
    Scheme,
    SchemeError,
    load_json_schema,
    load_scheme_file,
    parse_scheme,
    shipped_scheme_files,
)

DATA = Path(__file__).parent / "data" / "schemes"


def _minimal() -> dict[str, Any]:
    return json.loads((DATA / "minimal.json").read_text(encoding="utf-8"))


def _problems(doc: dict[str, Any] | bytes, filename: str = "study.json") -> list[str]:
    data = doc if isinstance(doc, bytes) else json.dumps(doc, indent=2).encode("utf-8")
    with pytest.raises(SchemeError) as info:
        parse_scheme(data, filename)
    return info.value.problems


def _only(doc: dict[str, Any] | bytes) -> str:
    problems = _problems(doc)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.fixture(scope="module")
def shipped() -> dict[str, Scheme]:
    return {s.id: s for s in (load_scheme_file(p) for p in shipped_scheme_files())}


# --------------------------------------------------------------------------- the JSON Schema


def test_json_schema_is_valid_draft_2020_12() -> None:
    schema = load_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://mbtcode.org/schemas/coding-scheme.schema.json"


def test_json_schema_documents_every_property_and_closes_every_object() -> None:
    missing: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                if node.get("additionalProperties") is not False:
                    missing.append(f"{where}: additionalProperties")
                for name, sub in node["properties"].items():
                    if "title" not in sub or "description" not in sub:
                        missing.append(f"{where}/properties/{name}")
            for key, sub in node.items():
                walk(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}/{i}")

    walk(load_json_schema(), "")
    assert missing == []


def test_load_json_schema_returns_a_copy() -> None:
    load_json_schema()["title"] = "changed"
    assert load_json_schema()["title"] != "changed"


# --------------------------------------------------------------------------- shipped schemes


def test_shipped_files_include_the_three_schemes_and_exclude_json_schemas() -> None:
    files = shipped_scheme_files()
    names = [p.name for p in files]
    assert {"mbt-individual.json", "mbt-program-quality.json", "miti-example.json"} <= set(names)
    assert names == sorted(names)
    assert not any(name.endswith(".schema.json") for name in names)
    assert all(p.parent == Path(paths.SCHEMAS_DIR) for p in files)


@pytest.mark.parametrize("path", shipped_scheme_files(), ids=lambda p: p.name)
def test_every_shipped_file_validates(path: Path) -> None:
    scheme = load_scheme_file(path)
    assert scheme.id == path.stem
    assert len(scheme.sha256) == 64
    assert scheme.code_sets or scheme.instruments


def test_mbt_acs_items_and_flags(shipped: dict[str, Scheme]) -> None:
    acs = shipped["mbt-individual"].instrument("mbt-acs")
    assert acs.target == "session"
    assert (acs.scale_min, acs.scale_max, acs.cutoff, acs.allow_na) == (1, 7, 4, True)
    assert len(acs.items) == 17
    assert [i.number for i in acs.items] == list(range(1, 18))
    for item_id in ("1", "4", "5"):
        assert acs.item(item_id).rated_for == ("competence",)
    for item_id in ("2", "3"):
        assert set(acs.item(item_id).rated_for) == {"adherence", "competence"}
    assert acs.item("1").name == "Engagement, interest and warmth"
    assert not any(i.provisional for i in acs.items[:5])
    assert all(i.provisional for i in acs.items[5:])
    assert {o.dimension for o in acs.overall} == {"adherence", "competence"}
    assert [i.id for i in acs.items_for("adherence")] == [str(n) for n in [2, 3, *range(6, 18)]]
    assert "licensed" in acs.license_note


def test_intervention_spectrum_levels_and_codes(shipped: dict[str, Scheme]) -> None:
    scheme = shipped["mbt-individual"]
    spectrum = scheme.code_set_for_role("therapist")
    assert spectrum is not None and spectrum.id == "intervention-spectrum"
    assert [level.rank for level in spectrum.levels] == [1, 2, 3, 4]
    assert spectrum.code("EV").level == "1" and spectrum.code("EV").mbt
    assert spectrum.code("REL").level == "4"
    assert spectrum.code("ARG").mbt is False and spectrum.code("ARG").level is None
    assert spectrum.code_for_key("1") == spectrum.code("EV")
    keys = [c.key for c in spectrum.codes if c.key]
    assert len(keys) == len(set(keys)) and not set(keys) & set(RESERVED_KEYS)


def test_nonmentalizing_modes_and_responses(shipped: dict[str, Scheme]) -> None:
    scheme = shipped["mbt-individual"]
    modes = scheme.code_set_for_role("patient")
    assert modes is not None and modes.id == "nonmentalizing-modes"
    labels = {c.label.lower() for c in modes.codes}
    assert {"psychic equivalence", "pretend mode", "teleological mode", "mentalizing", "not codable"} <= labels
    pe = modes.code("PE")
    assert pe.nonmentalizing and pe.responses_code_set == "intervention-spectrum"
    assert "EV" in pe.recommended and "ARG" in pe.iatrogenic
    spectrum = scheme.code_set(pe.responses_code_set)
    assert spectrum.code("ARG").label.lower().startswith("arguing")
    assert not modes.code("MENT").nonmentalizing and not modes.code("NC").nonmentalizing
    for code in modes.codes:
        for ref in code.recommended + code.iatrogenic:
            spectrum.code(ref)  # every reference resolves
    assert scheme.code_set_for_role("other") is None


def test_program_quality_has_twenty_leveled_criteria(shipped: dict[str, Scheme]) -> None:
    scheme = shipped["mbt-program-quality"]
    assert scheme.code_sets == ()
    (pq,) = scheme.instruments
    assert pq.target == "program"
    assert (pq.scale_min, pq.scale_max) == (1, 5)
    assert pq.cutoff is None or pq.scale_min <= pq.cutoff <= pq.scale_max
    assert len(pq.items) == 20
    declared = {level.id for level in pq.levels}
    assert all(item.level in declared for item in pq.items)
    assert {"organization", "team", "therapist"} <= {item.level for item in pq.items}
    assert pq.item("1").level == "organization" and pq.item("20").level == "therapist"


def test_miti_example_loads_through_the_same_path(shipped: dict[str, Scheme]) -> None:
    miti = shipped["miti-example"]
    behaviours = miti.code_set_for_role("therapist")
    assert behaviours is not None
    assert {"GI", "PERS", "Q", "SR", "CR", "AF", "SEEK", "AUTO", "CONF"} <= {c.id for c in behaviours.codes}
    globals_ = miti.instrument("miti-globals")
    assert (globals_.scale_min, globals_.scale_max, globals_.cutoff) == (1, 5, None)
    assert [i.name for i in globals_.items] == [
        "Cultivating change talk",
        "Softening sustain talk",
        "Partnership",
        "Empathy",
    ]


def test_minimal_fixture_builds_typed_records() -> None:
    scheme = parse_scheme((DATA / "minimal.json").read_bytes(), "minimal.json")
    assert scheme.code_set_for_role("other") == scheme.code_set("states")
    with pytest.raises(KeyError):
        scheme.code_set("nope")
    with pytest.raises(KeyError):
        scheme.instrument("nope")
    with pytest.raises(KeyError):
        scheme.code_set("moves").code("NOPE")
    assert scheme.document == _minimal()
    assert scheme.instrument("scale").overall[0].id == "overall_adherence"


# --------------------------------------------------------------------------- bad input


def test_invalid_json_reports_line_and_column() -> None:
    data = b'{\n  "id": "x-y",\n  "version": "1"\n  "title": "t"\n}\n'
    message = _only(data)
    assert message.startswith("study.json, line 4, column 3: invalid JSON: Expecting ',' delimiter")


def test_missing_required_field_is_named_with_its_path() -> None:
    doc = _minimal()
    del doc["code_sets"][0]["codes"][1]["label"]
    message = _only(doc)
    assert "at /code_sets/0/codes/1:" in message
    assert "required field 'label' is missing" in message
    assert message.startswith("study.json, line ")


def test_every_problem_is_reported_at_once() -> None:
    doc = _minimal()
    del doc["version"]
    doc["code_sets"][0]["codes"][0]["colour"] = "red"
    doc["instruments"][0]["scale"]["cutoff"] = 0
    problems = _problems(doc)
    assert len(problems) == 3
    assert any("'version'" in p for p in problems)
    assert any("unknown field 'colour'" in p for p in problems)
    assert any("/instruments/0/scale/cutoff" in p for p in problems)
    assert "\n".join(problems) == str(SchemeError(problems))


def test_duplicate_keyboard_key_within_a_code_set() -> None:
    doc = _minimal()
    doc["code_sets"][0]["codes"][1]["key"] = "1"
    message = _only(doc)
    assert "/code_sets/0/codes/1/key" in message
    assert "duplicate key '1' (already used at /code_sets/0/codes/0/key)" in message


def test_same_key_in_different_code_sets_is_fine() -> None:
    doc = _minimal()
    doc["code_sets"][1]["codes"][0]["key"] = "a"  # also used by ARG in the other set
    parse_scheme(json.dumps(doc).encode(), "study.json")


@pytest.mark.parametrize("key", ["j", "k", "n", "p", "x"])
def test_reserved_navigation_key(key: str) -> None:
    doc = _minimal()
    doc["code_sets"][0]["codes"][2]["key"] = key
    message = _only(doc)
    assert "/code_sets/0/codes/2/key" in message
    assert f"key '{key}' is reserved for navigation (j, k, n, p, x, ?, /)" in message


@pytest.mark.parametrize("key", ["?", "/", "A", "10"])
def test_key_must_be_one_lowercase_letter_or_digit(key: str) -> None:
    doc = _minimal()
    doc["code_sets"][0]["codes"][2]["key"] = key
    message = _only(doc)
    assert "/code_sets/0/codes/2/key" in message and "has the wrong format" in message


def test_dangling_response_code_reference() -> None:
    doc = _minimal()
    doc["code_sets"][1]["codes"][0]["responses"]["iatrogenic"].append("SHOUT")
    message = _only(doc)
    assert "/code_sets/1/codes/0/responses/iatrogenic/1" in message
    assert "refers to code 'SHOUT', which code set 'moves' does not declare" in message


def test_dangling_response_code_set_reference() -> None:
    doc = _minimal()
    doc["code_sets"][1]["codes"][0]["responses"]["code_set"] = "therapist-moves"
    message = _only(doc)
    assert "/code_sets/1/codes/0/responses/code_set" in message
    assert "refers to code set 'therapist-moves', which this scheme does not declare" in message


def test_code_both_recommended_and_iatrogenic() -> None:
    doc = _minimal()
    doc["code_sets"][1]["codes"][0]["responses"]["iatrogenic"].append("VAL")
    assert "listed as both recommended and iatrogenic" in _only(doc)


def test_bad_level_reference() -> None:
    doc = _minimal()
    doc["code_sets"][0]["codes"][0]["level"] = "medium"
    message = _only(doc)
    assert "/code_sets/0/codes/0/level" in message
    assert "refers to level 'medium', which this code set does not declare (declared: 'low', 'high')" in message


def test_level_reference_without_levels() -> None:
    doc = _minimal()
    doc["code_sets"][1]["codes"][1]["level"] = "low"
    assert "this code set declares no 'levels'" in _only(doc)


def test_at_most_one_session_instrument() -> None:
    doc = _minimal()
    second = copy.deepcopy(next(i for i in doc["instruments"] if i["target"] == "session"))
    second["id"] = "second-scale"
    doc["instruments"].append(second)
    message = _only(doc)
    assert "at most one instrument rated per session" in message and "target" in message


def test_item_level_must_be_declared() -> None:
    doc = _minimal()
    doc["instruments"][0]["levels"] = [{"id": "team", "label": "Team"}]
    doc["instruments"][0]["items"][0]["level"] = "board"
    message = _only(doc)
    assert "/instruments/0/items/0/level" in message and "refers to level 'board'" in message


@pytest.mark.parametrize("cutoff", [0, 8])
def test_cutoff_out_of_range(cutoff: int) -> None:
    doc = _minimal()
    doc["instruments"][0]["scale"]["cutoff"] = cutoff
    message = _only(doc)
    assert "/instruments/0/scale/cutoff" in message
    assert f"cutoff {cutoff} lies outside the scale 1-7" in message


def test_cutoff_is_optional() -> None:
    doc = _minimal()
    del doc["instruments"][0]["scale"]["cutoff"]
    scheme = parse_scheme(json.dumps(doc).encode(), "study.json")
    assert scheme.instrument("scale").cutoff is None


def test_scale_max_must_exceed_min() -> None:
    doc = _minimal()
    doc["instruments"][0]["scale"].update({"min": 5, "max": 5, "cutoff": 5})
    assert "max (5) must be greater than min (5)" in _only(doc)


def test_empty_rated_for() -> None:
    doc = _minimal()
    doc["instruments"][0]["items"][1]["rated_for"] = []
    message = _only(doc)
    assert "/instruments/0/items/1/rated_for" in message and "must not be empty" in message


def test_undeclared_dimension_in_item_and_overall() -> None:
    doc = _minimal()
    doc["instruments"][0]["items"][0]["rated_for"] = ["quality"]
    doc["instruments"][0]["overall"][0]["dimension"] = "fidelity"
    problems = _problems(doc)
    assert len(problems) == 2
    assert "/instruments/0/items/0/rated_for/0" in problems[0] and "dimension 'quality'" in problems[0]
    assert "/instruments/0/overall/0/dimension" in problems[1] and "dimension 'fidelity'" in problems[1]


@pytest.mark.parametrize(
    ("mutate", "where", "what"),
    [
        (lambda d: d["code_sets"].append(d["code_sets"][1] | {"applies_to_roles": ["other"]})
         or d["code_sets"][1].update(applies_to_roles=["patient"]),
         "/code_sets/2/id", "duplicate code set id"),
        (lambda d: d["code_sets"][0]["codes"].append({"id": "VAL", "label": "Again"}), "/code_sets/0/codes/3/id",
         "duplicate code id"),
        (lambda d: d["instruments"].append({**copy.deepcopy(d["instruments"][0]), "target": "program"}),
         "/instruments/1/id",
         "duplicate instrument id"),
        (lambda d: d["instruments"][0]["items"][1].update(id="1"), "/instruments/0/items/1/id", "duplicate item id"),
        (lambda d: d["instruments"][0]["items"][1].update(number=1), "/instruments/0/items/1/number",
         "duplicate item number"),
        (lambda d: d["code_sets"][0]["levels"].append({"id": "low", "label": "Again"}), "/code_sets/0/levels/2/id",
         "duplicate level id"),
        (lambda d: d["instruments"][0]["overall"][0].update(id="2"), "/instruments/0/overall/0/id",
         "is also an item id"),
    ],
    ids=["code-set", "code", "instrument", "item", "item-number", "level", "overall-vs-item"],
)
def test_duplicate_ids(mutate: Any, where: str, what: str) -> None:
    doc = _minimal()
    mutate(doc)
    message = _only(doc)
    assert f"at {where}:" in message and what in message


def test_two_code_sets_for_one_role() -> None:
    doc = _minimal()
    doc["code_sets"][1]["applies_to_roles"] = ["patient", "therapist"]
    message = _only(doc)
    assert "/code_sets/1/applies_to_roles/1" in message
    assert "role 'therapist' is already coded with code set 'moves'" in message


def test_duplicate_json_member_name() -> None:
    data = (DATA / "minimal.json").read_bytes().replace(b'"version": "0.0.1",', b'"version": "0.0.1", "version": "2",')
    message = _only(data)
    assert "at /version:" in message and "appears more than once" in message


def test_scheme_without_code_sets_or_instruments() -> None:
    doc = {"id": "empty-scheme", "version": "1", "title": "Nothing"}
    assert "defines no code sets and no instruments" in _only(doc)


def test_top_level_must_be_an_object() -> None:
    assert "at /: expected object, found an array" in _only(b"[1, 2]")


def test_empty_file() -> None:
    assert _only(b"  \n") == "study.json: the file is empty; a scheme file is one JSON object"


def test_utf8_bom_is_accepted() -> None:
    raw = (DATA / "minimal.json").read_bytes()
    with_bom = parse_scheme(b"\xef\xbb\xbf" + raw, "bom.json")
    assert with_bom.id == "minimal-test"
    assert with_bom.sha256 == parse_scheme(raw, "plain.json").sha256


def test_non_utf8_is_rejected_with_position() -> None:
    doc = _minimal()
    doc["title"] = "Caf\u00e9"
    data = json.dumps(doc, ensure_ascii=False, indent=2).encode("latin-1")
    message = _only(data)
    assert message.startswith("study.json, line 4, column ")
    assert "not valid UTF-8 (byte 0xe9); save it as UTF-8" in message


def test_utf16_is_rejected() -> None:
    data = (DATA / "minimal.json").read_text(encoding="utf-8").encode("utf-16")
    assert "encoded as UTF-16; save it as UTF-8" in _only(data)


def test_oversized_bytes_are_rejected() -> None:
    data = b"{" + b" " * MAX_SCHEME_BYTES + b"}"
    message = _only(data)
    assert "the limit for a scheme file is 2,097,152 bytes" in message


def test_oversized_file_is_rejected_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes((DATA / "minimal.json").read_bytes() + b" " * MAX_SCHEME_BYTES)
    with pytest.raises(SchemeError) as info:
        load_scheme_file(path)
    assert str(path) in str(info.value) and "the limit for a scheme file" in str(info.value)


def test_missing_file_is_a_scheme_error(tmp_path: Path) -> None:
    with pytest.raises(SchemeError, match="cannot read the file"):
        load_scheme_file(tmp_path / "absent.json")


def test_load_scheme_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"id": "x"', encoding="utf-8")
    with pytest.raises(SchemeError) as info:
        load_scheme_file(path)
    assert info.value.problems[0].startswith(f"{path}, line 1, column ")


def test_nan_is_rejected() -> None:
    assert "NaN is not valid JSON" in _only(b'{"id": NaN}')


def test_parse_scheme_requires_bytes() -> None:
    with pytest.raises(TypeError):
        parse_scheme("{}", "x.json")  # type: ignore[arg-type]


def test_scheme_error_is_a_value_error_and_pickles() -> None:
    error = SchemeError(["a.json: one", "a.json: two"])
    assert isinstance(error, ValueError)
    assert str(error) == "a.json: one\na.json: two"
    assert pickle.loads(pickle.dumps(error)).problems == error.problems


# --------------------------------------------------------------------------- identity


def test_sha256_stable_under_key_order_and_whitespace() -> None:
    doc = _minimal()

    def reorder(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: reorder(node[k]) for k in reversed(list(node))}
        if isinstance(node, list):
            return [reorder(v) for v in node]
        return node

    compact = json.dumps(doc, separators=(",", ":")).encode()
    spread = json.dumps(reorder(doc), indent=8, ensure_ascii=True).encode()
    assert compact != spread
    a = parse_scheme(compact, "a.json")
    b = parse_scheme(spread, "b.json")
    assert a.sha256 == b.sha256
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert a.sha256 == hashlib.sha256(canonical).hexdigest()


def test_sha256_changes_with_content() -> None:
    doc = _minimal()
    before = parse_scheme(json.dumps(doc).encode(), "a.json").sha256
    doc["code_sets"][0]["codes"][0]["label"] = "Validate (empathic)"
    assert parse_scheme(json.dumps(doc).encode(), "a.json").sha256 != before


def test_sha256_changes_with_list_order() -> None:
    doc = _minimal()
    before = parse_scheme(json.dumps(doc).encode(), "a.json").sha256
    doc["code_sets"][0]["codes"].reverse()
    assert parse_scheme(json.dumps(doc).encode(), "a.json").sha256 != before


def test_documented_example_is_valid() -> None:
    doc_path = Path(paths.PROJECT_ROOT) / "docs" / "coding-schemes.md"
    text = doc_path.read_text(encoding="utf-8")
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    scheme = parse_scheme(example.encode("utf-8"), "docs example")
    assert scheme.code_set_for_role("patient").code("PE").recommended == ("EV", "EXP")  # type: ignore[union-attr]
