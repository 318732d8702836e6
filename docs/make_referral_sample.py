"""Regenerate the fictional referral sample in docs/referral-sample/.

Run from the project root:  PYTHONPATH=. .venv/bin/python docs/make_referral_sample.py
It builds a throwaway SQLite store holding the fictional family of the tests
(tests/referral_support.py: every name, number and address is invented), builds the referral
bundle of its case, and writes the JSON, the PDF, the covering note and one PNG per PDF page
(rendered with poppler's pdftoppm).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cme_batch import config as config_mod
from cme_batch.referral.bundle import build_bundle
from cme_batch.store import migrate, open_store
from tests.conftest import write_config
from tests.referral_support import NOW, seed_case

OUT = Path(__file__).with_name("referral-sample")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'sample.sqlite'}"
        engine = open_store(url)
        migrate(engine)
        case_id = seed_case(engine)
        cfg = config_mod.load(write_config(Path(tmp), url))
        with engine.connect() as conn:
            bundle = build_bundle(conn, case_id, cfg, NOW)
        engine.dispose()
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("referral-page-*.png"):
        old.unlink()
    (OUT / "referral.json").write_bytes(bundle.json)
    (OUT / "referral.pdf").write_bytes(bundle.pdf)
    (OUT / "covering-note.txt").write_text(bundle.note, encoding="utf-8")
    subprocess.run(["pdftoppm", "-png", "-r", "70", str(OUT / "referral.pdf"), str(OUT / "referral-page")],
                   check=True)
    print(f"wrote {', '.join(sorted(p.name for p in OUT.iterdir()))} to {OUT}")


if __name__ == "__main__":
    main()
