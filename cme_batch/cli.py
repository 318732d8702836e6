"""The command line: a thin shell that parses, builds, calls, and maps errors to exit codes.

Exit codes: 0 ok; 1 a stage failed (others still ran); 2 bad configuration or input.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cme_batch import __version__
from cme_batch.app import App
from cme_batch.errors import BadInputError, CmeError, ConfigError, LockHeld, RetriableError

if TYPE_CHECKING:
    from cme_batch.config import Config

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def handle_errors(fn: F) -> F:
    """Turn errors into one message on stderr and the exit code of the contract (0, 1, 2).

    Our own errors carry their exit code. What the system or the database reports about the
    files and the database a command uses (a folder where a file should be, a file another user
    owns, a database locked or damaged) is put in words by ``translate`` and given its code too:
    it is not a bug in cme-batch, and a person can act on it. Anything else is left to ``main``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:  # the reader went away (``| head``): nothing left to tell anyone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_FAILED)
        except Exception as exc:
            error = exc if isinstance(exc, CmeError) else translate(exc)
            if error is None:
                raise
            report_error(error)
            if isinstance(error, LockHeld) and kwargs.get("fmt") == "json":  # a script still gets its document
                ctx = click.get_current_context(silent=True)
                echo_json({"lock_held": True, "command": ctx.info_name if ctx is not None else None,
                           "message": lock_note(error)})
            sys.exit(error.exit_code)

    return wrapper  # type: ignore[return-value]


def report_error(error: CmeError) -> None:
    """Print an error as the user sees it: ``error: ...`` on stderr, or a plain note for a lock held."""
    if isinstance(error, ConfigError):
        click.echo(f"error: {error}", err=True)
        return
    from cme_batch.logfilter import scrub  # checked like a log line: the message may quote a database's error

    if isinstance(error, LockHeld):  # not a failure: another run is doing the work (exit 0)
        click.echo(lock_note(error), err=True)
        return
    click.echo(f"error: {scrub(str(error))}", err=True)


def lock_note(error: LockHeld) -> str:
    """What a command whose lock another run holds says: which lock, and that nothing was done."""
    from cme_batch.logfilter import scrub

    return f"{scrub(str(error))}; nothing done"


_OS_ERROR_HINTS: tuple[tuple[type[OSError], str], ...] = (
    (PermissionError, "run cme-batch as the user that owns its files (the service's user: sudo -u cme-batch "
                      "...), or correct the owner and mode"),
    (FileExistsError, "it was left as it is; name one that does not exist yet"),
    (FileNotFoundError, "check the path"),
    (IsADirectoryError, "a file was expected there, not a folder"),
    (NotADirectoryError, "a folder was expected there"),
)


def translate(exc: BaseException) -> CmeError | None:
    """A system or database error as one of ours, in words a person can act on; None for a bug."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        what = exc.strerror or exc.__class__.__name__
        hint = next((h for t, h in _OS_ERROR_HINTS if isinstance(exc, t)), None)
        if hint is None:  # a full disk, an I/O error: not the input's fault
            return CmeError(f"{where}{what}; the command stopped")
        return BadInputError(f"{where}{what}: {hint}")
    return _database_error(exc)


def _database_error(exc: BaseException) -> CmeError | None:
    """The database could not be used (locked, unopenable, damaged, unreachable); None for anything else."""
    sa_exc = sys.modules.get("sqlalchemy.exc")  # imported by whoever raised it, if it is one
    if sa_exc is None or not (isinstance(exc, sa_exc.OperationalError) or type(exc) is sa_exc.DatabaseError):
        return None
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    low = reason.lower()
    db = _database_named()
    if "locked" in low:
        return RetriableError(
            f"the database {db} stayed locked by another process (a run, a backup, sqlite3) for longer than a "
            "command waits (30 s); this command stopped and its unfinished change was undone: run it again "
            "when the other process has finished")
    if "unable to open database" in low or "readonly database" in low:
        return BadInputError(
            f"cannot open the database {db} ({reason}): database.url must name a file, in a folder the user "
            "running cme-batch may write (the service's user: sudo -u cme-batch ...)")
    if "not a database" in low or "malformed" in low:
        return BadInputError(
            f"the database {db} is not a SQLite database, or is damaged ({reason}): check database.url, or "
            "restore the file from a backup (README: Backing up and restoring)")
    if isinstance(exc, sa_exc.OperationalError) and ("authentication" in low or "does not exist" in low):
        return BadInputError(f"the database server refused {db} ({reason}): check database.url, its user and "
                             "its password")
    if isinstance(exc, sa_exc.OperationalError):
        return RetriableError(f"cannot use the database {db} ({reason}): check that the database server is "
                              "running and reachable, then run the command again")
    return None


def _database_named() -> str:
    """database.url, without its password, as the running command's configuration gives it."""
    ctx = click.get_current_context(silent=True)
    app = ctx.find_object(App) if ctx is not None else None
    try:
        return "at database.url" if app is None else _safe_url(app.config.database_url)
    except CmeError:
        return "at database.url"


