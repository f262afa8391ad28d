"""Load and validate coding-scheme files (code sets and rating instruments) into typed records.

A scheme is a JSON file checked against ``schemas/coding-scheme.schema.json`` and then against
rules a JSON Schema cannot express (unique ids, references that resolve, reserved keys...).
Nothing here knows about MBT: the MBT content lives in the shipped ``schemas/*.json`` files.
This module imports neither Flask nor the database, so the CLI, the web upload and the tests
share one loading path.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256 as _sha256
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from mbtcode import paths

__all__ = [
    "MAX_SCHEME_BYTES",
    "RESERVED_KEYS",
    "SCHEMA_FILENAME",
    "Anchor",
    "Code",
    "CodeSet",
    "Dimension",
    "Instrument",
    "Item",
    "Level",
    "OverallRating",
    "Scheme",
    "SchemeError",
    "canonical_sha256",
    "load_json_schema",
    "load_scheme_file",
    "parse_scheme",
    "shipped_scheme_files",
]

#: Largest scheme file accepted; real schemes are a few tens of kilobytes.
MAX_SCHEME_BYTES = 2 * 1024 * 1024
#: Keys the rater workspace uses for navigation; a code may not claim them.
RESERVED_KEYS: tuple[str, ...] = ("j", "k", "n", "p", "x", "?", "/")
#: File name of the JSON Schema inside ``mbtcode.paths.SCHEMAS_DIR``.
SCHEMA_FILENAME = "coding-scheme.schema.json"

_UTF8_BOM = b"\xef\xbb\xbf"
_KEY_RE = re.compile(r"^[a-z0-9]$")
_SCALAR_RE = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")
_WHITESPACE = " \t\n\r"


class SchemeError(ValueError):
    """A scheme file cannot be used; ``problems`` lists every problem found, one per entry."""

    problems: list[str]

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Level:
    """A group of codes (in a code set) or of items (in an instrument)."""

    id: str
    label: str
    rank: int | None = None
    description: str = ""


@dataclass(frozen=True)
class Code:
    """One code a rater can assign to an utterance."""

    id: str
    label: str
    description: str = ""
    key: str | None = None
    level: str | None = None
    mbt: bool = False
    nonmentalizing: bool = False
    recommended: tuple[str, ...] = ()
    iatrogenic: tuple[str, ...] = ()
    responses_code_set: str | None = None


@dataclass(frozen=True)
class CodeSet:
    """Mutually exclusive codes for the utterances of the roles in ``applies_to_roles``."""

    id: str
    title: str
    description: str
    applies_to_roles: tuple[str, ...]
    levels: tuple[Level, ...]
    codes: tuple[Code, ...]
    _by_id: dict[str, Code] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {c.id: c for c in self.codes})

    def code(self, id: str) -> Code:
        """Return the code with this id; raise KeyError if there is none."""
        try:
            return self._by_id[id]
        except KeyError:
            raise KeyError(f"code set {self.id!r} has no code {id!r}") from None

    def code_for_key(self, key: str) -> Code | None:
        """Return the code bound to this keyboard key, or None."""
        return next((c for c in self.codes if c.key == key), None)

    def level(self, id: str) -> Level:
        """Return the level with this id; raise KeyError if there is none."""
        for level in self.levels:
            if level.id == id:
                return level
        raise KeyError(f"code set {self.id!r} has no level {id!r}")


@dataclass(frozen=True)
class Dimension:
    """What items are rated for, e.g. adherence or competence."""

    id: str
    label: str
    description: str = ""


@dataclass(frozen=True)
class Item:
    """One item of an instrument."""

    id: str
    number: int
    name: str
    rated_for: tuple[str, ...]
    provisional: bool = False
    level: str | None = None
    description: str = ""


@dataclass(frozen=True)
class OverallRating:
    """A global rating the rater enters directly (not computed from the items)."""

    id: str
    dimension: str
    label: str
    description: str = ""


@dataclass(frozen=True)
class Anchor:
    """The label of one scale value."""

    value: int
    label: str


@dataclass(frozen=True)
class Instrument:
    """A rating scale filled in once per session or per program audit."""

    id: str
    title: str
    target: str
    scale_min: int
    scale_max: int
    cutoff: int | None
    allow_na: bool
    dimensions: tuple[Dimension, ...]
    items: tuple[Item, ...]
    overall: tuple[OverallRating, ...]
    description: str = ""
    source: str = ""
    license_note: str = ""
    levels: tuple[Level, ...] = ()
    anchors: tuple[Anchor, ...] = ()

    def item(self, id: str) -> Item:
        """Return the item with this id; raise KeyError if there is none."""
        for item in self.items:
            if item.id == id:
                return item
        raise KeyError(f"instrument {self.id!r} has no item {id!r}")

    def items_for(self, dimension: str) -> tuple[Item, ...]:
        """Return the items rated for this dimension, in form order."""
        return tuple(i for i in self.items if dimension in i.rated_for)


@dataclass(frozen=True)
class Scheme:
    """A validated scheme file: its code sets, its instruments and the document itself."""

    id: str
    version: str
    title: str
    description: str
    document: dict[str, Any] = field(repr=False, compare=False)
    sha256: str
    code_sets: tuple[CodeSet, ...]
    instruments: tuple[Instrument, ...]
    source: str = ""
    license_note: str = ""

    def code_set_for_role(self, role: str) -> CodeSet | None:
        """Return the code set that codes utterances of this speaker role, or None."""
        return next((cs for cs in self.code_sets if role in cs.applies_to_roles), None)

    def code_set(self, id: str) -> CodeSet:
        """Return the code set with this id; raise KeyError if there is none."""
        for cs in self.code_sets:
            if cs.id == id:
                return cs
        raise KeyError(f"scheme {self.id!r} has no code set {id!r}")

    def instrument(self, id: str) -> Instrument:
        """Return the instrument with this id; raise KeyError if there is none."""
        for ins in self.instruments:
            if ins.id == id:
                return ins
        raise KeyError(f"scheme {self.id!r} has no instrument {id!r}")


# --------------------------------------------------------------------------- public API


def parse_scheme(data: bytes, filename: str) -> Scheme:
    """Parse and validate a scheme file's bytes; raise SchemeError listing every problem."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_scheme() needs the file's bytes, not {type(data).__name__}")
    data = bytes(data)
    text = _decode(data, filename)
    document = _parse_json(text, filename)
    problems = _duplicate_member_problems(document) if isinstance(document, dict | list) else []
    problems += _schema_problems(document)
    problems += _semantic_problems(document)
    if problems:
        raise SchemeError(_format_problems(problems, text, filename))
    return _build_scheme(_plain(document))


