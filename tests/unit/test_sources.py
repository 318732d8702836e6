"""Adapters are found through the entry-point group, so a third party can ship one."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from cme_batch.config import SourceConfig
from cme_batch.errors import BadInputError
from cme_batch.sources import Source, available_adapters, build_source


@pytest.fixture
def third_party_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install a tiny adapter distribution into a temporary path, as a separate package would be."""
    pkg = tmp_path / "bromcom_adapter"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from cme_batch.model import PupilRecord, SourceBatch

        class BromcomSource:
            def __init__(self, name):
                self.name = name

            @classmethod
            def from_config(cls, cfg):
                return cls(cfg.name)

            def batches(self, ctx):
                yield SourceBatch(self.name, "bromcom", records=[PupilRecord("B1")])

            def committed(self, batch):
                pass
    '''))
    dist = tmp_path / "bromcom_adapter-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bromcom-adapter\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cme_batch.sources]\nbromcom = bromcom_adapter:BromcomSource\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "bromcom"
    sys.modules.pop("bromcom_adapter", None)


def test_third_party_adapter_is_discovered(third_party_adapter: str, tmp_path: Path) -> None:
    assert third_party_adapter in available_adapters()
    source = build_source(SourceConfig("mis", third_party_adapter, {}, tmp_path))
    assert isinstance(source, Source)
    batch = next(iter(source.batches(None)))  # type: ignore[arg-type]
    assert batch.source == "mis"


def test_builtin_adapters_are_registered() -> None:
    assert {"sims-xml", "ctf", "arbor"} <= set(available_adapters())


def test_unknown_adapter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no source adapter named 'wonde'.*installed: .*ctf"):
        build_source(SourceConfig("mis", "wonde", {}, tmp_path))
