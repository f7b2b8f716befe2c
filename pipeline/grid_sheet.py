"""A grid as a spreadsheet that a teacher edits in Excel, LibreOffice or Google Sheets.

Like an XLSForm form: one sheet per kind of thing, one row per item, French headers,
and a `LISEZMOI` sheet that explains every column with the shipped BTS MUC grid as the
example. `write_grid_workbook(grid)` makes the spreadsheet; `read_grid_workbook(data,
name)` reads one back through the bounded readers (`xlsx`, `safe_zip`: size caps, zip
bombs, no XML entities) and reports every problem at once, each located by sheet and
cell as the spreadsheet shows them. Headers, sheet names and labels are matched
whatever their case, accents or spacing. The grid read is the same `Grid` as from TOML
(`grid.grid_to_toml` gives its TOML back).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import IllegalCharacterError
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.pagebreak import Break
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.errors import GridError, Problem
from pipeline.files import container_of
from pipeline.grid import (
    ID_PATTERN,
    Grid,
    decode_grid_text,
    load_grid,
    parse_grid,
    parse_grid_text,
    read_grid_bytes,
    sheet_name_fault,
)
from pipeline.safe_zip import SafeZip, UnsafeFile
from pipeline.text import fold as fold_text
from pipeline.xlsx import RawCell, Sheet, XlsxPackage

README_SHEET = "LISEZMOI"
OBJECTIVES_PART = "objectifs"  # the « Partie » of the first page's competencies
MAX_ROWS = 2000  # data rows read per sheet; a grid has a few dozen
MAX_COLUMNS = 26  # A to Z
HEADER_SEARCH_ROWS = 10


@dataclass(frozen=True)
class _Described:
    """What a column of a table sheet and a row of a « Rubrique / Texte » sheet share: a
    key, the French name the teacher reads (header or label), a help text."""

    key: str
    name: str
    help: str
    optional: bool = False  # may be left out (a column: its cells left empty)
    aliases: tuple[str, ...] = ()  # other names accepted, folded


@dataclass(frozen=True)
class Column(_Described):
    """A column of a table sheet: its key, French header and help text."""

    multiline: bool = False  # line breaks are kept (the référentiel tables)
    width: int = 24


@dataclass(frozen=True)
class _SheetSpec:
    sheet: str
    purpose: str


@dataclass(frozen=True)
class TableSpec(_SheetSpec):
    """A sheet with a header row and one row per item."""

    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Field(_Described):
    """A row of a « Rubrique / Texte » sheet."""

    repeat: bool = False  # one row per item (objectives, points)


@dataclass(frozen=True)
class FieldsSpec(_SheetSpec):
    """A sheet of « Rubrique / Texte » rows."""

    fields: tuple[Field, ...]


_ID_RULE = "minuscules sans accent, chiffres, point, tiret ou souligné ; pas d'espace"
_SHEET_RULE = (
    "nom de la feuille dans le classeur du tuteur : 31 caractères au plus, sans [ ] : * ? / \\ "
    "ni apostrophe au début ou à la fin ; toutes les feuilles ont des noms différents"
)

IDENTITY = FieldsSpec(
    "Grille",
    "L'identité de la grille et la première page du classeur (les objectifs, non notés).",
    (
        Field(
            "id",
            "Identifiant",
            f"Identifiant de la grille ({_ID_RULE}). Une autre grille = un autre identifiant.",
            aliases=("identifiant de la grille", "id"),
        ),
        Field(
            "version",
            "Version",
            "Version du contenu (ex. 1). Passez à 2, 3… si vous modifiez une grille dont les "
            "classeurs sont déjà partis : les retours sont lus avec la version qui les a faits.",
        ),
        Field("title", "Titre", "Titre de la grille, en tête de chaque classeur."),
        Field("diploma", "Diplôme", "Le diplôme que prépare le stagiaire."),
        Field("objectives_title", "Titre des objectifs", "Titre de la partie « objectifs »."),
        Field(
            "objective",
            "Objectif",
            "Un objectif du stage : une ligne « Objectif » par objectif, dans l'ordre.",
            repeat=True,
            aliases=("objectifs",),
        ),
        Field(
            "competencies_intro",
            "Introduction des compétences",
            "Phrase qui présente les compétences de la première page (feuille « Compétences », "
            f"partie « {OBJECTIVES_PART} »).",
        ),
    ),
)
SCALE = TableSpec(
    "Échelle",
    "L'échelle de notation des critères : une ligne par note, de la plus faible à la "
    "meilleure. Elle sert à tous les critères de la grille.",
    (
        Column(
            "code",
            "Code",
            "Ce que le tuteur choisit dans la liste : court, deux notes n'ont pas le même code.",
            width=10,
        ),
        Column("label", "Libellé", "Ce que veut dire la note, en toutes lettres.", width=40),
    ),
)
SECTIONS = TableSpec(
    "Sections",
    "Les parties notées, une ligne par partie, dans l'ordre : chacune devient une feuille "
    "du classeur du tuteur.",
    (
        Column(
            "id",
            "Section",
            f"Identifiant de la section ({_ID_RULE}) ; les feuilles Critères, Compétences et "
            "Référentiel le reprennent.",
            width=16,
            aliases=("identifiant", "identifiant de la section"),
        ),
        Column("sheet", "Feuille", _SHEET_RULE[0].upper() + _SHEET_RULE[1:] + ".", width=22),
        Column("title", "Titre", "Titre de la section, en tête de sa feuille.", width=50),
        Column(
            "criteria_title",
            "Titre des critères",
            "Titre au-dessus du tableau des critères.",
            width=40,
        ),
        Column(
            "rater",
            "Notée par",
            "Qui note : écrit en tête de la colonne des notes (ex. Tuteur). Toutes les sections "
            "sont dans le classeur envoyé au tuteur.",
            width=22,
            aliases=("note par", "evaluateur", "qui note"),
        ),
    ),
)
CRITERIA = TableSpec(
    "Critères",
    "Les critères notés, une ligne par critère, dans l'ordre du classeur.",
    (
        Column("section", "Section", "L'identifiant de sa section (feuille Sections).", width=16),
        Column(
            "heading",
            "Sous-titre",
            "Le sous-titre sous lequel le critère est rangé. Vide : celui de la ligne "
            "précédente de la même section (ou aucun).",
            optional=True,
            width=32,
        ),
        Column(
            "id",
            "Identifiant",
            f"Identifiant du critère, unique dans la grille ({_ID_RULE}), de la forme "
            "section.mot_cle. Ne le changez plus une fois les classeurs envoyés : les retours "
            "sont lus par identifiant. Pour retirer un critère, supprimez sa ligne ; pour en "
            "ajouter un, donnez-lui un identifiant nouveau.",
            width=42,
            aliases=("identifiant du critere",),
        ),
        Column(
            "label",
            "Critère",
            "Le critère, tel que le tuteur le lit.",
            width=70,
            aliases=("libelle", "intitule", "libelle du critere"),
        ),
    ),
)
COMPETENCIES = TableSpec(
    "Compétences",
    "Les compétences du référentiel : celles de la première page (partie « objectifs ») "
    "et celles de chaque section.",
    (
        Column(
            "part",
            "Partie",
            f"« {OBJECTIVES_PART} » pour la première page, sinon l'identifiant d'une section.",
            width=16,
            aliases=("section",),
        ),
        Column("code", "Code", "Code de la compétence.", width=10),
        Column("label", "Libellé", "Intitulé de la compétence.", width=60, aliases=("intitule",)),
    ),
)
BLOCKS = TableSpec(
    "Référentiel",
    "Le tableau « Référentiel / Activités / Moyens et ressources » en tête de chaque "
    "section : une ligne par rangée du tableau. Pour aller à la ligne dans une cellule : "
    "Alt+Entrée (Excel), Ctrl+Entrée (LibreOffice, Google Sheets).",
    (
        Column("section", "Section", "L'identifiant de la section.", width=16),
        Column(
            "referential",
            "Référentiel",
            "Les compétences du référentiel visées, une par ligne dans la cellule.",
            multiline=True,
            width=45,
        ),
        Column(
            "activities",
            "Activités",
            "Les activités du stagiaire, une par ligne (puces « · » ou « - » écrites telles "
            "quelles).",
            multiline=True,
            width=50,
        ),
        Column(
            "resources",
            "Moyens et ressources",
            "Les moyens et ressources ; peut rester vide.",
            optional=True,
            multiline=True,
            width=45,
            aliases=("moyens", "ressources"),
        ),
    ),
)
GLOBAL = FieldsSpec(
    "Évaluation globale",
    "L'évaluation globale finale : sa feuille et ses textes. Ses dimensions notées sont "
    "dans la feuille « Dimensions ».",
    (
        Field("sheet", "Feuille", _SHEET_RULE[0].upper() + _SHEET_RULE[1:] + "."),
        Field("title", "Titre", "Titre de l'évaluation globale."),
        Field(
            "intro",
            "Introduction",
            "Phrase qui présente les points ; peut rester vide.",
            optional=True,
        ),
        Field(
            "point",
            "Point",
            "Ce sur quoi porte l'évaluation : une ligne « Point » par point ; facultatif.",
            optional=True,
            repeat=True,
            aliases=("points",),
        ),
        Field("rater", "Notée par", "Qui la remplit (ex. Tuteur).", aliases=("note par",)),
    ),
)
DIMENSIONS = TableSpec(
    "Dimensions",
    "Les dimensions de l'évaluation globale : une ligne par niveau. Les niveaux sont des "
    "nombres entiers ; il peut en manquer (ex. 0, 1, 3, 4). La note maximale est la somme "
    "des plus hauts niveaux.",
    (
        Column(
            "id",
            "Dimension",
            f"Identifiant de la dimension ({_ID_RULE}), répété sur chacune de ses lignes.",
            width=20,
            aliases=("identifiant",),
        ),
        Column(
            "label",
            "Intitulé",
            "Nom de la dimension, tel que le tuteur le lit (sur sa première ligne au moins).",
            width=30,
            aliases=("libelle",),
        ),
        Column("value", "Niveau", "Nombre entier, 0 ou plus.", width=9, aliases=("points",)),
        Column(
            "text",
            "Descripteur",
            "Ce que veut dire ce niveau.",
            width=70,
            aliases=("description", "descriptif"),
        ),
    ),
)
CLOSING = FieldsSpec(
    "Conclusion",
    "La dernière feuille du classeur du tuteur : appréciations, date et signature.",
    (
        Field("sheet", "Feuille", _SHEET_RULE[0].upper() + _SHEET_RULE[1:] + "."),
        Field(
            "tutor_appreciation",
            "Appréciation du tuteur",
            "Intitulé de l'appréciation écrite par le tuteur.",
        ),
        Field(
            "team_appreciation",
            "Appréciation de l'équipe",
            "Intitulé du cadre réservé à l'équipe pédagogique.",
            aliases=("appreciation de l'equipe pedagogique",),
        ),
        Field("date", "Date", "Intitulé de la date."),
        Field("signature", "Signature", "Intitulé de la signature du tuteur."),
    ),
)
SHEETS: tuple[FieldsSpec | TableSpec, ...] = (
    IDENTITY,
    SCALE,
    SECTIONS,
    CRITERIA,
    COMPETENCIES,
    BLOCKS,
    GLOBAL,
    DIMENSIONS,
    CLOSING,
)
KEY_HEADER, TEXT_HEADER = "Rubrique", "Texte"


# ------------------------------------------------------------------ text helpers

_LINE_SPACES = re.compile(r"[ \t]+")
_FOLD_SEPARATORS = str.maketrans({"-": " ", "_": " "})


def fold(text: str) -> str:
    """For matching names typed by hand: `text.fold`, and dashes, underscores and a
    trailing « * » or « : » ignored."""
    return fold_text(text.translate(_FOLD_SEPARATORS)).rstrip("*: ").strip()


def _tidy(text: str, multiline: bool) -> str:
    """A cell's text as the grid keeps it: line ends unified, spaces trimmed; in a
    one-line text, runs of spaces become one."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if multiline:
        return "\n".join(line.rstrip() for line in lines).strip()
    return "\n".join(_LINE_SPACES.sub(" ", line).strip() for line in lines).strip()


