"""A review of where a pupil's name, UPN, date of birth or whole record can go that it should not
(DOMAIN.md 7; README "Data protection" and "Retention"), sixteenth session.

Each scenario is built for real: a SQLite store on disk filled through the real import
(``ingest.apply_batch``), the ``cme-batch`` command run as a separate process (its logging set up
as the night's is), an Arbor "server" on 127.0.0.1, and the files a command leaves read back as a
person on the server would find them.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch.config import RetentionConfig
from cme_batch.model import ContactRecord, EnrolmentRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.purge import purge
from cme_batch.store import ingest, migrate, open_store
from cme_batch.store import tables as t
from tests.conftest import write_config

EXE = str(Path(sys.executable).with_name("cme-batch"))
SURNAME = "Quillfeatherington"  # a name no other text of the store or the configuration holds
FORENAME = "Tabitha"
UPN = "A123456789012"
DOB = date(2017, 3, 1)


def _cli(cfg: Path, *args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    def pre() -> None:
        if umask is not None:
            os.umask(umask)
    return subprocess.run([EXE, "--config", str(cfg), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ}, cwd=cfg.parent, preexec_fn=pre)


def _store(tmp_path: Path) -> tuple[str, Engine, int]:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = open_store(url)
    migrate(engine)
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "The John Moore Primary School")
    return url, engine, school


def _on_roll(engine: Engine, school: int, source: str = "arbor") -> None:
    """A child on roll, with her name, UPN and date of birth in the store (the log filter learns them)."""
    ingest.apply_batch(engine, school, SourceBatch(source, "seed", records=[
        PupilRecord("S1", upn=UPN, legal_surname=SURNAME, legal_forename=FORENAME, dob=DOB, year_group="3"),
        EnrolmentRecord("S1", admission_date=date(2021, 9, 1), entry_date=date(2021, 9, 1)),
        MarksRecord("S1", date(2025, 11, 3), ("/", "\\"))]), datetime(2025, 11, 3, 6, tzinfo=UTC))


class _ArborRefusing(BaseHTTPRequestHandler):
    """An Arbor host that refuses every request with its error envelope, whose message (as a server's
    validation message can) quotes the record it choked on."""

    message = f"Student 1 ({FORENAME} {SURNAME}, born {DOB:%d/%m/%Y}) has an invalid enrolment"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"response": {"code": 400, "reason": "Bad Request",
                                        "errors": [{"exception": "ValidationException", "message": self.message}]}})
        data = body.encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


@pytest.fixture
def refusing_arbor() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ArborRefusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _arbor_school(tmp_path: Path, base_url: str) -> Path:
    url, engine, school = _store(tmp_path)
    _on_roll(engine, school)
    engine.dispose()
    secret = tmp_path / "arbor-password"
    secret.write_text("not-the-real-password\n")
    secret.chmod(0o600)
    return write_config(tmp_path, url, f"""
        [sources.arbor]
        adapter = "arbor"
        base_url = "{base_url}"
        username = "cme-app"
        password = {{ file = "arbor-password" }}
        allow_insecure_loopback = true
        max_retries = 0

        [logging]
        format = "json"
        """)


def _identities(text: str) -> list[str]:
    return [x for x in (SURNAME, FORENAME, UPN, f"{DOB:%d/%m/%Y}", DOB.isoformat()) if x in text]


def test_an_mis_error_naming_a_pupil_is_withheld_from_the_nights_report_as_from_its_log(
        tmp_path: Path, refusing_arbor: str) -> None:
    """Arbor refuses the pull with a message quoting a child's name and date of birth. The night's
    log lines withhold them (``log_values_withheld``), as the README promises for every log line and
    every error message a command prints; the night's own report of its stages, printed to standard
    output (which systemd sends to the same journal), spelled them out."""
    cfg = _arbor_school(tmp_path, refusing_arbor)
    night = _cli(cfg, "nightly", "--as-of", "2025-11-28", "--only", "ingest")
    assert night.returncode == 1, night.stdout + night.stderr
    assert "ingest" in night.stdout and "failed" in night.stdout and "Arbor" in night.stdout
    log = [json.loads(line) for line in night.stderr.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "source failed" and line.get("error") == "[withheld]" for line in log), \
        night.stderr  # the log knew the text named a pupil
    assert _identities(night.stdout + night.stderr) == [], night.stdout


def test_status_does_not_print_a_source_error_that_names_a_pupil(tmp_path: Path, refusing_arbor: str) -> None:
    """The same refusal, stored as the source's last error: the technician's ``status`` (and its JSON
    for scripts and monitoring) printed the child's name and date of birth, twice (the source's last
    error and the ingest stage's detail). Every other error a command prints is checked first."""
    cfg = _arbor_school(tmp_path, refusing_arbor)
    night = _cli(cfg, "nightly", "--as-of", "2025-11-28", "--only", "ingest")
    assert night.returncode == 1, night.stdout + night.stderr
    text = _cli(cfg, "status")
    as_json = _cli(cfg, "status", "--format", "json")
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["sources"][0]["last_error"] and "Arbor" in data["sources"][0]["last_error"]  # still said
    assert "last error: Arbor" in text.stdout
    assert _identities(text.stdout + text.stderr) == [], text.stdout
    assert _identities(as_json.stdout) == [], as_json.stdout


