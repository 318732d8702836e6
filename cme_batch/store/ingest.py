"""Writing one SourceBatch into the store: all or nothing, idempotent, with corrections audited.

The whole batch is applied in one transaction. Pupils are matched by the source's own key,
then by UPN. Marks are laid over the pupil's yearly strips; a real mark that changes is a
correction and gets a row in ``mark_changes``. Re-applying the same batch changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, delete, insert, select, update

from cme_batch import marks as mk
from cme_batch.errors import BadInputError, CmeError
from cme_batch.model import (
    Address,
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    SchoolInfo,
    SourceBatch,
    Warning_,
)
from cme_batch.store import tables as t

PUPIL_FIELDS = ("upn", "legal_surname", "legal_forename", "preferred_surname", "preferred_forename",
                "middle_names", "dob", "sex", "year_group", "reg_group", "address", "phones", "emails")


@dataclass
class IngestResult:
    source: str
    origin: str
    status: str  # ok, skipped
    run_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[Warning_] = field(default_factory=list)


def _address_json(a: Address | None) -> dict[str, Any] | None:
    return None if a is None else {"lines": list(a.lines), "postcode": a.postcode}


def address_from_json(v: Any) -> Address | None:
    if not v:
        return None
    return Address(tuple(v.get("lines") or ()), v.get("postcode"))


def _pupil_values(r: PupilRecord) -> dict[str, Any]:
    vals = {f: getattr(r, f) for f in PUPIL_FIELDS}
    vals["address"] = _address_json(r.address)
    vals["phones"] = list(r.phones)
    vals["emails"] = list(r.emails)
    return vals


def load_alphabet(conn: Connection) -> mk.Alphabet:
    rows = conn.execute(select(t.mark_alphabet.c.code, t.mark_alphabet.c.symbol)).all()
    return mk.Alphabet({c: s for c, s in rows})


def ensure_school(conn: Connection, la_number: str, estab: str, name: str) -> int:
    row = conn.execute(select(t.schools.c.id, t.schools.c.name).where(
        t.schools.c.la_number == la_number, t.schools.c.establishment_number == estab)).first()
    if row:
        if row.name != name:
            conn.execute(update(t.schools).where(t.schools.c.id == row.id).values(name=name))
        return int(row.id)
    return int(conn.execute(insert(t.schools).values(
        la_number=la_number, establishment_number=estab, name=name)).inserted_primary_key[0])


def already_imported(engine: Engine, source: str, checksum: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(t.ingest_runs.c.id).where(
            t.ingest_runs.c.source == source, t.ingest_runs.c.checksum == checksum,
            t.ingest_runs.c.status == "ok").limit(1)).first() is not None


class _Writer:
    def __init__(self, conn: Connection, school_id: int, batch: SourceBatch, now: datetime, run_id: int) -> None:
        self.conn, self.school_id, self.batch, self.now, self.run_id = conn, school_id, batch, now, run_id
        self.source = batch.source
        self.counts: dict[str, int] = defaultdict(int)
        keys = conn.execute(select(t.pupil_keys.c.pupil_key, t.pupil_keys.c.pupil_id).where(
            t.pupil_keys.c.source == self.source)).all()
        self.by_key: dict[str, int] = {k: pid for k, pid in keys}
        self.by_upn: dict[str, int] = {
            u: pid for u, pid in conn.execute(select(t.pupils.c.upn, t.pupils.c.id).where(
                t.pupils.c.school_id == school_id, t.pupils.c.upn.is_not(None))).all()}
        self.pupils_in_batch: set[int] = set()
        self.contacts: dict[int, list[ContactRecord]] = defaultdict(list)
        self.flags: dict[int, list[FlagRecord]] = defaultdict(list)
        self.enrolments: dict[int, list[EnrolmentRecord]] = defaultdict(list)
        self.marks: dict[int, list[MarksRecord]] = defaultdict(list)
        self.pending: list[Any] = []  # records naming a pupil not seen yet
        self.alphabet = load_alphabet(conn)

    # -- pupils ---------------------------------------------------------------------------
    def pupil(self, r: PupilRecord) -> None:
        pid = self.by_key.get(r.pupil_key)
        if pid is None and r.upn:
            pid = self.by_upn.get(r.upn)
        vals = _pupil_values(r)
        if pid is None:
            pid = int(self.conn.execute(insert(t.pupils).values(
                school_id=self.school_id, created_at=self.now, updated_at=self.now, **vals)
            ).inserted_primary_key[0])
            self.counts["pupils_added"] += 1
        else:
            cur = self.conn.execute(select(*[t.pupils.c[f] for f in PUPIL_FIELDS]).where(
                t.pupils.c.id == pid)).one()._asdict()
            # A source that omits a field leaves what another source said.
            changed = {f: v for f, v in vals.items() if v not in (None, []) and cur[f] != v}
            if changed:
                self.conn.execute(update(t.pupils).where(t.pupils.c.id == pid).values(
                    updated_at=self.now, **changed))
                self.counts["pupils_updated"] += 1
        if r.pupil_key not in self.by_key:
            self.conn.execute(insert(t.pupil_keys).values(pupil_id=pid, source=self.source, pupil_key=r.pupil_key))
            self.by_key[r.pupil_key] = pid
        if r.upn:
            self.by_upn[r.upn] = pid
        self.pupils_in_batch.add(pid)

    def resolve(self, pupil_key: str) -> int | None:
        return self.by_key.get(pupil_key)

    def add(self, r: Any) -> None:
        pid = self.resolve(r.pupil_key)
        if pid is None:
            self.pending.append(r)
            return
        if isinstance(r, ContactRecord):
            self.contacts[pid].append(r)
        elif isinstance(r, FlagRecord):
            self.flags[pid].append(r)
        elif isinstance(r, EnrolmentRecord):
            self.enrolments[pid].append(r)
        elif isinstance(r, MarksRecord):
            self.marks[pid].append(r)
            if len(self.marks) > 2000:
                self.flush_marks()

    # -- contacts, flags, enrolments -------------------------------------------------------
    def _sync(self, table: Any, kind: str, items: dict[int, list[Any]], key_of: Any, values_of: Any) -> None:
        replace = kind in self.batch.replaces
        pids = set(items) | (self.pupils_in_batch if replace else set())
        for pid in pids:
            existing = {key_of(row): row for row in self.conn.execute(select(table).where(
                table.c.pupil_id == pid, table.c.source == self.source)).mappings()}
            seen = set()
            for rec in items.get(pid, []):
                vals = values_of(rec)
                k = key_of(vals)
                seen.add(k)
                row = existing.get(k)
                if row is None:
                    self.conn.execute(insert(table).values(pupil_id=pid, source=self.source, **vals))
                    self.counts[f"{kind}_added"] += 1
                elif any(row[c] != v for c, v in vals.items() if c != "updated_at"):
                    self.conn.execute(update(table).where(table.c.id == row["id"]).values(**vals))
                    self.counts[f"{kind}_updated"] += 1
            if replace:
                gone = [row["id"] for k, row in existing.items() if k not in seen]
                if gone:
                    self.conn.execute(delete(table).where(table.c.id.in_(gone)))
                    self.counts[f"{kind}_removed"] += len(gone)

    def write_people(self) -> None:
        self._sync(t.contacts, "contacts", self.contacts, lambda v: v["contact_key"], lambda r: {
            "contact_key": r.contact_key, "priority": r.priority, "title": r.title, "surname": r.surname,
            "forename": r.forename, "relationship": r.relationship,
            "parental_responsibility": r.parental_responsibility, "lives_with": r.lives_with,
            "phones": list(r.phones), "emails": list(r.emails), "address": _address_json(r.address),
            "updated_at": self.now})
        self._sync(t.flags, "flags", self.flags, lambda v: (v["kind"], v["start_date"]), lambda r: {
            "kind": r.kind, "start_date": r.start, "end_date": r.end, "detail": r.detail})
        self._sync(t.enrolments, "enrolments", self.enrolments, _enrolment_key, lambda r: {
                       "admission_date": r.admission_date, "entry_date": r.entry_date,
                       "leaving_date": r.leaving_date, "leaving_reason": r.leaving_reason,
                       "destination": r.destination, "withdrawn": r.withdrawn, "updated_at": self.now})

    # -- marks ------------------------------------------------------------------------------
    def flush_marks(self) -> None:
        if not self.marks:
            return
        pids = list(self.marks)
        strips: dict[tuple[int, int], str] = {
            (pid, yr): m for pid, yr, m in self.conn.execute(select(
                t.mark_strips.c.pupil_id, t.mark_strips.c.academic_year, t.mark_strips.c.marks).where(
                t.mark_strips.c.pupil_id.in_(pids))).all()}
        original = dict(strips)
        changes: list[dict[str, Any]] = []
        sym = self.alphabet.symbol_for
        for pid, recs in self.marks.items():
            for rec in recs:
                for yr, idx, symbols in _split_by_year(rec.start, [sym(c) if c else "" for c in rec.codes]):
                    key = (pid, yr)
                    cur = strips.get(key) or mk.empty_strip(yr)
                    new, fixed = mk.overlay(cur, idx, symbols)
                    strips[key] = new
                    for i, old, nw in fixed:
                        day, sess = mk.day_of_position(yr, i)
                        changes.append({"pupil_id": pid, "day": day, "session": sess,
                                        "old_code": self.alphabet.code_for(old),
                                        "new_code": self.alphabet.code_for(nw), "at": self.now,
                                        "ingest_run_id": self.run_id})
                self.counts["marks"] += sum(1 for c in rec.codes if c)
        ins = [{"pupil_id": p, "academic_year": y, "marks": m, "updated_at": self.now}
               for (p, y), m in strips.items() if (p, y) not in original]
        upd = [{"p": p, "y": y, "m": m, "u": self.now}
               for (p, y), m in strips.items() if (p, y) in original and original[(p, y)] != m]
        if ins:
            self.conn.execute(insert(t.mark_strips), ins)
        if upd:
            self.conn.execute(update(t.mark_strips).where(and_(
                t.mark_strips.c.pupil_id == bindparam("p"), t.mark_strips.c.academic_year == bindparam("y"))
            ).values(marks=bindparam("m"), updated_at=bindparam("u")), upd)
        if changes:
            self.conn.execute(insert(t.mark_changes), changes)
            self.counts["marks_corrected"] += len(changes)
        self.marks.clear()

    def write_alphabet(self) -> None:
        new = self.alphabet.new_entries()
        if new:
            self.conn.execute(insert(t.mark_alphabet), [{"code": c, "symbol": s} for c, s in new.items()])


def _enrolment_key(v: Any) -> tuple[str, Any]:
    """One admission is one enrolment: known by its agreed first day, else by its entry date.

    So an applicant stored before starting (agreed day, no entry date) is updated, not doubled,
    when the MIS later records the day the child came on roll.
    """
    if v["admission_date"] is not None:
        return ("admission", v["admission_date"])
    return ("entry", v["entry_date"])


def _split_by_year(start: date, symbols: list[str]) -> Iterable[tuple[int, int, list[str]]]:
    """Cut a run of sessions at 1 August boundaries: (academic year, start index, symbols)."""
    i = 0
    day = start
    while i < len(symbols):
        yr = mk.academic_year_of(day)
        idx = mk.position(day, "AM")
        room = mk.strip_length(yr) - idx
        chunk = symbols[i:i + room]
        yield yr, idx, chunk
        i += len(chunk)
        day = mk.year_start(yr + 1)


def apply_batch(engine: Engine, school_id: int, batch: SourceBatch, now: datetime) -> IngestResult:
    """Store one batch in one transaction. Raises (and stores nothing) on any bad record."""
    if batch.checksum and already_imported(engine, batch.source, batch.checksum):
        return IngestResult(batch.source, batch.origin, "skipped")
    with engine.begin() as conn:
        run_id = int(conn.execute(insert(t.ingest_runs).values(
            source=batch.source, origin=batch.origin, checksum=batch.checksum, status="running", started_at=now,
        )).inserted_primary_key[0])
        w = _Writer(conn, school_id, batch, now, run_id)
        for rec in batch.records:
            if isinstance(rec, PupilRecord):
                w.pupil(rec)
            elif isinstance(rec, SchoolInfo):
                continue
            else:
                w.add(rec)
        pending, w.pending = w.pending, []
        for rec in pending:
            w.add(rec)
        if w.pending:
            raise BadInputError(
                f"{batch.origin}: {len(w.pending)} record(s) refer to a pupil that is neither in the file nor "
                "in the store (import the pupils export first); nothing imported")
        w.flush_marks()
        w.write_people()
        w.write_alphabet()
        counts = dict(w.counts)
        warnings = [dataclasses.asdict(x) for x in batch.warnings]
        conn.execute(update(t.ingest_runs).where(t.ingest_runs.c.id == run_id).values(
            status="ok", finished_at=now, counts=counts, warnings=warnings, cursor=batch.cursor))
        record_source_success(conn, batch.source, now, batch.cursor)
    return IngestResult(batch.source, batch.origin, "ok", run_id, counts, list(batch.warnings))


def record_source_success(conn: Connection, source: str, now: datetime, cursor: str | None) -> None:
    vals: dict[str, Any] = {"last_success_at": now, "last_attempt_at": now, "last_error": None}
    if cursor is not None:
        vals["cursor"] = cursor
    if conn.execute(update(t.source_state).where(t.source_state.c.source == source).values(**vals)).rowcount == 0:
        conn.execute(insert(t.source_state).values(source=source, **vals))


def record_source_failure(engine: Engine, source: str, origin: str, now: datetime, error: CmeError | Exception,
                          checksum: str | None = None, status: str = "failed") -> None:
    """Keep a failed or rejected ingest visible (status, summary) without touching any data."""
    msg = str(error)
    with engine.begin() as conn:
        conn.execute(insert(t.ingest_runs).values(
            source=source, origin=origin, checksum=checksum, status=status, started_at=now, finished_at=now,
            error=msg[:4000]))
        vals = {"last_attempt_at": now, "last_error": msg[:4000]}
        if conn.execute(update(t.source_state).where(t.source_state.c.source == source).values(**vals)).rowcount == 0:
            conn.execute(insert(t.source_state).values(source=source, **vals))

