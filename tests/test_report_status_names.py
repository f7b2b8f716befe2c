"""A student's bilan carries its status in its name (`bilan_NOM_Prenom_id_INCOMPLET.docx`),
and a status that changes between two `grille report` runs never leaves the old bilan
behind as a second, contradictory one (unless the teacher edited it: then it is kept,
and the teacher is told). Real campaign, real workbooks filled by openpyxl, real CLI.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import docx
import pytest

from tests.test_collect import ROWS, _answers_for
from tests.tutors import fill, make_campaign, run, workbook_of

YEAR = "2026-2027"
CLASS = "BTS 2B"
BLANKS = {"integration.ponctualite": None, "clientele.decouverte": None}
needs_soffice = pytest.mark.skipif(
    shutil.which("soffice") is None, reason="LibreOffice (soffice) absent"
)


def _folder(root: Path) -> Path:
    return root / "output" / "rapports" / "BTS_2B"


def _recorded(root: Path) -> list[str]:
    with sqlite3.connect(root / "output" / "grille.sqlite") as db:
        return [row[0] for row in db.execute("SELECT file FROM reports ORDER BY file")]


def _send(root: Path, tmp_path: Path, run_name: str, **changes: object) -> None:
    """Da Silva's tutor sends a workbook (a later one counts: collected after)."""
    target = tmp_path / run_name / "d.xlsx"
    fill(workbook_of(root, "Da Silva"), target, _answers_for("Julien Lemaître", **changes))
    result = run(root, "collect", str(target.parent))
    assert result.exit_code == 0, result.output


