"""``PupilRecord.named`` is the same record as the constructor makes, in every way a caller can see."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cme_batch.model import PupilRecord


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
