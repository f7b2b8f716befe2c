"""The roster template teachers fill: `input_templates/roster.xlsx`, made by `grille init`.

A « Stagiaires » sheet whose header is `roster.ROSTER_COLUMNS` (required columns in dark
blue, a comment on each), one example line `roster.read_roster` ignores, Excel checks on
the e-mail and date cells, and an « Instructions » sheet.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel
from openpyxl.worksheet.datavalidation import DataValidation

from pipeline.errors import GrilleError, french_os_error
from pipeline.files import atomic_save
from pipeline.roster import (
    EXAMPLE_LAST_NAME,
    FIRST_YEAR,
    INSTRUCTIONS_SHEET,
    LAST_YEAR,
    MAX_DATA_ROWS,
    REQUIRED_HEADERS,
    ROSTER_COLUMNS,
    TEMPLATE_SHEET,
)
from pipeline.text import french_count


class RosterTemplateError(GrilleError):
    """The roster template cannot be written (exit code 1: not a fault of a roster)."""


_REQUIRED_FILL = PatternFill("solid", fgColor="1F4E78")
_OPTIONAL_FILL = PatternFill("solid", fgColor="DDEBF7")
_DATE_FORMAT = "DD/MM/YYYY"
_EXAMPLE_ROW: dict[str, Any] = {
    "last_name": EXAMPLE_LAST_NAME,
    "first_name": "Camille",
    "class_name": "BTS MUC 2A",
    "company": "Agence Exemple Immobilier",
    "tutor_name": "Dominique Martin",
    "tutor_email": "dominique.martin@agence-exemple.example",
    "start": date(2027, 1, 4),
    "end": date(2027, 2, 26),
    "student_id": None,
    "student_email": "camille.exemple@lycee.example",
    "tutor_phone": "01 99 00 00 00",
    "referent": "Mme Lambert",
}


def _check(title: str, error: str, prompt: str, **rule: Any) -> DataValidation:
    """An Excel check of the cells (blank allowed): `prompt` shown on entering a cell,
    « `title` invalide » and `error` on a refused value."""
    return DataValidation(
        allow_blank=True,
        showErrorMessage=True,
        errorTitle=f"{title} invalide",
        error=error,
        showInputMessage=True,
        promptTitle=title,
        prompt=prompt,
        **rule,
    )


def build_roster_template() -> Workbook:
    """The roster template: a « Stagiaires » sheet to fill and an « Instructions » sheet.

    Row 1 holds the French headers (required ones in dark blue), row 2 one example line
    (Nom « EXEMPLE ») that `read_roster` ignores with a warning if left in place.
    """
    workbook = Workbook()
    workbook.properties.creator = "grille"
    sheet = workbook.active
    sheet.title = TEMPLATE_SHEET
    last_row = MAX_DATA_ROWS + 1
    letters = {c.key: get_column_letter(i) for i, c in enumerate(ROSTER_COLUMNS, 1)}
    for index, column in enumerate(ROSTER_COLUMNS, 1):
        letter = letters[column.key]
        header = sheet.cell(row=1, column=index, value=column.header)
        header.font = Font(bold=True, color="FFFFFF" if column.required else "1F4E78")
        header.fill = _REQUIRED_FILL if column.required else _OPTIONAL_FILL
        header.alignment = Alignment(vertical="center")
        status = "Obligatoire" if column.required else "Facultatif"
        header.comment = Comment(f"{status} : {column.hint}.", "grille", width=260, height=90)
        dimension = sheet.column_dimensions[letter]
        dimension.width = column.width
        example = sheet.cell(row=2, column=index, value=_EXAMPLE_ROW[column.key])
        if column.key in ("start", "end"):
            dimension.number_format = _DATE_FORMAT
            example.number_format = _DATE_FORMAT
        elif column.key in ("student_id", "tutor_phone"):
            dimension.number_format = "@"  # text: keeps leading zeros
            example.number_format = "@"
    sheet.row_dimensions[1].height = 22
    sheet.freeze_panes = "A2"
    sheet.print_title_rows = "1:1"
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    sheet["A2"].comment = Comment(
        "Ligne d'exemple : remplacez-la par votre premier stagiaire ou supprimez-la. "
        "Laissée telle quelle (Nom EXEMPLE), elle est ignorée.",
        "grille",
        width=260,
        height=90,
    )

    for key in ("tutor_email", "student_email"):
        letter = letters[key]
        top = f"{letter}2"
        validation = _check(
            "Adresse e-mail",
            "Une seule adresse par cellule, sans espace (ex. : prenom.nom@entreprise.fr).",
            "Une seule adresse par cellule (exemple : prenom.nom@entreprise.fr).",
            type="custom",
            formula1=(
                f'AND(ISNUMBER(SEARCH("@",{top})),ISERROR(SEARCH(" ",{top})),'
                f'ISERROR(SEARCH(",",{top})),ISERROR(SEARCH(";",{top})))'
            ),
        )
        validation.add(f"{top}:{letter}{last_row}")
        sheet.add_data_validation(validation)

    dates = _check(
        "Date",
        "Saisissez une date au format jj/mm/aaaa, entre 2000 et 2100 (exemple : 04/01/2027).",
        "Date au format jj/mm/aaaa",
        type="date",
        operator="between",
        formula1=str(int(to_excel(date(FIRST_YEAR, 1, 1)))),
        formula2=str(int(to_excel(date(LAST_YEAR, 12, 31)))),
    )
    for key in ("start", "end"):
        dates.add(f"{letters[key]}2:{letters[key]}{last_row}")
    sheet.add_data_validation(dates)

    _write_instructions(workbook.create_sheet(INSTRUCTIONS_SHEET))
    workbook.active = 0
    return workbook


def _write_instructions(sheet: Any) -> None:
    required = ", ".join(REQUIRED_HEADERS)
    lines: list[tuple[str, ...]] = [
        ("Liste des stagiaires : mode d'emploi",),
        (),
        (f"1. Remplissez la feuille « {TEMPLATE_SHEET} » : une ligne par stagiaire.",),
        (
            "2. La ligne 2 (Nom « EXEMPLE ») est un exemple : remplacez-la par votre premier "
            "stagiaire ou supprimez-la. Laissée telle quelle, elle est ignorée.",
        ),
        (f"3. Colonnes obligatoires (en-têtes bleu foncé) : {required}.",),
        (
            "4. Dates au format jj/mm/aaaa (exemple : 04/01/2027) ; la date de fin doit être "
            "après la date de début.",
        ),
        ("5. Une seule adresse e-mail par cellule, sans espace.",),
        (
            "6. Deux homonymes dans la même classe : remplissez la colonne Identifiant "
            "(un code différent pour chacun, ex. MUC2A-07). Sinon, laissez-la vide.",
        ),
        (
            "7. Ne renommez pas les en-têtes (majuscules et accents sont tolérés) ; les "
            "colonnes supplémentaires sont ignorées.",
        ),
        (
            "8. Un fichier CSV est accepté aussi : séparateur « ; » (ou « , »), encodage UTF-8 "
            "ou Windows, avec la même ligne d'en-tête.",
        ),
        (
            f"9. Jusqu'à {french_count(MAX_DATA_ROWS)} stagiaires. Une liste répartie en "
            "plusieurs fichiers (un par classe, par exemple) se lit en une fois : "
            "grille generate --roster DOSSIER, ou --roster fichier1.xlsx --roster fichier2.csv.",
        ),
        (),
        ("Colonne", "Obligatoire", "À indiquer", "Exemple"),
    ]
    table_header = len(lines)
    lines += [
        (c.header, "oui" if c.required else "non", c.hint[0].upper() + c.hint[1:], c.example)
        for c in ROSTER_COLUMNS
    ]
    for values in lines:
        sheet.append(list(values))
    sheet["A1"].font = Font(bold=True, size=14, color="1F4E78")
    for cell in sheet[table_header]:
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = _REQUIRED_FILL
    for row in range(table_header + 1, table_header + 1 + len(ROSTER_COLUMNS)):
        if sheet.cell(row=row, column=2).value == "oui":
            sheet.cell(row=row, column=1).font = Font(bold=True)
    for letter, width in (("A", 22), ("B", 12), ("C", 70), ("D", 36)):
        sheet.column_dimensions[letter].width = width


def write_roster_template(path: Path) -> None:
    """Write the roster template to `path` (.xlsx) atomically (temp file, then rename).

    Raises `RosterTemplateError` (French) when the file cannot be written.
    """
    path = Path(path)
    workbook = build_roster_template()
    try:
        atomic_save(path, workbook.save)
    except OSError as exc:
        raise RosterTemplateError(
            f"{path} : écriture impossible ({french_os_error(exc)}) ; vérifiez le dossier et "
            "fermez le fichier s'il est ouvert dans Excel."
        ) from None
