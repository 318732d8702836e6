"""Make docs/summary.png and docs/digest.png: the morning emails of the demo school in headless Chromium.

Run from the project root: ``.venv/bin/python docs/make_mail_screenshots.py``. Everything shown
is the fictional demo school. The page is 420 pixels wide, as on a phone.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("cme-batch"))


def render(config: Path, folder: Path) -> None:
    """The emails as the demo's morning run (06:30 on 20 December 2025) would have written them."""
    from cme_batch.app import App
    from cme_batch.mail import outbox
    from cme_batch.morning import documents, queue
    from cme_batch.morning.facts import gather
    from cme_batch.replies import process
    from cme_batch.report import render_html

    day = date(2025, 12, 19)
    app = App(str(config), clock=lambda: datetime(2025, 12, 20, 6, 30, tzinfo=UTC))
    with app.engine().connect() as conn:
        facts = gather(conn, app.config, day, app.now(), queue.calendar_for(app.config, day),
                             outbox.problems(conn, include_reported=False), process.pending_review(conn))
    folder.mkdir()
    (folder / "summary.html").write_text(render_html(documents.office_document(facts)), encoding="utf-8")
    (folder / "digest.html").write_text(render_html(documents.dsl_document(facts)), encoding="utf-8")


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (Debian package chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([CLI, "demo", "--dir", str(work / "demo")], check=True, capture_output=True)
        render(work / "demo" / "cme-batch.toml", work / "preview")
        for name, height in (("summary", 2600), ("digest", 4200)):
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                            f"--user-data-dir={work / 'profile'}", f"--screenshot={ROOT / 'docs' / (name + '.png')}",
                            f"--window-size=420,{height}", (work / "preview" / f"{name}.html").as_uri()],
                           check=True, capture_output=True, timeout=120)
            print(f"wrote docs/{name}.png")


if __name__ == "__main__":
    main()
