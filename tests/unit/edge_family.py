"""Edge inputs generated from the contracts themselves (the pydantic models of scheduler.models and the API):
for every field of a model, values at and past each bound its definition declares, and the values nobody types
on purpose (0, negative, 1e-9, huge, NaN, inf, empty, wrong type, unicode, control characters, very long text,
missing). A field added to a model is covered without editing a test: the cases are read from
``model.model_fields`` (annotation, constraints, default), recursing into nested models.

Each :class:`Edge` says whether the model itself must refuse it (``refuse``: past a declared bound, of a type
the field cannot take, missing while required): the tests hold every reader of the contract to that, and to
the property that any other value gives a valid result or a refusal naming the field. Pure: no I/O."""

from __future__ import annotations

import math
import random
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from scheduler.models import (
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    check_entrypoint,
    check_label_key,
    check_label_value,
    check_not_blank,
    check_printable,
)

#: Marks a field left out of the input (the key absent, the CSV cell empty).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

LONG_TEXT_CHARS = 100_000  # far past every max_length at the edges (the longest is 4,096)


@dataclass(frozen=True)
class Edge:
    """One edge value for the field at ``path`` (keys and list indices from the model's root)."""

    path: tuple[str | int, ...]
    value: Any
    label: str  # what the value is, for the test id
    refuse: bool  # the field's own definition refuses it (past a bound, wrong type, required and missing)

    @property
    def field(self) -> str:
        return ".".join(str(p) for p in self.path)

    @property
    def id(self) -> str:
        return f"{self.field}={self.label}"


@dataclass
class Shape:
    """What a field's annotation allows, read from its type and constraints."""

    kind: str  # int, float, str, bool, literal, datetime, model, tuple, dict, other
    optional: bool = False
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    min_len: int | None = None
    max_len: int | None = None
    pattern: str | None = None  # pydantic's ``Field(pattern=...)``: text it does not match (re.search) is refused
    syntax: re.Pattern[str] | None = None  # text through a check that takes only what this matches whole
    strict: bool = False
    printable: bool = False  # text through scheduler.models.check_printable
    not_blank: bool = False  # text through scheduler.models.check_not_blank
    literals: tuple[Any, ...] = ()
    model: type[BaseModel] | None = None
    item: Shape | None = None  # a tuple's items, a dict's values
    key: Shape | None = None  # a dict's keys


#: Checks of scheduler.models that take only text a regular expression matches whole (the label syntax): a text
#: edge it does not match must be refused.
SYNTAX_CHECKS: dict[Any, re.Pattern[str]] = {check_label_value: LABEL_VALUE_RE, check_label_key: LABEL_KEY_RE}


def _absorb(s: Shape, meta: Any) -> None:
    if isinstance(meta, FieldInfo):
        for m in meta.metadata:
            _absorb(s, m)
        return
    if isinstance(meta, at.Gt):
        s.gt = float(meta.gt)  # type: ignore[arg-type]
    elif isinstance(meta, at.Ge):
        s.ge = float(meta.ge)  # type: ignore[arg-type]
    elif isinstance(meta, at.Lt):
        s.lt = float(meta.lt)  # type: ignore[arg-type]
    elif isinstance(meta, at.Le):
        s.le = float(meta.le)  # type: ignore[arg-type]
    elif isinstance(meta, at.MinLen):
        s.min_len = meta.min_length
    elif isinstance(meta, at.MaxLen):
        s.max_len = meta.max_length
    elif getattr(meta, "pattern", None) is not None:
        s.pattern = meta.pattern
    if getattr(meta, "strict", None):
        s.strict = True
    func = getattr(meta, "func", None)
    if func is check_printable or func is check_entrypoint:  # (an entrypoint is checked printable first)
        s.printable = True
    elif func is check_not_blank:
        s.not_blank = True
    if func in SYNTAX_CHECKS:
        s.syntax = SYNTAX_CHECKS[func]


