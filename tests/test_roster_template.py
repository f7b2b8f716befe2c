"""The roster template `grille init` writes: read back, in French, with Excel's checks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pipeline.roster import MAX_DATA_ROWS, REQUIRED_HEADERS, ROSTER_COLUMNS, read_roster
from pipeline.roster_template import RosterTemplateError, write_roster_template


def test_template__read_back_unchanged__no_student_and_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "modele.xlsx"
    write_roster_template(path)

    result = read_roster(path)

    assert result.students == []
    assert [(p.row, p.column, p.code, p.severity) for p in result.problems] == [
        (2, "Nom", "example_row", "warning")
    ]
    assert result.valid
    assert [p.name for p in tmp_path.iterdir()] == ["modele.xlsx"]


def test_template__example_row_replaced__student_read(tmp_path: Path) -> None:
    path = tmp_path / "modele.xlsx"
    write_roster_template(path)
    workbook = load_workbook(path)
    workbook["Stagiaires"]["A2"] = "Dupont"
    workbook.save(path)

    result = read_roster(path)

    assert result.problems == []
    assert [(s.display_name, s.start) for s in result.students] == [
        ("DUPONT Camille", date(2027, 1, 4))
    ]


def test_template__headers_and_sheets__in_french(tmp_path: Path) -> None:
    path = tmp_path / "modele.xlsx"
    write_roster_template(path)

    workbook = load_workbook(path)
    sheet = workbook["Stagiaires"]

    assert workbook.sheetnames == ["Stagiaires", "Instructions"]
    assert [c.value for c in sheet[1]] == [c.header for c in ROSTER_COLUMNS]
    assert all(c.font.b for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert (sheet["G2"].number_format, sheet["H2"].number_format) == ("DD/MM/YYYY",) * 2
    assert sheet.max_row == 2
    instructions = " ".join(
        str(v) for row in workbook["Instructions"].iter_rows(values_only=True) for v in row if v
    )
    assert "EXEMPLE" in instructions
    assert "CSV" in instructions
    assert all(header in instructions for header in REQUIRED_HEADERS)
    assert MAX_DATA_ROWS == 100_000
    assert "Jusqu'à 100\u00a0000 stagiaires. Une liste répartie en plusieurs fichiers" in (
        instructions
    )
    assert "au plus par fichier" not in instructions


def test_template__data_validations__on_email_and_date_columns(tmp_path: Path) -> None:
    path = tmp_path / "modele.xlsx"
    write_roster_template(path)

    sheet = load_workbook(path)["Stagiaires"]
    validations = sorted(
        (str(v.sqref), v.type, v.operator, v.prompt) for v in sheet.data_validations.dataValidation
    )

    assert validations == [
        (
            "F2:F100001",
            "custom",
            None,
            "Une seule adresse par cellule (exemple : prenom.nom@entreprise.fr).",
        ),
        ("G2:G100001 H2:H100001", "date", "between", "Date au format jj/mm/aaaa"),
        (
            "J2:J100001",
            "custom",
            None,
            "Une seule adresse par cellule (exemple : prenom.nom@entreprise.fr).",
        ),
    ]
    email = next(v for v in sheet.data_validations.dataValidation if str(v.sqref) == "F2:F100001")
    assert 'ISNUMBER(SEARCH("@",F2))' in email.formula1
    assert email.error.startswith("Une seule adresse par cellule")


def test_template__unwritable_folder__french_error(tmp_path: Path) -> None:
    (tmp_path / "fichier").write_text("pas un dossier")

    with pytest.raises(RosterTemplateError, match="écriture impossible"):
        write_roster_template(tmp_path / "fichier" / "modele.xlsx")