@pytest.fixture
def incomplete(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    """Da Silva's tutor left two criteria blank; his bilan was written."""
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    _send(root, tmp_path, "r1", **BLANKS)
    result = run(root, "report", "--class", CLASS)
    assert result.exit_code == 0, result.output
    return root


def test_report__incomplete_return__the_file_name_says_incomplet(incomplete: Path) -> None:
    names = sorted(p.name for p in _folder(incomplete).glob("bilan_DA_SILVA_*.docx"))

    assert len(names) == 1 and names[0].endswith("_INCOMPLET.docx"), names


def test_report__invalid_return__the_file_name_says_invalide(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    _send(root, tmp_path, "r1", **{"integration.ponctualite": "Bien"})

    result = run(root, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    names = [p.name for p in _folder(root).glob("bilan_DA_SILVA_*.docx")]
    assert len(names) == 1 and names[0].endswith("_INVALIDE.docx"), names
    assert f"écrit : output/rapports/BTS_2B/{names[0]}" in result.output


def test_report__status_became_complete__grilles_old_bilan_is_replaced(
    incomplete: Path, tmp_path: Path
) -> None:
    (old,) = _folder(incomplete).glob("bilan_DA_SILVA_*_INCOMPLET.docx")
    _send(incomplete, tmp_path, "r2")

    result = run(incomplete, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    complete = old.with_name(old.name.replace("_INCOMPLET", ""))
    assert complete.is_file() and not old.exists()
    assert sorted(p.name for p in _folder(incomplete).glob("bilan_DA_SILVA_*")) == [complete.name]
    assert f"  remplacé : {old.relative_to(incomplete).as_posix()}" in result.output
    assert old.relative_to(incomplete).as_posix() not in _recorded(incomplete)
    again = run(incomplete, "report", "--class", CLASS)  # idempotent: nothing more to say
    assert again.exit_code == 0 and "remplacé" not in again.output
    archived = run(incomplete, "archive", "--year", YEAR, "--class", CLASS)
    assert archived.exit_code == 0, archived.output
    with zipfile.ZipFile(incomplete / "output/archive" / YEAR / "BTS_2B.zip") as package:
        manifest = json.loads(package.read("manifeste.json"))
    bilans = [i["path"] for i in manifest["files"] if i["kind"] == "bilan"]
    assert bilans == [f"rapports/{complete.name}"]


def test_report__status_changed_but_the_old_bilan_was_edited__kept_and_said(
    incomplete: Path, tmp_path: Path
) -> None:
    (old,) = _folder(incomplete).glob("bilan_DA_SILVA_*_INCOMPLET.docx")
    document = docx.Document(str(old))
    document.add_paragraph("Remarque du professeur : relancer le tuteur.")
    document.save(str(old))
    edited = old.read_bytes()
    _send(incomplete, tmp_path, "r2", **{"integration.ponctualite": "Bien"})  # now invalid

    result = run(incomplete, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    new = old.with_name(old.name.replace("_INCOMPLET", "_INVALIDE"))
    assert new.is_file() and old.read_bytes() == edited
    assert (
        f"  Attention — {old.relative_to(incomplete).as_posix()} a été modifié à la main : "
        f"conservé, mais il ne correspond plus au statut du stagiaire (invalide) ; le bilan "
        f"à jour est {new.name}. Supprimez l'ancien s'il ne sert plus."
    ) in result.output


def _archived_bilans(root: Path) -> list[str]:
    archives = sorted((root / "output" / "archive" / YEAR).glob("BTS_2B*.zip"))
    with zipfile.ZipFile(archives[-1]) as package:
        manifest = json.loads(package.read("manifeste.json"))
    return sorted(i["path"] for i in manifest["files"] if i["kind"] in ("bilan", "pdf"))


def test_archive__an_edited_bilan_of_an_earlier_status__left_out_and_said(
    incomplete: Path, tmp_path: Path
) -> None:
    """`report` keeps the bilan the teacher edited under the old status; the archive the
    jury reads holds only the bilan of the student's current status."""
    (old,) = _folder(incomplete).glob("bilan_DA_SILVA_*_INCOMPLET.docx")
    document = docx.Document(str(old))
    document.add_paragraph("Remarque du professeur : relancer le tuteur.")
    document.save(str(old))
    _send(incomplete, tmp_path, "r2", **{"integration.ponctualite": "Bien"})  # now invalid
    assert run(incomplete, "report", "--class", CLASS).exit_code == 0
    new = old.with_name(old.name.replace("_INCOMPLET", "_INVALIDE"))

    archived = run(incomplete, "archive", "--year", YEAR, "--class", CLASS)

    assert archived.exit_code == 0, archived.output
    bilans = _archived_bilans(incomplete)
    assert f"rapports/{new.name}" in bilans and f"rapports/{old.name}" not in bilans
    assert (
        f"Attention — {old.name} : écrit quand le retour était « incomplet », ce qu'il "
        f"n'est plus : laissé hors de l'archive ; le bilan à jour est {new.name} : "
        "reportez-y ce que vous aviez modifié à la main s'il le faut, puis archivez de "
        "nouveau."
    ) in archived.output
    assert old.is_file()  # the teacher's file stays where it is


def test_archive__bilans_not_written_again_since_the_status_changed__left_out_and_said(
    incomplete: Path, tmp_path: Path
) -> None:
    (old,) = _folder(incomplete).glob("bilan_DA_SILVA_*_INCOMPLET.docx")
    _send(incomplete, tmp_path, "r2")  # now complete, and `report` not run again

    archived = run(incomplete, "archive", "--year", YEAR, "--class", CLASS)

    assert archived.exit_code == 0, archived.output
    assert f"rapports/{old.name}" not in _archived_bilans(incomplete)
    assert (
        f"{old.name} : écrit quand le retour était « incomplet », ce qu'il n'est plus : "
        "laissé hors de l'archive ; refaites les bilans (« grille report »), puis archivez "
        "de nouveau."
    ) in archived.output


def test_rebuild__bilans_named_with_their_status__recognised_as_grilles(
    incomplete: Path, tmp_path: Path
) -> None:
    (bilan,) = _folder(incomplete).glob("bilan_DA_SILVA_*_INCOMPLET.docx")
    for path in (incomplete / "output").glob("grille.sqlite*"):
        path.unlink()
    shutil.rmtree(incomplete / "output" / ".sauvegardes", ignore_errors=True)

    result = run(incomplete, "rebuild", "--roster", str(incomplete / "liste.csv"))

    assert result.exit_code == 0, result.output
    assert bilan.relative_to(incomplete).as_posix() in _recorded(incomplete)
    assert "bilan d'un stagiaire inconnu" not in result.output


@pytest.mark.soffice
@needs_soffice
def test_report__status_became_complete__the_old_bilans_pdf_goes_too(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    _send(root, tmp_path, "r1", **BLANKS)
    assert run(root, "report", "--pdf", "--class", CLASS).exit_code == 0
    (old_pdf,) = _folder(root).glob("bilan_DA_SILVA_*_INCOMPLET.pdf")
    text = subprocess.run(
        ["pdftotext", str(old_pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert "BILAN INCOMPLET" in text
    _send(root, tmp_path, "r2")

    result = run(root, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    assert not old_pdf.exists()
    assert sorted(p.suffix for p in _folder(root).glob("bilan_DA_SILVA_*")) == [".docx"]
    assert old_pdf.relative_to(root).as_posix() not in _recorded(root)


def _document_text(path: Path) -> str:
    """Every paragraph and table cell of a .docx, one per line."""
    document = docx.Document(str(path))
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.extend(cell.text for cell in row.cells)
    return "\n".join(lines)


def test_report__the_bilan_names_the_original_return_its_date_and_sha256(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    sent = tmp_path / "r1" / "Grille Da Silva (1).xlsx"
    fill(workbook_of(root, "Da Silva"), sent, _answers_for("Julien Lemaître"))
    digest = hashlib.sha256(sent.read_bytes()).hexdigest()
    assert run(root, "collect", str(sent.parent)).exit_code == 0

    result = run(root, "report", "--class", CLASS)

    assert result.exit_code == 0, result.output
    (bilan,) = _folder(root).glob("bilan_DA_SILVA_*.docx")
    text = _document_text(bilan)
    today = date.today().strftime("%d/%m/%Y")
    assert "Classeur retourné" in text
    assert f"« Grille Da Silva (1).xlsx », reçu le {today}" in text
    assert "Empreinte SHA-256" in text and digest in text
