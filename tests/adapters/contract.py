"""The contract every source adapter meets. An adapter's test module subclasses ``AdapterContract``.

    class TestSimsContract(AdapterContract):
        adapter = "sims-xml"
        def make_config(self, tmp_path): ...      # a valid SourceConfig with data ready to read
        bad_settings = [{"drop_dir": 5}]          # settings that must be refused

The suite checks that the adapter is found through the entry point, refuses bad settings
with a ConfigError naming the key, yields well-formed model records, stores all or nothing
into a real store, and that a second read changes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, func, select

from cme_batch.config import SourceConfig
from cme_batch.errors import ConfigError
from cme_batch.model import (
    FLAG_KINDS,
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    SchoolInfo,
    SourceBatch,
)
from cme_batch.sources import Source, SourceContext, SourceState, build_source, load_factory
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.helpers import snapshot

NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
RECORD_TYPES = (PupilRecord, EnrolmentRecord, ContactRecord, FlagRecord, MarksRecord, SchoolInfo)


class AdapterContract:
    adapter: ClassVar[str]
    bad_settings: ClassVar[list[dict[str, Any]]] = []

    def make_config(self, tmp_path: Path) -> SourceConfig:  # pragma: no cover - abstract
        raise NotImplementedError

    def context(self, engine: Engine | None = None) -> SourceContext:
        return SourceContext(now=NOW, state=SourceState())

    # -- helpers ------------------------------------------------------------------------
    def _read(self, tmp_path: Path) -> tuple[Source, list[tuple[SourceBatch, list[Any]]]]:
        source = build_source(self.make_config(tmp_path))
        out = []
        for batch in source.batches(self.context()):
            out.append((batch, list(batch.records)))
        return source, out

    # -- the contract ---------------------------------------------------------------------
    def test_found_through_entry_point(self, tmp_path: Path) -> None:
        factory = load_factory(self.adapter)
        source = factory.from_config(self.make_config(tmp_path))
        assert isinstance(source, Source)

    def test_bad_settings_refused_with_key(self, tmp_path: Path) -> None:
        good = self.make_config(tmp_path)
        for settings in self.bad_settings:
            cfg = SourceConfig(good.name, good.adapter, {**good.settings, **settings}, good.base_dir)
            with pytest.raises(ConfigError) as info:
                build_source(cfg)
            text = "\n".join(info.value.problems)
            assert any(f"sources.{good.name}.{k}" in text for k in settings), text

    def test_records_are_well_formed(self, tmp_path: Path) -> None:
        _, batches = self._read(tmp_path)
        assert batches, "the adapter yielded no batch from data that was ready"
        known: set[str] = set()
        for batch, records in batches:
            assert batch.source == self.make_config(tmp_path).name
            assert records, f"batch {batch.origin} is empty"
            for r in records:
                assert isinstance(r, RECORD_TYPES), type(r)
                if isinstance(r, PupilRecord):
                    known.add(r.pupil_key)
                    assert r.upn is None or len(r.upn) == 13
                    assert r.dob is None or isinstance(r.dob, date)
            for r in records:
                if isinstance(r, (EnrolmentRecord, ContactRecord, FlagRecord, MarksRecord)):
                    assert r.pupil_key in known, "a record names a pupil the source never described"
                if isinstance(r, FlagRecord):
                    assert r.kind in FLAG_KINDS, r.kind
                if isinstance(r, MarksRecord):
                    assert all(isinstance(c, str) for c in r.codes)

    def test_warnings_carry_no_identity(self, tmp_path: Path) -> None:
        _, batches = self._read(tmp_path)
        secrets: set[str] = set()
        for _b, records in batches:
            for r in records:
                if isinstance(r, PupilRecord):
                    secrets |= {x for x in (r.upn, r.legal_surname, r.legal_forename,
                                            r.dob.isoformat() if r.dob else None) if x}
        for b, _records in batches:
            for w in b.warnings:
                text = f"{w.message} {w.where or ''}"
                assert not [s for s in secrets if s in text], text

    def test_stores_and_second_read_changes_nothing(self, tmp_path: Path, engine: Engine) -> None:
        with engine.begin() as conn:
            school = ingest.ensure_school(conn, "916", "2999", "Test School")
        source = build_source(self.make_config(tmp_path))
        for batch in source.batches(self.context()):
            ingest.apply_batch(engine, school, batch, NOW)
            source.committed(batch)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(t.pupils)).scalar_one() > 0
        before = snapshot(engine)
        source2 = build_source(self.make_config(tmp_path))
        for batch in source2.batches(self.context()):
            ingest.apply_batch(engine, school, batch, NOW)
            source2.committed(batch)
        assert snapshot(engine) == before
