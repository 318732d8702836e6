"""One store serves one school: a second school's configuration on the same database is refused.

Before, two configurations with different ``[school]`` numbers on one database URL mixed the
schools up: the second school's import wrote its pupils over the first school's pupils with the
same MIS key, its summary and confirmation requests listed the first school's children, and its
``status`` and ``purge`` counted and removed the first school's data. Now every command of the
second school stops with a clear message before reading or writing anything (SQLite and PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, insert, select

from cme_batch.cli import cli
from cme_batch.store import tables as t
from tests.conftest import BASE_CONFIG
from tests.referral_support import seed_case

SECOND = (BASE_CONFIG.replace('establishment_number = "2999"', 'establishment_number = "3001"')
          .replace("The John Moore Primary School", "Second Academy").replace("school.example", "second.example"))
REFUSED = "already holds another school's data"


def config(folder: Path, text: str, url: str) -> str:
    folder.mkdir(exist_ok=True)
    path = folder / "cme-batch.toml"
    path.write_text(text.format(url=url), encoding="utf-8")
    return str(path)


def run(config_path: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", config_path, *args])


def schools(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(t.schools.c.la_number, t.schools.c.establishment_number).order_by(t.schools.c.id))]


def sims_file(path: Path, forename: str, upn: str) -> Path:
    path.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<SuperStarReport>
  <Record>
    <Adno>001001</Adno>
    <UPN>{upn}</UPN>
    <Legal_x0020_Surname>Testpupil</Legal_x0020_Surname>
    <Legal_x0020_Forename>{forename}</Legal_x0020_Forename>
    <Date_x0020_of_x0020_Birth>2017-03-14T00:00:00</Date_x0020_of_x0020_Birth>
    <Gender>F</Gender>
    <Year_x0020_Group>Year  3</Year_x0020_Group>
    <Reg_x0020_Group>3W</Reg_x0020_Group>
    <Admission_x0020_Date>2021-09-01T00:00:00</Admission_x0020_Date>
  </Record>
</SuperStarReport>
""", encoding="utf-8")
    return path


def test_the_second_schools_summary_shows_none_of_the_first_schools_children(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    seed_case(engine)  # the first school (916/2999): Amelia "Millie" Marsh-Ellery, an open case
    first = config(tmp_path / "a", BASE_CONFIG, store_url)
    second = config(tmp_path / "b", SECOND, store_url)
    assert run(first, "cases").exit_code == 0

    result = run(second, "summary", "--as-of", "2025-11-28", "--preview", str(tmp_path / "preview"))

    shown = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "preview").glob("*") if p.is_file()) \
        if (tmp_path / "preview").exists() else ""
    assert "Marsh-Ellery" not in shown and "Millie" not in shown
    assert result.exit_code == 2, result.output
    assert REFUSED in result.output and "916/2999" in result.output and "(916/3001)" in result.output
    assert "one database serves one school" in result.output
    assert "Marsh-Ellery" not in result.output
    assert schools(engine) == [("916", "2999")]  # the second school was not recorded either


def test_the_second_schools_import_leaves_the_first_schools_pupil_alone(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    first = config(tmp_path / "a", BASE_CONFIG, store_url)
    second = config(tmp_path / "b", SECOND, store_url)
    mine = run(first, "import", str(sims_file(tmp_path / "a.xml", "Amelia", "A916299925001")))
    assert mine.exit_code == 0, mine.output

    # the other school's MIS numbers its pupils the same way (admission number 001001)
    theirs = run(second, "import", str(sims_file(tmp_path / "b.xml", "Zebedee", "Z916300125001")))

    with engine.connect() as conn:
        stored = conn.execute(select(t.pupils.c.legal_forename, t.pupils.c.upn, t.pupils.c.school_id)).all()
    assert [(r.legal_forename, r.upn) for r in stored] == [("Amelia", "A916299925001")]
    assert theirs.exit_code == 2 and REFUSED in theirs.output, theirs.output
    assert "Zebedee" not in theirs.output and "Amelia" not in theirs.output
    assert schools(engine) == [("916", "2999")]


@pytest.mark.parametrize("args", [("init",), ("status",), ("cases", "--all"), ("purge", "--dry-run"), ("send",),
                                  ("nightly", "--as-of", "2025-11-28")])
def test_every_command_of_the_second_school_is_refused(
        engine: Engine, store_url: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    seed_case(engine)
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(t.outbox)).scalar_one()
    second = config(tmp_path / "b", SECOND, store_url)

    result = run(second, *args)

    assert result.exit_code == 2, result.output
    assert REFUSED in result.output and "nothing was read or changed" in result.output
    assert "referral_due" not in result.output  # the first school's open case is not counted for the second
    assert schools(engine) == [("916", "2999")]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.outbox)).scalar_one() == before
        assert conn.execute(select(func.count()).select_from(t.pupils)).scalar_one() > 0  # nothing purged


def test_a_store_already_holding_two_schools_is_refused_to_both(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    """A store two schools shared under an earlier version: neither school's run goes on mixing them."""
    seed_case(engine)
    with engine.begin() as conn:
        conn.execute(insert(t.schools).values(la_number="916", establishment_number="3001", name="Second Academy"))
    first = config(tmp_path / "a", BASE_CONFIG, store_url)

    result = run(first, "cases")

    assert result.exit_code == 2, result.output
    assert REFUSED in result.output and "916/3001" in result.output


def test_the_school_whose_store_it_is_goes_on_as_before(engine: Engine, store_url: str, tmp_path: Path) -> None:
    seed_case(engine)
    first = config(tmp_path / "a", BASE_CONFIG, store_url)
    assert run(first, "init").exit_code == 0
    result = run(first, "cases")
    assert result.exit_code == 0, result.output
    assert "CME-2025-" in result.output
    assert schools(engine) == [("916", "2999")]
