"""A whole internship season played in a real Chromium, as a teacher would, on a real
`grille ui` process started on an empty folder: create the campaign, upload the roster,
generate, prepare and download the messages, drop the tutors' returns, read the statuses,
type the team's appreciation, write the reports, archive, verify the archive.

Playwright drives Debian's chromium (`executable_path`): the test skips, saying why, when
either is absent. Every wait is on an event (a URL, an element), never on a delay.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pytest

from tests.hostile import mail
from tests.tutors import (
    DAY,
    LAYOUT,
    ROSTER_HEADER,
    complete_answers,
    fill,
    roster_rows,
    workbook_of,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STUDENTS = ["Abadie", "Bernard", "Chevallier", "Da Silva"]  # 3 tutors: Garnier has two
APPRECIATION = "Stage réussi malgré une grille mal remplie : à revoir avec le tuteur."
JOB_TIMEOUT = 180_000  # ms: generous, the machine is shared; the wait ends on the event


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _address(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """The address with its token, as `grille ui` prints it."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
        if found:
            return found.group(0)
    raise AssertionError(f"no address printed: {seen}")


def _answers(tutor: str, **changes: Any) -> dict[str, Any]:
    answers = complete_answers()
    answers.update(signature=tutor, date=DAY)
    answers.update(changes)
    return answers