# ------------------------------------------------------------------ writing


_FONT = "Calibri"
_HEADER_FONT = Font(name=_FONT, bold=True, color="FFFFFF")
_HEADER_FILL = PatternFill("solid", fgColor="1F4E79")
_WRAP = Alignment(wrap_text=True, vertical="top")


def _put(ws: Worksheet, row: int, column: int, value: str | int) -> None:
    """Write a value; a text is kept as text even when it starts with « = »."""
    cell = ws.cell(row=row, column=column, value=value)
    if isinstance(value, str) and value.startswith("="):
        cell.data_type = "s"
    cell.alignment = _WRAP


def _header(ws: Worksheet, headers: Iterable[tuple[str, int]]) -> None:
    for index, (header, width) in enumerate(headers, start=1):
        cell = ws.cell(row=1, column=index, value=header)
        cell.font = _HEADER_FONT
        cell.fill = _HEADER_FILL
        cell.alignment = _WRAP
        ws.column_dimensions[get_column_letter(index)].width = width
    ws.freeze_panes = "A2"


def _write_fields(wb: Workbook, spec: FieldsSpec, rows: list[tuple[str, str]]) -> None:
    ws = wb.create_sheet(spec.sheet)
    _header(ws, [(KEY_HEADER, 30), (TEXT_HEADER, 100)])
    labels = {f.key: f.name for f in spec.fields}
    for number, (key, text) in enumerate(rows, start=2):
        _put(ws, number, 1, labels[key])
        _put(ws, number, 2, text)


