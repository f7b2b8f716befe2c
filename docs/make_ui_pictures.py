"""Screenshots of `grille ui` for the README: python docs/make_ui_pictures.py

Runs `grille demo` in a temporary folder, starts `grille ui` on it, and has Debian's
chromium (driven by Playwright) take, on a 1366×768 screen, the « Suivi » page
(docs/ui_suivi.png) and the page of the demo's incomplete student (docs/ui_stagiaire.png).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium absent : apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        grille = [sys.executable, "-m", "pipeline"]
        subprocess.run([*grille, "demo", str(root)], check=True, capture_output=True)
        server = subprocess.Popen(
            [*grille, "--dir", str(root), "ui", "--no-browser", "--port", "8799"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert server.stdout is not None
            url = ""
            for line in server.stdout:
                if "?token=" in line:
                    url = line.strip()
                    break
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(url)
                page.goto(re.sub(r"/\?.*$", "/suivi", url))
                page.screenshot(path=DOCS / "ui_suivi.png")
                page.get_by_role("link", name="BERNARD Yanis").click()
                page.wait_for_load_state()
                page.screenshot(path=DOCS / "ui_stagiaire.png")
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    print("écrit : docs/ui_suivi.png, docs/ui_stagiaire.png")


if __name__ == "__main__":
    main()
