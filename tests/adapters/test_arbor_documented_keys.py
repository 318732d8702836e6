"""Every key the Arbor adapter reads is in the commented ``[sources.arbor]`` section of
config/cme-batch.example.toml and in the table of adapters/arbor/README.md, with the code's
defaults; uncommented, each of them builds a source. The example listed 7 of the 15 keys."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapters.arbor import ArborSource
from adapters.arbor.client import ClientSettings
from cme_batch.config import SourceConfig
from cme_batch.settings import Table

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS: dict[str, Any] = {  # the key as written in the file -> the code's default
    "timeout_seconds": ClientSettings("", "").timeout, "max_retries": ClientSettings("", "").max_retries,
    "backoff_seconds": ClientSettings("", "").backoff, "max_backoff_seconds": ClientSettings("", "").max_backoff,
    "page_size": ClientSettings("", "").page_size, "user_agent": ClientSettings("", "").user_agent,
    "incremental": True, "allow_insecure_loopback": False,
}


def example_section() -> str:
    """The commented ``[sources.arbor]`` lines of the example configuration, uncommented."""
    text = (ROOT / "config" / "cme-batch.example.toml").read_text(encoding="utf-8")
    lines = text[text.index("# [sources.arbor]"):].splitlines()
    out = []
    for line in lines:
        if not line.startswith("#"):
            break
        out.append(line[2:] if line.startswith("# ") else "")
    return "\n".join(out)


def readme_section() -> str:
    text = (ROOT / "adapters" / "arbor" / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(\[sources\.arbor\].*?)```", text, re.S)
    assert block is not None
    return "\n".join(re.sub(r"^# ", "", line) for line in block.group(1).splitlines())


def keys_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> set[str]:
    """The keys ArborSource.from_config asks its table for."""
    seen: set[str] = set()
    original = Table.unknown_keys

    def record(self: Table) -> None:
        if self.prefix == "sources.arbor":
            seen.update(self._seen)
        original(self)

    monkeypatch.setattr(Table, "unknown_keys", record)
    settings = {"base_url": "https://myschool.uk.arbor.sc", "username": "u", "password": {"env": "X"},
                "tag_flags": {}}  # read only when present
    ArborSource.from_config(SourceConfig("arbor", "arbor", settings, tmp_path))
    return seen | {"adapter"}


@pytest.mark.parametrize("where", ["example", "readme"])
def test_every_key_read_is_documented_with_its_default(where: str, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    section = tomllib.loads(example_section() if where == "example" else readme_section())["sources"]["arbor"]
    assert set(section) == keys_read(monkeypatch, tmp_path)
    for key, default in DEFAULTS.items():
        assert section[key] == default, (where, key)
    # and the documented table builds a source as it stands (the CA file aside: it is the school's own)
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    settings = {k: v for k, v in section.items() if k != "adapter"} | {"ca_bundle": str(ca)}
    source = ArborSource.from_config(SourceConfig("arbor", "arbor", settings, tmp_path))
    assert source.client_settings.base_url == "https://myschool.uk.arbor.sc"