#: The dates ``--as-of`` accepts: the calendar and the register strips are built a year either side.
AS_OF_RANGE = (date(2000, 1, 1), date(2099, 12, 31))


class AsOfDate(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2 on
    """``--as-of``: a date written YYYY-MM-DD, or ``yesterday`` (the default, said aloud)."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date | None:
        if isinstance(value, date) or value is None:
            return value
        text = str(value).strip()
        if text.lower() == "yesterday":
            return None  # the default: the school's last day with complete registers
        try:
            day = date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            day = None
        if day is None:
            self.fail(f"{text!r} is not a date written YYYY-MM-DD (for example 2025-12-19), or 'yesterday'",
                      param, ctx)
        low, high = AS_OF_RANGE
        if not low <= day <= high:
            self.fail(f"{text} is outside the dates cme-batch evaluates ({low} to {high})", param, ctx)
        return day


def as_of_option(fn: F) -> F:
    return click.option(
        "--as-of", "as_of", type=AsOfDate(), default=None, metavar="YYYY-MM-DD",
        help="Evaluate as of this date. Default (or 'yesterday'): the last school day before today in "
             "England, the last day with complete registers.",
    )(fn)


def as_of_date(app: App, value: date | None) -> date:
    return value if value is not None else app.default_as_of()


def format_option(choices: tuple[str, ...] = ("table", "json"), default: str = "table") -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(choices), default=default, show_default=True,
                        help="Output format: a table for people, JSON for scripts.")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def echo_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], right: tuple[str, ...] = ()) -> None:
    """Print rows as columns as wide as their widest cell: (key, heading) pairs; ``right`` keys align right."""
    cells = [[h for _, h in columns]] + [["" if r.get(k) is None else str(r[k]) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        click.echo("  ".join(c.rjust(w) if k in right else c.ljust(w)
                             for c, w, (k, _) in zip(row, widths, columns)).rstrip())


pass_app = click.make_pass_decorator(App)


def first_sentence(help_text: str) -> str:
    """The first sentence of a command's help, for the list of commands (click's own cut stops at "e.g.")."""
    import re

    paragraph = " ".join(help_text.strip().split("\n\n", 1)[0].split())
    end = re.search(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)", paragraph)
    return paragraph[:end.end()] if end else paragraph


class LazyGroup(click.Group):
    """Registers the commands of every ``cme_batch/cli_*.py`` module the first time commands are listed.

    Lazily, so that those modules can import the helpers above without an import cycle. A
    command is first looked for in the module named after it (``nightly`` in ``cli_nightly``),
    so that running one command does not import every other command's module.
    """

    _loaded = False

    def _load(self) -> None:
        if not LazyGroup._loaded:
            LazyGroup._loaded = True
            _register_all()

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and not LazyGroup._loaded:
            own = f"cli_{cmd_name.replace('-', '_')}"
            if own in _command_modules():
                _register_module(own)
        if cmd_name not in self.commands:
            self._load()
        return super().get_command(ctx, cmd_name)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if cmd.short_help is None and cmd.help:  # the list of commands shows each one's whole first sentence
            cmd.short_help = first_sentence(cmd.help)
        super().add_command(cmd, name)

    @property
    def all_commands(self) -> dict[str, click.Command]:
        self._load()
        return dict(self.commands)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="FILE", envvar="CME_BATCH_CONFIG",
              help="Configuration file (TOML). Default: $CME_BATCH_CONFIG.")
@click.version_option(__version__, prog_name="cme-batch")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """cme-batch: the nightly watch for Children Missing Education.

    Reads admissions and attendance from the school's MIS, counts each pupil's continuous
    absence in school days, opens and advances CME cases, emails the office and the DSL each
    morning, and sends DSL-confirmed referrals, encrypted, to the local authority.

    Exit codes: 0 ok, 1 a stage failed (the others still ran), 2 bad configuration or input.
    """
    if ctx.get_parameter_source("config_path") is click.core.ParameterSource.ENVIRONMENT:
        config_path = None  # read from the variable by the configuration, which then names it in an error
    ctx.obj = app = (FailureNoticeApp if ctx.invoked_subcommand == "notify-failure" else App)(config_path)
    ctx.call_on_close(app.close)


#: A copy of the configuration as it last loaded for ``nightly``, kept in the state directory, so
#: that a later edit which breaks the file still lets ``notify-failure`` tell the office.
LAST_VALID_CONFIG = "last-valid-config.toml"
_LAST_VALID_HEADER = "# cme-batch: the last valid copy of "


def remember_valid_config(app: App) -> None:
    """Keep a copy of the configuration that has just loaded (it holds no secret: only where they are)."""
    cfg = app.config
    if cfg.path is None:
        return
    try:
        body = (_LAST_VALID_HEADER + str(cfg.path) + "\n").encode() + cfg.path.read_bytes()
        target = cfg.state_dir / LAST_VALID_CONFIG
        if target.exists() and target.read_bytes() == body:
            return
        tmp = target.with_name(target.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.replace(tmp, target)
    except OSError as exc:  # never a reason to stop the night
        app.log(stage="nightly").warning("could not keep a copy of the valid configuration", error=exc.strerror)


class FailureNoticeApp(App):
    """The App of ``notify-failure``: when an edit has broken the configuration file, it mails with the
    copy the last night kept (the night failed *because* the file is broken: someone must hear of it)."""

    @property
    def config(self) -> Config:
        try:
            return super().config
        except ConfigError as exc:
            broken = exc
        import tomllib

        from cme_batch import config as config_mod
        from cme_batch import log

        path = config_mod.resolve_path(self.config_path).resolve()
        copy = config_mod.default_state_dir() / LAST_VALID_CONFIG
        try:
            header, _, body = copy.read_text(encoding="utf-8").partition("\n")
            if header != _LAST_VALID_HEADER + str(path):
                raise broken
            cfg = config_mod.parse(tomllib.loads(body), path)
        except (OSError, ValueError, ConfigError):
            raise broken from None
        self._config = cfg
        log.configure(cfg.logging.level, cfg.logging.format)
        log.bind_run(self.run_id)
        click.echo(f"error: {broken}", err=True)
        click.echo(f"warning: telling the office with the last valid copy of the configuration ({copy})", err=True)
        return cfg


@cli.command("check-config")
@pass_app
@handle_errors
def check_config(app: App) -> None:
    """Validate the configuration file, every configured source and every secret it names; list
    every problem found."""
    from cme_batch.sources import build_source

    cfg = app.config
    problems: list[str] = []
    built = []  # their secrets (an Arbor password) are checked with the others below
    for s in cfg.sources:
        try:
            built.append(build_source(s))
        except ConfigError as exc:
            problems.extend(exc.problems)
        except CmeError as exc:
            problems.append(f"sources.{s.name}: {exc}")
    if cfg.referral.chosen_method() == "smime":  # an expired or wrong certificate is found now, not at 05:30
        from cme_batch.referral.smime import load_keys

        try:
            load_keys(cfg.referral, app.now())
        except CmeError as exc:
            problems.append(str(exc))
    elif cfg.referral.chosen_method() == "pdf-passphrase" and cfg.referral.passphrase is not None:
        from cme_batch.referral.pdfcrypt import read_passphrase

        try:  # a weak passphrase, or a file others can read, is found now too
            read_passphrase(cfg.referral.passphrase)
        except CmeError as exc:
            problems.append(str(exc))
    from cme_batch.settings import check_secrets

    # an unset variable or an unreadable file is found now too, in the sections this configuration uses
    unreadable, unchecked = check_secrets((cfg, built), cfg.unused_secret_keys())
    problems += unreadable
    if cfg.replies.token_keys and not any(p.startswith("replies.token_keys") for p in unreadable + unchecked):
        from cme_batch.replies.tokens import KeyRing

        try:  # a key too short to sign with stops the summary stage: found now, not at 05:30
            KeyRing.from_config(cfg.replies)
        except CmeError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems, str(cfg.path))
    click.echo(f"{cfg.path}: configuration valid")
    click.echo(f"  school: {cfg.school.name} ({cfg.school.la_number}/{cfg.school.establishment_number})")
    click.echo(f"  database: {_safe_url(cfg.database_url)}")
    click.echo(f"  sources: {', '.join(f'{s.name} ({s.adapter})' for s in cfg.sources) or 'none'}")
    for what in unchecked:
        click.echo(f"  not checked: {what}")
    if not cfg.calendar.terms:
        click.echo("  warning: no term dates configured; school days will be inferred from the registers")
    from cme_batch.schoolcal import term_doubts

    for doubt in term_doubts(cfg.calendar, date.today()):
        click.echo(f"  warning: {doubt}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@cli.command("init")
@pass_app
@handle_errors
def init(app: App) -> None:
    """Create the database (or bring its schema up to date). Safe to run again."""
    applied = app.init_store()
    _ = app.school_id
    if applied:
        click.echo(f"database ready at {_safe_url(app.config.database_url)}: applied {', '.join(applied)}")
    else:
        click.echo(f"database at {_safe_url(app.config.database_url)} is already up to date")


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["sims-xml", "ctf"]), default=None,
              help="File format. Default: detected from each file's root element.")
@pass_app
@handle_errors
def import_cmd(app: App, files: tuple[Path, ...], fmt: str | None) -> None:
    """Import SIMS CommandReporter XML exports or Common Transfer Files, each all or nothing.

    Files are imported in the order given (pupils before their marks). A rejected file stops
    the command: the files before it stay imported, the files after it are not read.
    """
    from cme_batch.importer import import_files

    done = 0
    try:
        for file, result in zip(files, import_files(app, files, fmt), strict=False):
            done += 1
            _report_import(file, result)
    except CmeError:
        if done + 1 < len(files):
            click.echo(f"not imported (after the file refused): {', '.join(str(f) for f in files[done + 1:])}",
                       err=True)
        raise


def _report_import(file: Path, result: Any) -> None:
    if result.status == "skipped":
        click.echo(f"{file}: already imported (same checksum); nothing changed")
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())) or "nothing new"
    click.echo(f"{file}: imported ({counts}); {len(result.warnings)} warning(s)")
    for w in result.warnings[:20]:
        click.echo(f"  warning: {w.where + ': ' if w.where else ''}{w.message}")
    if len(result.warnings) > 20:
        click.echo(f"  ... and {len(result.warnings) - 20} more (see 'cme-batch status')")


@cli.command("ingest")
@click.option("--source", "only", multiple=True, help="Only this configured source (repeatable).")
@format_option()
@pass_app
@handle_errors
def ingest_cmd(app: App, only: tuple[str, ...], fmt: str) -> None:
    """Read every configured source (the [sources.<name>] tables: drop folders, Arbor API) into the store.

    Exit code 1 when a source failed (the others are still read).
    """
    from cme_batch.importer import ingest_sources

    if not app.config.sources and not only:  # a valid configuration (files imported by hand): nothing is wrong
        where = f" in {app.config.path}" if app.config.path else ""
        note = (f"ingest: no sources configured{where}, so nothing was read: add a [sources.<name>] table "
                "(adapter sims-xml, ctf or arbor) to read the MIS, or import its files with 'cme-batch import FILE'")
        if fmt == "json":
            echo_json({"sources": [], "message": note})
        else:
            click.echo(note)
        return
    outcomes = ingest_sources(app, only)
    if fmt == "json":
        echo_json({"sources": [{"source": o.source, "status": o.status, "detail": o.detail} for o in outcomes]})
    else:
        for o in outcomes:
            click.echo(f"{o.source}: {o.status}{' - ' + o.detail if o.detail else ''}")
    if any(o.status == "failed" for o in outcomes):
        sys.exit(EXIT_FAILED)


def register(*commands: click.Command) -> None:
    for c in commands:
        cli.add_command(c)


def _command_modules() -> list[str]:
    """Commands live beside the parts they drive, in modules ``cme_batch/cli_*.py`` with a COMMANDS list."""
    import pkgutil

    import cme_batch

    return sorted(m.name for m in pkgutil.iter_modules(cme_batch.__path__) if m.name.startswith("cli_"))


def _register_module(name: str) -> None:
    import importlib

    register(*importlib.import_module(f"cme_batch.{name}").COMMANDS)


def _register_all() -> None:
    for name in _command_modules():
        _register_module(name)


def main() -> None:
    """The console script. An unexpected exception (a bug) is logged through the identity filter,
    never printed raw: a database error's text can carry the values of the row it failed on."""
    try:
        cli(prog_name="cme-batch")
    except Exception as exc:
        from cme_batch import log

        log.get("cme_batch").exception("internal error", error_type=exc.__class__.__name__)
        click.echo(f"error: internal error ({exc.__class__.__name__}), a bug in cme-batch; the traceback is in "
                   "the log above, with any personal data withheld", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        _skip_final_collections()


def _skip_final_collections() -> None:
    """Spare the interpreter its garbage collections on the way out of the process.

    At exit CPython collects over every object the run made (SQLAlchemy's, the holiday tables,
    the night's rows) while it tears the modules down: 0.2-0.4 s of a school's night, for memory
    the process is about to hand back anyway. Freezing takes every object out of the collector's
    sight. Nothing is left that needs collecting first: the command has closed the store
    (``App.close``), files are closed where they are written, and the interpreter flushes the
    standard streams and runs ``atexit`` handlers regardless. Only the console script does this;
    tests call ``cli`` in their own process.
    """
    gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
