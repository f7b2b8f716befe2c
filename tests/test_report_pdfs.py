"""A bilan's PDF is never older than its Word file (issue 12, « Integrity first »).

`grille report` without `--pdf` removes a PDF it has made stale by rewriting its bilan, and
`grille archive` leaves out (or, with `--pdf`, rebuilds) a PDF that was not made from the
Word file beside it: each PDF is recorded with the SHA-256 of the .docx it was made from.
Real LibreOffice, real files; those tests are skipped without soffice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx
import pytest

from pipeline import report_files, state
from tests.test_class_folders import database_before
from tests.test_collect import ROWS, _answers_for
from tests.tutors import fill, make_campaign, run, workbook_of

YEAR = "2026-2027"
CLASS = "BTS 2B"  # one student with a return: two conversions per run
needs_soffice = pytest.mark.skipif(
    shutil.which("soffice") is None, reason="LibreOffice (soffice) absent"
)


def _manifest(zip_path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(zip_path) as package:
        manifest: dict[str, Any] = json.loads(package.read("manifeste.json"))
    return manifest


def _pdf_text(data: bytes, tmp_path: Path) -> str:
    source = tmp_path / "lu.pdf"
    source.write_bytes(data)
    return subprocess.run(
        ["pdftotext", str(source), "-"], check=True, capture_output=True, text=True
    ).stdout


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def returned(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    """Da Silva (BTS 2B) returned a complete workbook."""
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    fill(workbook_of(root, "Da Silva"), tmp_path / "r1" / "d.xlsx", _answers_for("Julien Lemaître"))
    assert run(root, "collect", str(tmp_path / "r1")).exit_code == 0
    return root


@pytest.fixture
def campaign(returned: Path) -> Path:
    """… and his bilans were written with their PDF (needs LibreOffice)."""
    result = run(returned, "report", "--pdf", "--class", CLASS)
    assert result.exit_code == 0, result.output
    return returned


def _corrected_return(root: Path, tmp_path: Path) -> None:
    """The tutor sends a corrected workbook: Da Silva's bilan changes."""
    fill(
        workbook_of(root, "Da Silva"),
        tmp_path / "r2" / "d.xlsx",
        _answers_for("Julien Lemaître", appreciation="Appréciation corrigée par le tuteur."),
    )
    assert run(root, "collect", str(tmp_path / "r2")).exit_code == 0


def _processes(marker: str) -> list[str]:
    """The command lines of the live processes that contain `marker`."""
    listing = subprocess.run(["ps", "-ww", "-eo", "stat=,args="], capture_output=True, text=True)
    return [
        line
        for line in listing.stdout.splitlines()
        if marker in line and not line.lstrip().startswith("Z")
    ]


def test_report_pdf__without_libreoffice__french_warning_and_the_word_bilans(
    returned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "sans_libreoffice"))

    result = run(returned, "report", "--pdf", "--class", CLASS)

    assert result.exit_code == 0, result.output
    assert (
        "Attention — PDF non produits : LibreOffice (soffice) n'est pas installé. Installez-le "
        "(https://fr.libreoffice.org) ou ouvrez les bilans dans Word › Enregistrer en PDF.\n"
    ) in result.output
    assert len(list(_folder(returned).glob("*.docx"))) == 2
    assert list(_folder(returned).glob("*.pdf")) == []


@pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")
def test_report_pdf__libreoffice_past_its_time__stopped_with_every_process_it_started(
    returned: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The former runner, on timeout, killed only the launcher: the processes it had started
    lived on (here `sleep 47.25`; with LibreOffice, soffice.bin)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "soffice"  # starts a child, then hangs: as a stuck LibreOffice
    stand_in.write_text("#!/bin/sh\nsleep 47.25 &\nexec sleep 48.25\n")
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(report_files, "PDF_TIMEOUT", 1.0)
    monkeypatch.setattr(report_files, "PDF_TIMEOUT_PER_FILE", 0.0)

    started = time.monotonic()
    result = run(returned, "report", "--pdf", "--class", CLASS)

    assert time.monotonic() - started < 30  # nor waiting for them
    assert result.exit_code == 0, result.output
    assert (
        "Attention — PDF non produits : LibreOffice n'a pas fini la conversion en 1 s : "
        "arrêtée (fichier trop lourd ou piégé ?).\n"
    ) in result.output
    assert _processes("sleep 47.25") == _processes("sleep 48.25") == []
    assert list(_folder(returned).glob("*.pdf")) == []


def _folder(root: Path) -> Path:
    return root / "output" / "rapports" / "BTS_2B"


@pytest.mark.soffice
@needs_soffice
def test_report_without_pdf__bilan_changed__the_stale_pdf_is_removed_and_never_archived(
    campaign: Path, tmp_path: Path
) -> None:
    student_pdf = next(_folder(campaign).glob("bilan_DA_SILVA_*.pdf"))
    class_pdf = _folder(campaign) / "bilan_classe_BTS_2B.pdf"
    assert student_pdf.is_file() and class_pdf.is_file()
    _corrected_return(campaign, tmp_path)

    result = run(campaign, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    assert not student_pdf.exists() and not class_pdf.exists()
    for pdf in (student_pdf, class_pdf):
        assert (
            f"  PDF supprimé : {pdf.relative_to(campaign).as_posix()} : il ne correspond plus "
            "au bilan Word réécrit ; « grille report --pdf » le refait.\n"
        ) in result.output
    archived = run(campaign, "archive", "--year", YEAR, "--class", CLASS)
    assert archived.exit_code == 0, archived.output
    kinds = [
        i["kind"] for i in _manifest(campaign / "output/archive" / YEAR / "BTS_2B.zip")["files"]
    ]
    assert "pdf" not in kinds and kinds.count("bilan") == 1


@pytest.mark.soffice
@needs_soffice
def test_report_without_pdf__stale_pdf_replaced_by_the_teacher__kept_but_never_archived(
    campaign: Path, tmp_path: Path
) -> None:
    student_pdf = next(_folder(campaign).glob("bilan_DA_SILVA_*.pdf"))
    theirs = b"%PDF-1.7 exported from Word by the teacher"
    student_pdf.write_bytes(theirs)
    _corrected_return(campaign, tmp_path)

    result = run(campaign, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    assert (
        f"  Attention — {student_pdf.relative_to(campaign).as_posix()} ne correspond plus au "
        "bilan Word réécrit et a été modifié hors de grille : conservé tel quel, mais plus "
        "archivé ; « grille report --pdf » le remplacerait par le PDF du bilan Word.\n"
    ) in result.output
    assert student_pdf.read_bytes() == theirs
    assert run(campaign, "archive", "--year", YEAR, "--class", CLASS).exit_code == 0
    kinds = [
        i["kind"] for i in _manifest(campaign / "output/archive" / YEAR / "BTS_2B.zip")["files"]
    ]
    assert "pdf" not in kinds


@pytest.mark.soffice
@needs_soffice
def test_report_without_pdf__bilan_unchanged__its_pdf_is_kept_and_archived(
    campaign: Path,
) -> None:
    pdfs = {path: _sha(path) for path in _folder(campaign).glob("*.pdf")}
    assert len(pdfs) == 2

    result = run(campaign, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    assert "PDF supprimé" not in result.output
    assert {path: _sha(path) for path in _folder(campaign).glob("*.pdf")} == pdfs
    assert run(campaign, "archive", "--year", YEAR, "--class", CLASS).exit_code == 0
    kinds = [
        i["kind"] for i in _manifest(campaign / "output/archive" / YEAR / "BTS_2B.zip")["files"]
    ]
    assert kinds.count("pdf") == 2


@pytest.mark.soffice
@needs_soffice
def test_archive__bilan_edited_after_its_pdf__pdf_left_out__then_rebuilt_with_pdf_option(
    campaign: Path, tmp_path: Path
) -> None:
    bilan = next(_folder(campaign).glob("bilan_DA_SILVA_*.docx"))
    edited = docx.Document(str(bilan))
    edited.add_paragraph("Visa du professeur : stage validé.")
    edited.save(str(bilan))  # the teacher edits the bilan in Word; its PDF is now older

    plain = run(campaign, "archive", "--year", YEAR, "--class", CLASS)

    assert plain.exit_code == 0, plain.output
    assert (
        f"Attention — {bilan.with_suffix('.pdf').name} : PDF plus ancien que son bilan Word "
        f"({bilan.name} a changé depuis) : laissé hors de l'archive ; "
        "« grille archive --pdf » le refait.\n"
    ) in plain.output
    files = _manifest(campaign / "output/archive" / YEAR / "BTS_2B.zip")["files"]
    assert sorted(i["path"] for i in files if i["kind"] == "pdf") == [
        "rapports/bilan_classe_BTS_2B.pdf"
    ]

    rebuilt = run(campaign, "archive", "--year", YEAR, "--class", CLASS, "--pdf")

    assert rebuilt.exit_code == 0, rebuilt.output
    assert "Attention" not in rebuilt.output
    zip_path = campaign / "output/archive" / YEAR / "BTS_2B_v2.zip"
    pdfs = sorted(i["path"] for i in _manifest(zip_path)["files"] if i["kind"] == "pdf")
    assert pdfs == sorted(["rapports/bilan_classe_BTS_2B.pdf", f"rapports/{bilan.stem}.pdf"])
    if shutil.which("pdftotext"):
        with zipfile.ZipFile(zip_path) as package:
            text = _pdf_text(package.read(f"rapports/{bilan.stem}.pdf"), tmp_path)
        assert "Visa du professeur : stage validé." in text
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        (source,) = db.execute(
            "SELECT source_sha256 FROM reports WHERE file = ?",
            (bilan.with_suffix(".pdf").relative_to(campaign).as_posix(),),
        ).fetchone()
    assert source == _sha(bilan)


def test_migration_011__a_pdf_recorded_before__gets_its_docx_sha_only_if_made_after_it(
    tmp_path: Path,
) -> None:
    """PDFs recorded before 011: made from their .docx as it was when they were recorded."""
    db = database_before(tmp_path / "grille.sqlite", "011")
    folder = "output/rapports/BTS_2A"
    for file, sha, written_at in (
        ("bilan_A.docx", "sha-a", "2027-03-01 10:00:00"),
        ("bilan_A.pdf", "pdf-a", "2027-03-01 10:00:04"),  # made right after its .docx
        ("bilan_B.docx", "sha-b2", "2027-03-02 09:00:00"),  # rewritten after its PDF
        ("bilan_B.pdf", "pdf-b", "2027-03-01 10:00:04"),
        ("bilan_C.pdf", "pdf-c", "2027-03-01 10:00:04"),  # no .docx recorded
    ):
        db.execute(
            "INSERT INTO reports (file, sha256, written_at, class_name) VALUES (?, ?, ?, 'BTS 2A')",
            (f"{folder}/{file}", sha, written_at),
        )
    db.close()

    migrated = state.connect(tmp_path / "grille.sqlite")

    sources = dict(migrated.execute("SELECT file, source_sha256 FROM reports").fetchall())
    migrated.close()
    assert sources == {
        f"{folder}/bilan_A.docx": None,
        f"{folder}/bilan_A.pdf": "sha-a",
        f"{folder}/bilan_B.docx": None,
        f"{folder}/bilan_B.pdf": None,
        f"{folder}/bilan_C.pdf": None,
    }
