"""ArborSource: the ``arbor`` adapter, built from its ``[sources.NAME]`` table.

Each run yields one SourceBatch holding everything the pull read, with ``cursor`` set to the
revision it reached; the store applies it in one transaction, so a run that fails anywhere
leaves the store and the stored revision as they were, and the next run starts again from
there. With no stored revision the pull is full; with one it follows the changelog (see
``pull``). The password is read from the secret store only when a pull starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from ipaddress import ip_address
from urllib.parse import urlsplit

from adapters.arbor import mapping
from adapters.arbor.attendance import SKIPPED_ROLL_CALLS
from adapters.arbor.client import ArborClient, ClientSettings
from adapters.arbor.pull import Reader, marks_windows
from cme_batch import log
from cme_batch.config import SourceConfig
from cme_batch.errors import ConfigError, FatalError
from cme_batch.model import FLAG_KINDS, Record, SourceBatch, Warning_
from cme_batch.settings import Problems, SecretRef, Table
from cme_batch.sources import SourceContext

REPLACES = frozenset({"contacts", "flags", "enrolments"})
LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(t: Table, allow_loopback_http: bool) -> str | None:
    """The school's host as ``scheme://host[:port]``: https, or http on loopback when allowed."""
    raw = t.str("base_url", required=True, right="the school's Arbor address, e.g. https://myschool.uk.arbor.sc")
    if raw is None:
        return None
    parts = urlsplit(raw.strip())
    if parts.username is not None or parts.password is not None:  # never echo it: it may hold the password
        t.problems.add(t.key("base_url"), "holds a user name or password before the host",
                       "the bare address, with the app's credentials in username and password")
        return None
    host = parts.hostname or ""
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if not host or not port_ok or parts.scheme not in ("https", "http") or parts.path.strip("/") or \
            parts.query or parts.fragment:
        t.problems.add(t.key("base_url"), f"is {raw!r}", "a bare address like https://myschool.uk.arbor.sc "
                       "(no path: /rest-v2 and /graphql are added by the adapter)")
        return None
    if parts.scheme == "http" and not (allow_loopback_http and _is_loopback(host)):
        t.problems.add(t.key("base_url"), f"is {raw!r}",
                       "an https:// address (plain http is only allowed for 127.0.0.1/localhost with "
                       "allow_insecure_loopback = true, for tests)")
        return None
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class ArborSource:
    """A configured Arbor school. Holds no secret: ``password`` is a reference."""

    name: str
    client_settings: ClientSettings
    password: SecretRef
    academic_year_start: date | None = None
    incremental: bool = True
    tag_flags: tuple[tuple[str, str], ...] = tuple(mapping.DEFAULT_TAG_FLAGS.items())

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> ArborSource:
        problems = Problems()
        t = Table(cfg.settings, f"sources.{cfg.name}", problems)
        loopback = t.bool("allow_insecure_loopback", False)
        base_url = _base_url(t, loopback)
        username = t.str("username", required=True, right="the Arbor app's username")
        if username is not None and not username.strip():
            problems.add(t.key("username"), "is empty", "the Arbor app's username")
        password = t.secret("password", required=True)
        ca_bundle = t.path("ca_bundle", cfg.base_dir)
        if ca_bundle is not None and not ca_bundle.is_file():
            problems.add(t.key("ca_bundle"), f"names {str(ca_bundle)!r}, which is not a readable file",
                         "a PEM file of CA certificates")
        d = ClientSettings(base_url="", username="")
        settings = ClientSettings(
            base_url=base_url or "", username=username or "", ca_bundle=ca_bundle,
            timeout=t.float("timeout_seconds", d.timeout, min=0.01) or d.timeout,
            max_retries=t.int("max_retries", d.max_retries, min=0, max=20) or 0,
            backoff=t.float("backoff_seconds", d.backoff, min=0.0) or 0.0,
            max_backoff=t.float("max_backoff_seconds", d.max_backoff, min=0.0) or 0.0,
            page_size=t.int("page_size", d.page_size, min=1, max=5000) or d.page_size,
            user_agent=t.str("user_agent", d.user_agent) or d.user_agent)
        start = t.date("academic_year_start")
        incremental = t.bool("incremental", True)
        tags = t.str_map("tag_flags") if t.has("tag_flags") else dict(mapping.DEFAULT_TAG_FLAGS)
        for tag, kind in tags.items():
            if kind not in FLAG_KINDS:
                problems.add(f"{t.key('tag_flags')}.{tag}", f"is {kind!r}", "one of " + ", ".join(sorted(FLAG_KINDS)))
        t.unknown_keys()
        if problems.items:
            raise ConfigError(problems.items)
        assert password is not None
        return cls(cfg.name, settings, password, start, incremental, tuple(sorted(tags.items())))

    def __repr__(self) -> str:
        return f"ArborSource({self.name!r}, {self.client_settings.base_url!r})"

    def committed(self, batch: SourceBatch) -> None:
        """Nothing to do: the stored cursor is the only state, and the store keeps it."""

    def batches(self, ctx: SourceContext) -> Iterator[SourceBatch]:
        """One batch: a full pull, or the changes since the stored revision."""
        client = ArborClient(self.client_settings, self.password.reveal())
        try:
            batch = self._pull(client, ctx)
        except mapping.Conflict as exc:
            raise FatalError(f"Arbor's answer cannot be stored as it stands: {exc}") from exc
        except mapping.BadShape as exc:
            raise FatalError(f"Arbor's answer is not in the shape the adapter expects: {exc} "
                             "(see adapters/arbor/mapping.py)") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a shape check_rows let through
            what = f"field {exc.args[0]!r} missing" if isinstance(exc, KeyError) else exc.__class__.__name__
            raise FatalError(f"Arbor's answer is not in the shape the adapter expects ({what}); "
                             "see adapters/arbor/mapping.py") from exc
        finally:
            client.close()
        yield batch

    def _pull(self, client: ArborClient, ctx: SourceContext) -> SourceBatch:
        logger = log.get("cme_batch.arbor").bind(source=self.name, host=client.host)
        today = ctx.now.date()
        warnings: list[Warning_] = []
        reader = Reader(client, today, warnings, dict(self.tag_flags))
        head = client.head_revision()  # read first: anything changed after it is read again next run
        since = self._stored_revision(ctx, logger)
        records: list[Record]
        complete: dict[str, tuple[date, date]] = {}  # a changes-only pull never says its marks are whole
        # with no head revision, the changelogs are read twice so the cursor skips no change made meanwhile
        changes = reader.changes_since(since, settle=head is None) if since is not None else None
        if changes is not None and changes.fallback_reason:
            logger.warning("arbor changelog cannot be followed, doing a full pull instead",
                           reason=changes.fallback_reason, from_revision=since)
        if changes is None or changes.fallback_reason:
            mode = "full"
            year = today.year if today.month >= 8 else today.year - 1
            first = self.academic_year_start or date(year, 8, 1)
            # to the end of the year, not today: marks entered ahead (leave agreed in advance) are
            # older than the cursor, so no later changelog would bring them
            last = date(year + 1, 7, 31)
            records = [*reader.pupils(None), *reader.marks_between(first, last)]
            # every roll-call record of the window was read: a session with none (a record deleted
            # in Arbor, or moved to another pupil) is no mark, within each pupil's time on roll
            complete = marks_windows(records, first, last)
            if any(w.code == SKIPPED_ROLL_CALLS for w in warnings):  # some records could not be placed:
                complete = {}  # the marks read are not the whole register, so nothing is cleared
            if changes is not None and changes.roll_call_records:
                # a full pull reads this academic year's marks: records the changelog gave dated before
                # it (July's, corrected in September) are read by id, or the cursor passed them for good
                records += [m for m in reader.marks_by_ids(changes.roll_call_records) if m.start < first]
            # with no head revision, the cursor is the newest revision seen once the first rows (the
            # students) were read: a change made after them has a newer one, and is read again next
            # time; the newest revision of the whole pull was past a leaving entered during it
            # (or the newest of the changelog read first, when a deletion forced the pull)
            reached = head if head is not None else max(reader.first_revision or 0, since or 0,
                                                        changes.last_revision if changes is not None else 0)
        else:
            mode = "incremental"
            records = reader.pupils(changes.students) if changes.students else []
            if changes.roll_call_records:
                records += reader.marks_by_ids(changes.roll_call_records)
            reached = head if head is not None else max(changes.last_revision, since or 0)
        if head is None:
            logger.info("arbor has no head revision endpoint; cursor taken from the data read",
                        cursor=reached)
        logger.info("arbor pull read", mode=mode, from_revision=since, to_revision=reached,
                    records=len(records), warnings=len(warnings), requests=client.requests_made,
                    **({"changed": changes.counts} if changes is not None and mode == "incremental" else {}))
        return SourceBatch(source=self.name, origin=client.host, records=records, warnings=warnings,
                           cursor=str(reached), replaces=REPLACES, marks_complete=complete)

    def _stored_revision(self, ctx: SourceContext, logger: object) -> int | None:
        cur = ctx.state.cursor
        if not self.incremental or cur is None:
            return None
        try:
            return int(cur)
        except ValueError:
            logger.warning("stored arbor revision is not a number; doing a full pull",  # type: ignore[attr-defined]
                           cursor=cur[:40])
            return None