def _write_table(wb: Workbook, spec: TableSpec, rows: list[tuple[str | int, ...]]) -> Worksheet:
    ws = wb.create_sheet(spec.sheet)
    _header(ws, [(c.name, c.width) for c in spec.columns])
    for number, values in enumerate(rows, start=2):
        for column, value in enumerate(values, start=1):
            if value != "":
                _put(ws, number, column, value)
    return ws


def _section_list(ws: Worksheet, column: str, count: int) -> None:
    """A drop-down of the section ids on `column`; a warning only, so a section can be
    typed before it is added to the Sections sheet."""
    validation = DataValidation(
        type="list",
        formula1=f"={SECTIONS.sheet}!$A$2:$A${max(count, 1) + 200}",
        allow_blank=True,
        errorStyle="warning",
        showErrorMessage=True,
        error="Cette section n'est pas dans la feuille Sections.",
        errorTitle="Section inconnue",
    )
    validation.add(f"{column}2:{column}{MAX_ROWS + 1}")
    ws.add_data_validation(validation)


def _shorten(text: str, limit: int = 90) -> str:
    line = text.split("\n")[0]
    return line if len(line) <= limit and "\n" not in text else line[: limit - 1] + "…"


def _examples(grid: Grid) -> dict[tuple[str, str], str]:
    """One example value per (sheet, key), taken from `grid`."""
    section = grid.sections[0]
    headed = next((s for s in grid.sections if s.headings()), section)
    criterion = next((c for c in headed.criteria if c.heading), headed.criteria[0])
    block = section.blocks[0]
    ge = grid.global_evaluation
    dimension = next((d for d in ge.dimensions if len(d.levels) > 1), ge.dimensions[0])
    gap = next(
        (d for d in ge.dimensions if d.values != tuple(range(d.values[0], d.maximum + 1))),
        dimension,
    )
    closing = grid.closing
    return {
        (IDENTITY.sheet, "id"): grid.id,
        (IDENTITY.sheet, "version"): grid.version,
        (IDENTITY.sheet, "title"): grid.title,
        (IDENTITY.sheet, "diploma"): grid.diploma,
        (IDENTITY.sheet, "objectives_title"): grid.objectives_title,
        (IDENTITY.sheet, "objective"): grid.objectives[0],
        (IDENTITY.sheet, "competencies_intro"): grid.competencies_intro,
        (SCALE.sheet, "code"): " / ".join(grid.scale_codes),
        (SCALE.sheet, "label"): grid.scale[-1].label,
        (SECTIONS.sheet, "id"): headed.id,
        (SECTIONS.sheet, "sheet"): headed.sheet,
        (SECTIONS.sheet, "title"): headed.title,
        (SECTIONS.sheet, "criteria_title"): headed.criteria_title,
        (SECTIONS.sheet, "rater"): headed.rater,
        (CRITERIA.sheet, "section"): headed.id,
        (CRITERIA.sheet, "heading"): criterion.heading,
        (CRITERIA.sheet, "id"): criterion.id,
        (CRITERIA.sheet, "label"): criterion.label,
        (COMPETENCIES.sheet, "part"): f"{OBJECTIVES_PART}, {section.id}",
        (COMPETENCIES.sheet, "code"): grid.competencies[0].code,
        (COMPETENCIES.sheet, "label"): grid.competencies[0].label,
        (BLOCKS.sheet, "section"): section.id,
        (BLOCKS.sheet, "referential"): block.referential,
        (BLOCKS.sheet, "activities"): block.activities,
        (BLOCKS.sheet, "resources"): block.resources,
        (GLOBAL.sheet, "sheet"): ge.sheet,
        (GLOBAL.sheet, "title"): ge.title,
        (GLOBAL.sheet, "intro"): ge.intro,
        (GLOBAL.sheet, "point"): ge.points[0] if ge.points else "",
        (GLOBAL.sheet, "rater"): ge.rater,
        (DIMENSIONS.sheet, "id"): gap.id,
        (DIMENSIONS.sheet, "label"): gap.label,
        (DIMENSIONS.sheet, "value"): ", ".join(str(v) for v in gap.values),
        (DIMENSIONS.sheet, "text"): f"{gap.levels[0].value} : {gap.levels[0].text}",
        (CLOSING.sheet, "sheet"): closing.sheet,
        (CLOSING.sheet, "tutor_appreciation"): closing.tutor_appreciation,
        (CLOSING.sheet, "team_appreciation"): closing.team_appreciation,
        (CLOSING.sheet, "date"): closing.date,
        (CLOSING.sheet, "signature"): closing.signature,
    }


_README_TITLE = "Écrire une grille d'évaluation de stage dans ce tableur"
_README_STEPS = (
    "1. Chaque feuille décrit une partie de la grille, une ligne par élément : les "
    "feuilles sont résumées ici, leurs colonnes expliquées plus bas ; les exemples "
    "viennent de la grille BTS MUC fournie.",
    "2. Gardez les noms des feuilles et des en-têtes (majuscules, accents et espaces n'y "
    "changent rien) ; une colonne ajoutée (remarques…) est ignorée.",
    "3. Identifiants (grille, sections, critères, dimensions) : minuscules sans accent, "
    "chiffres, point, tiret, souligné. Une fois les classeurs envoyés, gardez ceux des "
    "critères ; pour changer une grille déjà envoyée, changez sa version (feuille Grille).",
    "4. Vérifiez : grille grid check ma_grille.xlsx — puis utilisez : grille generate "
    "--grid ma_grille.xlsx",
)
_OVERVIEW = {
    IDENTITY.sheet: "une information de la grille : identifiant, version, titre, objectifs",
    SCALE.sheet: "une note de l'échelle des critères, de la plus faible à la meilleure",
    SECTIONS.sheet: "une partie notée : une feuille du classeur du tuteur",
    CRITERIA.sheet: "un critère noté, dans sa section, sous son sous-titre",
    COMPETENCIES.sheet: "une compétence du référentiel (première page ou section)",
    BLOCKS.sheet: "une rangée du tableau Référentiel / Activités / Moyens d'une section",
    GLOBAL.sheet: "un texte de l'évaluation globale finale",
    DIMENSIONS.sheet: "un niveau d'une dimension de l'évaluation globale",
    CLOSING.sheet: "un intitulé de la dernière feuille : appréciations, date, signature",
}
_README_WIDTHS = (("A", 17), ("B", 34), ("C", 12), ("D", 50), ("E", 44))
_BIG = 12  # font size of the first page


