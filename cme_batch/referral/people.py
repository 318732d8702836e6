"""The people in a referral: the child's parents and carers, and siblings on roll.

Siblings are other pupils of the same school, on roll on the evaluation date, who share a
contact or a home address with the child. Sources rarely link siblings explicitly, so "share a
contact" means the same MIS contact id from the same source (SIMS and Arbor give one id per
person, shared by all the children they are linked to), or the same phone number or e-mail
address on a contact. Per-pupil positional keys (``order:1``), which say nothing about who the
person is, are not used for matching. Only a family contact counts: one with parental
responsibility (or not recorded either way) or whom the child lives with. A childminder, a
social worker or a neighbour recorded without parental responsibility is an emergency contact
of children of other families too, and sharing them makes no sibling.
Each sibling carries its own open CME cases (``open_cases``): a sibling missing too is said to be.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date
from typing import Any

from sqlalchemy import Connection, select

from cme_batch.app import in_school_time
from cme_batch.store import tables as t
from cme_batch.store.ingest import address_from_json

#: A database row read as a mapping (SQLAlchemy's RowMapping), or an equivalent dict.
Row = Mapping[Any, Any]


def address_dict(raw: Any) -> dict[str, Any] | None:
    a = address_from_json(raw)
    return None if a is None else {"lines": list(a.lines), "postcode": a.postcode}


def full_name(*parts: str | None) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def _flag(value: bool | None) -> bool | None:
    return None if value is None else bool(value)


def contact_entries(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Parents and carers in priority order, as the referral states them."""
    ordered = sorted(rows, key=lambda r: (r["priority"] is None, r["priority"] or 0, r["id"]))
    return [{
        "name": full_name(r["title"], r["forename"], r["surname"]),
        "forename": r["forename"], "surname": r["surname"], "title": r["title"],
        "relationship": r["relationship"], "priority": r["priority"],
        "parental_responsibility": _flag(r["parental_responsibility"]), "lives_with": _flag(r["lives_with"]),
        "phones": list(r["phones"] or []), "emails": list(r["emails"] or []),
        "address": address_dict(r["address"]),
    } for r in ordered]


def _phone_key(phone: str) -> str | None:
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("44"):
        digits = "0" + digits[2:]
    return digits if len(digits) >= 7 else None


def _family(row: Row) -> bool:
    """Whether a contact links children as one family (see the module's docstring)."""
    pr = row["parental_responsibility"]
    return pr is None or bool(pr) or bool(row["lives_with"])


def contact_keys(row: Row) -> set[tuple[str, ...]]:
    """What identifies the person behind one contact row, for matching across pupils."""
    keys: set[tuple[str, ...]] = set()
    if not _family(row):
        return keys
    ck = row["contact_key"] or ""
    if ck and not ck.startswith("order:"):
        keys.add(("id", row["source"], ck))
    for p in row["phones"] or []:
        k = _phone_key(str(p))
        if k:
            keys.add(("phone", k))
    for e in row["emails"] or []:
        if str(e).strip():
            keys.add(("email", str(e).strip().lower()))
    return keys


def _address_key(raw: Any) -> str | None:
    a = address_from_json(raw)
    return a.match_key() if a else None


def _on_roll(enrolments: Sequence[Row], left_by: date) -> bool:
    """On roll unless every known admission was withdrawn or ended on or before ``left_by``."""
    if not enrolments:
        return True
    return any(not e["withdrawn"] and (e["leaving_date"] is None or e["leaving_date"] > left_by)
               for e in enrolments)


def siblings(conn: Connection, pupil: Row, own_contacts: Sequence[Row],
             as_of: date, left_by: date | None = None) -> list[dict[str, Any]]:
    """Other pupils on roll sharing a contact or the home address with ``pupil``.

    ``left_by``: the last leaving date that has passed (``detect.leavings_to``; default ``as_of``).
    Over a holiday the evaluation date stays on the last school day before it, but a sibling whose
    leaving is dated in the holiday, on a day that has come, is no longer on roll: listed, the LA
    would take them to be at school and seen every day."""
    mine: set[tuple[str, ...]] = set()
    for c in own_contacts:
        mine |= contact_keys(c)
    home = _address_key(pupil["address"])
    links: dict[int, set[str]] = defaultdict(set)
    others = t.pupils.c.school_id == pupil["school_id"], t.pupils.c.id != pupil["id"]
    if mine:
        q = select(t.contacts).join(t.pupils, t.pupils.c.id == t.contacts.c.pupil_id).where(*others)
        for row in conn.execute(q).mappings():
            if contact_keys(row) & mine:
                links[row["pupil_id"]].add("contact")
    if home:
        for pid, addr in conn.execute(select(t.pupils.c.id, t.pupils.c.address).where(*others)).all():
            if _address_key(addr) == home:
                links[pid].add("address")
    if not links:
        return []
    enrol: dict[int, list[Row]] = defaultdict(list)
    for e in conn.execute(select(t.enrolments).where(t.enrolments.c.pupil_id.in_(list(links)))).mappings():
        enrol[e["pupil_id"]].append(e)
    rows = conn.execute(select(t.pupils).where(t.pupils.c.id.in_(list(links))).order_by(
        t.pupils.c.dob, t.pupils.c.id)).mappings().all()
    cases = open_cases(conn, list(links))
    return [{
        "name": full_name(r["legal_forename"], r["legal_surname"]),
        "preferred_name": full_name(r["preferred_forename"], r["preferred_surname"]) or None,
        "date_of_birth": r["dob"].isoformat() if r["dob"] else None,
        "year_group": r["year_group"],
        "link": sorted(links[r["id"]]),
        "open_cases": cases.get(r["id"], []),
    } for r in rows if _on_roll(enrol[r["id"]], max(as_of, left_by or as_of))]


def open_cases(conn: Connection, pupil_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """The open CME cases of these pupils, oldest first. A sibling on roll who is missing too is
    not a brother seen at school every day: the LA is told, with the case's reference, so two
    referrals of one family gone can be read together."""
    c = t.cases.c
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in conn.execute(select(c.pupil_id, c.ref, c.kind, c.episode_start, c.referred_at).where(
            c.pupil_id.in_(list(pupil_ids)), c.status == "open").order_by(c.id)):
        referred = None
        if r.referred_at is not None:
            moment = r.referred_at if r.referred_at.tzinfo else r.referred_at.replace(tzinfo=UTC)
            referred = in_school_time(moment).date().isoformat()
        out[r.pupil_id].append({"ref": r.ref, "kind": r.kind,
                                "episode_start": r.episode_start.isoformat() if r.episode_start else None,
                                "referred_on": referred})
    return out
