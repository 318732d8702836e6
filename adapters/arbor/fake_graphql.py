"""A small GraphQL reader over a FakeSchool: enough of Arbor's query language for the tests.

It understands one root entity per query, ``page_size``/``page_num`` (0-based) and filter
arguments ``{path}_{op}`` where ``path`` walks related objects with ``__`` (``student__id_in``)
and ``op`` is ``in``, ``equals``, ``after`` or ``before``. Each row is cut down to the fields
asked for, related objects are followed, and asking for a field the entity does not have is
an error, as it would be on a real server. Dates come out in the form the server is set to.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from adapters.arbor.fake_school import FakeSchool, Obj

_TOKEN = re.compile(r'\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<num>-?\d+(?:\.\d+)?)|(?P<str>"(?:[^"\\]|\\.)*")'
                    r'|(?P<punct>[{}()\[\]:,]))')
Selection = dict[str, "Selection | None"]


class QueryError(Exception):
    """A query the fake cannot answer: reported in the GraphQL ``errors`` list."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"Syntax error at {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str:
        return self.toks[self.i][1] if self.i < len(self.toks) else ""

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise QueryError("Syntax error: unexpected end of query")
        tok = self.toks[self.i]
        if expected is not None and tok[1] != expected:
            raise QueryError(f"Syntax error: expected {expected!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def value(self) -> Any:
        kind, text = self.take()
        if text == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.take(",")
            self.take("]")
            return items
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "str":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        raise QueryError(f"Syntax error: unexpected {text!r}")

    def selection(self) -> Selection:
        self.take("{")
        out: Selection = {}
        while self.peek() != "}":
            _, name = self.take()
            out[name] = self.selection() if self.peek() == "{" else None
        self.take("}")
        return out

    def query(self) -> tuple[str, dict[str, Any], Selection]:
        self.take("{")
        _, entity = self.take()
        args: dict[str, Any] = {}
        if self.peek() == "(":
            self.take("(")
            while self.peek() != ")":
                _, name = self.take()
                self.take(":")
                args[name] = self.value()
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
        sel = self.selection()
        self.take("}")
        return entity, args, sel


def parse(text: str) -> tuple[str, dict[str, Any], Selection]:
    """(root entity, arguments, selection) of a one-entity query."""
    return _Parser(text).query()


def _as_date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v)[:10])


#: Fields whose value is served whole, as a JSON scalar, even when it is an object: a student's
#: ``userTags`` in the SDK's shape is a map of tag name to value, not a related object.
JSON_SCALARS = frozenset({"userTags"})


class Executor:
    """Answers queries from a FakeSchool, caching each filtered list until the school changes."""

    def __init__(self, school: FakeSchool, date_format: str = "plain") -> None:
        self.school = school
        self.date_format = date_format  # "plain" ("2025-09-01") or "object" ({"entityType": "date", ...})
        self._cache: dict[Any, list[Obj]] = {}

    def _follow(self, v: Any) -> Any:
        if isinstance(v, dict) and "entityType" in v and "id" in v and len(v) == 2:
            return self.school.get(v["entityType"], v["id"])
        return v

    def _walk(self, obj: Obj | None, path: list[str]) -> Any:
        v: Any = obj
        for part in path:
            v = self._follow(v)
            if not isinstance(v, dict):
                return None
            v = v.get(part)
        return v

    def _matches(self, obj: Obj, field: str, op: str, arg: Any) -> bool:
        v = self._walk(obj, field.split("__"))
        if op == "in":
            return str(v) in {str(a) for a in arg}
        if op == "equals":
            return str(v) == str(arg)
        if v is None:
            return False
        return _as_date(v) > _as_date(arg) if op == "after" else _as_date(v) < _as_date(arg)

    def rows(self, entity: str, args: dict[str, Any]) -> list[Obj]:
        filters = []
        for name, arg in args.items():
            if name in ("page_size", "page_num"):
                continue
            field, _, op = name.rpartition("_")
            if op not in ("in", "equals", "after", "before") or not field:
                raise QueryError(f'Unknown argument "{name}" on field "{entity}"')
            filters.append((field.rstrip("_"), op, arg))
        key = (entity, repr(sorted(filters, key=repr)), self.school.revision)
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = [o for o in self.school.rows(entity)
                                if all(self._matches(o, f, op, a) for f, op, a in filters)]
        return self._cache[key]

    def render(self, entity: str, obj: Obj, sel: Selection) -> Obj:
        out: Obj = {}
        for name, sub in sel.items():
            if name not in obj:
                raise QueryError(f'Cannot query field "{name}" on type "{entity}".')
            v = self._follow(obj[name])
            if isinstance(v, dict) and name in JSON_SCALARS and sub is None:
                out[name] = dict(v)
            elif isinstance(v, dict):
                if sub is None:
                    raise QueryError(f'Field "{name}" of type "{entity}" must have a selection of subfields.')
                out[name] = self.render(str(v.get("entityType", name)), v, sub)
            elif isinstance(v, (date, datetime)):
                out[name] = self._date(v)
            else:
                out[name] = v
        return out

    def _date(self, v: date) -> Any:
        stamp = v if isinstance(v, datetime) else datetime(v.year, v.month, v.day)
        if self.date_format == "object":
            return {"entityType": "date", "date": stamp.strftime("%Y-%m-%d %H:%M:%S")}
        return v.isoformat() if not isinstance(v, datetime) else stamp.strftime("%Y-%m-%d %H:%M:%S")
