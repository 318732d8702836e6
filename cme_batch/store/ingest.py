"""Writing one SourceBatch into the store: all or nothing, idempotent, with corrections audited.

The whole batch is applied in one transaction. Pupils are matched by the source's own key,
then by UPN; a UPN never merges two records of one batch that have different keys, nor a record
whose date of birth is not the stored pupil's (both refuse the batch). Marks are laid over the
pupil's yearly strips; a real mark that changes is a correction and gets a row in
``mark_changes``. Re-applying the same batch changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import attrgetter, methodcaller
from typing import Any, cast

from sqlalchemy import Connection, Date, Engine, String, delete, insert, select, update

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
from cme_batch.store import bulk, checkpoint
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
    #: The pupils whose details the batch added or changed (their identities join the log filter).
    pupil_ids: frozenset[int] = frozenset()


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


#: A pupil record's details (every field but its key and UPN), and what they are when it gives none.
_DETAILS = attrgetter(*PUPIL_FIELDS[1:])
_NO_DETAILS = _DETAILS(PupilRecord(""))


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
    return _new_id(conn.execute(insert(t.schools).values(
        la_number=la_number, establishment_number=estab, name=name)))


def _new_id(result: Any) -> int:
    """The primary key of the row an INSERT just added."""
    return int(result.inserted_primary_key[0])


def already_imported(engine: Engine, source: str, checksum: str, whole_report: str | None = None) -> bool:
    """Whether a file with these bytes was stored from ``source`` before: ever, or for the whole of a
    report (``SourceBatch.whole_report``), as the latest file of that report stored."""
    with engine.connect() as conn:
        if whole_report is not None:
            return latest_of_reports(conn, source).get(whole_report) == checksum
        return conn.execute(select(t.ingest_runs.c.id).where(
            t.ingest_runs.c.source == source, t.ingest_runs.c.checksum == checksum,
            t.ingest_runs.c.status == "ok").limit(1)).first() is not None


def registers_stored_at(conn: Connection, source: str) -> datetime | None:
    """When ``source`` last stored registers: its latest import that laid marks (a SIMS marks
    export, a CTF, an Arbor pull with marks), of its last 500 imports; None if none did."""
    r = t.ingest_runs.c
    for started, counts in conn.execute(select(r.started_at, r.counts).where(r.source == source, r.status == "ok")
                                        .order_by(r.id.desc()).limit(500)):
        if (counts or {}).get("marks"):
            at: datetime = started
            return at if at.tzinfo else at.replace(tzinfo=UTC)  # (SQLite gives back naive UTC)
    return None


def latest_of_reports(conn: Connection, source: str) -> dict[str, str]:
    """The checksum of the latest file stored from ``source`` of each report (its name's group)."""
    from cme_batch.dropfolder import group_of

    r = t.ingest_runs.c
    out: dict[str, str] = {}
    for origin, checksum in conn.execute(select(r.origin, r.checksum).where(
            r.source == source, r.status == "ok", r.checksum.is_not(None)).order_by(r.id)):
        out[group_of(origin)] = checksum
    return out


#: Records held before they are written: pupils per chunk, and other records per chunk.
PUPIL_CHUNK = 2000
RECORD_CHUNK = 20000
#: A register is laid in the database itself (``_Writer._splice_registers``) when it gives at most
#: this many sessions (a week's), for at least this many pupils of a chunk.
SPLICE_MOST, SPLICE_FROM = 10, 50
#: Ids per ``IN (...)`` list (well under every database's parameter limit).
IN_CHUNK = 500


#: Dates the store accepts: anything outside is a typing error in the MIS (and 9999-12-31 would
#: overflow the date arithmetic of the engine).
DATES = (date(1900, 1, 1), date(2199, 12, 31))
#: The longest text each column holds (PostgreSQL enforces it; SQLite would not, so it is checked here).
LIMITS: dict[str, dict[str, int]] = {
    table.name: {c.name: c.type.length for c in table.c if isinstance(c.type, String) and c.type.length}
    for table in (t.pupils, t.pupil_keys, t.contacts, t.flags, t.enrolments, t.mark_alphabet)}


#: The date columns of the same tables.
DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    table.name: tuple(c.name for c in table.c if isinstance(c.type, Date))
    for table in (t.pupils, t.pupil_keys, t.contacts, t.flags, t.enrolments, t.mark_alphabet)}


def check_values(origin: str, table: Any, row: Mapping[str, Any]) -> None:
    """Refuse (naming the file, table and field, never the value) what the store cannot hold."""
    for col, n in LIMITS[table.name].items():
        v = row.get(col)
        if v.__class__ is str and len(v) > n:
            raise BadInputError(f"{origin}: a {table.name} record has a {col} longer than {n} characters, more "
                                "than the store keeps; correct it in the MIS; nothing imported")
    for col in DATE_COLUMNS[table.name]:
        v = row.get(col)
        if v is not None and not DATES[0] <= v <= DATES[1]:
            raise BadInputError(f"{origin}: a {table.name} record has a {col} outside the years "
                                f"{DATES[0].year}-{DATES[1].year}; correct it in the MIS; nothing imported")


