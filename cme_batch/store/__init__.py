"""The store: one database (a SQLite file by default, PostgreSQL by URL), migrated by Alembic.

``open_store(url)`` gives an ``Engine`` configured the way the rest of the code expects:
SQLite in WAL mode with foreign keys on, its file created with mode 0600 before anything
else can create it with a looser mode.

One store serves one school (``require_one_school``): most of what the nightly run reads and
writes (source state, pupil keys, the outbox, replies, purge, status) is not kept apart by
school, so a second school's configuration pointed at a store already holding a school is
refused, before anything is read or written. A trust or local authority gives each school a
database of its own (on one PostgreSQL server if it likes).

Alembic itself is imported only to migrate (``init``). Every other command checks that the
schema is current without it (``require_current``): importing Alembic, which imports the DDL
support of every database it knows, cost about a quarter of a second of every run.
"""

from __future__ import annotations

import ast
import json
import os
import zlib
from json.encoder import encode_basestring_ascii as _quoted
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cme_batch.errors import BadInputError, FatalError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")
#: Alembic's bookkeeping table (its default name and schema, which ``migrations/env.py`` keeps).
VERSION_TABLE = "alembic_version"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file (and its WAL side files later inherit the umask) with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


#: The page size of a new SQLite store (SQLite's default is 4,096 bytes). A strip is about 760
#: bytes: with pages four times as large, a local authority's day (100,000 strips changed) took
#: a fifth less time to write, and ``detect`` read them faster (see the README's benchmarks). An
#: existing store keeps the size it was made with (``cme-batch`` works with any).
PAGE_SIZE = 16384


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Before anything else: it sets the size of a store not yet written (an empty file) and
    # changes nothing in one that exists (a WAL database's page size is fixed).
    cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def to_json(value: Any) -> str:
    """``json.dumps(value)``, with a short cut for the commonest value the store writes: a list
    of texts (phones, e-mails), each quoted by the same C function ``json.dumps`` uses."""
    if value.__class__ is list and all(v.__class__ is str for v in value):
        return "[" + ", ".join(map(_quoted, value)) + "]"
    return json.dumps(value)