def load_scheme_file(path: str | os.PathLike[str]) -> Scheme:
    """Read, parse and validate one scheme file; raise SchemeError if it cannot be used."""
    p = Path(path)
    name = os.fspath(path)
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_SCHEME_BYTES:
                raise SchemeError([_too_large(name, size)])
            data = f.read(MAX_SCHEME_BYTES + 1)
    except OSError as exc:
        raise SchemeError([f"{name}: cannot read the file ({exc.strerror or exc}); check the path"]) from exc
    return parse_scheme(data, name)


def shipped_scheme_files() -> list[Path]:
    """Return the scheme files shipped in ``schemas/`` (every ``*.json`` but ``*.schema.json``), sorted."""
    return sorted(
        p for p in Path(paths.SCHEMAS_DIR).glob("*.json") if p.is_file() and not p.name.endswith(".schema.json")
    )


def load_json_schema() -> dict[str, Any]:
    """Return (a copy of) the JSON Schema that scheme files follow."""
    return copy.deepcopy(_json_schema())


def canonical_sha256(document: Any) -> str:
    """Return the hex SHA-256 of a document's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- decoding


@functools.lru_cache(maxsize=1)
def _json_schema() -> dict[str, Any]:
    with (Path(paths.SCHEMAS_DIR) / SCHEMA_FILENAME).open(encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(_json_schema())


def _too_large(name: str, size: int) -> str:
    return (
        f"{name}: the file is {size:,} bytes; the limit for a scheme file is {MAX_SCHEME_BYTES:,} bytes "
        "(2 MiB). Scheme files are normally well under 100 kB: check that this is the right file"
    )


def _decode(data: bytes, filename: str) -> str:
    if len(data) > MAX_SCHEME_BYTES:
        raise SchemeError([_too_large(filename, len(data))])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SchemeError(
            [f"{filename}: the file is encoded as UTF-16; save it as UTF-8 (most editors: 'Save with encoding')"]
        )
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SchemeError(
            [
                f"{filename}, line {line}, column {column}: the file is not valid UTF-8 "
                f"(byte 0x{data[exc.start]:02x}); save it as UTF-8 (most editors: 'Save with encoding')"
            ]
        ) from None


class _Members(dict):  # type: ignore[type-arg]
    """A JSON object that remembers which member names occurred more than once."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Members:
    obj = _Members()
    obj.duplicates = []
    for name, value in pairs:
        if name in obj and name not in obj.duplicates:
            obj.duplicates.append(name)
        obj[name] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; write a number")