def _overview_example(wb: Workbook, spec: FieldsSpec | TableSpec) -> str:
    """A telling row of the sheet `spec` (a criterion under a sub-heading, a level after a
    gap…), its cells joined by « | »."""
    ws = wb[spec.sheet]
    rows = [
        [ws.cell(row=r, column=c).value for c in range(1, ws.max_column + 1)]
        for r in range(2, ws.max_row + 1)
    ]
    chosen = rows[0]
    if spec is CRITERIA:
        chosen = next((r for r in rows if r[1]), chosen)
    elif spec is DIMENSIONS:
        chosen = next(
            (r for r, b in zip(rows[1:], rows, strict=False) if r[0] == b[0] and r[2] > b[2] + 1),
            chosen,
        )
    elif spec in (SCALE, CLOSING):
        chosen = rows[-1]
    return " | ".join(_shorten(str(v), 32) for v in chosen if v not in (None, ""))


def _write_readme(wb: Workbook, ws: Worksheet, example: Workbook) -> None:
    """First page: what each sheet holds, with a row of the BTS MUC grid; then every
    column explained."""
    ws.title = README_SHEET
    ws["A1"] = _README_TITLE
    ws["A1"].font = Font(name=_FONT, bold=True, size=16, color="1F4E79")
    row = 2
    for step in _README_STEPS:
        cell = ws.cell(row=row, column=1, value=step)
        cell.font = Font(name=_FONT, size=_BIG)
        cell.alignment = _WRAP
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=5)
        row += 1
    row += 1
    headings = ((1, "Feuille"), (2, "Une ligne pour…"), (4, "Par exemple (grille BTS MUC)"))
    for column, header in headings:
        cell = ws.cell(row=row, column=column, value=header)
        cell.font = Font(name=_FONT, bold=True, color="FFFFFF", size=_BIG)
    for column in range(1, 6):
        ws.cell(row=row, column=column).fill = _HEADER_FILL
    for spec in [None, *SHEETS]:
        if spec is not None:
            row += 1
            _put(ws, row, 1, spec.sheet)
            _put(ws, row, 2, _OVERVIEW[spec.sheet])
            _put(ws, row, 4, _overview_example(example, spec))
            for column in (1, 2, 4):
                ws.cell(row=row, column=column).font = Font(name=_FONT, size=_BIG, bold=column == 1)
        ws.merge_cells(start_row=row, start_column=2, end_row=row, end_column=3)
        ws.merge_cells(start_row=row, start_column=4, end_row=row, end_column=5)
    row += 2
    ws.row_breaks.append(Break(id=row - 1))
    headers = ("Feuille", "Colonne ou rubrique", "Obligatoire", "Ce qu'il faut écrire")
    for column, header in enumerate((*headers, "Exemple (grille BTS MUC)"), start=1):
        cell = ws.cell(row=row, column=column, value=header)
        cell.font = _HEADER_FONT
        cell.fill = _HEADER_FILL
        cell.alignment = _WRAP
    examples = _examples(load_grid())
    for spec in SHEETS:
        row += 1
        _put(ws, row, 1, spec.sheet)
        ws.cell(row=row, column=1).font = Font(name=_FONT, bold=True)
        _put(ws, row, 2, spec.purpose)
        ws.merge_cells(start_row=row, start_column=2, end_row=row, end_column=5)
        items: list[tuple[str, str, bool, bool, str]] = (
            [(f.key, f.name, f.optional, f.repeat, f.help) for f in spec.fields]
            if isinstance(spec, FieldsSpec)
            else [(c.key, c.name, c.optional, False, c.help) for c in spec.columns]
        )
        for key, label, optional, repeat, help_text in items:
            row += 1
            _put(ws, row, 2, f"{label} (répétable)" if repeat else label)
            _put(ws, row, 3, "non" if optional else "oui")
            _put(ws, row, 4, help_text)
            _put(ws, row, 5, _shorten(examples.get((spec.sheet, key), "")))
    for letter, width in _README_WIDTHS:
        ws.column_dimensions[letter].width = width
    ws.print_area = f"A1:E{row}"