def open_store(url: str, *, create: bool = True, password: str | None = None) -> Engine:
    """An engine for ``url``. With ``create`` false a missing SQLite file is an error, not a new file.
    ``password`` (``database.password``) is given to the server without ever being part of the URL text."""
    try:
        path = sqlite_path(url)
    except Exception as exc:  # sqlalchemy's ArgumentError on a malformed URL
        raise BadInputError(f"database.url is not a valid database URL: {exc}") from exc
    if path is not None:
        if path.is_dir():  # before anything: preparing the file would change the folder's mode
            raise BadInputError(f"database file {path} is a folder: database.url must name a file in it, such "
                                f"as sqlite:///{path / 'cme-batch.sqlite'}")
        if not path.exists() and not create:
            raise BadInputError(f"database file {path} does not exist: run 'cme-batch init' first")
        old = os.umask(0o077)
        try:
            _prepare_sqlite_file(path)
        finally:
            os.umask(old)
    try:
        target = make_url(url) if password is None else make_url(url).set(password=password)
        engine = create_engine(target, future=True, json_serializer=to_json)
    except (SQLAlchemyError, ImportError) as exc:
        raise BadInputError(f"cannot use database.url: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> list[str]:
    """Apply every pending migration; return the revisions applied (empty when up to date)."""
    from alembic import command

    cfg = _alembic_config()
    before = set(current_revisions(engine))
    old = os.umask(0o077)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    except SQLAlchemyError as exc:
        raise FatalError(f"database migration failed: {exc.__class__.__name__}: {exc}") from exc
    finally:
        os.umask(old)
    return sorted(set(current_revisions(engine)) - before)


def current_revisions(engine: Engine) -> list[str]:
    """The revisions the database is at, read from Alembic's version table (none if it has none)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return []
        return sorted(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def head_revisions() -> list[str]:
    """The head revisions of the migration scripts: those no other script revises.

    Read from the scripts' literal ``revision`` and ``down_revision`` assignments rather than by
    Alembic, which would import every script (and itself) on every run. A script whose
    revision identifiers are not plain literals, or that names a branch or a dependency, is
    left to Alembic's own reading.
    """
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in sorted((MIGRATIONS / "versions").glob("*.py")):
        if script.name == "__init__.py":
            continue
        found = _script_revisions(script)
        if found is None:
            return _alembic_heads()
        revision, down = found
        revisions.add(revision)
        revised.update(down)
    return sorted(revisions - revised)


def _script_revisions(script: Path) -> tuple[str, tuple[str, ...]] | None:
    """A script's ``revision`` and ``down_revision``s, or None if they are not plain literals.

    Only the part before the first function is parsed: the identifiers are assigned there
    (``script.py.mako``), and the migration bodies are most of the text.
    """
    header = script.read_text(encoding="utf-8").split("\ndef ", 1)[0]
    values: dict[str, Any] = {}
    try:
        for node in ast.parse(header).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision", "branch_labels",
                                                               "depends_on"):
                values[target.id] = ast.literal_eval(value)
    except (SyntaxError, ValueError, TypeError):  # not plain Python up there, or a computed value
        return None
    revision, down = values.get("revision"), values.get("down_revision")
    if not isinstance(revision, str) or values.get("branch_labels") or values.get("depends_on"):
        return None
    downs = () if down is None else (down,) if isinstance(down, str) else down  # a merge names several
    if not isinstance(downs, tuple | list) or not all(isinstance(d, str) for d in downs):
        return None
    return revision, tuple(downs)


def _alembic_heads() -> list[str]:
    from alembic.script import ScriptDirectory

    return sorted(ScriptDirectory.from_config(_alembic_config()).get_heads())


def other_schools(conn: Connection, la_number: str, establishment_number: str) -> list[tuple[str, str]]:
    """The LA and establishment numbers of the schools in the store other than the one given."""
    from cme_batch.store import tables as t

    return sorted((la, estab) for la, estab in conn.execute(
        select(t.schools.c.la_number, t.schools.c.establishment_number))
        if (la, estab) != (la_number, establishment_number))


def refuse_other_schools(conn: Connection, la_number: str, establishment_number: str) -> None:
    """Refuse a store that holds a school other than ``la_number``/``establishment_number``.

    Only the schools' DfE numbers are named in the message, never a pupil.
    """
    others = other_schools(conn, la_number, establishment_number)
    if others:
        held = ", ".join(f"{la}/{estab}" for la, estab in others)
        raise BadInputError(
            f"the database at database.url already holds another school's data (LA/establishment number {held}), "
            f"not this configuration's school ({la_number}/{establishment_number}): one database serves one "
            "school, so nothing was read or changed. Give each school a database of its own (a SQLite file, or "
            "a database of its own on the PostgreSQL server); if this is the same school and its numbers have "
            "changed, see 'One database per school' in the README")


#: The PostgreSQL advisory lock held while a run records its school (``lock_schools``).
SCHOOLS_LOCK_KEY = zlib.crc32(b"cme-batch schools")


def lock_schools(conn: Connection) -> None:
    """Until the transaction ends, be the only one recording a school in this store (PostgreSQL).

    Two configurations' first runs on one database at once each read no other school, under
    PostgreSQL's default isolation neither saw the other's uncommitted row, and the store then
    held two schools, which every later command of both refused. With the lock the second waits
    for the first to commit, then sees its school and is refused, changing nothing. (SQLite
    writers are one at a time already.)"""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHOOLS_LOCK_KEY})


def require_one_school(engine: Engine, la_number: str, establishment_number: str) -> None:
    """Refuse a store holding another school (``refuse_other_schools``); a store not migrated yet has none."""
    from cme_batch.store import tables as t

    with engine.connect() as conn:
        if inspect(conn).has_table(t.schools.name):
            refuse_other_schools(conn, la_number, establishment_number)


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at the code's head revisions."""
    have, want = current_revisions(engine), head_revisions()
    if have != want:
        if not have:
            raise BadInputError("the database is empty: run 'cme-batch init' first")
        raise BadInputError(
            f"the database schema is at {', '.join(have)} but this version needs {', '.join(want)}: "
            "run 'cme-batch init' to migrate"
        )
