"""A last line of defence: drop any log value that carries a pupil's name, UPN or date of birth.

The code is written to log pupils only by internal id or case reference. This processor
checks that promise at run time: it learns every pupil's names, UPN and date of birth from
the store, and any logged string containing one of them is replaced by ``[withheld]``; the
number withheld is counted, and logged (as a number) at the end of a run, so a leak shows up
as a count to fix rather than as data in the journal.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, MutableMapping
from datetime import date
from typing import Any

from sqlalchemy import Engine, select

from cme_batch.store import tables as t

WITHHELD = "[withheld]"
_TOKEN = re.compile(r"[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}|[^\W_]+(?:['\u2019-][^\W_]+)*")
_KEEP = ("event", "level", "timestamp", "run_id", "stage", "logger")


def _date_forms(d: date) -> set[str]:
    return {d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%d-%m-%Y"), d.strftime("%d.%m.%Y")}


class IdentityFilter:
    """A structlog processor withholding values that contain a known pupil identity."""

    def __init__(self, identities: Iterable[str] = ()) -> None:
        self.tokens: set[str] = set()
        self.withheld = 0
        self.add(identities)

    def add(self, identities: Iterable[str]) -> None:
        for ident in identities:
            if not ident:
                continue
            if ident.isalnum():  # one token (a UPN, most names): no need for the pattern
                if len(ident) >= 2:
                    self.tokens.add(ident.casefold())
                continue
            for tok in _TOKEN.findall(ident):
                if len(tok) >= 2:
                    self.tokens.add(tok.casefold())

    def _hits(self, text: str) -> bool:
        return any(tok.casefold() in self.tokens for tok in _TOKEN.findall(text))

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            if self._hits(value):
                self.withheld += 1
                return WITHHELD
            return value
        if isinstance(value, date):
            return self._clean(value.isoformat())
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [self._clean(v) for v in value]
        return value

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self.tokens:
            return event
        for key in list(event):
            if key in ("level", "timestamp", "run_id"):
                continue
            event[key] = self._clean(event[key])
        return event


#: The columns whose values are pupil identities.
_NAME_COLUMNS = ("upn", "legal_surname", "legal_forename", "preferred_surname", "preferred_forename", "middle_names")


def identities_from_store(engine: Engine, pupil_ids: Collection[int] | None = None) -> list[str]:
    """Every pupil's names, UPN and date of birth (in the usual written forms); with
    ``pupil_ids``, only those pupils' (an import's: nothing is read when it stored no pupil's details).

    Each column's distinct values are read, not every pupil's row: a local authority's 100,000
    pupils share a few thousand names and dates of birth, and it is the number of strings to
    split into tokens that costs.
    """
    if pupil_ids is None:
        return _identities(engine, [])
    ids = sorted(pupil_ids)
    return [v for i in range(0, len(ids), _ID_CHUNK) for v in _identities(engine, [t.pupils.c.id.in_(ids[i:i + _ID_CHUNK])])]


#: Pupil ids per ``IN (...)`` list.
_ID_CHUNK = 5000


def _identities(engine: Engine, where: list[Any]) -> list[str]:
    p = t.pupils
    out: list[str] = []
    with engine.connect() as conn:
        for name in _NAME_COLUMNS:
            col = p.c[name]
            out.extend(v for v in conn.execute(select(col).where(col.is_not(None), *where).distinct()).scalars() if v)
        for dob in conn.execute(select(p.c.dob).where(p.c.dob.is_not(None), *where).distinct()).scalars():
            out.extend(_date_forms(dob))
    return out


_active: IdentityFilter | None = None


def install(engine: Engine, pupil_ids: Collection[int] | None = None) -> IdentityFilter:
    """Load identities from the store and put the filter in front of every log renderer.

    ``pupil_ids`` (after an import: the pupils it added or changed) adds only those pupils, when
    the filter already knows the others.
    """
    from cme_batch import log

    global _active
    if _active is None:
        _active = IdentityFilter()
        log.extra_processors.append(_active)
        log.reconfigure()
        pupil_ids = None  # a new filter learns everyone
    _active.add(identities_from_store(engine, pupil_ids))
    return _active


def active() -> IdentityFilter | None:
    return _active