def _parse_json(text: str, filename: str) -> Any:
    if not text.strip():
        raise SchemeError([f"{filename}: the file is empty; a scheme file is one JSON object"])
    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SchemeError(
            [
                f"{filename}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}. "
                "Look for a missing or extra comma, quote or bracket at or just before this point"
            ]
        ) from None
    except RecursionError:
        raise SchemeError([f"{filename}: the JSON is nested too deeply to be a scheme file"]) from None
    except ValueError as exc:
        raise SchemeError([f"{filename}: invalid JSON: {exc}"]) from None


# --------------------------------------------------------------------------- problems

#: A problem before formatting: (JSON pointer as a tuple of parts, message).
_Problem = tuple[tuple[str | int, ...], str]


def _walk(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    stack = [(path, value)]
    while stack:
        here, node = stack.pop()
        yield here, node
        if isinstance(node, dict):
            stack.extend((here + (k,), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((here + (i,), v) for i, v in reversed(list(enumerate(node))))


def _duplicate_member_problems(document: Any) -> list[_Problem]:
    problems: list[_Problem] = []
    for path, node in _walk(document):
        for name in getattr(node, "duplicates", ()):
            problems.append(
                (
                    path + (name,),
                    f"the field {name!r} appears more than once in the same object; JSON keeps only the "
                    "last one, so remove or rename the others",
                )
            )
    return problems


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, dict | list) else _json_type(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _schema_message(err: ValidationError) -> str:
    kind, expected, instance, schema = err.validator, err.validator_value, err.instance, err.schema
    if kind == "required":
        name = err.message.removesuffix(" is a required property")
        return f"the required field {name} is missing; add it"
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(instance) - set(allowed))
        return (
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"remove {'them' if len(unknown) > 1 else 'it'} or fix the spelling (allowed here: {', '.join(allowed)})"
        )
    if kind == "type":
        wanted = expected if isinstance(expected, list) else [expected]
        return f"expected {' or '.join(wanted)}, found {_json_type(instance)}"
    if kind == "enum":
        return f"{_short(instance)} is not allowed here; use one of: {', '.join(json.dumps(v) for v in expected)}"
    if kind == "pattern":
        hint = schema.get("description", "")
        return f"{_short(instance)} has the wrong format. {hint}".rstrip()
    if kind == "minItems":
        return f"must not be empty: list at least {expected} {'entry' if expected == 1 else 'entries'}"
    if kind == "uniqueItems":
        return "lists the same value more than once; remove the repeats"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"is longer than {expected} characters; shorten it"
    if kind == "minimum":
        return f"{_short(instance)} is below the minimum {expected}"
    if kind == "maximum":
        return f"{_short(instance)} is above the maximum {expected}"
    message = err.message
    return message if len(message) <= 200 else message[:199] + "…"


def _schema_problems(document: Any) -> list[_Problem]:
    return [(tuple(err.absolute_path), _schema_message(err)) for err in _validator().iter_errors(document)]


def _objects(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The (index, object) pairs of a list, skipping anything that is not an object."""
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]


def _strings(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)]


def _pointer(path: Sequence[str | int]) -> str:
    if not path:
        return "/"
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


class _Ids:
    """Track declared ids in one namespace and report duplicates."""

    def __init__(self, problems: list[_Problem], what: str) -> None:
        self.first: dict[str, tuple[str | int, ...]] = {}
        self.problems = problems
        self.what = what

    def add(self, value: Any, path: tuple[str | int, ...]) -> None:
        if not isinstance(value, str | int) or isinstance(value, bool):
            return
        key = str(value) if isinstance(value, str) else value
        if key in self.first:
            self.problems.append(
                (
                    path,
                    f"duplicate {self.what} {_short(value)} (already used at {_pointer(self.first[key])}); "
                    f"each {self.what} must be unique here, so change one of them",
                )
            )
        else:
            self.first[key] = path

    def __contains__(self, value: object) -> bool:
        return value in self.first


def _semantic_problems(doc: Any) -> list[_Problem]:
    problems: list[_Problem] = []
    if not isinstance(doc, dict):
        return problems
    if "code_sets" not in doc and "instruments" not in doc:
        problems.append(
            ((), "the scheme defines no code sets and no instruments; add 'code_sets', 'instruments' or both")
        )
    _check_code_sets(doc.get("code_sets"), problems)
    _check_instruments(doc.get("instruments"), problems)
    return problems


def _check_code_sets(code_sets: Any, problems: list[_Problem]) -> None:
    set_ids = _Ids(problems, "code set id")
    codes_by_set: dict[str, set[str]] = {}
    role_owner: dict[str, tuple[str, tuple[str | int, ...]]] = {}

    for ci, cs in _objects(code_sets):
        here: tuple[str | int, ...] = ("code_sets", ci)
        cs_id = cs.get("id")
        set_ids.add(cs_id, here + ("id",))
        for ri, role in _strings(cs.get("applies_to_roles")):
            if role in role_owner and role_owner[role][1] != here:
                owner_id, owner_path = role_owner[role]
                problems.append(
                    (
                        here + ("applies_to_roles", ri),
                        f"role {role!r} is already coded with code set {owner_id!r} ({_pointer(owner_path)}); "
                        "a role can have one code set only: merge the two sets or remove the role from one",
                    )
                )
            else:
                role_owner.setdefault(role, (str(cs_id), here))

        level_ids = _Ids(problems, "level id")
        for li, level in _objects(cs.get("levels")):
            level_ids.add(level.get("id"), here + ("levels", li, "id"))

        code_ids = _Ids(problems, "code id")
        keys: dict[str, tuple[str | int, ...]] = {}
        for ki, code in _objects(cs.get("codes")):
            cpath = here + ("codes", ki)
            code_ids.add(code.get("id"), cpath + ("id",))
            key = code.get("key")
            if isinstance(key, str) and _KEY_RE.match(key):
                if key in RESERVED_KEYS:
                    problems.append(
                        (
                            cpath + ("key",),
                            f"key {key!r} is reserved for navigation ({', '.join(RESERVED_KEYS)}); "
                            "choose another letter or digit",
                        )
                    )
                elif key in keys:
                    problems.append(
                        (
                            cpath + ("key",),
                            f"duplicate key {key!r} (already used at {_pointer(keys[key])}); "
                            "each code of a code set needs its own key",
                        )
                    )
                else:
                    keys[key] = cpath + ("key",)
            level = code.get("level")
            if isinstance(level, str):
                if "levels" not in cs:
                    problems.append(
                        (
                            cpath + ("level",),
                            f"refers to level {level!r}, but this code set declares no 'levels'; "
                            "declare the level or remove the reference",
                        )
                    )
                elif level not in level_ids:
                    declared = ", ".join(map(repr, level_ids.first)) or "none"
                    problems.append(
                        (
                            cpath + ("level",),
                            f"refers to level {level!r}, which this code set does not declare "
                            f"(declared: {declared}); fix the id or add the level",
                        )
                    )
        if isinstance(cs_id, str) and cs_id not in codes_by_set:
            codes_by_set[cs_id] = set(code_ids.first)

    # Responses may point to any code set of the file, so check them once all sets are known.
    for ci, cs in _objects(code_sets):
        for ki, code in _objects(cs.get("codes")):
            responses = code.get("responses")
            if not isinstance(responses, dict):
                continue
            rpath: tuple[str | int, ...] = ("code_sets", ci, "codes", ki, "responses")
            target = responses.get("code_set")
            if not isinstance(target, str):
                continue
            if target not in codes_by_set:
                declared = ", ".join(map(repr, codes_by_set)) or "none"
                problems.append(
                    (
                        rpath + ("code_set",),
                        f"refers to code set {target!r}, which this scheme does not declare "
                        f"(declared: {declared}); fix the id or add the code set",
                    )
                )
                continue
            listed: dict[str, str] = {}
            for kind in ("recommended", "iatrogenic"):
                for i, ref in _strings(responses.get(kind)):
                    if ref not in codes_by_set[target]:
                        problems.append(
                            (
                                rpath + (kind, i),
                                f"refers to code {ref!r}, which code set {target!r} does not declare; "
                                "fix the id or add the code to that set",
                            )
                        )
                    elif listed.get(ref, kind) != kind:
                        problems.append(
                            (
                                rpath + (kind, i),
                                f"code {ref!r} is listed as both recommended and iatrogenic; keep it in one list",
                            )
                        )
                    listed.setdefault(ref, kind)


def _check_instruments(instruments: Any, problems: list[_Problem]) -> None:
    instrument_ids = _Ids(problems, "instrument id")
    session_instrument: str | None = None
    for ii, ins in _objects(instruments):
        here: tuple[str | int, ...] = ("instruments", ii)
        instrument_ids.add(ins.get("id"), here + ("id",))
        if ins.get("target") == "session":
            # fidelity scores, exports and the dashboard score one session instrument
            if session_instrument is not None:
                problems.append((here + ("target",),
                                 f"a scheme has at most one instrument rated per session, and "
                                 f"'{session_instrument}' is one already; put the other instrument "
                                 "in a scheme of its own"))
            else:
                session_instrument = str(ins.get("id"))

        scale = ins.get("scale") if isinstance(ins.get("scale"), dict) else {}
        lo, hi = scale.get("min"), scale.get("max")
        bounded = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi))
        if bounded and lo >= hi:
            problems.append(
                (here + ("scale", "max"), f"max ({hi}) must be greater than min ({lo}); fix the scale range")
            )
        cutoff = scale.get("cutoff")
        if bounded and isinstance(cutoff, int) and not isinstance(cutoff, bool) and not lo <= cutoff <= hi:
            problems.append(
                (
                    here + ("scale", "cutoff"),
                    f"cutoff {cutoff} lies outside the scale {lo}-{hi}; use a value from {lo} to {hi} "
                    "or leave the cutoff out",
                )
            )
        anchor_values = _Ids(problems, "anchor value")
        for ai, anchor in _objects(scale.get("anchors")):
            value = anchor.get("value")
            if isinstance(value, int) and not isinstance(value, bool):
                anchor_values.add(value, here + ("scale", "anchors", ai, "value"))
                if bounded and not lo <= value <= hi:
                    problems.append(
                        (
                            here + ("scale", "anchors", ai, "value"),
                            f"anchor value {value} lies outside the scale {lo}-{hi}",
                        )
                    )

        dimension_ids = _Ids(problems, "dimension id")
        for di, dim in _objects(ins.get("dimensions")):
            dimension_ids.add(dim.get("id"), here + ("dimensions", di, "id"))
        declared_dims = ", ".join(map(repr, dimension_ids.first)) or "none"

        level_ids = _Ids(problems, "level id")
        for li, level in _objects(ins.get("levels")):
            level_ids.add(level.get("id"), here + ("levels", li, "id"))

        item_ids = _Ids(problems, "item id")
        item_numbers = _Ids(problems, "item number")
        for ti, item in _objects(ins.get("items")):
            ipath = here + ("items", ti)
            item_ids.add(item.get("id"), ipath + ("id",))
            number = item.get("number")
            if isinstance(number, int) and not isinstance(number, bool):
                item_numbers.add(number, ipath + ("number",))
            for ri, dim in _strings(item.get("rated_for")):
                if dim not in dimension_ids:
                    problems.append(
                        (
                            ipath + ("rated_for", ri),
                            f"dimension {dim!r} is not declared in this instrument's 'dimensions' "
                            f"(declared: {declared_dims}); fix the id or declare the dimension",
                        )
                    )
            level = item.get("level")
            if isinstance(level, str) and level not in level_ids:
                if "levels" not in ins:
                    message = (
                        f"refers to level {level!r}, but this instrument declares no 'levels'; "
                        "declare the level or set the item's level to null"
                    )
                else:
                    declared = ", ".join(map(repr, level_ids.first)) or "none"
                    message = (
                        f"refers to level {level!r}, which this instrument does not declare "
                        f"(declared: {declared}); fix the id or add the level"
                    )
                problems.append((ipath + ("level",), message))

        overall_ids = _Ids(problems, "overall rating id")
        for oi, overall in _objects(ins.get("overall")):
            opath = here + ("overall", oi)
            oid = overall.get("id")
            if isinstance(oid, str) and oid in item_ids:
                problems.append(
                    (
                        opath + ("id",),
                        f"overall rating id {oid!r} is also an item id ({_pointer(item_ids.first[oid])}); "
                        "ratings are stored by id, so choose a different one",
                    )
                )
            overall_ids.add(oid, opath + ("id",))
            dim = overall.get("dimension")
            if isinstance(dim, str) and dim not in dimension_ids:
                problems.append(
                    (
                        opath + ("dimension",),
                        f"dimension {dim!r} is not declared in this instrument's 'dimensions' "
                        f"(declared: {declared_dims}); fix the id or declare the dimension",
                    )
                )


# --------------------------------------------------------------------------- formatting


def _value_offsets(text: str) -> dict[tuple[str | int, ...], int]:
    """Map the path of every value in a valid JSON text to the offset where it starts."""
    offsets: dict[tuple[str | int, ...], int] = {}
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        return i

    def value(i: int, path: tuple[str | int, ...]) -> int:
        i = skip(i)
        offsets[path] = i
        char = text[i]
        if char == "{":
            i = skip(i + 1)
            if text[i] == "}":
                return i + 1
            while True:
                i = skip(i)
                name, i = scanstring(text, i + 1)
                i = skip(i) + 1  # the ':'
                i = skip(value(i, path + (name,)))
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1
        if char == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1
            index = 0
            while True:
                i = skip(value(i, path + (index,)))
                index += 1
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1
        if char == '"':
            return scanstring(text, i + 1)[1]
        match = _SCALAR_RE.match(text, i)
        if match is None:  # pragma: no cover - the text was parsed successfully before
            raise ValueError(i)
        return match.end()

    try:
        value(0, ())
    except (RecursionError, ValueError, IndexError):  # pragma: no cover - best effort only
        pass
    return offsets


def _format_problems(problems: list[_Problem], text: str, filename: str) -> list[str]:
    offsets = _value_offsets(text)

    def locate(path: tuple[str | int, ...]) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in offsets:
                return offsets[path[:end]]
        return None

    located = []
    for order, (path, message) in enumerate(problems):
        offset = locate(path)
        if offset is None:
            where = f"{filename}, at {_pointer(path)}"
        else:
            line = text.count("\n", 0, offset) + 1
            where = f"{filename}, line {line}, at {_pointer(path)}"
        located.append((offset if offset is not None else -1, order, f"{where}: {message}"))
    seen: set[str] = set()
    result = []
    for _, _, message in sorted(located):
        if message not in seen:
            seen.add(message)
            result.append(message)
    return result


# --------------------------------------------------------------------------- building


def _plain(value: Any) -> Any:
    """Return the parsed JSON with plain dicts (the parser's duplicate-tracking dicts removed)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _build_scheme(doc: dict[str, Any]) -> Scheme:
    return Scheme(
        id=doc["id"],
        version=doc["version"],
        title=doc["title"],
        description=doc.get("description", ""),
        document=doc,
        sha256=canonical_sha256(doc),
        code_sets=tuple(_build_code_set(cs) for cs in doc.get("code_sets", [])),
        instruments=tuple(_build_instrument(ins) for ins in doc.get("instruments", [])),
        source=doc.get("source", ""),
        license_note=doc.get("license_note", ""),
    )


def _build_level(level: dict[str, Any]) -> Level:
    return Level(
        id=level["id"], label=level["label"], rank=level.get("rank"), description=level.get("description", "")
    )


def _build_code_set(cs: dict[str, Any]) -> CodeSet:
    codes = []
    for code in cs["codes"]:
        responses = code.get("responses") or {}
        codes.append(
            Code(
                id=code["id"],
                label=code["label"],
                description=code.get("description", ""),
                key=code.get("key"),
                level=code.get("level"),
                mbt=bool(code.get("mbt", False)),
                nonmentalizing=bool(code.get("nonmentalizing", False)),
                recommended=tuple(responses.get("recommended", ())),
                iatrogenic=tuple(responses.get("iatrogenic", ())),
                responses_code_set=responses.get("code_set"),
            )
        )
    return CodeSet(
        id=cs["id"],
        title=cs["title"],
        description=cs.get("description", ""),
        applies_to_roles=tuple(cs["applies_to_roles"]),
        levels=tuple(_build_level(level) for level in cs.get("levels", [])),
        codes=tuple(codes),
    )


def _build_instrument(ins: dict[str, Any]) -> Instrument:
    scale = ins["scale"]
    return Instrument(
        id=ins["id"],
        title=ins["title"],
        target=ins["target"],
        scale_min=scale["min"],
        scale_max=scale["max"],
        cutoff=scale.get("cutoff"),
        allow_na=bool(scale.get("allow_na", False)),
        dimensions=tuple(
            Dimension(id=d["id"], label=d["label"], description=d.get("description", "")) for d in ins["dimensions"]
        ),
        items=tuple(
            Item(
                id=item["id"],
                number=item["number"],
                name=item["name"],
                rated_for=tuple(item["rated_for"]),
                provisional=bool(item.get("provisional", False)),
                level=item.get("level"),
                description=item.get("description", ""),
            )
            for item in ins["items"]
        ),
        overall=tuple(
            OverallRating(id=o["id"], dimension=o["dimension"], label=o["label"], description=o.get("description", ""))
            for o in ins.get("overall", [])
        ),
        description=ins.get("description", ""),
        source=ins.get("source", ""),
        license_note=ins.get("license_note", ""),
        levels=tuple(_build_level(level) for level in ins.get("levels", [])),
        anchors=tuple(Anchor(value=a["value"], label=a["label"]) for a in scale.get("anchors", [])),
    )
