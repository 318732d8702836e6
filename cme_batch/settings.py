"""Tools for validating one TOML table into frozen objects, collecting every problem.

Every section parser takes a ``Table`` view; each getter records a problem (key path, what
is wrong, what would be right) instead of raising, so a broken file reports all its faults
at once. ``cme_batch.config`` assembles the sections.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as _dt  # the Table methods named date and time hide those names
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, wrong: str, right: str) -> None:
        self.items.append(f"{key}: {wrong}; expected {right}")


class Table:
    """A view of one TOML table at a dotted path, reporting problems into a shared list."""

    def __init__(self, data: Any, path: builtins.str, problems: Problems, base: Path | None = None) -> None:
        self.prefix = path
        self.problems = problems
        self.base = base  # the configuration file's folder: relative paths are read from there
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.add(path, f"is a {type(data).__name__}", "a table")
            data = {}
        self.data: dict[str, Any] = data
        self._seen: set[str] = set()

    def key(self, name: builtins.str) -> builtins.str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def has(self, name: builtins.str) -> builtins.bool:
        return name in self.data

    def _get(self, name: builtins.str, required: builtins.bool, right: builtins.str) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if required:
                self.problems.add(self.key(name), "is missing", right)
            return None
        return self.data[name]

    def str(self, name: builtins.str, default: builtins.str | None = None, *, required: builtins.bool = False,
            choices: tuple[builtins.str, ...] | None = None, pattern: builtins.str | None = None,
            right: builtins.str = "a string") -> builtins.str | None:
        if choices:
            right = "one of " + ", ".join(repr(c) for c in choices)
        v = self._get(name, required, right)
        if v is None:
            return default
        if not isinstance(v, str):
            self.problems.add(self.key(name), f"is {v!r}", right)
            return default
        if choices and v not in choices:
            self.problems.add(self.key(name), f"is {v!r}", right)
            return default
        if pattern and not re.fullmatch(pattern, v):
            self.problems.add(self.key(name), f"is {v!r}", right)
            return default
        return v

    def email(self, name: builtins.str, *, required: builtins.bool = False) -> builtins.str | None:
        v = self.str(name, required=required, right="an email address")
        if v is not None and not EMAIL_RE.match(v):
            self.problems.add(self.key(name), f"is {v!r}", "an email address like office@school.example")
            return None
        return v

    def emails(self, name: builtins.str, *, required: builtins.bool = False) -> tuple[builtins.str, ...]:
        v = self._get(name, required, "a list of email addresses")
        if v is None:
            return ()
        if isinstance(v, str):
            v = [v]
        out: list[str] = []
        if not isinstance(v, list):
            self.problems.add(self.key(name), f"is {v!r}", "a list of email addresses")
            return ()
        for i, item in enumerate(v):
            if not isinstance(item, str) or not EMAIL_RE.match(item):
                self.problems.add(f"{self.key(name)}[{i}]", f"is {item!r}", "an email address")
            else:
                out.append(item)
        return tuple(out)

    def int(self, name: builtins.str, default: builtins.int | None = None, *, required: builtins.bool = False,
            min: builtins.int | None = None, max: builtins.int | None = None) -> builtins.int | None:
        right = "a whole number" + (f" from {min}" if min is not None else "") + (
            f" to {max}" if max is not None else "")
        v = self._get(name, required, right)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or (min is not None and v < min) or (
                max is not None and v > max):
            self.problems.add(self.key(name), f"is {v!r}", right)
            return default
        return v

    def float(self, name: builtins.str, default: builtins.float | None = None, *,
              min: builtins.float | None = None) -> builtins.float | None:
        right = "a number" + (f" of at least {min}" if min is not None else "")
        v = self._get(name, False, right)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (min is not None and v < min):
            self.problems.add(self.key(name), f"is {v!r}", right)
            return default
        return float(v)

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        v = self._get(name, False, "true or false")
        if v is None:
            return default
        if not isinstance(v, bool):
            self.problems.add(self.key(name), f"is {v!r}", "true or false")
            return default
        return v

    def date(self, name: builtins.str, *, required: builtins.bool = False) -> _dt.date | None:
        v = self._get(name, required, "a date YYYY-MM-DD")
        return None if v is None else self._as_date(v, self.key(name))

    def _as_date(self, v: Any, key: builtins.str) -> _dt.date | None:
        if isinstance(v, date) and not hasattr(v, "hour"):
            return v
        if isinstance(v, str):
            try:
                return date.fromisoformat(v)
            except ValueError:
                pass
        self.problems.add(key, f"is {v!r}", "a date YYYY-MM-DD")
        return None

    def dates(self, name: builtins.str) -> tuple[_dt.date, ...]:
        v = self._get(name, False, "a list of dates YYYY-MM-DD")
        if v is None:
            return ()
        if not isinstance(v, list):
            self.problems.add(self.key(name), f"is {v!r}", "a list of dates YYYY-MM-DD")
            return ()
        out = [self._as_date(x, f"{self.key(name)}[{i}]") for i, x in enumerate(v)]
        return tuple(d for d in out if d is not None)

    def time(self, name: builtins.str, default: _dt.time) -> _dt.time:
        v = self._get(name, False, "a time HH:MM")
        if v is None:
            return default
        if isinstance(v, time):
            return v
        if isinstance(v, str):
            try:
                return time.fromisoformat(v)
            except ValueError:
                pass
        self.problems.add(self.key(name), f"is {v!r}", "a time HH:MM")
        return default

    def str_map(self, name: builtins.str) -> dict[builtins.str, builtins.str]:
        v = self._get(name, False, "a table of strings")
        if v is None:
            return {}
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            self.problems.add(self.key(name), f"is {v!r}", "a table whose values are strings")
            return {}
        return dict(v)

    def str_list(self, name: builtins.str) -> tuple[builtins.str, ...]:
        v = self._get(name, False, "a list of strings")
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.problems.add(self.key(name), f"is {v!r}", "a list of strings")
            return ()
        return tuple(v)

    def path(self, name: builtins.str, base: Path, default: builtins.str | None = None, *,
             required: builtins.bool = False) -> Path | None:
        v = self.str(name, default, required=required, right="a path")
        if v is None:
            return None
        p = Path(v).expanduser()
        return p if p.is_absolute() else (base / p)

    def sub(self, name: builtins.str) -> Table:
        self._seen.add(name)
        return Table(self.data.get(name), self.key(name), self.problems, self.base)

    def subs(self, name: builtins.str) -> dict[builtins.str, Table]:
        """A table of tables, e.g. ``[sources.office-sims]``."""
        self._seen.add(name)
        v = self.data.get(name)
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.problems.add(self.key(name), f"is {v!r}", "a table of tables")
            return {}
        return {k: Table(x, f"{self.key(name)}.{k}", self.problems, self.base) for k, x in v.items()}

    def list_of_tables(self, name: builtins.str) -> list[Table]:
        self._seen.add(name)
        v = self.data.get(name)
        if v is None:
            return []
        if not isinstance(v, list):
            self.problems.add(self.key(name), f"is {v!r}", "a list of tables ([[...]])")
            return []
        return [Table(x, f"{self.key(name)}[{i}]", self.problems, self.base) for i, x in enumerate(v)]

    def secret(self, name: builtins.str, *, required: builtins.bool = False) -> SecretRef | None:
        """A secret reference: ``{ env = "NAME" }`` or ``{ file = "path" }`` or ``{ credential = "name" }``."""
        right = 'a table { env = "VAR" }, { file = "/path" } or { credential = "name" } (never the secret itself)'
        v = self._get(name, required, right)
        if v is None:
            return None
        if isinstance(v, str):
            self.problems.add(self.key(name), "holds a literal value (secrets must not live in the file)", right)
            return None
        if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in ("env", "file", "credential") or \
                not isinstance(next(iter(v.values())), str):
            self.problems.add(self.key(name), f"is {v!r}", right)
            return None
        kind, ref = next(iter(v.items()))
        if kind == "file" and self.base is not None and not Path(ref).expanduser().is_absolute():
            ref = str(self.base / ref)
        return SecretRef(kind, ref, self.key(name))

    def unknown_keys(self) -> None:
        """Report keys nobody asked for: usually a typo that would silently be ignored."""
        for k in self.data:
            if k not in self._seen:
                self.problems.add(self.key(k), "is not a known key", "one of the keys documented in "
                                  "config/cme-batch.example.toml")


#: What systemd puts before each file's name when a unit loads a whole folder of credentials
#: (``LoadCredential=cme-batch:/etc/cme-batch/credentials``): a file ``reply-key-k1`` becomes the
#: credential ``cme-batch_reply-key-k1``. Either name finds it.
CREDENTIAL_PREFIX = "cme-batch_"


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives. Its value is read only when needed, and never shown."""

    kind: str  # env, file, credential (the name, or the file name in the folder the units load)
    ref: str
    key: str  # the config key, for error messages

    def __repr__(self) -> str:
        return f"SecretRef({self.kind}={self.ref!r})"

    def reveal(self) -> str:
        from cme_batch.errors import BadInputError

        if self.kind == "env":
            val = os.environ.get(self.ref)
            if val is None:
                raise BadInputError(f"{self.key}: environment variable {self.ref} is not set")
            return val
        if self.kind == "credential":
            base = os.environ.get("CREDENTIALS_DIRECTORY")
            if not base:
                raise BadInputError(
                    f"{self.key}: credential {self.ref!r} asked for but CREDENTIALS_DIRECTORY is not set "
                    "(run under systemd with LoadCredential=, or use { file = ... })")
            path = Path(base) / self.ref
            prefixed = Path(base) / f"{CREDENTIAL_PREFIX}{self.ref}"
            if not path.exists() and prefixed.exists():  # the units load a folder: systemd prefixes its files
                path = prefixed
        else:
            path = Path(self.ref).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BadInputError(f"{self.key}: cannot read secret file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError:  # its message quotes a byte of the secret and where it is: never shown
            raise BadInputError(f"{self.key}: secret file {path} is not UTF-8 text") from None


def secrets_in(obj: Any) -> Iterator[SecretRef]:
    """Every secret a loaded configuration refers to, wherever it sits (frozen objects, tuples,
    mappings: a source's options too)."""
    if isinstance(obj, SecretRef):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from secrets_in(getattr(obj, f.name))
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from secrets_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from secrets_in(item)


def check_secrets(obj: Any, unused: tuple[builtins.str, ...] = ()) -> tuple[list[builtins.str], list[builtins.str]]:
    """Read every secret of a configuration once, as the night would, keeping no value: the
    problems (unset, unreadable, empty), and the secrets not checked: those under a key in
    ``unused`` (never read by this configuration) and those that cannot be read here (a systemd
    credential outside the service)."""
    from cme_batch.errors import CmeError

    problems: list[builtins.str] = []
    unchecked: list[builtins.str] = []
    for ref in secrets_in(obj):
        if ref.key.startswith(unused):
            unchecked.append(f"{ref.key}: not used by this configuration")
            continue
        if ref.kind == "credential" and not os.environ.get("CREDENTIALS_DIRECTORY"):
            unchecked.append(f"{ref.key}: systemd credential {ref.ref!r}, readable only under the service: check it "
                             "with the service's credentials (README, Installing)")
            continue
        try:
            if not ref.reveal():
                problems.append(f"{ref.key}: the secret is empty")
        except CmeError as exc:
            problems.append(str(exc))
    return problems, unchecked