def _fit_heights(ws: Worksheet) -> None:
    """Rows tall enough for their wrapped texts (no spreadsheet sizes them on opening)."""
    widths = {
        c: ws.column_dimensions[get_column_letter(c)].width or 10
        for c in range(1, ws.max_column + 1)
    }
    spans = {
        (r.min_row, r.min_col): sum(widths[c] for c in range(r.min_col, r.max_col + 1))
        for r in ws.merged_cells.ranges
    }
    for cells in ws.iter_rows(min_row=2):
        lines, size = 1, 11.0
        for cell in cells:
            if not isinstance(cell.value, str):
                continue
            font_size = float(cell.font.sz or 11)
            width = spans.get((cell.row, cell.column), widths.get(cell.column, 10))
            per_line = max(1, int(width * 1.1 * 11 / font_size))
            count = sum(max(1, -(-len(part) // per_line)) for part in cell.value.split("\n"))
            if count * font_size > lines * size:
                lines, size = count, font_size
        if lines > 1 or size > 11:
            ws.row_dimensions[cells[0].row].height = lines * size * 1.3 + 4


def _printable(wb: Workbook) -> None:
    """Every sheet prints landscape, all its columns on the page width."""
    for ws in wb.worksheets:
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.print_title_rows = "1:1" if ws.title != README_SHEET else None


def build_grid_workbook(grid: Grid) -> Workbook:
    """The grid as an editable spreadsheet, with its LISEZMOI sheet first."""
    wb = Workbook()
    readme = wb.active
    _write_sheets(wb, grid)
    _write_readme(wb, readme, wb if grid == load_grid() else _example_workbook())
    for ws in wb.worksheets:
        _fit_heights(ws)
    wb.properties.title = f"Grille d'évaluation : {grid.title}"
    _printable(wb)
    return wb


@cache
def _example_workbook() -> Workbook:
    """The sheets of the shipped BTS MUC grid: the examples of LISEZMOI."""
    wb = Workbook()
    _write_sheets(wb, load_grid())
    return wb


def _write_sheets(wb: Workbook, grid: Grid) -> None:
    """Every sheet of the grid, after the workbook's first sheet."""
    _write_fields(
        wb,
        IDENTITY,
        [
            ("id", grid.id),
            ("version", grid.version),
            ("title", grid.title),
            ("diploma", grid.diploma),
            ("objectives_title", grid.objectives_title),
            *(("objective", item) for item in grid.objectives),
            ("competencies_intro", grid.competencies_intro),
        ],
    )
    _write_table(wb, SCALE, [(level.code, level.label) for level in grid.scale])
    _write_table(
        wb,
        SECTIONS,
        [(s.id, s.sheet, s.title, s.criteria_title, s.rater) for s in grid.sections],
    )
    criteria = _write_table(
        wb, CRITERIA, [(c.section_id, c.heading, c.id, c.label) for c in grid.criteria]
    )
    _section_list(criteria, "A", len(grid.sections))
    _write_table(
        wb,
        COMPETENCIES,
        [
            *((OBJECTIVES_PART, c.code, c.label) for c in grid.competencies),
            *((s.id, c.code, c.label) for s in grid.sections for c in s.competencies),
        ],
    )
    blocks = _write_table(
        wb,
        BLOCKS,
        [(s.id, b.referential, b.activities, b.resources) for s in grid.sections for b in s.blocks],
    )
    _section_list(blocks, "A", len(grid.sections))
    ge = grid.global_evaluation
    _write_fields(
        wb,
        GLOBAL,
        [
            ("sheet", ge.sheet),
            ("title", ge.title),
            ("intro", ge.intro),
            *(("point", point) for point in ge.points),
            ("rater", ge.rater),
        ],
    )
    _write_table(
        wb,
        DIMENSIONS,
        [(d.id, d.label, level.value, level.text) for d in ge.dimensions for level in d.levels],
    )
    # each row of « Fin » is the attribute of `grid.closing` named by its key
    _write_fields(wb, CLOSING, [(f.key, getattr(grid.closing, f.key)) for f in CLOSING.fields])


def write_grid_workbook(grid: Grid) -> bytes:
    """The grid as the bytes of an .xlsx file (see `build_grid_workbook`)."""
    buffer = io.BytesIO()
    try:
        build_grid_workbook(grid).save(buffer)
    except IllegalCharacterError as exc:
        raise GridError(
            f"Grille « {grid.id} » : un texte contient un caractère de contrôle qu'un tableur "
            "ne peut pas garder ; retirez-le du fichier de grille."
        ) from exc
    return buffer.getvalue()


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class _Cell:
    text: str
    ref: str  # as the spreadsheet shows it, e.g. « C12 »


@dataclass
class _Row:
    number: int
    cells: dict[str, _Cell]
    letters: dict[str, str]  # column key → letter, for the columns present

    def text(self, key: str) -> str:
        cell = self.cells.get(key)
        return cell.text if cell else ""

    def ref(self, key: str) -> str:
        letter = self.letters.get(key)
        return f"{letter}{self.number}" if letter else ""


_FILE_FAULTS = ("grid.unreadable", "grid.ods", "grid.invalid")


@dataclass
class GridSheetResult:
    """A grid read from a spreadsheet: the grid, or every problem found."""

    name: str
    grid: Grid | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def unreadable(self) -> bool:
        """The file could not be read as a grid at all (one message naming it)."""
        return len(self.problems) == 1 and self.problems[0].code in _FILE_FAULTS

    def summary_of_problems(self) -> str:
        """One French message listing every problem (for `GridError`)."""
        if self.unreadable:
            return self.problems[0].message
        lines = [f"Grille « {self.name} » : {len(self.problems)} problème(s) à corriger :"]
        lines += [f"  - {problem_line(p)}" for p in self.problems]
        return "\n".join(lines)


def problem_line(problem: Problem) -> str:
    """A problem of a grid file, located by sheet and cell (the file is named above)."""
    where = Problem(problem.code, problem.message, "", problem.sheet, problem.cell).location()
    return f"{where} : {problem.message}" if where else problem.message


@cache
def _all_refs() -> frozenset[str]:
    return frozenset(
        f"{get_column_letter(column)}{row}"
        for column in range(1, MAX_COLUMNS + 1)
        for row in range(1, MAX_ROWS + HEADER_SEARCH_ROWS + 2)
    )


def _unsafe_message(exc: UnsafeFile, name: str) -> str:
    if exc.damaged:
        return (
            f"Grille « {name} » : le classeur est endommagé ou incomplet ; ouvrez-le dans "
            "Excel ou LibreOffice et enregistrez-le à nouveau au format Excel (.xlsx)."
        )
    return f"Grille « {name} » : {exc.reason}"


class _SheetReader:
    """Reads the grid's sheets, collecting every problem with its sheet and cell."""

    def __init__(self, package: XlsxPackage, name: str) -> None:
        self.package = package
        self.name = name
        self.problems: list[Problem] = []
        self.by_fold = {fold(sheet_name): sheet for sheet_name, sheet in package.sheets.items()}

    def problem(self, code: str, message: str, sheet: str = "", ref: str = "") -> None:
        self.problems.append(Problem(code, message, file=self.name, sheet=sheet, cell=ref))

    def sheet(self, name: str) -> Sheet | None:
        found = self.by_fold.get(fold(name))
        if found is None:
            self.problem(
                "grid.missing_sheet",
                f"feuille « {name} » absente : repartez d'un classeur fait par « grille grid "
                "export », ou rendez-lui son nom.",
            )
        return found

    def grid_cells(self, sheet: Sheet) -> dict[int, dict[int, str]]:
        """Non-empty cells of `sheet` as text, by row then column (1-based)."""
        raw = self.package.read_cells(sheet, set(_all_refs()))
        rows: dict[int, dict[int, str]] = {}
        for ref, cell in raw.items():
            match = re.fullmatch(r"([A-Z]+)([0-9]+)", ref)
            assert match is not None
            text = self.cell_text(cell, sheet.name, ref)
            if text:
                column = sum((ord(c) - 64) * 26**i for i, c in enumerate(reversed(match[1])))
                rows.setdefault(int(match[2]), {})[column] = text
        return rows

    def cell_text(self, cell: RawCell, sheet: str, ref: str) -> str:
        """A cell as raw text (not yet tidied); an error value is reported."""
        if cell.kind == "e":
            self.problem(
                "grid.cell_error", f"la cellule vaut « {cell.value} » (erreur).", sheet, ref
            )
            return ""
        if cell.kind == "b":
            return "VRAI" if cell.value in ("1", "true") else "FAUX"
        if cell.kind == "n":
            try:
                number = float(cell.value)
            except ValueError:
                return cell.value
            if math.isfinite(number) and number.is_integer():
                return str(int(number))
            return repr(number)
        return cell.value

    def _header_row(
        self, cells: dict[int, dict[int, str]], known: dict[str, str]
    ) -> tuple[int, dict[int, str]] | None:
        """(row number, {column: key}) of the first row naming a known header."""
        for number in range(1, HEADER_SEARCH_ROWS + 1):
            found = {
                column: known[fold(text)]
                for column, text in cells.get(number, {}).items()
                if fold(text) in known
            }
            if found:
                return number, found
        return None

    def too_many_rows(self, cells: dict[int, dict[int, str]], sheet: Sheet, header: int) -> bool:
        if any(number > header + MAX_ROWS for number in cells):
            self.problem(
                "grid.too_many_rows",
                f"plus de {MAX_ROWS} lignes : une grille en compte quelques dizaines ; "
                "videz les lignes en trop.",
                sheet.name,
            )
            return True
        return False

    def table(self, spec: TableSpec) -> list[_Row] | None:
        """The rows of a table sheet, tidied; None when the sheet or a column is missing."""
        sheet = self.sheet(spec.sheet)
        if sheet is None:
            return None
        cells = self.grid_cells(sheet)
        known = {fold(name): c.key for c in spec.columns for name in (c.name, *c.aliases)}
        located = self._header_row(cells, known)
        headers = ", ".join(f"« {c.name} »" for c in spec.columns)
        if located is None:
            self.problem(
                "grid.missing_header",
                f"ligne d'en-têtes introuvable : la première ligne doit porter {headers}.",
                sheet.name,
            )
            return None
        header, columns = located
        missing = [c.name for c in spec.columns if not c.optional and c.key not in columns.values()]
        seen: dict[str, int] = {}
        for column, key in sorted(columns.items()):
            if key in seen:
                label = next(c.name for c in spec.columns if c.key == key)
                self.problem(
                    "grid.duplicate_column",
                    f"la colonne « {label} » figure deux fois (aussi en "
                    f"{get_column_letter(seen[key])}) ; gardez-en une.",
                    sheet.name,
                    f"{get_column_letter(column)}{header}",
                )
            seen.setdefault(key, column)
        for label in missing:
            self.problem(
                "grid.missing_column",
                f"colonne « {label} » absente de la ligne d'en-têtes (ligne {header}).",
                sheet.name,
            )
        if missing or self.too_many_rows(cells, sheet, header):
            return None
        multiline = {c.key for c in spec.columns if c.multiline}
        letters = {key: get_column_letter(column) for key, column in seen.items()}
        rows = []
        for number in sorted(n for n in cells if n > header):
            values: dict[str, _Cell] = {}
            for key, column in seen.items():
                text = _tidy(cells[number].get(column, ""), key in multiline)
                if text:
                    values[key] = _Cell(text, f"{letters[key]}{number}")
            if values:
                rows.append(_Row(number, values, letters))
        return rows

    def fields(self, spec: FieldsSpec) -> dict[str, list[_Cell]] | None:
        """The « Rubrique / Texte » rows of a sheet, by field key; None when the sheet is
        missing. A missing or doubled rubrique is reported."""
        sheet = self.sheet(spec.sheet)
        if sheet is None:
            return None
        cells = self.grid_cells(sheet)
        located = self._header_row(cells, {fold(KEY_HEADER): "key", fold(TEXT_HEADER): "text"})
        if located is None or set(located[1].values()) != {"key", "text"}:
            self.problem(
                "grid.missing_header",
                f"ligne d'en-têtes introuvable : la première ligne doit porter « {KEY_HEADER} » "
                f"et « {TEXT_HEADER} ».",
                sheet.name,
            )
            return None
        header, columns = located
        key_column = min(c for c, k in columns.items() if k == "key")
        text_column = min(c for c, k in columns.items() if k == "text")
        if self.too_many_rows(cells, sheet, header):
            return None
        by_label = {fold(name): f for f in spec.fields for name in (f.name, *f.aliases)}
        found: dict[str, list[_Cell]] = {}
        key_letter, text_letter = get_column_letter(key_column), get_column_letter(text_column)
        for number in sorted(n for n in cells if n > header):
            label = _tidy(cells[number].get(key_column, ""), False)
            text = _tidy(cells[number].get(text_column, ""), False)
            if not label and not text:
                continue
            entry = by_label.get(fold(label))
            if entry is None:
                names = ", ".join(f"« {f.name} »" for f in spec.fields)
                self.problem(
                    "grid.unknown_field",
                    f"rubrique « {label} » inconnue (rubriques : {names})."
                    if label
                    else "texte sans rubrique en colonne " + key_letter + ".",
                    sheet.name,
                    f"{key_letter}{number}",
                )
                continue
            if entry.key in found and not entry.repeat:
                self.problem(
                    "grid.duplicate_field",
                    f"rubrique « {entry.name} » en double (déjà en "
                    f"{key_letter}{found[entry.key][0].ref[1:]}) ; gardez-en une.",
                    sheet.name,
                    f"{key_letter}{number}",
                )
                continue
            cell = _Cell(text, f"{text_letter}{number}")
            if not text and not entry.optional:
                self.problem(
                    "grid.empty", f"« {entry.name} » n'est pas rempli.", sheet.name, cell.ref
                )
            if text or not entry.repeat:
                found.setdefault(entry.key, []).append(cell)
        for entry in spec.fields:
            if entry.key not in found and not entry.optional:
                self.problem(
                    "grid.missing_field",
                    f"rubrique « {entry.name} » absente : ajoutez une ligne « {entry.name} » "
                    f"en colonne {key_letter} et son texte en colonne {text_letter}.",
                    sheet.name,
                )
        return found

    # -------------------------------------------------------------- checks

    def required(self, row: _Row, spec: TableSpec, keys: Iterable[str], sheet: str) -> bool:
        """Report the empty required cells of `row`; True when all are filled."""
        ok = True
        for key in keys:
            if not row.text(key):
                header = next(c.name for c in spec.columns if c.key == key)
                self.problem("grid.empty", f"« {header} » n'est pas rempli.", sheet, row.ref(key))
                ok = False
        return ok

    def ident(self, text: str, sheet: str, ref: str, what: str) -> bool:
        if ID_PATTERN.match(text):
            return True
        self.problem(
            "grid.invalid_id",
            f"identifiant {what} « {text} » invalide : {_ID_RULE}.",
            sheet,
            ref,
        )
        return False

    def sheet_name(self, text: str, sheet: str, ref: str, used: dict[str, str]) -> None:
        fault = sheet_name_fault(text)
        if fault:
            self.problem(
                "grid.sheet_name",
                f"nom de feuille « {text} » refusé par Excel ou par grille ({fault}) ; "
                "31 caractères au plus, sans [ ] : * ? / \\.",
                sheet,
                ref,
            )
        elif text.casefold() in used:
            self.problem(
                "grid.duplicate_sheet",
                f"la feuille « {text} » est déjà utilisée ({used[text.casefold()]}) : "
                "chaque feuille du classeur a un nom différent.",
                sheet,
                ref,
            )
        else:
            used[text.casefold()] = f"feuille « {sheet} », cellule {ref}"


def _first(found: dict[str, list[_Cell]] | None, key: str) -> str:
    cells = (found or {}).get(key, [])
    return cells[0].text if cells else ""


def _all(found: dict[str, list[_Cell]] | None, key: str) -> list[str]:
    return [cell.text for cell in (found or {}).get(key, []) if cell.text]


def _sheet_of(reader: _SheetReader, spec: TableSpec | FieldsSpec) -> str:
    found = reader.by_fold.get(fold(spec.sheet))
    return found.name if found else spec.sheet


def _read(reader: _SheetReader) -> dict[str, Any]:
    """Every sheet → the grid's data in the TOML schema (see `grid.parse_grid`)."""
    identity = reader.fields(IDENTITY)
    scale_rows = reader.table(SCALE)
    section_rows = reader.table(SECTIONS)
    criteria_rows = reader.table(CRITERIA)
    competency_rows = reader.table(COMPETENCIES)
    block_rows = reader.table(BLOCKS)
    global_fields = reader.fields(GLOBAL)
    dimension_rows = reader.table(DIMENSIONS)
    closing_fields = reader.fields(CLOSING)

    if identity and identity.get("id"):
        cell = identity["id"][0]
        reader.ident(cell.text, _sheet_of(reader, IDENTITY), cell.ref, "de grille")

    scale = []
    if scale_rows is not None:
        sheet = _sheet_of(reader, SCALE)
        codes: dict[str, str] = {}
        for row in scale_rows:
            if not reader.required(row, SCALE, ("code", "label"), sheet):
                continue
            code = row.text("code")
            if code.casefold() in codes:
                reader.problem(
                    "grid.duplicate_code",
                    f"le code « {code} » est déjà celui de la note en {codes[code.casefold()]}.",
                    sheet,
                    row.ref("code"),
                )
                continue
            codes[code.casefold()] = row.ref("code")
            scale.append({"code": code, "label": row.text("label")})
        if not scale_rows:
            reader.problem(
                "grid.no_levels",
                "l'échelle n'a aucune note : une ligne par note, de la plus faible à la meilleure.",
                sheet,
            )

    sheets_used: dict[str, str] = {}
    sections: dict[str, dict[str, Any]] = {}
    section_refs: dict[str, str] = {}
    if section_rows is not None:
        sheet = _sheet_of(reader, SECTIONS)
        for row in section_rows:
            keys = ("id", "sheet", "title", "criteria_title", "rater")
            filled = reader.required(row, SECTIONS, keys, sheet)
            section_id = row.text("id")
            if not section_id or not reader.ident(section_id, sheet, row.ref("id"), "de section"):
                continue
            if section_id in sections or fold(section_id) == OBJECTIVES_PART:
                reader.problem(
                    "grid.duplicate_id",
                    f"la section « {section_id} » est déjà décrite en {section_refs[section_id]}."
                    if section_id in sections
                    else f"« {OBJECTIVES_PART} » est réservé à la première page (feuille "
                    "Compétences) : choisissez un autre identifiant.",
                    sheet,
                    row.ref("id"),
                )
                continue
            if row.text("sheet"):
                reader.sheet_name(row.text("sheet"), sheet, row.ref("sheet"), sheets_used)
            section_refs[section_id] = row.ref("id")
            sections[section_id] = {
                "id": section_id,
                "sheet": row.text("sheet"),
                "title": row.text("title"),
                "criteria_title": row.text("criteria_title"),
                "rater": row.text("rater"),
                "competencies": [],
                "criteria": [],
                "blocks": [],
                "_filled": filled,
            }
        if not section_rows:
            reader.problem(
                "grid.no_sections", "aucune section : une ligne par partie notée.", sheet
            )

    def section_of(row: _Row, key: str, sheet: str) -> dict[str, Any] | None:
        section_id = row.text(key)
        if section_id in sections:
            return sections[section_id]
        if section_rows is not None and section_id:
            known = ", ".join(sections) or "aucune"
            reader.problem(
                "grid.unknown_section",
                f"section « {section_id} » inconnue : elle n'est pas dans la feuille "
                f"« {_sheet_of(reader, SECTIONS)} » (sections : {known}).",
                sheet,
                row.ref(key),
            )
        return None

    ids: dict[str, str] = {}  # criterion and dimension ids → where they are
    if criteria_rows is not None:
        sheet = _sheet_of(reader, CRITERIA)
        headings: dict[str, str] = {}
        for row in criteria_rows:
            filled = reader.required(row, CRITERIA, ("section", "id", "label"), sheet)
            section = section_of(row, "section", sheet)
            criterion_id = row.text("id")
            if criterion_id and reader.ident(criterion_id, sheet, row.ref("id"), "de critère"):
                if criterion_id in ids:
                    reader.problem(
                        "grid.duplicate_id",
                        f"l'identifiant « {criterion_id} » est déjà celui du critère en "
                        f"{ids[criterion_id]} : chaque critère a le sien.",
                        sheet,
                        row.ref("id"),
                    )
                    continue
                ids[criterion_id] = row.ref("id")
            if section is None or not filled:
                continue
            heading = row.text("heading") or headings.get(section["id"], "")
            if heading != headings.get(section["id"], ""):
                section["criteria"].append({"heading": heading})
                headings[section["id"]] = heading
            section["criteria"].append({"id": criterion_id, "label": row.text("label")})

    objectives_competencies: list[dict[str, str]] = []
    if competency_rows is not None:
        sheet = _sheet_of(reader, COMPETENCIES)
        for row in competency_rows:
            filled = reader.required(row, COMPETENCIES, ("part", "code", "label"), sheet)
            pair = {"code": row.text("code"), "label": row.text("label")}
            if fold(row.text("part")) == OBJECTIVES_PART:
                if filled:
                    objectives_competencies.append(pair)
                continue
            section = section_of(row, "part", sheet)
            if section is not None and filled:
                section["competencies"].append(pair)
        if not objectives_competencies:
            reader.problem(
                "grid.missing",
                f"aucune compétence pour la première page : ajoutez des lignes de partie "
                f"« {OBJECTIVES_PART} ».",
                sheet,
            )

    if block_rows is not None:
        sheet = _sheet_of(reader, BLOCKS)
        for row in block_rows:
            filled = reader.required(row, BLOCKS, ("section", "referential", "activities"), sheet)
            section = section_of(row, "section", sheet)
            if section is not None and filled:
                section["blocks"].append(
                    {
                        "referential": row.text("referential"),
                        "activities": row.text("activities"),
                        "resources": row.text("resources"),
                    }
                )

    for section_id, section in sections.items():
        for key, rows, spec, what in (
            ("criteria", criteria_rows, CRITERIA, "aucun critère"),
            ("competencies", competency_rows, COMPETENCIES, "aucune compétence"),
            ("blocks", block_rows, BLOCKS, "aucune ligne de référentiel"),
        ):
            if rows is not None and not section[key]:
                reader.problem(
                    "grid.empty_section",
                    f"la section « {section_id} » n'a {what} dans la feuille "
                    f"« {_sheet_of(reader, spec)} ».",
                    _sheet_of(reader, SECTIONS),
                    section_refs[section_id],
                )

    if global_fields and global_fields.get("sheet"):
        cell = global_fields["sheet"][0]
        if cell.text:
            reader.sheet_name(cell.text, _sheet_of(reader, GLOBAL), cell.ref, sheets_used)
    if closing_fields and closing_fields.get("sheet"):
        cell = closing_fields["sheet"][0]
        if cell.text:
            reader.sheet_name(cell.text, _sheet_of(reader, CLOSING), cell.ref, sheets_used)

    dimensions: dict[str, dict[str, Any]] = {}
    if dimension_rows is not None:
        sheet = _sheet_of(reader, DIMENSIONS)
        label_refs: dict[str, str] = {}
        level_refs: dict[tuple[str, int], str] = {}
        for row in dimension_rows:
            filled = reader.required(row, DIMENSIONS, ("id", "value", "text"), sheet)
            dimension_id = row.text("id")
            if not dimension_id or not reader.ident(
                dimension_id, sheet, row.ref("id"), "de dimension"
            ):
                continue
            if dimension_id not in dimensions:
                if dimension_id in ids:
                    reader.problem(
                        "grid.duplicate_id",
                        f"l'identifiant « {dimension_id} » est déjà celui du critère en "
                        f"{ids[dimension_id]}.",
                        sheet,
                        row.ref("id"),
                    )
                    continue
                dimensions[dimension_id] = {"id": dimension_id, "label": "", "levels": []}
                label_refs[dimension_id] = row.ref("label")
            dimension = dimensions[dimension_id]
            label = row.text("label")
            if label and not dimension["label"]:
                dimension["label"] = label
                label_refs[dimension_id] = row.ref("label")
            elif label and label != dimension["label"]:
                reader.problem(
                    "grid.conflicting_label",
                    f"intitulé « {label} » différent de celui de la dimension « {dimension_id} » "
                    f"en {label_refs[dimension_id]} (« {dimension['label']} ») : laissez la "
                    "cellule vide ou écrivez le même.",
                    sheet,
                    row.ref("label"),
                )
            value_text = row.text("value")
            if not value_text:
                continue
            value = _level(value_text)
            if value is None:
                reader.problem(
                    "grid.invalid_level",
                    f"niveau « {value_text} » : un nombre entier, 0 ou plus, est attendu.",
                    sheet,
                    row.ref("value"),
                )
                continue
            if (dimension_id, value) in level_refs:
                reader.problem(
                    "grid.duplicate_level",
                    f"le niveau {value} de la dimension « {dimension_id} » est déjà décrit en "
                    f"{level_refs[(dimension_id, value)]}.",
                    sheet,
                    row.ref("value"),
                )
                continue
            level_refs[(dimension_id, value)] = row.ref("value")
            if filled:
                dimension["levels"].append({"value": value, "text": row.text("text")})
        for dimension_id, dimension in dimensions.items():
            dimension["levels"].sort(key=lambda level: level["value"])
            if not dimension["label"]:
                reader.problem(
                    "grid.empty",
                    f"la dimension « {dimension_id} » n'a pas d'intitulé : écrivez-le sur sa "
                    "première ligne.",
                    sheet,
                    label_refs[dimension_id],
                )
        if not dimension_rows:
            reader.problem(
                "grid.no_dimensions",
                "aucune dimension d'évaluation globale : une ligne par niveau de chaque dimension.",
                sheet,
            )

    for section in sections.values():
        section.pop("_filled")
    return {
        "id": _first(identity, "id"),
        "version": _first(identity, "version"),
        "title": _first(identity, "title"),
        "diploma": _first(identity, "diploma"),
        "objectives": {
            "title": _first(identity, "objectives_title"),
            "items": _all(identity, "objective"),
            "competencies_intro": _first(identity, "competencies_intro"),
            "competencies": objectives_competencies,
        },
        "scale": scale,
        "sections": list(sections.values()),
        "global_evaluation": {
            "sheet": _first(global_fields, "sheet"),
            "title": _first(global_fields, "title"),
            "intro": _first(global_fields, "intro"),
            "points": _all(global_fields, "point"),
            "rater": _first(global_fields, "rater"),
            "dimensions": list(dimensions.values()),
        },
        "closing": {
            key: _first(closing_fields, key)
            for key in ("sheet", "tutor_appreciation", "team_appreciation", "date", "signature")
        },
    }


def _level(text: str) -> int | None:
    """A level number: a whole number ≥ 0 (« 3 », « 3,0 », 3.0)."""
    match = re.fullmatch(r"([0-9]{1,6})(?:[.,]0+)?", text)
    return int(match.group(1)) if match else None


def read_grid_workbook(data: bytes, name: str) -> GridSheetResult:
    """Read a grid spreadsheet (untrusted bytes): the grid, or every problem found."""
    try:
        archive = SafeZip(data, name)
        mimetype = archive.read_optional("mimetype", 200) or b""
        if b"opendocument" in mimetype:
            message = (
                f"Grille « {name} » : c'est un classeur OpenDocument (.ods) ; dans LibreOffice, "
                "Fichier › Enregistrer sous › format Excel (.xlsx)."
            )
            return GridSheetResult(name, None, [Problem("grid.ods", message, file=name)])
        package = XlsxPackage(data, name)
        reader = _SheetReader(package, name)
        grid_data = _read(reader)
    except UnsafeFile as exc:
        message = _unsafe_message(exc, name)
        return GridSheetResult(name, None, [Problem("grid.unreadable", message, file=name)])
    if reader.problems:
        return GridSheetResult(name, None, reader.problems)
    try:
        grid = parse_grid(grid_data, name)
    except GridError as exc:  # a rule checked only by the TOML reader
        return GridSheetResult(name, None, [Problem("grid.invalid", str(exc), file=name)])
    return GridSheetResult(name, grid)


def check_grid_file(path: Path) -> GridSheetResult:
    """Read a grid file, spreadsheet or TOML: the grid, or its problems (never raises)."""
    try:
        raw = read_grid_bytes(path)
        if container_of(raw) == "zip":
            return read_grid_workbook(raw, path.name)
        grid = parse_grid_text(decode_grid_text(raw, path.name), path.name)
    except GridError as exc:
        return GridSheetResult(path.name, None, [Problem("grid.invalid", str(exc))])
    return GridSheetResult(path.name, grid)
