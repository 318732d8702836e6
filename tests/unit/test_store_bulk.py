"""``store.bulk`` writes rows exactly as SQLAlchemy's own ``insert``/``update`` would."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select

from cme_batch.store import bulk
from cme_batch.store import tables as t

NOW = datetime(2025, 9, 9, 5, 30, tzinfo=UTC)
PUPILS: list[dict[str, Any]] = [
    {"upn": "A123456789012", "legal_surname": "Jones", "dob": date(2016, 3, 4), "address": None,
     "phones": [], "emails": [], "year_group": "3"},
    {"upn": None, "legal_surname": "O'Brien \u00e9", "dob": None, "address": {"lines": ["1 Road"], "postcode": None},
     "phones": ["01632 960123"], "emails": ["a@example.org"], "year_group": None},
    {"upn": "B123456789012", "legal_surname": "Jones", "dob": date(2016, 3, 4), "address": None,
     "phones": ["01632 960123"], "emails": [], "year_group": "3"},
]


def _school(conn: Any, estab: str = "2999") -> int:
    return int(conn.execute(insert(t.schools).values(la_number="916", establishment_number=estab, name="S")
                            ).inserted_primary_key[0])


def _read(conn: Any, ids: list[int]) -> list[tuple[Any, ...]]:
    cols = [c for c in t.pupils.c if c.name not in ("id", "school_id")]
    rows = conn.execute(select(*cols).where(t.pupils.c.id.in_(ids)).order_by(t.pupils.c.id)).all()
    return [tuple(r) for r in rows]


def test_rows_written_in_bulk_read_back_as_rows_written_by_sqlalchemy(engine: Engine) -> None:
    with engine.begin() as conn:
        one, other = _school(conn), _school(conn, "3000")  # a UPN is unique within a school
        rows = [{"school_id": one, "created_at": NOW, "updated_at": NOW, **p} for p in PUPILS]
        by_sqlalchemy = list(conn.execute(insert(t.pupils).returning(t.pupils.c.id, sort_by_parameter_order=True),
                                          rows).scalars())
        in_bulk = bulk.insert_with_ids(conn, t.pupils, [{**r, "school_id": other} for r in rows])
        assert len(set(in_bulk)) == 3 and not set(in_bulk) & set(by_sqlalchemy)
        assert _read(conn, in_bulk) == _read(conn, by_sqlalchemy)
        # JSON null, lists and dicts, dates and timestamps come back as given
        got = conn.execute(select(t.pupils.c.address, t.pupils.c.phones, t.pupils.c.dob).where(
            t.pupils.c.id.in_(in_bulk)).order_by(t.pupils.c.id)).all()
        assert [tuple(g) for g in got] == [(p["address"], p["phones"], p["dob"]) for p in PUPILS]


def test_defaults_keys_and_updates(engine: Engine) -> None:
    with engine.begin() as conn:
        school = _school(conn)
        [pid] = bulk.insert_with_ids(conn, t.pupils, [{"school_id": school, "created_at": NOW, "updated_at": NOW}])
        bulk.insert_rows(conn, t.enrolments, [{"pupil_id": pid, "source": "s", "entry_date": date(2025, 9, 3), "updated_at": NOW}])
        assert conn.execute(select(t.enrolments.c.withdrawn)).scalar_one() is False  # the column's default
        bulk.insert_rows(conn, t.mark_strips, [{"pupil_id": pid, "academic_year": y, "marks": "-" * 4,
                                               "updated_at": NOW} for y in (2024, 2025)])
        bulk.update_rows(conn, t.mark_strips, ("pupil_id", "academic_year"),
                         [{"marks": "/\\/\\", "updated_at": NOW, "pupil_id": pid, "academic_year": 2025}])
        strips = dict(conn.execute(select(t.mark_strips.c.academic_year, t.mark_strips.c.marks)).all())
        assert strips == {2024: "----", 2025: "/\\/\\"}
        [other] = bulk.insert_with_ids(conn, t.pupils, [{"school_id": school, "created_at": NOW, "updated_at": NOW}])
        bulk.update_rows(conn, t.pupils, ("id",), [{"phones": True, "id": pid}, {"phones": 1, "id": other}])
        got = dict(conn.execute(select(t.pupils.c.id, t.pupils.c.phones)).all())
        assert got[pid] is True and got[other] == 1 and got[other] is not True  # equal keys, distinct JSON


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8))
def test_json_written_to_the_store_is_what_json_dumps_writes(value: object) -> None:
    from cme_batch.store import to_json

    assert to_json(value) == json.dumps(value)
    texts = [str(value), "Zoë \u4e2d \"q\" \\ \n"]  # a list of texts: the short cut
    assert to_json(texts) == json.dumps(texts) and to_json([]) == "[]"


def test_rows_in_reads_what_sqlalchemy_reads(engine: Engine) -> None:
    with engine.begin() as conn:
        one, other = _school(conn), _school(conn, "3000")
        rows = [{"school_id": s, "upn": u, "created_at": NOW, "updated_at": NOW}
                for s, u in ((one, "A123456789012"), (one, "B123456789012"), (other, "A123456789012"))]
        conn.execute(insert(t.pupils), rows)
        wanted = ["A123456789012", "B123456789012", "C123456789012", "O'Brien %s ?"]  # quotes and markers are values
        found = sorted(bulk.rows_in(conn, t.pupils, ("upn", "id", "school_id"), "upn", wanted, school_id=one))
        expected = sorted(tuple(r) for r in conn.execute(select(t.pupils.c.upn, t.pupils.c.id, t.pupils.c.school_id).where(
            t.pupils.c.upn.in_(wanted), t.pupils.c.school_id == one)).all())
        assert found == expected and [r[0] for r in found] == ["A123456789012", "B123456789012"]
        assert len(bulk.rows_in(conn, t.pupils, ("id",), "upn", ["A123456789012"])) == 2  # no other condition
        assert bulk.rows_in(conn, t.pupils, ("id",), "upn", [], school_id=one) == []


def test_splice_puts_a_run_where_no_mark_is_and_leaves_other_strips_alone(engine: Engine) -> None:
    later = datetime(2025, 9, 10, 5, 30, tzinfo=UTC)
    with engine.begin() as conn:
        school = _school(conn)
        ids = bulk.insert_with_ids(conn, t.pupils, [{"school_id": school, "created_at": NOW, "updated_at": NOW}] * 4)
        first = "\ue000-" + "-" * 6  # a multi-character code's symbol before the run: splices count characters
        bulk.insert_rows(conn, t.mark_strips, [
            {"pupil_id": ids[0], "academic_year": 2025, "marks": first, "updated_at": NOW},
            {"pupil_id": ids[1], "academic_year": 2025, "marks": "--/\\----", "updated_at": NOW},
            {"pupil_id": ids[2], "academic_year": 2025, "marks": "--------", "updated_at": NOW}])
        runs = [(ids[0], 2025, 2, "N\\"), (ids[1], 2025, 2, "N\\"), (ids[2], 2025, 6, "//"),
                (ids[3], 2025, 0, "/\\")]  # the last pupil has no strip that year
        changed = bulk.splice_texts(conn, t.mark_strips, ("pupil_id", "academic_year"), "marks", runs, "-",
                                    {"updated_at": later})
        assert changed == 2  # the second pupil has marks there, the fourth no strip
        got = {pid: (marks, stamp) for pid, marks, stamp in conn.execute(select(
            t.mark_strips.c.pupil_id, t.mark_strips.c.marks, t.mark_strips.c.updated_at)).all()}
        assert {pid: marks for pid, (marks, _) in got.items()} == {
            ids[0]: "\ue000-N\\----", ids[1]: "--/\\----", ids[2]: "------//"}
        stamps = {pid: stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp for pid, (_, stamp) in got.items()}
        assert stamps == {ids[0]: later, ids[1]: NOW, ids[2]: later}
        assert bulk.splice_texts(conn, t.mark_strips, ("pupil_id", "academic_year"), "marks", [], "-", {}) == 0


STRIP_SYMBOLS = st.sampled_from(["-", "-", "-", "/", "\\", "N", "\ue000", "\ue001"])  # (two multi-character codes')


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # (rolled back)
@given(strips=st.lists(st.text(STRIP_SYMBOLS, min_size=8, max_size=8) | st.text("-/N", min_size=6, max_size=10),
                       min_size=1, max_size=6),
       runs=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.text(st.sampled_from("/\\N"), min_size=1,
                                                                             max_size=3)), max_size=8))
def test_a_splice_told_the_strips_length_cuts_by_bytes_only_the_ascii_strips_of_that_length(
        engine: Engine, strips: list[str], runs: list[tuple[int, int, str]]) -> None:
    """With ``length`` (here 8 characters, which every strip has), SQLite cuts an ASCII strip by
    byte offsets; a strip holding a multi-character code's symbol by characters, as does an
    ASCII strip of another length. Each must end exactly as the splice said: the run put in
    where every session was still blank."""
    with engine.connect() as conn, conn.begin() as tx:
        school = _school(conn)
        ids = bulk.insert_with_ids(conn, t.pupils, [{"school_id": school, "created_at": NOW, "updated_at": NOW}]
                                   * (len(strips) + 1))  # the last pupil has no strip
        bulk.insert_rows(conn, t.mark_strips, [{"pupil_id": pid, "academic_year": 2025, "marks": marks,
                                                "updated_at": NOW} for pid, marks in zip(ids, strips, strict=False)])
        first: dict[int, tuple[int, int, str]] = {}
        for who, at, text in runs:  # one run a pupil, as a day's register gives
            first.setdefault(ids[who % len(ids)], (ids[who % len(ids)], at, text))
        wanted = dict(zip(ids, strips, strict=False))
        changed = 0
        for pid, at, text in first.values():
            marks = wanted.get(pid)
            if marks is not None and marks[at:at + len(text)] == "-" * len(text) and at + len(text) <= len(marks):
                wanted[pid] = marks[:at] + text + marks[at + len(text):]
                changed += 1
        got_changed = bulk.splice_texts(conn, t.mark_strips, ("pupil_id", "academic_year"), "marks",
                                        [(pid, 2025, at, text) for pid, at, text in first.values()], "-",
                                        {"updated_at": NOW}, lambda run: 8)
        stored = dict(conn.execute(select(t.mark_strips.c.pupil_id, t.mark_strips.c.marks)).all())
        tx.rollback()
    assert stored == wanted
    assert got_changed == changed
