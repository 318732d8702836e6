"""A temporary UPN replaced by the permanent one: the CTF's ``FormerUPN`` keeps one child one pupil.

A school that admits a child whose UPN it cannot find gives a temporary UPN; when the permanent
one is known, the MIS replaces it and the next CTF carries the old one as ``BasicDetails/
FormerUPN``. A CTF identifies pupils by UPN, so without the former UPN the store would hold two
children: the old one with no more marks (its open case never closing, its register going
quiet) and the new one starting again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch import upn as upn_mod
from cme_batch.errors import BadInputError
from cme_batch.store import tables as t
from tests.adapters.test_ctf_ownership import FIX, apply

TEMPORARY = "A123456789012"  # the fixture's first pupil
PERMANENT = upn_mod.make("916299925077")


def renumbered(tmp_path: Path, dob: str = "2018-05-01") -> Path:
    """The school's next full CTF: the first pupil under the permanent UPN, the old one as former."""
    text = (FIX / "ctf-25.xml").read_text()
    text = text.replace(f"<UPN>{TEMPORARY}</UPN>", f"<UPN>{PERMANENT}</UPN>", 1).replace(
        "<DOB>2018-05-01</DOB>", f"<DOB>{dob}</DOB>", 1).replace(
        "<BasicDetails><NCyearActual>2</NCyearActual>",
        f"<BasicDetails><FormerUPN>{TEMPORARY}</FormerUPN><NCyearActual>2</NCyearActual>", 1)
    path = tmp_path / "9162999_CTF_9162999_002.xml"
    path.write_text(text)
    return path


def pupils(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t.pupils.c.id, t.pupils.c.upn).order_by(t.pupils.c.id))]


def test_a_pupil_given_the_permanent_upn_stays_one_pupil_with_its_marks(engine: Engine, tmp_path: Path) -> None:
    apply(engine, FIX / "ctf-25.xml")
    before = pupils(engine)
    first_id = next(pid for pid, upn in before if upn == TEMPORARY)
    result = apply(engine, renumbered(tmp_path))
    assert result.status == "ok" and result.counts.get("pupils_added", 0) == 0
    after = pupils(engine)
    assert len(after) == len(before) and (first_id, PERMANENT) in after
    with engine.connect() as conn:
        keys = {k: pid for k, pid in conn.execute(select(t.pupil_keys.c.pupil_key, t.pupil_keys.c.pupil_id))}
        strips = conn.execute(select(t.mark_strips.c.pupil_id)).scalars().all()
    assert keys[PERMANENT] == keys[TEMPORARY] == first_id
    assert sorted(strips) == sorted({pid for pid, _ in before}), "the marks stay on the one pupil"


def test_a_former_upn_of_a_child_with_another_date_of_birth_is_refused(engine: Engine, tmp_path: Path) -> None:
    apply(engine, FIX / "ctf-25.xml")
    before = pupils(engine)
    with pytest.raises(BadInputError) as caught:
        apply(engine, renumbered(tmp_path, dob="2018-06-01"))
    message = str(caught.value)
    assert "pupil 1 of the file, field DOB" in message and "former UPN" in message
    assert TEMPORARY not in message and PERMANENT not in message and "2018" not in message
    assert pupils(engine) == before, "nothing imported"
