"""Shapes Arbor's own SDK (arbor-education/sis-sdk-php) gives data the adapter reads, served by the
fake school and read by the adapter. Each was read wrongly before:

- a mark type's ``code`` is Arbor's own name of it (``AttendanceMark.retrieve("PRESENT")`` in the
  SDK's examples/attendance/write-attendance-marks.php; lookups are fetched by their code, as in
  examples/ukdfe/school-phase-retrieve-by-code.php; the BI connector's data dictionary lists the
  mark code ``PRESENT_AM`` apart from the DfE mark ``/``), and the model has an ``attendanceMark``
  text beside it (src/Arbor/Model/AttendanceMark.php). Stored as the code, every mark was a local
  code treated as neutral: a child's absences counted for nothing.
- ``userTags`` is a map of tag name to value (src/Arbor/Model/ModelBase.php ``tag($tagName,
  $value)``; src/Arbor/Model/Hydrator.php): refused as "not a list", every pull failed.
- a person's ``title`` is a ``Title`` object (src/Arbor/Model/Person.php, src/Arbor/Model/Title.php):
  asked for as a bare field, the query is refused and every pull fails. The mapping reads the
  object, but the query still asks for a bare ``title`` (an expected failure below, until the
  selection can be nested two deep).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.arbor import ArborSource
from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from cme_batch.model import ContactRecord, FlagRecord, MarksRecord, PupilRecord, Record, SourceBatch
from cme_batch.sources import SourceContext, SourceState
from tests.adapters.arbor_helpers import PASSWORD, small_school, source_config
from tests.adapters.contract import NOW


def school_records() -> list[Record]:
    return [*small_school(), FlagRecord("p4", "domestic_abuse")]


def serve(**shapes: str) -> FakeArbor:
    school = FakeSchool(**shapes)
    school.load(school_records())
    return FakeArbor(school, password=PASSWORD).start()


def pull(server: FakeArbor, tmp_path: Path) -> tuple[SourceBatch, list[Any]]:
    source = ArborSource.from_config(source_config(server, tmp_path))
    (batch,) = list(source.batches(SourceContext(now=NOW, state=SourceState())))
    return batch, list(batch.records)


def pulled(tmp_path: Path, **shapes: str) -> tuple[SourceBatch, list[Any], dict[str, str]]:
    """One pull from a fake Arbor serving these shapes: the batch, its records, Arbor ids -> our keys."""
    server = serve(**shapes)
    try:
        batch, records = pull(server, tmp_path)
        return batch, records, server.school.key_map()
    finally:
        server.close()


@pytest.fixture
def sdk_server() -> Iterator[FakeArbor]:
    s = serve(mark_codes="arbor", tags="map")
    yield s
    s.close()


def test_mark_types_named_by_arbor_store_the_national_mark(tmp_path: Path) -> None:
    batch, records, keys = pulled(tmp_path, mark_codes="arbor")
    marks = {keys[m.pupil_key]: m for m in records if isinstance(m, MarksRecord)}
    # Amelia's two days of N (no reason yet) are absences, not neutral local codes
    assert "".join(c or "." for c in marks["p1"].codes[:16]) == "////NNNN....NN//"
    assert marks["p2"].codes[:6] == ("/", "\\", "L", "L", "I", "I")
    assert not [w for w in batch.warnings if w.code == "arbor_local_code"], batch.warnings


def test_student_tags_sent_as_a_map_raise_their_flags(tmp_path: Path) -> None:
    _, records, keys = pulled(tmp_path, tags="map")
    assert ("p4", "domestic_abuse") in {(keys[f.pupil_key], f.kind) for f in records if isinstance(f, FlagRecord)}


def test_a_guardians_title_sent_as_a_title_object_is_read(tmp_path: Path) -> None:
    _, records, keys = pulled(tmp_path, titles="object")
    mum = {keys[c.pupil_key]: c for c in records if isinstance(c, ContactRecord) and c.forename == "Alice"}
    assert mum["p1"].title == "Mrs" and mum["p2"].title == "Mrs"


def test_sdk_shapes_and_the_earlier_shapes_give_the_same_records(sdk_server: FakeArbor, tmp_path: Path) -> None:
    _, before, _ = pulled(tmp_path)
    batch, after = pull(sdk_server, tmp_path)
    assert sorted(map(repr, after)) == sorted(map(repr, before))
    assert batch.warnings == []
    assert {p.upn for p in after if isinstance(p, PupilRecord)} == {
        "A916299925001", "B916299925002", "C916299925003", "D916299925004"}


def test_the_mapping_reads_each_shape() -> None:
    from datetime import date

    from adapters.arbor import attendance, mapping

    day = date(2025, 9, 22)
    assert attendance.mark_code({"code": "PRESENT_AM", "attendanceMark": "/"}, day) == "/"
    assert attendance.mark_code({"code": "N", "attendanceMark": "No reason yet"}, day) == "N"  # the earlier shape
    assert attendance.mark_code({"code": "ZZ", "attendanceMark": "Zoo trip"}, day) == "ZZ"  # a local code stays
    assert attendance.mark_code({"code": None, "attendanceMark": " L "}, day) == "L"
    assert mapping.tag_names({"Traveller": True, "Domestic abuse": 3, "Service child": False, "Other": None}) == [
        "Traveller", "Domestic abuse"]
    assert mapping.tag_names(["Traveller"]) == ["Traveller"] and mapping.tag_names(None) == []
    assert mapping.title_text({"code": "MRS", "title": "Mrs"}) == "Mrs"
    assert mapping.title_text({"code": "DR", "title": None}) == "DR" and mapping.title_text("Mr") == "Mr"
