"""``PupilRecord.named`` is the same record as the constructor makes, in every way a caller can see;
records handed to another process in their packed form come back equal."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cme_batch.model import FlagRecord, MarksRecord, PupilRecord, SchoolInfo, packed, unpacked


@given(st.text(max_size=20), st.one_of(st.none(), st.text(max_size=13)))
def test_named_equals_the_constructors_record(key: str, upn: str | None) -> None:
    made, named = PupilRecord(key, upn), PupilRecord.named(key, upn)
    assert named == made and hash(named) == hash(made) and repr(named) == repr(made)
    assert dataclasses.asdict(named) == dataclasses.asdict(made)
    assert pickle.loads(pickle.dumps(named)) == made
    assert dataclasses.replace(named, legal_surname="X") == dataclasses.replace(made, legal_surname="X")


def test_named_records_are_frozen_and_independent() -> None:
    one, two = PupilRecord.named("K1", "A123456789012"), PupilRecord.named("K2", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.upn = "B123456789012"  # type: ignore[misc]
    assert (one.pupil_key, one.upn, two.pupil_key, two.upn) == ("K1", "A123456789012", "K2", None)
    assert one.phones == () and two.emails == () and one.dob is None


records = st.one_of(
    st.builds(PupilRecord.named, st.text(max_size=5), st.one_of(st.none(), st.text(max_size=13))),
    st.builds(PupilRecord, st.text(max_size=5), st.one_of(st.none(), st.text(max_size=13)),
              legal_surname=st.one_of(st.none(), st.text(max_size=5)),
              former_upns=st.lists(st.text(max_size=13), max_size=1).map(tuple),
              former_keys=st.lists(st.text(max_size=5), max_size=1).map(tuple)),
    st.builds(MarksRecord, st.text(max_size=5), st.dates(),
              st.one_of(st.text(max_size=6), st.lists(st.sampled_from(["", "N", "C1", "/"]), max_size=4).map(tuple))),
    st.builds(FlagRecord, st.text(max_size=5), st.sampled_from(["looked_after", "ehcp"])),
    st.builds(SchoolInfo, st.one_of(st.none(), st.text(max_size=3))))


@given(st.lists(records, max_size=12))
def test_packed_records_come_back_equal(recs: list[Any]) -> None:
    back = unpacked(pickle.loads(pickle.dumps(packed(recs), pickle.HIGHEST_PROTOCOL)))
    assert back == recs
    assert [type(r) for r in back] == [type(r) for r in recs]
    assert [dataclasses.asdict(r) for r in back] == [dataclasses.asdict(r) for r in recs]


def test_a_days_register_is_packed_as_plain_tuples() -> None:
    day = date(2026, 7, 21)
    recs = [PupilRecord.named("K1", "A123456789012"), MarksRecord("K1", day, "/\\"),
            PupilRecord("K2", "B123456789012", legal_surname="Smith")]
    assert packed(recs)[:2] == [("K1", "A123456789012"), ("K1", day, "/\\")]
    assert packed(recs)[2] is recs[2]  # a pupil with details goes as it is