def _roster(path: Path) -> Path:
    """The roster a teacher types in Excel: real dates in the date columns."""
    wb = openpyxl.Workbook()
    sheet = wb.active
    assert sheet is not None
    sheet.append(ROSTER_HEADER)
    for row in roster_rows(*STUDENTS):
        day, month, year = (int(part) for part in row[6].split("/"))
        end_day, end_month, end_year = (int(part) for part in row[7].split("/"))
        sheet.append([*row[:6], date(year, month, day), date(end_year, end_month, end_day)])
    wb.save(path)
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """`grille ui` on an empty folder, as a real process: (process, address, folder)."""
    folder = tmp_path / "stages"
    folder.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ui", "--dir", str(folder), "--no-browser",
         "--port", str(_free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        yield process, _address(process), folder
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_job(page: Any, expect: Any) -> str:
    """On a job's page (/travail/N), wait for its end; the text of its outcome."""
    page.wait_for_url("**/travail/*")
    state = page.locator("#etat-travail")
    expect(state.get_by_role("link", name="Continuer")).to_be_visible(timeout=JOB_TIMEOUT)
    text = str(state.inner_text())
    assert "Terminé en" in text, text
    return text


def _row_of(page: Any, name: str) -> str:
    return str(page.get_by_role("row").filter(has_text=name).inner_text())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium absent (apt-get install chromium)")
def test_browser__a_whole_season__campaign_roster_generate_mails_returns_follow_up_reports_archive(
    server: tuple[subprocess.Popen[str], str, Path], tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright absent")
    expect = playwright_api.expect
    process, address, root = server
    errors: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                viewport={"width": 1366, "height": 768}, accept_downloads=True
            )
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(address)
            assert "token=" not in page.url

            # 1. Campagne: create it in the (empty) folder the interface was started on
            page.get_by_role("link", name="Campagne", exact=True).click()
            page.wait_for_url("**/campagne")
            expect(page.get_by_text("Aucune campagne dans le dossier")).to_be_visible()
            expect(page.get_by_label("Dossier de la campagne", exact=True)).to_have_value(str(root))
            page.get_by_label("Établissement").fill("Lycée Jean Moulin")
            page.get_by_label("Classe ou session").fill("BTS MCO 2027")
            page.get_by_label("Année scolaire").fill("2026-2027")
            page.get_by_label("Nom du professeur coordinateur").fill("Claire Martin")
            page.get_by_label("E-mail du professeur").fill("claire.martin@lycee.example")
            page.get_by_label("Date limite de retour").fill("2027-03-15")
            page.get_by_role("button", name="Créer la campagne").click()
            page.wait_for_url("**/campagne?avis=*")
            expect(page.get_by_text(f"Campagne créée dans « {root} »")).to_be_visible()
            config = (root / "grille.toml").read_text(encoding="utf-8")
            assert "Lycée Jean Moulin" in config and "claire.martin@lycee.example" in config

            # 2. Stagiaires: upload the roster made in "Excel"
            page.get_by_role("link", name="Stagiaires", exact=True).click()
            page.wait_for_url("**/stagiaires")
            page.get_by_label("Fichier de la liste (.xlsx ou .csv)").set_input_files(
                _roster(tmp_path / "ma liste.xlsx")
            )
            page.get_by_role("button", name="Vérifier et enregistrer la liste").click()
            page.wait_for_url("**/stagiaires?avis=*")
            students = page.get_by_role("table").filter(has_text="Entreprise")
            expect(students.get_by_role("row")).to_have_count(1 + len(STUDENTS))
            expect(students).to_contain_text("Banque Solvéa")

            # 3. Classeurs: generate, follow the job to its end
            page.get_by_role("link", name="Classeurs", exact=True).click()
            page.wait_for_url("**/classeurs")
            page.get_by_role("button", name="Générer les classeurs").click()
            _wait_job(page, expect)
            for name in STUDENTS:
                book = openpyxl.load_workbook(workbook_of(root, name))
                assert "_grille" in book.sheetnames  # a real, signed workbook
            page.get_by_role("link", name="Continuer").click()
            page.wait_for_url("**/classeurs")
            expect(page.get_by_text("Classeurs par classe (4)")).to_be_visible()

            # 4. Envoi: prepare the .eml files, download them as one .zip
            page.get_by_role("link", name="Envoi", exact=True).click()
            page.wait_for_url("**/envoi")
            expect(page.get_by_role("heading", name="3 message(s) à envoyer")).to_be_visible()
            page.get_by_role("button", name="Préparer les messages (.eml, dans un .zip)").click()
            _wait_job(page, expect)
            page.goto(address.split("?")[0] + "envoi")
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Tout télécharger (.zip)").click()
            messages = tmp_path / "messages.zip"
            download_info.value.save_as(messages)
            with zipfile.ZipFile(messages) as archive:
                emls = [n for n in archive.namelist() if n.endswith(".eml")]
                assert len(emls) == 3, archive.namelist()  # one per tutor
                bodies = b"".join(archive.read(n) for n in emls)
            for tutor in ("sg@horizon.example", "md@solvea.example", "jl@quartz.example"):
                assert tutor.encode() in bodies

            # 5. Retours: the tutors' answers, dropped at once
            tutors = tmp_path / "tuteurs"
            complete = fill(workbook_of(root, "Abadie"), tutors / "abadie.xlsx",
                            _answers("Sophie Garnier"))  # fmt: skip
            incomplete = fill(
                workbook_of(root, "Bernard"),
                tutors / "bernard.xlsx",
                _answers("Marc Dubreuil", **{"integration.ponctualite": None}),
            )
            invalid = fill(
                workbook_of(root, "Chevallier"),
                tutors / "chevallier.xlsx",
                _answers("Sophie Garnier", **{"clientele.decouverte": "Bien"}),
            )
            in_mail = fill(workbook_of(root, "Da Silva"), tutors / "dasilva.xlsx",
                           _answers("Julien Lemaître"))  # fmt: skip
            reply = tutors / "réponse de Julien.eml"
            reply.write_bytes(bytes(mail([("grille Da Silva.xlsx", in_mail.read_bytes())])))
            page.get_by_role("link", name="Retours", exact=True).click()
            page.wait_for_url("**/retours")
            page.get_by_label("Glissez les fichiers ici, ou choisissez-les").set_input_files(
                [complete, incomplete, invalid, reply]
            )
            page.get_by_role("button", name="Lire les fichiers").click()
            outcome = _wait_job(page, expect)
            assert "4 retour(s) enregistré(s)" in outcome, outcome
            navigation = page.get_by_role("navigation", name="Navigation principale")
            current = navigation.get_by_role("link", name="Retours", exact=True)
            expect(current).to_have_attribute("aria-current", "page")  # the job's own page

            # 6. Suivi: the status of each student
            page.get_by_role("link", name="Suivi", exact=True).click()
            page.wait_for_url("**/suivi")
            expected = {"ABADIE": "complet", "BERNARD": "incomplet",
                        "CHEVALLIER": "invalide", "DA SILVA": "complet"}  # fmt: skip
            for name, label in expected.items():
                assert re.search(rf"\b{label}\b", _row_of(page, name)), _row_of(page, name)

            # 7. The student with problems: sheet and cell of each; the team's appreciation
            page.get_by_role("link", name="CHEVALLIER Inès").click()
            page.wait_for_url("**/stagiaire/**")
            wrong = LAYOUT.criteria["clientele.decouverte"]
            problems = page.get_by_role("table").filter(has_text="Cellule").first
            problem = problems.get_by_role("row").filter(has_text=wrong.cell)
            expect(problem).to_have_count(1)
            expect(problem).to_contain_text(wrong.sheet)
            page.get_by_label("Appréciation de l'équipe pédagogique").fill(APPRECIATION)
            page.get_by_role("button", name="Enregistrer").click()
            page.wait_for_url("**/stagiaire/*?avis=*")
            expect(page.get_by_text("Appréciation et notes enregistrées.")).to_be_visible()

            # 8. Bilans: written by a job
            page.get_by_role("link", name="Bilans", exact=True).click()
            page.wait_for_url("**/bilans")
            page.get_by_role("button", name="Écrire les bilans").click()
            _wait_job(page, expect)
            page.get_by_role("link", name="Continuer").click()
            page.wait_for_url("**/bilans")
            expect(page.get_by_role("row").filter(has_text="CHEVALLIER")).to_contain_text(".docx")

            # 9. Archive: created by a job, then verified by uploading it
            page.get_by_role("link", name="Archive", exact=True).click()
            page.wait_for_url("**/archive")
            page.get_by_role("button", name="Créer l'archive").click()
            _wait_job(page, expect)
            archives = sorted((root / "output" / "archive").rglob("*.zip"))
            assert [a.name for a in archives] == ["BTS_2A.zip", "BTS_2B.zip"]  # one per class
            page.get_by_role("link", name="Continuer").click()
            page.wait_for_url("**/archive")
            expect(page.get_by_text("pas encore", exact=True)).to_have_count(2)
            page.get_by_label("Archive à vérifier (.zip)").set_input_files(archives[0])
            page.get_by_role("button", name="Vérifier l'archive").click()
            verdict = _wait_job(page, expect)
            assert "Erreur" not in verdict, verdict
            page.get_by_role("link", name="Continuer").click()
            page.wait_for_url("**/archive")
            row = page.get_by_role("row").filter(has_text=archives[0].name)
            expect(row).to_contain_text("oui, le")
            expect(page.get_by_text("pas encore", exact=True)).to_have_count(1)  # BTS 2B
        finally:
            browser.close()
    assert errors == []  # no script error, nothing the CSP blocked

    # the files on disk: the returns, the reports with the team's appreciation, the archive
    reports = sorted((root / "output").rglob("*.docx"))
    chevallier = [r for r in reports if "CHEVALLIER" in r.name.upper()]
    assert chevallier, reports
    body = docx.Document(str(chevallier[0])).element.body
    assert APPRECIATION in "".join(body.itertext())  # in its frame, wherever it is drawn
    with zipfile.ZipFile(archives[0]) as archive:
        assert archive.testzip() is None
        assert any("CHEVALLIER" in n.upper() and n.endswith(".docx") for n in archive.namelist())

    # Ctrl+C: a clean stop
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip().endswith("Interface arrêtée.")
    assert "Traceback" not in err