def shape_of(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> Shape:
    """The :class:`Shape` of a field: ``Optional`` and ``Annotated`` unwrapped, their constraints gathered."""
    metas: list[Any] = list(metadata)
    optional = False
    tp = annotation
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            args = typing.get_args(tp)
            tp, metas = args[0], [*metas, *args[1:]]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            tp = args[0]
        else:
            break
    origin = typing.get_origin(tp)
    if origin is Literal:
        s = Shape("literal", literals=typing.get_args(tp))
    elif tp is bool:
        s = Shape("bool")
    elif tp is int:
        s = Shape("int")
    elif tp is float:
        s = Shape("float")
    elif tp is str:
        s = Shape("str")
    elif tp is datetime:
        s = Shape("datetime")
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        s = Shape("model", model=tp)
    elif origin is tuple:
        args = typing.get_args(tp)
        s = Shape("tuple", item=shape_of(args[0]) if args else None)
    elif origin is dict:
        s = Shape("dict", item=shape_of(typing.get_args(tp)[1]), key=shape_of(typing.get_args(tp)[0]))
    else:
        s = Shape("other")
    s.optional = optional
    for m in metas:
        _absorb(s, m)
    return s


def _number_edges(s: Shape) -> Iterator[tuple[Any, str, bool]]:
    """(value, label, refused by the bounds) for an int or float field."""
    is_int = s.kind == "int"

    def past(v: float) -> bool:
        return ((s.gt is not None and not v > s.gt) or (s.ge is not None and not v >= s.ge)
                or (s.lt is not None and not v < s.lt) or (s.le is not None and not v <= s.le)
                or (is_int and not float(v).is_integer()) or not math.isfinite(v))  # fmt: skip

    vals: list[tuple[float, str]] = [(0, "zero"), (-1, "minus-one"), (1e-9, "1e-9"), (1e300, "huge"),
                                     (2**63, "2**63")]  # fmt: skip
    for b, name in ((s.gt, "gt"), (s.ge, "ge"), (s.lt, "lt"), (s.le, "le")):
        if b is None:
            continue
        step = 1.0 if is_int else max(abs(b), 1.0) * 1e-9
        vals += [(b, f"{name}-bound"), (b - step, f"{name}-bound-minus"), (b + step, f"{name}-bound-plus")]
    if not is_int:
        vals += [(1e-300, "1e-300"), (5e-324, "denormal"), (1.7976931348623157e308, "max-float")]
    for v, label in vals:
        v = int(v) if is_int and float(v).is_integer() else float(v)
        yield v, label, past(float(v))
    if is_int:
        yield 1.5, "fraction", True
    yield math.nan, "nan", True
    yield math.inf, "inf", True
    yield -math.inf, "minus-inf", True


#: Text nobody means: each with whether a printable-text field refuses it.
ODD_TEXT: tuple[tuple[str, str, bool], ...] = (
    ("", "empty", False),
    (" ", "space", False),
    ("caf\u00e9-\u6f22\u5b57-\u2713", "unicode", False),
    ("a\u202eb", "bidi-override", True),
    ("a\x00b", "nul", True),
    ("a\nb", "newline", True),
    ("a\u200bb", "zero-width", True),
    ("\ud800", "lone-surrogate", True),
    ("a,b", "comma", False),
    ("a=b", "equals", False),
    (" a ", "padded", False),
    ('"q"', "quotes", False),
)


def _text_edges(s: Shape) -> Iterator[tuple[Any, str, bool | None]]:
    """(value, label, refused by the length bounds, the pattern or the label syntax, or None: the field's own rules
    decide)."""

    def by_bounds(v: str) -> bool | None:
        if (s.min_len is not None and len(v) < s.min_len) or (s.max_len is not None and len(v) > s.max_len):
            return True
        if (s.pattern is not None and not re.search(s.pattern, v)) or (s.syntax is not None and not s.syntax.fullmatch(v)):
            return True
        return None

    for v, label, unprintable in ODD_TEXT:
        blank = s.not_blank and not v.strip()
        yield v, label, True if (s.printable and unprintable) or blank else by_bounds(v)
    if s.max_len is not None:
        yield "x" * s.max_len, "max-len", None
        yield "x" * (s.max_len + 1), "max-len-plus", True
    yield "x" * LONG_TEXT_CHARS, "very-long", by_bounds("x" * LONG_TEXT_CHARS)


WRONG_TYPES: tuple[tuple[Any, str], ...] = (("abc", "text"), ([], "list"), ({}, "object"), (True, "bool"))


def field_edges(shape: Shape, path: tuple[str | int, ...], required: bool) -> Iterator[Edge]:
    """Every edge of one field (and, for a nested model, of its fields)."""
    yield Edge(path, MISSING, "missing", required)
    if not required or shape.optional:
        yield Edge(path, None, "null", not shape.optional)
    if shape.kind in ("int", "float"):
        for v, label, bad in _number_edges(shape):
            yield Edge(path, v, label, bad)
        for v, label in WRONG_TYPES:
            yield Edge(path, v, f"wrong-type-{label}", True)
        yield Edge(path, "2", "numeric-text", False if not shape.strict else True)
    elif shape.kind == "str":
        for v, label, bad in _text_edges(shape):
            yield Edge(path, v, label, bool(bad))
        yield Edge(path, 7, "wrong-type-number", True)
        yield Edge(path, ["a"], "wrong-type-list", True)
    elif shape.kind == "literal":
        for v in shape.literals:
            yield Edge(path, v, f"allowed-{v}", False)
        for v in shape.literals[:1]:
            if isinstance(v, str):
                yield Edge(path, v.title(), "title-case", v.title() != v)
                yield Edge(path, f" {v} ", "padded", True)
        yield Edge(path, "dance", "unknown", True)
        yield Edge(path, 1, "wrong-type-number", True)
    elif shape.kind == "bool":
        for v in (True, False):
            yield Edge(path, v, f"allowed-{v}", False)
        yield Edge(path, "maybe", "unknown-text", True)
        yield Edge(path, 2, "two", True)
        yield Edge(path, [], "wrong-type-list", True)
    elif shape.kind == "datetime":
        yield Edge(path, "2027-01-20T00:00:00Z", "iso", False)
        yield Edge(path, "2027-01-20T00:00:00", "no-zone", True)
        yield Edge(path, "1999-12-31T00:00:00Z", "before-2020", True)
        yield Edge(path, "9999-12-31T23:59:59Z", "year-9999", False)
        yield Edge(path, "2027-02-30T00:00:00Z", "feb-30", True)
        yield Edge(path, 2, "number", True)
        yield Edge(path, "2", "numeric-text", True)
        yield Edge(path, "", "empty", True)
    elif shape.kind == "model":
        assert shape.model is not None
        yield Edge(path, "abc", "wrong-type-text", True)
        yield from model_edges(shape.model, path)
    elif shape.kind in ("tuple", "dict"):
        yield Edge(path, "abc", "wrong-type-text", True)
        yield Edge(path, [] if shape.kind == "tuple" else {}, "empty", bool(shape.min_len))
        if shape.max_len is not None:
            many: Any = (["a"] * (shape.max_len + 1) if shape.kind == "tuple"
                         else {f"K{i}": "v" for i in range(shape.max_len + 1)})  # fmt: skip
            yield Edge(path, many, "too-many", True)
        if shape.item is not None and shape.item.kind == "str":  # a list or map of text: one odd item
            for v, label, bad in _text_edges(shape.item):
                one: Any = [v] if shape.kind == "tuple" else {"k": v}
                yield Edge(path, one, f"item-{label}", bool(bad))
        if shape.key is not None and shape.key.kind == "str":  # a map with text keys: one odd key
            for v, label, bad in _text_edges(shape.key):
                yield Edge(path, {v: "x"}, f"key-{label}", bool(bad))
        if shape.item is not None and shape.item.kind == "model":  # a list of models: the first one's fields
            assert shape.item.model is not None
            yield from model_edges(shape.item.model, (*path, 0))


def model_edges(model: type[BaseModel], path: tuple[str | int, ...] = ()) -> Iterator[Edge]:
    """Every edge of every field of ``model`` (recursing into nested models), plus an unknown field."""
    for name, f in model.model_fields.items():
        yield from field_edges(shape_of(f.annotation, f.metadata), (*path, name), f.is_required())
    if model.model_config.get("extra") == "forbid":
        yield Edge((*path, "no_such_field"), 1, "unknown-field", True)


def apply(base: Any, edge: Edge) -> Any:
    """A deep copy of ``base`` (dicts and lists) with ``edge`` applied at its path."""
    import copy

    doc = copy.deepcopy(base)
    node = doc
    for key, nxt in zip(edge.path[:-1], edge.path[1:]):
        if isinstance(node, dict) and key not in node:
            node[key] = [{}] if isinstance(nxt, int) else {}  # (a list of models absent from the base: one)
        node = node[key]
    last = edge.path[-1]
    if edge.value is MISSING:
        if isinstance(node, dict):
            node.pop(last, None)
    else:
        node[last] = edge.value
    return doc


def sample(edges: list[Edge], k: int, seed: int) -> list[Edge]:
    """``k`` edges drawn from ``edges`` by ``seed`` (the same for every run)."""
    return random.Random(seed).sample(edges, min(k, len(edges)))
