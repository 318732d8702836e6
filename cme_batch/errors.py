"""The one error tree of cme-batch.

Errors are named for what the caller must do: fix the input, try again later, or stop.
Third-party exceptions are translated into these at the boundary; only the CLI turns them
into exit codes. Messages never carry a pupil's name, UPN or date of birth.
"""

from __future__ import annotations

import re


class CmeError(Exception):
    """Root of every error cme-batch raises on purpose."""

    exit_code = 1


class BadInputError(CmeError):
    """The data or configuration is wrong: a person must fix it. Nothing was changed."""

    exit_code = 2


class ConfigError(BadInputError):
    """The configuration file is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[str], path: str | None = None) -> None:
        self.problems = list(problems)
        self.path = path
        where = f" in {path}" if path else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"configuration invalid{where} ({len(self.problems)} problem(s)):\n{lines}")

    def __reduce__(self) -> tuple[type, tuple[list[str], str | None]]:  # rebuilt from its own arguments
        return (self.__class__, (self.problems, self.path))


class ConfigFileError(ConfigError):
    """The configuration file itself cannot be had (none named, missing, unreadable, not TOML).

    One line, naming the file and what to do: there are no keys to list yet.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__([message], path)
        Exception.__init__(self, message)  # the message alone, not the "configuration invalid" list

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:  # type: ignore[override]
        return (self.__class__, (self.problems[0], self.path))


class ImportRejected(BadInputError):
    """An import file was refused whole. Each problem names file, record number, field and value."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{file}: rejected, nothing imported ({len(self.problems)} problem(s)):\n{shown}{more}")

    def __reduce__(self) -> tuple[type, tuple[str, list[str]]]:  # handed over from a reading process
        return (self.__class__, (self.file, self.problems))


class RetriableError(CmeError):
    """A temporary failure (network, server busy): the same call may succeed later."""


class FatalError(CmeError):
    """A failure that retrying will not fix (bad credentials, permission refused): stop and report."""


class LockHeld(CmeError):
    """Another run holds the run lock. Not a failure: the caller should exit 0."""

    exit_code = 0


def brief(text: str, most: int = 5) -> str:
    """An error on one line, for a person: its first line, then the first ``most`` lines after it (a
    refused file's problems: the record and field each names; never a personal value, which the
    readers withhold), then how many more there are."""
    first, *rest = text.splitlines() or [""]
    problems = [line.strip().removeprefix("- ") for line in rest if line.strip()]
    beyond = 0  # problems the text itself left out ("... and 10 more")
    if problems and (m := re.fullmatch(r"\.\.\. and (\d+) more", problems[-1])):
        beyond = int(m.group(1))
        problems.pop()
    shown = problems[:most]
    if len(problems) + beyond > most:
        shown.append(f"and {len(problems) + beyond - most} more")
    return " ".join([first, "; ".join(shown)]) if shown else first

