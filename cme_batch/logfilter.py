"""A last line of defence: drop any log value that carries a pupil's name, UPN or date of birth.

The code is written to log pupils only by internal id or case reference. This processor
checks that promise at run time: it learns every pupil's names, UPN and date of birth from
the store, and any logged string containing one of them is replaced by ``[withheld]``; the
number withheld is counted, and logged (as a number) at the end of a run, so a leak shows up
as a count to fix rather than as data in the journal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
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


def identities_from_store(engine: Engine) -> list[str]:
    """Every pupil's names, UPN and date of birth (in the usual written forms)."""
    out: list[str] = []
    with engine.connect() as conn:
        for row in conn.execute(select(
                t.pupils.c.upn, t.pupils.c.legal_surname, t.pupils.c.legal_forename,
                t.pupils.c.preferred_surname, t.pupils.c.preferred_forename, t.pupils.c.middle_names,
                t.pupils.c.dob)):
            out.extend(v for v in row[:6] if v)
            if row.dob:
                out.extend(_date_forms(row.dob))
    return out


_active: IdentityFilter | None = None


def install(engine: Engine) -> IdentityFilter:
    """Load identities from the store and put the filter in front of every log renderer."""
    from cme_batch import log

    global _active
    if _active is None:
        _active = IdentityFilter()
        log.extra_processors.append(_active)
        log.reconfigure()
    _active.add(identities_from_store(engine))
    return _active


def active() -> IdentityFilter | None:
    return _active
