"""A bilan's PDF is never older than its Word file (issue 12, « Integrity first »).

`grille report` without `--pdf` removes a PDF it has made stale by rewriting its bilan, and
`grille archive` leaves out (or, with `--pdf`, rebuilds) a PDF that was not made from the
Word file beside it: each PDF is recorded with the SHA-256 of the .docx it was made from.
Real LibreOffice, real files; skipped without soffice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx
import pytest

from tests.test_collect import ROWS, _answers_for
from tests.tutors import fill, make_campaign, run, workbook_of

pytestmark = [
    pytest.mark.soffice,
    pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent"),
]

YEAR = "2026-2027"
CLASS = "BTS 2B"  # one student with a return: two conversions per run


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
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    """Da Silva (BTS 2B) returned a complete workbook; his bilans were written with PDFs."""
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    fill(workbook_of(root, "Da Silva"), tmp_path / "r1" / "d.xlsx", _answers_for("Julien Lemaître"))
    assert run(root, "collect", str(tmp_path / "r1")).exit_code == 0
    result = run(root, "report", "--pdf", "--class", CLASS)
    assert result.exit_code == 0, result.output
    return root


def _folder(root: Path) -> Path:
    return root / "output" / "rapports" / "BTS_2B"


def test_report_without_pdf__bilan_changed__the_stale_pdf_is_removed_and_never_archived(
    campaign: Path, tmp_path: Path
) -> None:
    student_pdf = next(_folder(campaign).glob("bilan_DA_SILVA_*.pdf"))
    class_pdf = _folder(campaign) / "bilan_classe_BTS_2B.pdf"
    assert student_pdf.is_file() and class_pdf.is_file()
    fill(  # the tutor sends a corrected workbook: the bilan changes
        workbook_of(campaign, "Da Silva"),
        tmp_path / "r2" / "d.xlsx",
        _answers_for("Julien Lemaître", appreciation="Appréciation corrigée par le tuteur."),
    )
    assert run(campaign, "collect", str(tmp_path / "r2")).exit_code == 0

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