def test_a_child_whose_application_was_withdrawn_years_ago_is_purged(tmp_path: Path) -> None:
    """A place offered for September 2010 and withdrawn before the child started (SIMS Application
    Status "Withdrawn", Arbor's withdrawn unenrolment): the child never came, so no leaving date is
    ever recorded. The README: purge removes every pupil who left before the oldest academic year
    whose registers are kept, with everything stored about them; only a pupil with no admission
    recorded is never removed. This one has an admission, fifteen years old, and was kept whole,
    with a contact, while a child who joined and left the same year went."""
    _url, engine, school = _store(tmp_path)
    ingest.apply_batch(engine, school, SourceBatch("t", "t", records=[
        PupilRecord("W", upn=UPN, legal_surname=SURNAME, legal_forename=FORENAME, dob=date(2006, 3, 1)),
        EnrolmentRecord("W", admission_date=date(2010, 9, 1), withdrawn=True),
        ContactRecord("W", "c1", priority=1, surname=SURNAME, forename="Parent", phones=("07700900001",)),
        PupilRecord("L", upn="B123456789012", legal_surname="Leftwell", dob=date(2006, 3, 1)),
        EnrolmentRecord("L", admission_date=date(2010, 9, 1), entry_date=date(2010, 9, 1),
                        leaving_date=date(2011, 7, 20))]), datetime(2010, 8, 1, tzinfo=UTC))
    counts = purge(engine, RetentionConfig(), datetime(2025, 12, 1, 6, tzinfo=UTC))
    with engine.connect() as conn:
        left = conn.execute(select(t.pupils.c.legal_surname)).scalars().all()
        contacts = conn.execute(select(t.contacts.c.surname)).scalars().all()
    engine.dispose()
    assert "Leftwell" not in left  # the leaver of the same year went
    assert (left, contacts, counts["pupils"]) == ([], [], 2)


def test_archived_incoming_ctfs_past_retention_are_removed(tmp_path: Path) -> None:
    """A folder of incoming children's CTFs (``max_age_hours = 0``: most nights it is empty). Each CTF
    is one child's whole record (name, UPN, date of birth, address, contacts, marks); DfE names a
    school's CTFs ``<from LAESTAB>_CTF_<to LAESTAB>_<n>``, so the archive groups them by sending
    school, and "the newest archived file of each report is always kept (the freshness check reads
    it)". Such a folder has no freshness check, yet the last CTF from every school a child ever came
    from stayed in the archive for good: eight years on, past every retention period, long after the
    child was purged from the store."""
    url, engine, _school = _store(tmp_path)
    engine.dispose()
    archive = tmp_path / "ctf" / "archive"
    archive.mkdir(parents=True)
    now = datetime.now(UTC).timestamp()
    ages = {"8231234_CTF_9162999_001.xml": 3000, "8231234_CTF_9162999_002.xml": 2950,
            "9375555_CTF_9162999_001.xml": 2900, "9375555_CTF_9162999_002.xml": 10}
    for name, days in ages.items():
        p = archive / name
        p.write_text(f"<CTfile><CTFpupilData><Pupil><Surname>{SURNAME}</Surname></Pupil></CTFpupilData></CTfile>")
        os.utime(p, (now - days * 86400, now - days * 86400))
    cfg = write_config(tmp_path, url, '\n[sources.ctf]\nadapter = "ctf"\ndrop_dir = "ctf"\nmax_age_hours = 0\n')
    run = _cli(cfg, "purge")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "archived exports 90 days" in run.stdout
    kept = sorted(p.name for p in archive.iterdir())
    assert "9375555_CTF_9162999_002.xml" in kept  # a CTF within retention stays
    assert kept == ["9375555_CTF_9162999_002.xml"], run.stdout


def test_a_night_run_by_hand_leaves_no_pupil_file_or_folder_others_can_read(tmp_path: Path) -> None:
    """The technician runs the night by hand (``sudo -u cme-batch ... nightly``: the login's umask
    022, not the service's 0077). The folders it creates for the MIS exports it archives and for the
    mail drop, and the messages it writes there (the summary names children), must not be open to
    the server's other users; nor may the database file."""
    url, engine, _school = _store(tmp_path)
    engine.dispose()
    os.chmod(tmp_path / "store.sqlite", 0o600)
    drop = tmp_path / "ctf"
    drop.mkdir(mode=0o700)
    fixture = Path(__file__).resolve().parents[1] / "adapters" / "fixtures" / "ctf-25.xml"
    (drop / "8231234_CTF_9162999_001.xml").write_bytes(fixture.read_bytes())
    cfg = write_config(tmp_path, url, '\n[sources.ctf]\nadapter = "ctf"\ndrop_dir = "ctf"\nmax_age_hours = 0\n')
    night = _cli(cfg, "nightly", "--as-of", "2025-11-28", umask=0o022)
    assert night.returncode in (0, 1), night.stdout + night.stderr
    made = [drop / "archive", tmp_path / "maildrop", *(tmp_path / "maildrop").glob("*.eml"), tmp_path / "store.sqlite"]
    assert (drop / "archive" / "8231234_CTF_9162999_001.xml").exists(), night.stdout + night.stderr
    assert len(made) > 4, night.stdout  # the summary and the digest at least
    open_to_others = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in made
                      if stat.S_IMODE(p.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO)}
    assert open_to_others == {}
