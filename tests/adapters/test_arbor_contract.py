"""The adapter contract against a fake Arbor, and what a full pull gives a school.

Every test reads over real HTTPS on 127.0.0.1 from the fake server, verified against its
throwaway CA, as the adapter would read a school's Arbor host.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pytest

from adapters.arbor import ArborSource, attendance
from adapters.arbor.fake_server import FakeArbor
from adapters.arbor.mapping import BadShape
from cme_batch.config import SourceConfig
from cme_batch.errors import ConfigError
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.sources import SourceContext, SourceState
from tests.adapters.arbor_helpers import PASSWORD, small_school, small_school_server, source_config
from tests.adapters.contract import NOW, AdapterContract


class TestArborContract(AdapterContract):
    adapter = "arbor"
    bad_settings: ClassVar[list[dict[str, Any]]] = [
        {"base_url": "http://myschool.uk.arbor.sc"},  # plain http to a real host
        {"base_url": "https://myschool.uk.arbor.sc/rest-v2"},  # a path
        {"password": PASSWORD},  # a secret written into the file
        {"page_size": 0},
        {"timeout_seconds": "soon"},
        {"max_retries": -1},
        {"ca_bundle": "no-such-ca.pem"},
        {"colour": "blue"},
    ]

    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        self.server = small_school_server()
        yield
        self.server.close()

    def make_config(self, tmp_path: Path) -> SourceConfig:
        return source_config(self.server, tmp_path)


def pull(cfg: SourceConfig, cursor: str | None = None) -> tuple[SourceBatch, list[Any]]:
    source = ArborSource.from_config(cfg)
    (batch,) = list(source.batches(SourceContext(now=NOW, state=SourceState(cursor=cursor))))
    return batch, list(batch.records)


@pytest.fixture
def server() -> Iterator[FakeArbor]:
    s = small_school_server()
    yield s
    s.close()


def by_upn(records: list[Any]) -> dict[str, Any]:
    return {r.upn or "": r for r in records if isinstance(r, PupilRecord)}


def test_full_pull_reads_the_school(server: FakeArbor, tmp_path: Path) -> None:
    batch, records = pull(source_config(server, tmp_path))
    pupils = by_upn(records)
    assert set(pupils) == {"A916299925001", "B916299925002", "C916299925003", "D916299925004"}
    amelia = pupils["A916299925001"]
    assert (amelia.legal_forename, amelia.dob, amelia.sex, amelia.year_group, amelia.reg_group) == (
        "Amelia", date(2018, 3, 4), "F", "2", "2B")
    assert pupils["B916299925002"].year_group == "R"
    key = amelia.pupil_key
    contacts = sorted((c for c in records if isinstance(c, ContactRecord) and c.pupil_key == key),
                      key=lambda c: c.priority or 0)
    assert [(c.forename, c.relationship, c.parental_responsibility, c.lives_with, c.phones) for c in contacts] == [
        ("Alice", "Mother", True, True, ("07700 900001",)), ("Gwen", "Grandmother", False, False, ("01452 222222",))]
    assert contacts[1].address is not None and contacts[1].address.postcode == "GL1 2AB"
    # one guardian shared by two siblings is one contact key for both
    bertie = pupils["B916299925002"].pupil_key
    assert {c.contact_key for c in records if isinstance(c, ContactRecord) and c.pupil_key == bertie} == {
        contacts[0].contact_key}
    flags = {(f.pupil_key, f.kind) for f in records if isinstance(f, FlagRecord)}
    cara = pupils["C916299925003"].pupil_key
    assert flags == {(key, "child_protection_plan"), (bertie, "looked_after"), (cara, "sen_support"),
                     (cara, "young_carer")}
    (left,) = [e for e in records if isinstance(e, EnrolmentRecord) and e.pupil_key == cara]
    assert (left.leaving_date, left.leaving_reason, left.destination) == (
        date(2025, 9, 12), "Moved away", "St Peter's Primary")
    marks = {m.pupil_key: m for m in records if isinstance(m, MarksRecord)}
    assert marks[key].start == date(2025, 9, 2)
    # Tuesday 2 September to Friday, the weekend says nothing, then Monday
    assert "".join(c or "." for c in marks[key].codes[:16]) == "////NNNN....NN//"
    assert marks[cara].codes[12:16] == ("/", "/", "-", "N")  # a register left unmarked is a gap, not a code
    assert batch.replaces == frozenset({"contacts", "flags", "enrolments"})
    assert batch.cursor == str(server.school.revision)
    assert batch.warnings == []


def test_both_date_formats_read_the_same(tmp_path: Path) -> None:
    results = []
    for fmt in ("plain", "object"):
        s = small_school_server(date_format=fmt)
        try:
            _, records = pull(source_config(s, tmp_path))
        finally:
            s.close()
        results.append(sorted(map(repr, records)))
    assert results[0] == results[1]
    assert any("datetime.date(2018, 3, 4)" in r for r in results[1])


def test_a_mark_of_a_type_arbor_does_not_list_is_refused_not_laid_as_no_mark() -> None:
    """Laid as "no mark" it would replace the pupil's real mark for that session (e.g. when the
    list of mark types was read short): the answer is refused instead, and the pull changes nothing."""
    roll_calls = [{"id": 1, "attendanceRegisterType": {"isMorning": True}}]
    marks = [{"id": 7, "code": "N"}]
    record = {"student": {"id": 5}, "recordDate": "2025-09-22", "attendanceRollCall": {"id": 1}, "revisionId": 3}
    [known] = attendance.marks_records([{**record, "attendanceMark": {"id": 7}}], roll_calls, marks, [])
    assert known.codes[0] == "N"
    with pytest.raises(BadShape, match="names attendance mark 8, which Arbor's list of attendance marks does not"):
        attendance.marks_records([{**record, "attendanceMark": {"id": 8}}], roll_calls, marks, [])


def test_marks_flagged_differently_by_arbor_give_a_warning(server: FakeArbor, tmp_path: Path) -> None:
    # A school's mark type for N that Arbor counts as present, and a local code "@" counted as present.
    server.school.mark_type("N", isStatisticalPresent=True, isStatisticalUnauthorizedAbsent=False)
    server.school.set_mark("p4", date(2025, 9, 22), "AM", "@")
    server.school.mark_type("@", isStatisticalPresent=True, isStatisticalPossibleAttendance=True)
    batch, records = pull(source_config(server, tmp_path))
    codes = {(w.code, w.message.split("code ")[1][:3]) for w in batch.warnings}
    assert ("arbor_mark_disagrees", "'N'") in codes
    assert ("arbor_local_code", "'@'") in codes
    # the national code still wins: N is stored as N
    marks = [m for m in records if isinstance(m, MarksRecord)]
    sent = sum(m.codes.count("N") for m in small_school() if isinstance(m, MarksRecord))
    assert sum(m.codes.count("N") for m in marks) == sent == 9


def test_http_only_for_loopback_when_allowed(server: FakeArbor, tmp_path: Path) -> None:
    plain = FakeArbor(server.school, tls=False, password=PASSWORD).start()
    try:
        with pytest.raises(ConfigError) as info:
            ArborSource.from_config(source_config(plain, tmp_path, ca_bundle=None))
        assert "sources.arbor.base_url" in str(info.value)
        _, records = pull(source_config(plain, tmp_path, ca_bundle=None, allow_insecure_loopback=True))
        assert len(by_upn(records)) == 4
    finally:
        plain.close()
    with pytest.raises(ConfigError):
        ArborSource.from_config(source_config(server, tmp_path, base_url="http://school.example",
                                              allow_insecure_loopback=True))


def test_password_is_a_reference_never_shown(server: FakeArbor, tmp_path: Path) -> None:
    source = ArborSource.from_config(source_config(server, tmp_path))
    assert PASSWORD not in repr(source) and PASSWORD not in str(source.__dict__)


def test_the_demo_hook_gives_a_working_source_table(tmp_path: Path) -> None:
    import tomllib

    from adapters.arbor.fake_server import serve_demo

    server, table = serve_demo(small_school(), tmp_path / "arbor")
    try:
        settings = tomllib.loads(table)["sources"]["arbor"]
        assert PASSWORD not in table
        _, records = pull(SourceConfig("arbor", settings.pop("adapter"), settings, tmp_path))
        assert len(by_upn(records)) == 4
        assert set(server.school.key_map().values()) == {"p1", "p2", "p3", "p4"}
    finally:
        server.close()


def test_marks_entered_ahead_are_read_by_a_full_pull(server: FakeArbor, tmp_path: Path) -> None:
    # leave agreed in advance is already in Arbor; its revision is older than the cursor this pull stores
    server.school.set_mark("p1", date(2026, 2, 9), "AM", "G")
    _, records = pull(source_config(server, tmp_path))
    amelia = by_upn(records)["A916299925001"].pupil_key
    (marks,) = [m for m in records if isinstance(m, MarksRecord) and m.pupil_key == amelia]
    assert marks.codes[2 * (date(2026, 2, 9) - marks.start).days] == "G"
