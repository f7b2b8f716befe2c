"""Screenshots of `grille ui` for the README: python docs/make_ui_pictures.py

Runs `grille demo` in a temporary folder, starts `grille ui` on it, and has Debian's
chromium (driven by Playwright) take, on a 1366×768 screen, the main pages of the
interface: docs/ui_<page>.png for each page of `PAGES`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from pipeline.demo import DemoStudent, simulate_tutors
from pipeline.grid import load_grid

DOCS = Path(__file__).resolve().parent


def _student(page: Page, root: Path) -> None:
    """From the table, the demo's incomplete student."""
    page.get_by_role("link", name="BERNARD Yanis").click()
    page.wait_for_url("**/stagiaire/**")


def _drop(page: Page, root: Path) -> None:
    """The two tutors who had not answered yet do (one complete, one incomplete), dropped
    with two answers already read: one line per file, once read."""
    answered = root / "reponses_tardives"
    late = [
        DemoStudent(name, _workbook(root, stem), tutor, "")
        for name, stem, tutor in (
            ("PETIT Noémie", "PETIT_Noemie", "Marc Dubreuil"),
            ("POIRIER Jade", "POIRIER_Jade", "Aurélie Perrin"),
        )
    ]
    simulate_tutors(load_grid(), late, answered, date.today(), "")
    simulated = root / "retours_simules"
    files = [
        *sorted(answered.iterdir()),
        simulated / "ABADIE_Chloe_E078cc8b7.xlsx",
        simulated / "reponse_du_tuteur.eml",
    ]
    page.get_by_label("Glissez les fichiers ici, ou choisissez-les").set_input_files(files)
    page.get_by_role("button", name="Lire les fichiers").click()
    page.wait_for_url("**/travail/*")
    page.get_by_role("link", name="Continuer").wait_for(timeout=120_000)


def _workbook(root: Path, stem: str) -> Path:
    (found,) = (root / "output" / "classeurs").glob(f"*/{stem}_*.xlsx")
    return found


# (file name, address, what to do once there): in the order of the README
PAGES: list[tuple[str, str, Callable[[Page, Path], None] | None]] = [
    ("ui_accueil.png", "/", None),
    ("ui_suivi.png", "/suivi", None),
    ("ui_stagiaire.png", "/suivi", _student),
    ("ui_envoi.png", "/envoi?renvoyer=oui", None),  # the cards, as before the first sending
    ("ui_bilans.png", "/bilans", None),
    ("ui_archive.png", "/archive", None),
    ("ui_retours.png", "/retours", _drop),  # last: it changes the campaign
]


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
            base = re.sub(r"/\?.*$", "", url)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(url)  # the token, exchanged for the cookie
                for name, address, action in PAGES:
                    page.goto(base + address)
                    if action is not None:
                        action(page, root)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=DOCS / name)
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    print("écrit : " + ", ".join(f"docs/{name}" for name, _, _ in PAGES))


if __name__ == "__main__":
    main()