def check_rows(origin: str, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """``check_values`` for many rows, a column at a time at C speed (the longest text, the
    earliest and latest date); only when something may be out of bounds, or a value is of an
    unexpected type, are the rows checked one by one (for the message naming the field)."""
    try:
        fits = _within_limits(table, rows)
    except TypeError:
        fits = False
    if not fits:
        for row in rows:
            check_values(origin, table, row)


def _within_limits(table: Any, rows: Sequence[Mapping[str, Any]]) -> bool:
    for col, n in LIMITS[table.name].items():
        if max(map(len, filter(None, map(methodcaller("get", col), rows))), default=0) > n:
            return False
    for col in DATE_COLUMNS[table.name]:
        dates = list(filter(None, map(methodcaller("get", col), rows)))
        if dates and (min(dates) < DATES[0] or max(dates) > DATES[1]):
            return False
    return True


def _chunks(items: list[Any], size: int = IN_CHUNK) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@dataclass(frozen=True)
class _Kind:
    """How one kind of per-pupil record is kept in sync: its table, key and stored values."""

    name: str
    table: Any
    key_of: Any  # stored values -> the record's identity among the pupil's rows of one source
    values_of: Any  # record, now -> stored values (without pupil_id and source)
    key_columns: tuple[str, ...]
    #: Stored values (the key columns) -> the part of the kind a pupil record may keep apart from
    #: the rest (``PupilRecord.keeps``): a flag's kind. None: the kind is kept whole or not at all.
    part_of: Any = None
    #: Record -> the columns of a stored row it does not speak of, and (stored row, today) -> whether
    #: the row's values of them are kept (an enrolment from an export without leaving fields keeps a
    #: stored leaving that has passed). None: a record speaks of every column.
    silent_on: Any = None
    kept_as_stored: Any = None


#: An enrolment's leaving, which an export without leaving fields says nothing of. A leaving that
#: has passed is kept (one undone in the MIS is told by the registers: ``detect._still_registered``);
#: a planned one such an export no longer ends the admission with is taken as cancelled, as before.
LEAVING_COLUMNS = ("leaving_date", "leaving_reason", "destination")

KINDS: dict[type, _Kind] = {
    ContactRecord: _Kind("contacts", t.contacts, lambda v: v["contact_key"], lambda r, now: {
        "contact_key": r.contact_key, "priority": r.priority, "title": r.title, "surname": r.surname,
        "forename": r.forename, "relationship": r.relationship,
        "parental_responsibility": r.parental_responsibility, "lives_with": r.lives_with,
        "phones": list(r.phones), "emails": list(r.emails), "address": _address_json(r.address),
        "updated_at": now}, ("contact_key",)),
    FlagRecord: _Kind("flags", t.flags, lambda v: (v["kind"], v["start_date"]), lambda r, now: {
        "kind": r.kind, "start_date": r.start, "end_date": r.end, "detail": r.detail}, ("kind", "start_date"),
        lambda v: v["kind"]),
    EnrolmentRecord: _Kind("enrolments", t.enrolments, lambda v: _enrolment_key(v), lambda r, now: {
        "admission_date": r.admission_date, "entry_date": r.entry_date, "leaving_date": r.leaving_date,
        "leaving_reason": r.leaving_reason, "destination": r.destination, "withdrawn": r.withdrawn,
        "updated_at": now}, ("admission_date", "entry_date"),
        silent_on=lambda r: () if r.leaving_given else LEAVING_COLUMNS,
        kept_as_stored=lambda row, today: row["leaving_date"] is not None and row["leaving_date"] <= today),
}


class _Seen:
    """The keys a batch gave each pupil for one kind of record (what ``remove_missing`` keeps).

    Kept for the whole batch, so it is kept small: most pupils have one or two records of a
    kind, and their keys are held in a tuple (a one-key tuple takes 48 bytes, a set 216); a
    pupil with more than ``FEW`` keys gets a set. Membership is the same as a set's.
    """

    FEW = 8
    __slots__ = ("by_pupil",)

    def __init__(self) -> None:
        self.by_pupil: dict[int, tuple[Any, ...] | set[Any]] = {}

    def add(self, pid: int, key: Any) -> None:
        got = self.by_pupil.get(pid)
        if got is None:
            self.by_pupil[pid] = (key,)
        elif isinstance(got, set):
            got.add(key)
        elif key not in got:
            self.by_pupil[pid] = (*got, key) if len(got) < self.FEW else {*got, key}

    def __contains__(self, pid: int) -> bool:
        return pid in self.by_pupil

    def keys_of(self, pid: int) -> tuple[Any, ...] | set[Any]:
        return self.by_pupil.get(pid, ())

    def pupils(self) -> set[int]:
        return set(self.by_pupil)


class _Writer:
    """Writes a batch in chunks: a few statements per chunk of pupils, whatever the batch's size.

    Pupils are matched by the source's own key, then by UPN. A replacing batch (``replaces``)
    removes a pupil's rows it no longer has once the whole batch has been seen, so a pupil's
    records may arrive in any order and any chunk; but not those its pupil record ``keeps`` (a
    day's register in a full CTF says nothing of the pupil's contacts).
    """

    def __init__(self, conn: Connection, school_id: int, batch: SourceBatch, now: datetime, run_id: int) -> None:
        self.conn, self.school_id, self.batch, self.now, self.run_id = conn, school_id, batch, now, run_id
        self.source = batch.source
        self.counts: dict[str, int] = defaultdict(int)
        # Keys and UPNs are looked up for each chunk, so a day's file into a store of 100,000 pupils
        # reads the pupils it names, not every pupil.
        self.by_key: dict[str, int] = {}
        self.by_upn: dict[str, int] = {}
        self.known_keys: set[str] = set()
        self.known_upns: set[str] = set()
        self.upn_changed: set[int] = set()
        #: Each pupil the batch's pupil records named -> the key (of this source) that named it: one
        #: pupil named by two keys is two records of the MIS, never merged (see ``_claim``).
        self.claimed: dict[int, str] = {}
        self.former_of: dict[str, str] = {}  # a former key (of a pupil named in the batch) -> its key now
        #: Stored pupils a key new to this source reached by UPN alone -> the record's number, the
        #: date of birth it gives (checked against the stored one: a mistyped UPN?) and the field
        #: that matched (its UPN, or a former UPN).
        self.by_upn_only: dict[int, tuple[int, date, str]] = {}
        self.pupils_written = 0  # pupil records written so far: the number an error names
        self.created: set[int] = set()  # pupils this batch added: nothing of theirs is stored before it
        self.updated: set[int] = set()  # stored pupils whose details this batch changed
        self.stripped: set[int] = set()  # pupils whose strips this batch wrote
        self.seen: dict[str, _Seen] = {k.name: _Seen() for k in KINDS.values()}
        #: Stored pupils the batch named -> what their pupil records keep (``note_keeps``); only
        #: pupils that keep something.
        self.kept: dict[int, frozenset[str]] = {}
        self.chunk_pupils: list[PupilRecord] = []
        self.chunk_records: list[Any] = []
        self.pending: list[Any] = []  # records naming a pupil not seen yet
        self.alphabet = load_alphabet(conn)
        self.marks = mk.StripWriter(self.alphabet)
        self.plain: dict[str, bool] = {}  # short runs of codes -> mk.plain(run) (see _plain)
        self.placed: dict[date, tuple[int, int, int]] = {}  # a run's start -> _place(start)
        #: For the pupils of ``batch.marks_complete`` only: (pupil, academic year) -> one byte per
        #: session, non-zero where the batch gave a mark (see ``clear_omitted``).
        self.given: dict[tuple[int, int], bytearray] = {}

    def add(self, rec: Any) -> None:
        if isinstance(rec, PupilRecord):
            if len(self.chunk_pupils) >= PUPIL_CHUNK:
                self.flush()
            self.chunk_pupils.append(rec)
        elif isinstance(rec, SchoolInfo):
            return
        else:
            self.chunk_records.append(rec)
            if len(self.chunk_records) >= RECORD_CHUNK:
                self.flush()

    def look_up(self, keys: Iterable[str], upns: Iterable[str] = ()) -> None:
        """Fill ``by_key`` and ``by_upn`` from the store for keys and UPNs not looked up yet."""
        keys = sorted(set(keys) - self.known_keys)
        upns = sorted(set(upns) - self.known_upns)
        for part in _chunks(keys):
            self.by_key.update({k: pid for k, pid in bulk.rows_in(
                self.conn, t.pupil_keys, ("pupil_key", "pupil_id"), "pupil_key", part, source=self.source)
                if k not in self.by_key})
        for part in _chunks(upns):
            self.by_upn.update({u: pid for u, pid in bulk.rows_in(
                self.conn, t.pupils, ("upn", "id"), "upn", part, school_id=self.school_id) if u not in self.by_upn})
        self.known_keys.update(keys)
        self.known_upns.update(upns)

    def flush(self) -> None:
        pupils, self.chunk_pupils = self.chunk_pupils, []
        records, self.chunk_records = self.chunk_records, []
        if pupils:
            self.write_pupils(pupils)
        self.look_up(r.pupil_key for r in records)
        by_kind: dict[type, list[tuple[int, Any]]] = defaultdict(list)
        for rec in records:
            pid = self.by_key.get(rec.pupil_key)
            if pid is None:
                self.pending.append(rec)
            else:
                by_kind[type(rec)].append((pid, rec))
        for cls, items in by_kind.items():
            if cls is MarksRecord:
                self.write_marks(items)
            elif cls in KINDS:
                self.sync(KINDS[cls], items)

    # -- pupils ---------------------------------------------------------------------------
    def write_pupils(self, records: list[PupilRecord]) -> None:
        new: dict[int, dict[str, Any]] = {}  # placeholder id (negative) -> values
        changes: dict[int, dict[str, Any]] = {}  # stored pupil id -> values given (later wins)
        new_keys: list[tuple[int, str]] = []
        new_upns: list[str] = []
        self.look_up([*(r.pupil_key for r in records), *(k for r in records for k in r.former_keys)],
                     [*(r.upn for r in records if r.upn), *(u for r in records for u in r.former_upns)])
        first = self.pupils_written + 1
        if self._write_named(records, first):
            return
        checked: list[dict[str, Any]] = []
        self.pupils_written += len(records)
        for n, r in enumerate(records, first):
            pid = self.by_key.get(r.pupil_key)
            if pid is None:  # a key new to this source: the pupil of a key it had before, ...
                pid = next((p for k in r.former_keys if (p := self.by_key.get(k)) is not None), None)
            if pid is None and r.upn:  # ... else of its UPN, or of the UPN it had before
                found = next(((p, f) for u, f in ((r.upn, "UPN"), *((u, "former UPN") for u in r.former_upns))
                              if (p := self.by_upn.get(u)) is not None), None)
                if found is not None:
                    pid, matched = found
                    if pid > 0 and r.dob is not None:
                        self.by_upn_only[pid] = (n, r.dob, matched)
            if pid is not None:
                if pid > 0 and (r.keeps or pid in self.kept):
                    self.note_keeps(pid, r.keeps, pid not in self.claimed)
                self._claim(pid, r.pupil_key, n, r.former_keys)
            if pid is not None and pid > 0 and _DETAILS(r) == _NO_DETAILS:
                # a stored pupil named with its UPN at most (a day's register): nothing else to compare
                checked.append({"upn": r.upn})
                given = {} if r.upn is None else {"upn": r.upn}
            else:
                vals = _pupil_values(r)
                checked.append(vals)
                given = vals if pid is None else {f: v for f, v in vals.items() if v not in (None, [])}
            if pid is None:
                pid = -len(new) - 1
                new[pid] = given
                self.claimed[pid] = r.pupil_key
                self.counts["pupils_added"] += 1
            elif pid < 0:
                new[pid].update(given)  # the same new pupil twice in one chunk: the later entry wins
            else:
                if self.by_upn.get(r.upn or "") == pid and pid not in self.upn_changed:
                    del given["upn"]  # the pupil's stored UPN: nothing to compare
                changes.setdefault(pid, {}).update(given)
            if r.upn:
                holder = self.by_upn.get(r.upn)
                if holder is not None and holder != pid:
                    raise BadInputError(
                        f"{self.batch.origin}: a record gives a pupil the UPN of another pupil already stored "
                        "(the pupils' UPNs changed places?): correct it in the MIS; nothing imported")
                self.by_upn[r.upn] = pid
                if pid < 0:
                    new_upns.append(r.upn)
            if r.pupil_key not in self.by_key:
                self.by_key[r.pupil_key] = pid
                new_keys.append((pid, r.pupil_key))
        check_rows(self.batch.origin, t.pupils, checked)  # before anything of the chunk is written
        check_rows(self.batch.origin, t.pupil_keys, [{"pupil_key": k} for _pid, k in new_keys])
        real: dict[int, int] = {}
        if new:
            rows = [{"school_id": self.school_id, "created_at": self.now, "updated_at": self.now, **v}
                    for v in new.values()]
            ids = bulk.insert_with_ids(self.conn, t.pupils, rows)
            real = dict(zip(new, ids))
            self.created.update(ids)
            for placeholder, pid in real.items():
                self.claimed[pid] = self.claimed.pop(placeholder)
            for pid, k in new_keys:
                self.by_key[k] = real.get(pid, pid)
            for u in new_upns:
                self.by_upn[u] = real.get(self.by_upn[u], self.by_upn[u])
        if new_keys:
            bulk.insert_rows(self.conn, t.pupil_keys, [
                {"pupil_id": real.get(pid, pid), "source": self.source, "pupil_key": k} for pid, k in new_keys])
        self.update_pupils(changes)

    def _write_named(self, records: list[PupilRecord], first: int) -> bool:
        """``write_pupils`` for a chunk of stored pupils named with their UPN at most (a day's
        register): what the general loop does for such records, without its per-record work for
        details, new pupils and former keys. Returns False, having changed nothing, for any other
        chunk (the general loop then writes it)."""
        by_key, by_upn = self.by_key, self.by_upn
        found = list(map(by_key.get, [r.pupil_key for r in records]))
        if None in found:
            return False  # a pupil new to the store, or to this batch: the general loop
        pids = cast(list[int], found)
        if min(pids, default=1) <= 0:
            return False
        upns = [r.upn for r in records]
        longest = LIMITS[t.pupils.name]["upn"]
        if "" in upns or any(r.former_keys or r.former_upns or _DETAILS(r) != _NO_DETAILS for r in records) or \
                any(len(u) > longest for u in upns if u is not None):
            return False
        self.pupils_written += len(records)
        claimed, upn_changed, kept = self.claimed, self.upn_changed, self.kept
        changes: dict[int, dict[str, Any]] = {}
        for n, (r, pid, upn) in enumerate(zip(records, pids, upns, strict=True), first):
            if r.keeps or pid in kept:
                self.note_keeps(pid, r.keeps, pid not in claimed)
            if claimed.setdefault(pid, r.pupil_key) != r.pupil_key:
                self._claim(pid, r.pupil_key, n)  # the same check and message as the general loop
            if upn is None:
                continue
            holder = by_upn.get(upn)
            if holder == pid:
                if pid in upn_changed:
                    changes.setdefault(pid, {})["upn"] = upn
                continue
            changes.setdefault(pid, {})["upn"] = upn
            if holder is not None:
                raise BadInputError(
                    f"{self.batch.origin}: a record gives a pupil the UPN of another pupil already stored "
                    "(the pupils' UPNs changed places?): correct it in the MIS; nothing imported")
            by_upn[upn] = pid
        self.update_pupils(changes)
        return True

    def note_keeps(self, pid: int, keeps: frozenset[str], first: bool) -> None:
        """Note what a pupil record naming stored pupil ``pid`` keeps (``PupilRecord.keeps``);
        ``first``: no pupil record of the batch named the pupil before. A pupil named twice keeps
        only what neither entry speaks of: the contacts one entry lists are the pupil's contacts,
        whichever entry comes first."""
        if first:
            if keeps:
                self.kept[pid] = keeps
            return
        both = self.kept.get(pid, frozenset()) & keeps
        if both:
            self.kept[pid] = both
        else:
            self.kept.pop(pid, None)

    def _claim(self, pid: int, key: str, n: int, former: tuple[str, ...] = ()) -> None:
        """Note that the ``n``-th pupil record, key ``key``, names pupil ``pid``; refuse a pupil that
        another key of this source named earlier in the batch.

        A UPN is one child's, and an MIS gives each of its pupils one key (and the keys it knew the
        pupil by before, ``former``, which are the same pupil): two other keys reaching one
        pupil (one of them by UPN) are two records of the MIS, two children with one UPN (a
        mistyped UPN) or one child entered twice. Merged, one child's details and marks would be
        laid over the other's, each night's marks "correcting" the other's.
        """
        other = self.claimed.setdefault(pid, key)
        if other in former:  # the same pupil under the key it had before (an applicant admitted)
            self.claimed[pid] = key
            self.former_of.update(dict.fromkeys(former, key))
        elif other != key and self.former_of.get(key) != other:
            raise BadInputError(
                f"{self.batch.origin}: pupil {n} of the file, field UPN: the UPN of another pupil of the file, who "
                f"has a different {self.source} key (two children with one UPN, or one child entered twice); a UPN "
                "belongs to one child: correct the UPN, or remove the duplicate pupil, in the MIS; nothing imported")

    def update_pupils(self, changes: dict[int, dict[str, Any]]) -> None:
        """Store what a source says of known pupils; a field it leaves out keeps what another source said."""
        cols = [t.pupils.c[f] for f in PUPIL_FIELDS]
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for ids in _chunks([pid for pid, given in changes.items() if given]):
            for row in self.conn.execute(select(t.pupils.c.id, *cols).where(t.pupils.c.id.in_(ids))).mappings():
                if row["id"] in self.by_upn_only:
                    self.check_same_child(row["id"], row["dob"])
                changed = {f: v for f, v in changes[row["id"]].items() if row[f] != v}
                if "upn" in changed:
                    self.upn_changed.add(row["id"])
                if changed:
                    by_columns[tuple(sorted(changed))].append({**changed, "updated_at": self.now, "id": row["id"]})
                    self.updated.add(row["id"])
        for params in by_columns.values():
            bulk.update_rows(self.conn, t.pupils, ("id",), params)
            self.counts["pupils_updated"] += len(params)

    def check_same_child(self, pid: int, stored_dob: date | None) -> None:
        """Refuse a record that a stored pupil's UPN alone matched (its key is new to this source)
        when its date of birth is not the stored pupil's: a different child with a mistyped UPN,
        whom merging would give the stored child's name, records and marks."""
        n, dob, matched = self.by_upn_only.pop(pid)
        if stored_dob is not None and dob != stored_dob:
            raise BadInputError(
                f"{self.batch.origin}: pupil {n} of the file, field DOB: its {matched} is a stored pupil's, but not its "
                f"date of birth, and its {self.source} key is new (a different child with a mistyped UPN?); correct "
                "the UPN or the date of birth in the MIS; nothing imported")

    # -- contacts, flags, enrolments -------------------------------------------------------
    def sync(self, kind: _Kind, items: list[tuple[int, Any]]) -> None:
        """Insert or update one chunk's records of one kind (removals wait for the end of the batch)."""
        table = kind.table
        wanted: dict[tuple[int, Any], dict[str, Any]] = {}
        silent: dict[tuple[int, Any], tuple[str, ...]] = {}  # columns kept as stored (``_Kind.silent_on``)
        for pid, rec in items:
            vals = kind.values_of(rec, self.now)
            key = (pid, kind.key_of(vals))
            wanted[key] = vals  # one record twice: the later entry wins
            if kind.silent_on is not None and (columns := kind.silent_on(rec)):
                silent[key] = columns
            else:
                silent.pop(key, None)
        check_rows(self.batch.origin, table, list(wanted.values()))
        existing: dict[tuple[int, Any], Any] = {}
        seen = self.seen[kind.name]
        stored = {pid for pid, _ in wanted if pid not in self.created or pid in seen}
        for ids in _chunks(sorted(stored)):
            for found in self.conn.execute(select(table).where(table.c.pupil_id.in_(ids),
                                                               table.c.source == self.source)).mappings():
                existing[(found["pupil_id"], kind.key_of(found))] = found
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for (pid, key), vals in wanted.items():
            seen.add(pid, key)
            row = existing.get((pid, key))
            if row is not None and (pid, key) in silent and kind.kept_as_stored(row, self.now.date()):
                vals = {**vals, **{c: row[c] for c in silent[(pid, key)]}}
            if row is None:
                inserts.append({"pupil_id": pid, "source": self.source, **vals})
            elif any(row[c] != v for c, v in vals.items() if c != "updated_at"):
                updates.append({**vals, "id": row["id"]})
        if inserts:
            bulk.insert_rows(self.conn, table, inserts)
            self.counts[f"{kind.name}_added"] += len(inserts)
        if updates:
            bulk.update_rows(self.conn, table, ("id",), updates)
            self.counts[f"{kind.name}_updated"] += len(updates)

    def remove_missing(self) -> None:
        """For each kind the batch replaces: remove its pupils' rows that the batch no longer has,
        but those their pupil records keep (``kept``)."""
        kept = self.kept
        for kind in KINDS.values():
            if kind.name not in self.batch.replaces:
                continue
            table, seen = kind.table, self.seen[kind.name]
            pids = sorted(pid for pid in (self.claimed.keys() | seen.pupils()) - self.created
                          if kind.name not in kept.get(pid, ()))
            cols = [table.c.id, table.c.pupil_id, *(table.c[c] for c in kind.key_columns)]
            gone: list[int] = []
            for ids in _chunks(pids):
                for row in self.conn.execute(select(*cols).where(table.c.pupil_id.in_(ids),
                                                                 table.c.source == self.source)).mappings():
                    pid = row["pupil_id"]
                    if kind.key_of(row) not in seen.keys_of(pid) and (
                            kind.part_of is None or kind.part_of(row) not in kept.get(pid, ())):
                        gone.append(row["id"])
            for ids in _chunks(gone):
                self.conn.execute(delete(table).where(table.c.id.in_(ids)))
            if gone:
                self.counts[f"{kind.name}_removed"] += len(gone)

    # -- marks ------------------------------------------------------------------------------
    def write_marks(self, items: list[tuple[int, MarksRecord]]) -> None:
        pids = {pid for pid, _ in items}
        items = self._splice_registers(items)
        strips: dict[tuple[int, int], str] = {}
        for ids in _chunks(sorted({pid for pid, _ in items if pid not in self.created or pid in self.stripped})):
            strips.update({(pid, yr): m for pid, yr, m in bulk.rows_in(
                self.conn, t.mark_strips, ("pupil_id", "academic_year", "marks"), "pupil_id", ids)})
        original = dict(strips)
        changes: list[dict[str, Any]] = []
        placed = self.placed
        first, last = DATES[0].year, DATES[1].year
        complete = self.batch.marks_complete  # empty for files of marks: nothing below is done for them
        plain = self.plain
        laid = 0  # marks laid by the short way below
        for pid, rec in items:
            codes = rec.codes
            where = placed.get(rec.start)
            if where is None:
                where = placed[rec.start] = _place(rec.start)  # (no room in a year the store does not keep)
            if codes.__class__ is str and 0 < (n := len(codes)) <= where[2] and (
                    plain[codes] if codes in plain else _plain(plain, codes)):
                # One year's run of one-character codes (a CTF's marks, a day's register): what
                # ``lay`` does, written out, as this runs for every pupil of every file.
                yr, idx = where[0], where[1]
                key = (pid, yr)
                strip = strips.get(key) or mk.empty_strip(yr)
                old = strip[idx:idx + n]
                if old != codes:
                    if old.count(mk.NO_MARK) != n:
                        changes += self._corrections(pid, yr, [
                            (i, o, c) for i, (o, c) in enumerate(zip(old, codes), idx) if o != c and o != mk.NO_MARK])
                    strip = strip[:idx] + codes + strip[idx + n:]
                strips[key] = strip
                laid += n
                if complete and rec.pupil_key in complete:
                    self.note_given(pid, yr, idx, codes)
                continue
            if not mk.within_years(rec.start, len(codes), first, last):
                raise BadInputError(f"{self.batch.origin}: marks from {rec.start} for {len(codes)} sessions fall "
                                    f"outside the years {first}-{last}; correct the export; nothing imported")
            for yr, idx, symbols, count in self.marks.symbols(rec):  # codes of the alphabet, gaps, two years
                key = (pid, yr)
                new, fixed = self.marks.lay(strips.get(key) or mk.empty_strip(yr), idx, symbols)
                strips[key] = new
                changes += self._corrections(pid, yr, fixed)
                self.counts["marks"] += count
                if complete and rec.pupil_key in complete:
                    self.note_given(pid, yr, idx, symbols)
        self.counts["marks"] += laid
        ins = [{"pupil_id": p, "academic_year": y, "marks": m, "updated_at": self.now}
               for (p, y), m in strips.items() if (p, y) not in original]
        upd = [{"marks": m, "updated_at": self.now, "pupil_id": p, "academic_year": y}
               for (p, y), m in strips.items() if (p, y) in original and original[(p, y)] != m]
        self.stripped |= pids
        bulk.insert_rows(self.conn, t.mark_strips, ins)
        bulk.update_rows(self.conn, t.mark_strips, ("pupil_id", "academic_year"), upd)
        if changes:
            bulk.insert_rows(self.conn, t.mark_changes, changes)
            self.counts["marks_corrected"] += len(changes)

    def _splice_registers(self, items: list[tuple[int, MarksRecord]]) -> list[tuple[int, MarksRecord]]:
        """Lay a day's (or a week's) register in the database itself, and return the items left
        for ``write_marks``' own way.

        Each stored pupil named once here whose marks are a short run of plain codes (not all
        no-mark) within one academic year has the run put into its strip by ``bulk.splice_texts``,
        where the strip has no mark in those sessions yet: nothing to compare, no correction
        possible, and no strip read into Python or written back from it. Where that did not change
        every such strip (a register sent again, a correction, a pupil with no strip that year),
        the strips are read: a run already in place is done. The items not done are returned in
        their order (corrections are numbered in the register's order).
        """
        if len(items) < SPLICE_FROM or self.batch.marks_complete:
            return items
        named = Counter(pid for pid, _ in items)
        created, stripped, plain, placed = self.created, self.stripped, self.plain, self.placed
        short: list[tuple[int, int, int, str]] = []
        for pid, rec in items:
            codes = rec.codes
            if codes.__class__ is str and 0 < len(codes) <= SPLICE_MOST and named[pid] == 1 and (
                    pid not in created or pid in stripped) and codes.strip(mk.NO_MARK) and (
                    plain[codes] if codes in plain else _plain(plain, codes)):
                where = placed.get(rec.start)
                if where is None:
                    where = placed[rec.start] = _place(rec.start)  # (no room: refused the usual way)
                if len(codes) <= where[2]:
                    short.append((pid, where[0], where[1], codes))
        if len(short) < SPLICE_FROM:
            return items
        changed = bulk.splice_texts(self.conn, t.mark_strips, ("pupil_id", "academic_year"), "marks", short,
                                    mk.NO_MARK, {"updated_at": self.now}, _strip_length)
        if changed != len(short):
            stored: dict[tuple[int, int], str] = {}
            for ids in _chunks(sorted(run[0] for run in short)):
                stored.update({(pid, yr): m for pid, yr, m in bulk.rows_in(
                    self.conn, t.mark_strips, ("pupil_id", "academic_year", "marks"), "pupil_id", ids)})
            short = [run for run in short if stored.get((run[0], run[1]), "")[run[2]:run[2] + len(run[3])] == run[3]]
        self.counts["marks"] += sum(len(codes) for *_, codes in short)
        done = {run[0] for run in short}  # (each named once in the chunk)
        return [item for item in items if item[0] not in done]  # in the register's order

    def _corrections(self, pid: int, yr: int, fixed: list[tuple[int, str, str]]) -> list[dict[str, Any]]:
        """``mark_changes`` rows for marks of one strip that changed: (strip index, old, new symbol)."""
        out = []
        for i, old, nw in fixed:
            day, sess = mk.day_of_position(yr, i)
            out.append({"pupil_id": pid, "day": day, "session": sess, "old_code": self.alphabet.code_for(old),
                        "new_code": self.alphabet.code_for(nw), "at": self.now, "ingest_run_id": self.run_id})
        return out

    def note_given(self, pid: int, yr: int, idx: int, symbols: list[str] | str) -> None:
        """Remember which sessions of a ``marks_complete`` pupil the batch gave a mark."""
        mask = self.given.get((pid, yr))
        if mask is None:
            mask = self.given[(pid, yr)] = bytearray(mk.strip_length(yr))
        if isinstance(symbols, str):
            mask[idx:idx + len(symbols)] = b"\x01" * len(symbols)
        else:
            for i, sym in enumerate(symbols, idx):
                if sym:
                    mask[i] = 1

    def clear_omitted(self) -> None:
        """For each pupil of ``marks_complete``: set each stored session in its window that the batch
        gave no mark to no-mark, recording a correction for each real mark so cleared."""
        complete = self.batch.marks_complete
        if not complete:
            return
        self.look_up(complete)
        first, last = mk.year_start(DATES[0].year), DATES[1]
        windows: dict[int, tuple[date, date]] = {}
        for key, (start, end) in complete.items():
            pid = self.by_key.get(key)
            start, end = max(start, first), min(end, last)
            if pid is not None and pid not in self.created and start <= end:  # a new pupil has only this batch's marks
                windows[pid] = (start, end)
        strips: dict[tuple[int, int], str] = {}
        for ids in _chunks(sorted(windows)):
            strips.update({(pid, yr): m for pid, yr, m in bulk.rows_in(
                self.conn, t.mark_strips, ("pupil_id", "academic_year", "marks"), "pupil_id", ids)})
        upd: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for pid, (start, end) in windows.items():
            for yr, lo, hi in mk.window_by_year(start, end):
                strip = strips.get((pid, yr))
                if strip is None:
                    continue  # nothing stored that year: every session is no-mark already
                new, cleared = self.marks.clear(strip, lo, hi, self.given.get((pid, yr), b""))
                if not cleared:
                    continue
                upd.append({"marks": new, "updated_at": self.now, "pupil_id": pid, "academic_year": yr})
                changes += self._corrections(pid, yr, cleared)
        bulk.update_rows(self.conn, t.mark_strips, ("pupil_id", "academic_year"), upd)
        if changes:
            bulk.insert_rows(self.conn, t.mark_changes, changes)
            self.counts["marks_corrected"] += len(changes)
            self.counts["marks_cleared"] += len(changes)

    def finish(self) -> None:
        """Write what is left, then the records that named a pupil later in the batch; removals last."""
        self.flush()
        pending, self.pending = self.pending, []
        self.chunk_records = pending
        self.flush()
        if self.pending:
            raise BadInputError(
                f"{self.batch.origin}: {len(self.pending)} record(s) refer to a pupil that is neither in the file "
                "nor in the store (import the pupils export first); nothing imported")
        self.clear_omitted()
        self.remove_missing()
        new = self.alphabet.new_entries()
        for code in new:
            if len(code) > LIMITS[t.mark_alphabet.name]["code"]:
                raise BadInputError(f"{self.batch.origin}: the attendance code {code!r} is longer than "
                                    f"{LIMITS[t.mark_alphabet.name]['code']} characters, more than the store keeps; "
                                    "map it under [codes] subcodes or correct the export; nothing imported")
        if new:
            self.conn.execute(insert(t.mark_alphabet), [{"code": c, "symbol": s} for c, s in new.items()])


def _strip_length(run: tuple[int, int, int, str]) -> int:
    """The characters of the strip a spliced run goes into (one per session of its year)."""
    return mk.strip_length(run[1])


def _place(start: date) -> tuple[int, int, int]:
    """Where a run starting on ``start`` goes: (academic year, index in its strip, sessions left in
    that strip), or (academic year, 0, -1) for a year the store does not keep (no room)."""
    yr = mk.academic_year_of(start)
    if not DATES[0].year <= yr <= DATES[1].year:
        return yr, 0, -1
    idx = mk.position(start, "AM")
    return yr, idx, mk.strip_length(yr) - idx


def _plain(known: dict[str, bool], codes: str) -> bool:
    """``mk.plain(codes)``, remembered for short runs (a day's register repeats a few pairs of codes)."""
    found = mk.plain(codes)
    if len(codes) <= 8:
        known[codes] = found
    return found


def _enrolment_key(v: Any) -> tuple[str, Any]:
    """One admission is one enrolment: known by its agreed first day, else by its entry date.

    So an applicant stored before starting (agreed day, no entry date) is updated, not doubled,
    when the MIS later records the day the child came on roll.
    """
    if v["admission_date"] is not None:
        return ("admission", v["admission_date"])
    return ("entry", v["entry_date"])


def apply_batch(engine: Engine, school_id: int, batch: SourceBatch, now: datetime) -> IngestResult:
    """Store one batch in one transaction. Raises (and stores nothing) on any bad record."""
    if batch.checksum and already_imported(engine, batch.source, batch.checksum, batch.whole_report):
        return IngestResult(batch.source, batch.origin, "skipped")
    again: list[Warning_] = []  # (kept apart: a reading process hands the batch's warnings over at its end)
    if batch.checksum and batch.whole_report is not None and already_imported(engine, batch.source, batch.checksum):
        again.append(Warning_(
            "earlier_state", f"the same as a file of the '{batch.whole_report}' report stored before, but not as the "
            "latest of it: stored again, as an export that came back to that state (an older file imported again "
            "by hand puts the store back to it too)", batch.origin))
    # the WAL is copied into the database file after the import, not at this commit (checkpoint.py)
    with engine.connect() as conn, checkpoint.deferred(conn), conn.begin():
        run_id = _new_id(conn.execute(insert(t.ingest_runs).values(
            source=batch.source, origin=batch.origin, checksum=batch.checksum, status="running", started_at=now)))
        w = _Writer(conn, school_id, batch, now, run_id)
        for rec in batch.records:
            w.add(rec)
        w.finish()
        counts = dict(w.counts)
        batch.warnings.extend(again)
        warnings = [dataclasses.asdict(x) for x in batch.warnings]
        conn.execute(update(t.ingest_runs).where(t.ingest_runs.c.id == run_id).values(
            status="ok", finished_at=now, counts=counts, warnings=warnings, cursor=batch.cursor))
        record_source_success(conn, batch.source, now, batch.cursor)
    return IngestResult(batch.source, batch.origin, "ok", run_id, counts, list(batch.warnings),
                        frozenset(w.created | w.updated))


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

