"""The student workbook format: the one place that knows which cell holds what.

Writing: `build_template(grid, options)` builds, once per campaign, a complete workbook
with openpyxl in which every per-student text is a token (`@@GRILLE_…@@`). A
`WorkbookStamper` then makes each student's file at the package level: the parts
without tokens are copied as they are, the few parts with tokens (shared strings,
custom properties) get the student's values. This is ~50× faster than building each
workbook with openpyxl, and every file has exactly the same structure.

Reading back is in `read_workbook` (see `pipeline.workbook_reader`), from the same
`plan_layout(grid)` that places the cells when writing.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any
from xml.sax.saxutils import escape

from openpyxl import Workbook
from openpyxl.formatting.rule import FormulaRule
from openpyxl.packaging.custom import StringProperty
from openpyxl.styles import Alignment, Border, Font, PatternFill, Protection, Side
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.workbook.protection import WorkbookProtection
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.grid import Grid, Section
from pipeline.roster import Student
from pipeline.xlsx import RawCell, XlsxPackage

FORMAT_VERSION = "1"
INSTRUCTIONS_SHEET = "Instructions"
LISTS_SHEET = "Listes"
META_SHEET = "_grille"
META_KEYS = ("format", "campaign_id", "student_id", "grid_id", "grid_version", "signature")
PROPERTY_PREFIX = "grille_"
APPRECIATION_PLACEHOLDER = (
    "(Écrivez ici votre appréciation sur le travail et le comportement du stagiaire.)"
)
TEAM_RESERVED_TEXT = "Réservé à l'équipe pédagogique : ne pas remplir."
MAX_INLINE_LIST = 255
TOKEN_PATTERN = re.compile(rb"@@GRILLE_([A-Z_]+)@@")
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)

# Styles
_THIN = Side(style="thin", color="808080")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_TITLE_FONT = Font(name="Arial", size=14, bold=True, color="1F3864")
_BOLD = Font(name="Arial", size=10, bold=True)
_NORMAL = Font(name="Arial", size=10)
_SMALL = Font(name="Arial", size=9, italic=True, color="595959")
_HEADER_FILL = PatternFill("solid", fgColor="D9E2F3")
_HEADING_FILL = PatternFill("solid", fgColor="EDEDED")
_INPUT_FILL = PatternFill("solid", fgColor="FFF9DB")
_EMPTY_FILL = PatternFill("solid", fgColor="FCE4D6")
_RESERVED_FILL = PatternFill("solid", fgColor="F2F2F2")
_WRAP = Alignment(wrap_text=True, vertical="top")
_CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
_UNLOCKED = Protection(locked=False)


def token(name: str) -> str:
    """The placeholder written in the template for identity field `name`."""
    return f"@@GRILLE_{name.upper()}@@"


@dataclass(frozen=True)
class CellRef:
    """A cell as the user sees it: sheet name and coordinate (e.g. "E21")."""

    sheet: str
    cell: str

    def __str__(self) -> str:
        return f"feuille « {self.sheet} », cellule {self.cell}"


@dataclass(frozen=True)
class SectionPlan:
    """Where one section sheet puts its rows."""

    section: Section
    block_rows: tuple[int, ...]
    criteria_header_row: int
    rows: tuple[tuple[str, int, str], ...]  # ("heading" | "criterion", row, heading text / id)


@dataclass(frozen=True)
class Layout:
    """Every input cell and checked label of a grid's workbook."""

    criteria: dict[str, CellRef]
    criterion_labels: dict[str, CellRef]
    dimensions: dict[str, CellRef]
    appreciation: CellRef
    team_box: CellRef
    date: CellRef
    signature: CellRef
    identity: dict[str, CellRef]
    sections: tuple[SectionPlan, ...]
    field_count: int


RATING_COLUMN = "D"
LEVEL_COLUMN = "B"
_SECTION_FIRST_BLOCK_ROW = 7
_IDENTITY_ROWS = {
    "student_name": 5,
    "class_name": 6,
    "company": 7,
    "tutor_name": 8,
    "tutor_email": 9,
    "period": 10,
}
_GLOBAL_FIRST_ROW = 8
# Each sheet names the student through a formula on the Instructions sheet, so that only
# that sheet (and the metadata) differs between students: stamping stays cheap.
_IDENTITY_LINE = (
    f'="Stagiaire : "&{INSTRUCTIONS_SHEET}!B{_IDENTITY_ROWS["student_name"]}'
    f'&" — "&{INSTRUCTIONS_SHEET}!B{_IDENTITY_ROWS["class_name"]}'
    f'&" — "&{INSTRUCTIONS_SHEET}!B{_IDENTITY_ROWS["company"]}'
)
_CLOSING_ROWS = {"appreciation": 4, "team": 17, "date": 25, "signature": 26}


@cache
def plan_layout(grid: Grid) -> Layout:
    """Place every cell of `grid`'s workbook; writing and reading both use this."""
    criteria: dict[str, CellRef] = {}
    labels: dict[str, CellRef] = {}
    plans = []
    for section in grid.sections:
        block_rows = tuple(
            range(_SECTION_FIRST_BLOCK_ROW, _SECTION_FIRST_BLOCK_ROW + len(section.blocks))
        )
        row = _SECTION_FIRST_BLOCK_ROW + len(section.blocks) + 1
        criteria_header_row = row
        rows: list[tuple[str, int, str]] = []
        current = ""
        row += 1
        for criterion in section.criteria:
            if criterion.heading and criterion.heading != current:
                current = criterion.heading
                rows.append(("heading", row, current))
                row += 1
            rows.append(("criterion", row, criterion.id))
            criteria[criterion.id] = CellRef(section.sheet, f"{RATING_COLUMN}{row}")
            labels[criterion.id] = CellRef(section.sheet, f"A{row}")
            row += 1
        plans.append(SectionPlan(section, block_rows, criteria_header_row, tuple(rows)))
    global_sheet = grid.global_evaluation.sheet
    dimensions = {
        dim.id: CellRef(global_sheet, f"{LEVEL_COLUMN}{_GLOBAL_FIRST_ROW + i}")
        for i, dim in enumerate(grid.global_evaluation.dimensions)
    }
    closing = grid.closing.sheet
    return Layout(
        criteria=criteria,
        criterion_labels=labels,
        dimensions=dimensions,
        appreciation=CellRef(closing, f"A{_CLOSING_ROWS['appreciation']}"),
        team_box=CellRef(closing, f"A{_CLOSING_ROWS['team']}"),
        date=CellRef(closing, f"B{_CLOSING_ROWS['date']}"),
        signature=CellRef(closing, f"B{_CLOSING_ROWS['signature']}"),
        identity={k: CellRef(INSTRUCTIONS_SHEET, f"B{r}") for k, r in _IDENTITY_ROWS.items()},
        sections=tuple(plans),
        field_count=len(criteria) + len(dimensions) + 3,
    )


@dataclass(frozen=True)
class TemplateOptions:
    """Campaign-wide texts shown in every workbook."""

    campaign_id: str
    school: str = ""
    session: str = ""
    school_year: str = ""
    teacher_name: str = ""
    teacher_email: str = ""
    deadline: date | None = None
    protection_password: str = ""


# ---------------------------------------------------------------- identity


def sign_identity(
    key: bytes, campaign_id: str, student_id: str, grid_id: str, grid_version: str
) -> str:
    """HMAC-SHA256 of the identity fields (hex), made with the campaign's secret key."""
    message = "\x1f".join((FORMAT_VERSION, campaign_id, student_id, grid_id, grid_version))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_identity(key: bytes, meta: Mapping[str, str]) -> bool:
    """True when `meta`'s signature was made with `key` for its identity fields."""
    expected = sign_identity(
        key,
        meta.get("campaign_id", ""),
        meta.get("student_id", ""),
        meta.get("grid_id", ""),
        meta.get("grid_version", ""),
    )
    return hmac.compare_digest(expected, meta.get("signature", "").strip().lower())


def identity_values(student: Student, grid: Grid, campaign_id: str, key: bytes) -> dict[str, str]:
    """The values that replace the template's tokens for `student`."""
    period = f"du {student.start:%d/%m/%Y} au {student.end:%d/%m/%Y}"
    return {
        "student_name": student.display_name,
        "last_name": student.last_name,
        "first_name": student.first_name,
        "class_name": student.class_name,
        "company": student.company,
        "tutor_name": student.tutor_name,
        "tutor_email": student.tutor_email,
        "period": period,
        "student_id": student.student_id,
        "signature": sign_identity(key, campaign_id, student.student_id, grid.id, grid.version),
    }


# ---------------------------------------------------------------- template


def _style(cell: Any, *, font: Font = _NORMAL, fill: PatternFill | None = None,
           align: Alignment = _WRAP, border: bool = True) -> None:  # fmt: skip
    cell.font = font
    cell.alignment = align
    if fill is not None:
        cell.fill = fill
    if border:
        cell.border = _BORDER


def _input(cell: Any) -> None:
    """Mark a cell as an input: unlocked, visibly styled."""
    _style(cell, fill=_INPUT_FILL, align=_CENTER)
    cell.protection = _UNLOCKED


def _line_height(text: str, width_chars: float, line_pt: float = 13.0) -> float:
    """Estimated row height (points) for wrapped `text` in a column `width_chars` wide."""
    lines = 0
    for paragraph in text.split("\n"):
        lines += max(1, -(-len(paragraph) // max(1, int(width_chars * 1.1))))
    return max(15.0, lines * line_pt + 4)


def _protect(ws: Worksheet, password: str) -> None:
    ws.protection.sheet = True
    ws.protection.formatRows = False  # a tutor may enlarge a row to read a long text
    ws.protection.formatColumns = False
    if password:
        ws.protection.password = password


def _page_setup(ws: Worksheet, title_rows: str | None = None) -> None:
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = "portrait"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.5
    ws.page_margins.top = ws.page_margins.bottom = 0.6
    ws.oddFooter.center.text = "Page &P / &N"
    ws.oddFooter.right.text = "&A"
    if title_rows:
        ws.print_title_rows = title_rows


class _ListSource:
    """Formula1 of a list validation: inline when short, a hidden-sheet range otherwise."""

    def __init__(self, wb: Workbook) -> None:
        self.wb = wb
        self.sheet: Worksheet | None = None
        self.cache: dict[tuple[object, ...], str] = {}

    def formula(self, options: Iterable[object]) -> str:
        values = tuple(options)
        if values in self.cache:
            return self.cache[values]
        inline = ",".join(str(v) for v in values)
        if (
            len(inline) + 2 <= MAX_INLINE_LIST
            and '"' not in inline
            and "," not in "".join(str(v) for v in values)
        ):
            result = f'"{inline}"'
        else:
            if self.sheet is None:
                self.sheet = self.wb.create_sheet(LISTS_SHEET)
                self.sheet.sheet_state = "hidden"
            column = get_column_letter(len(self.cache) + 1)
            for i, value in enumerate(values, start=1):
                self.sheet[f"{column}{i}"] = value  # numbers stay numbers
            result = f"{quote_sheetname(LISTS_SHEET)}!${column}$1:${column}${len(values)}"
        self.cache[values] = result
        return result


def _validation(ws: Worksheet, formula: str, cells: str, *, title: str, prompt: str,
                error: str) -> None:  # fmt: skip
    dv = DataValidation(
        type="list",
        formula1=formula,
        allow_blank=True,
        showErrorMessage=True,
        showInputMessage=True,
        errorStyle="stop",
        errorTitle=title[:32],
        error=error[:255],
        promptTitle=title[:32],
        prompt=prompt[:255],
    )
    ws.add_data_validation(dv)
    for cell in cells.split():
        dv.add(cell)


def _empty_highlight(ws: Worksheet, cells: str, first_cell: str, placeholder: str = "") -> None:
    """Colour the input while it is empty (or still holds its placeholder)."""
    empty = f"LEN(TRIM({first_cell}))=0"
    if placeholder:
        empty = f'OR({empty},{first_cell}="{placeholder.replace(chr(34), chr(34) * 2)}")'
    ws.conditional_formatting.add(cells, FormulaRule(formula=[empty], fill=_EMPTY_FILL))


def _scale_prompt(grid: Grid) -> str:
    return " ; ".join(f"{level.code} : {level.label.lower()}" for level in grid.scale)


def _write_instructions(ws: Worksheet, grid: Grid, layout: Layout, opts: TemplateOptions,
                        completion: str) -> None:  # fmt: skip
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 70
    ws["A1"] = "Grille d'évaluation du stage"
    _style(ws["A1"], font=_TITLE_FONT, border=False, align=Alignment(vertical="center"))
    ws.merge_cells("A1:B1")
    ws["A2"] = grid.title
    ws["A3"] = " — ".join(t for t in (opts.school, opts.session, opts.school_year) if t)
    for ref in ("A2", "A3"):
        _style(ws[ref], font=_BOLD, border=False, align=_WRAP)
        ws.merge_cells(f"{ref}:B{ref[1:]}")
    rows = {
        "student_name": "Stagiaire",
        "class_name": "Classe",
        "company": "Entreprise",
        "tutor_name": "Tuteur",
        "tutor_email": "E-mail du tuteur",
        "period": "Période de stage",
    }
    for name, label in rows.items():
        row = _IDENTITY_ROWS[name]
        ws[f"A{row}"] = label
        _style(ws[f"A{row}"], font=_BOLD, fill=_HEADER_FILL)
        ws[f"B{row}"] = token(name)
        _style(ws[f"B{row}"])
    row = 12
    ws[f"A{row}"] = "Avancement"
    _style(ws[f"A{row}"], font=_BOLD, fill=_HEADER_FILL)
    ws[f"B{row}"] = completion
    _style(ws[f"B{row}"], font=_BOLD)
    deadline = f"{opts.deadline:%d/%m/%Y}" if opts.deadline else "indiquée dans le message"
    contact = opts.teacher_name + (f" ({opts.teacher_email})" if opts.teacher_email else "")
    steps = [
        "Comment remplir cette grille",
        f"1. Pour chaque critère des feuilles {', '.join(s.sheet for s in grid.sections)}, "
        "choisissez une note dans la liste de la cellule jaune : " + _scale_prompt(grid) + ".",
        f"2. Feuille « {grid.global_evaluation.sheet} » : choisissez le niveau de chaque "
        "dimension ; la signification de chaque niveau est écrite à droite.",
        f"3. Feuille « {grid.closing.sheet} » : écrivez votre appréciation, la date et votre "
        "nom (il vaut signature).",
        "Les cellules jaunes sont à remplir ; une cellule orangée est encore vide. "
        "Le reste du classeur est protégé.",
        f"4. Enregistrez le fichier au format Excel (.xlsx), sans changer sa structure, et "
        f"renvoyez-le en réponse au message reçu, avant le {deadline}.",
        "Vous pouvez le remplir avec Excel, LibreOffice Calc ou Google Sheets "
        "(dans ce cas : Fichier › Télécharger › Microsoft Excel).",
        f"Contact : {contact}" if contact.strip() else "",
    ]
    row = 14
    for i, text in enumerate(s for s in steps if s):
        ws[f"A{row}"] = text
        ws.merge_cells(f"A{row}:B{row}")
        _style(ws[f"A{row}"], font=_BOLD if i == 0 else _NORMAL, border=False)
        ws.row_dimensions[row].height = _line_height(text, 95)
        row += 1
    row += 1
    ws[f"A{row}"] = grid.objectives_title
    _style(ws[f"A{row}"], font=_BOLD, border=False)
    row += 1
    for item in grid.objectives:
        ws[f"A{row}"] = f"· {item}"
        ws.merge_cells(f"A{row}:B{row}")
        _style(ws[f"A{row}"], border=False)
        row += 1
    ws[f"A{row}"] = grid.competencies_intro
    ws.merge_cells(f"A{row}:B{row}")
    _style(ws[f"A{row}"], border=False)
    ws.row_dimensions[row].height = _line_height(grid.competencies_intro, 95)
    row += 1
    for competency in grid.competencies:
        ws[f"A{row}"] = competency.code
        ws[f"B{row}"] = competency.label
        _style(ws[f"A{row}"], font=_BOLD)
        _style(ws[f"B{row}"])
        row += 1
    _page_setup(ws)


def _write_section(ws: Worksheet, grid: Grid, plan: SectionPlan, lists: _ListSource) -> None:
    section = plan.section
    widths = {"A": 46, "B": 52, "C": 30, "D": 16}
    for column, width in widths.items():
        ws.column_dimensions[column].width = width
    ws["A1"] = section.title
    _style(ws["A1"], font=_TITLE_FONT, border=False, align=Alignment(vertical="center"))
    ws.merge_cells("A1:D1")
    ws.row_dimensions[1].height = 24
    ws["A2"] = _IDENTITY_LINE
    _style(ws["A2"], font=_BOLD, border=False)
    ws.merge_cells("A2:D2")
    first = plan.rows[0][1]
    last = plan.rows[-1][1]
    rating_range = f"{RATING_COLUMN}{first}:{RATING_COLUMN}{last}"
    ws["A3"] = f'=COUNTA({rating_range})&" / {len(section.criteria)} critères notés"'
    _style(ws["A3"], font=_SMALL, border=False)
    ws["A5"] = "Compétences professionnelles à mobiliser et activités à mener"
    _style(ws["A5"], font=_BOLD, border=False)
    ws.merge_cells("A5:D5")
    for column, title in zip(
        "ABC", ("Référentiel", "Activités", "Moyens et ressources"), strict=True
    ):
        ws[f"{column}6"] = title
        _style(ws[f"{column}6"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
    ws.merge_cells("C6:D6")
    for block, row in zip(section.blocks, plan.block_rows, strict=True):
        ws[f"A{row}"] = block.referential
        ws[f"B{row}"] = block.activities
        ws[f"C{row}"] = block.resources
        ws.merge_cells(f"C{row}:D{row}")
        for column in "ABCD":
            _style(ws[f"{column}{row}"])
        ws.row_dimensions[row].height = min(
            409.0,
            max(
                _line_height(block.referential, 46, 12),
                _line_height(block.activities, 52, 12),
                _line_height(block.resources, 46, 12),
            ),
        )
    header = plan.criteria_header_row
    ws[f"A{header}"] = section.criteria_title
    ws.merge_cells(f"A{header}:C{header}")
    ws[f"D{header}"] = f"{section.rater}\n({' / '.join(grid.scale_codes)})"
    for column in "ABCD":
        _style(ws[f"{column}{header}"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
    ws.row_dimensions[header].height = 30
    labels = {c.id: c.label for c in section.criteria}
    for kind, row, value in plan.rows:
        if kind == "heading":
            ws[f"A{row}"] = value
            ws.merge_cells(f"A{row}:D{row}")
            for column in "ABCD":
                _style(ws[f"{column}{row}"], font=_BOLD, fill=_HEADING_FILL)
        else:
            ws[f"A{row}"] = labels[value]
            ws.merge_cells(f"A{row}:C{row}")
            for column in "ABC":
                _style(ws[f"{column}{row}"])
            _input(ws[f"{RATING_COLUMN}{row}"])
            ws.row_dimensions[row].height = _line_height(labels[value], 120)
    codes = grid.scale_codes
    _validation(
        ws,
        lists.formula(codes),
        " ".join(f"{RATING_COLUMN}{row}" for kind, row, _ in plan.rows if kind == "criterion"),
        title="Note du tuteur",
        prompt=f"Choisissez dans la liste : {_scale_prompt(grid)}.",
        error=f"Note invalide. Choisissez {', '.join(codes[:-1])} ou {codes[-1]} dans la liste.",
    )
    for kind, row, _ in plan.rows:
        if kind == "criterion":
            cell = f"{RATING_COLUMN}{row}"
            _empty_highlight(ws, cell, cell)
    ws.freeze_panes = "A3"
    _page_setup(ws, "1:2")


def _write_global(ws: Worksheet, grid: Grid, layout: Layout, lists: _ListSource) -> None:
    ge = grid.global_evaluation
    ws.column_dimensions["A"].width = 30
    ws.column_dimensions["B"].width = 12
    ws.column_dimensions["C"].width = 90
    ws["A1"] = ge.title
    _style(ws["A1"], font=_TITLE_FONT, border=False, align=Alignment(vertical="center"))
    ws.merge_cells("A1:C1")
    ws["A2"] = _IDENTITY_LINE
    _style(ws["A2"], font=_BOLD, border=False)
    ws.merge_cells("A2:C2")
    intro = "\n".join([ge.intro, *(f"· {p}" for p in ge.points)]).strip()
    ws["A3"] = intro
    ws.merge_cells("A3:C5")
    _style(ws["A3"], border=False)
    ws.row_dimensions[3].height = 20
    ws["A7"] = "Dimension"
    ws["B7"] = f"{ge.rater} : niveau"
    ws["C7"] = "Niveaux (choisissez le numéro dans la cellule jaune)"
    for column in "ABC":
        _style(ws[f"{column}7"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
    for dim in ge.dimensions:
        ref = layout.dimensions[dim.id]
        row = int(ref.cell[1:])
        ws[f"A{row}"] = dim.label
        _style(ws[f"A{row}"], font=_BOLD)
        _input(ws[ref.cell])
        descriptors = "\n".join(f"{level.value} – {level.text}" for level in dim.levels)
        ws[f"C{row}"] = descriptors
        _style(ws[f"C{row}"])
        ws.row_dimensions[row].height = _line_height(descriptors, 90, 12.5)
        values = dim.values
        listed = ", ".join(str(v) for v in values[:-1]) + f" ou {values[-1]}"
        _validation(
            ws,
            lists.formula(values),
            ref.cell,
            title=dim.label,
            prompt=f"Choisissez le niveau {listed} (signification à droite).",
            error=f"Niveau invalide pour « {dim.label} ». Choisissez {listed}.",
        )
        _empty_highlight(ws, ref.cell, ref.cell)
    first = _GLOBAL_FIRST_ROW
    last = first + len(ge.dimensions) - 1
    total_row = last + 1
    ws[f"A{total_row}"] = "Total"
    ws[f"B{total_row}"] = f"=SUM(B{first}:B{last})"
    ws[f"C{total_row}"] = f"sur {ge.maximum}"
    for column in "ABC":
        _style(ws[f"{column}{total_row}"], font=_BOLD, fill=_HEADER_FILL)
    ws.freeze_panes = "A3"
    _page_setup(ws, "1:2")


def _write_closing(ws: Worksheet, grid: Grid, layout: Layout) -> None:
    closing = grid.closing
    for column, width in {"A": 30, "B": 30, "C": 30, "D": 30}.items():
        ws.column_dimensions[column].width = width
    ws["A1"] = "Appréciations"
    _style(ws["A1"], font=_TITLE_FONT, border=False, align=Alignment(vertical="center"))
    ws["A2"] = _IDENTITY_LINE
    _style(ws["A2"], font=_BOLD, border=False)
    ws.merge_cells("A2:D2")
    row = _CLOSING_ROWS["appreciation"]
    ws[f"A{row - 1}"] = closing.tutor_appreciation
    _style(ws[f"A{row - 1}"], font=_BOLD, fill=_HEADER_FILL)
    ws.merge_cells(f"A{row - 1}:D{row - 1}")
    box = f"A{row}:D{row + 10}"
    ws[f"A{row}"] = APPRECIATION_PLACEHOLDER
    ws.merge_cells(box)
    _input(ws[f"A{row}"])
    ws[f"A{row}"].alignment = Alignment(wrap_text=True, vertical="top", horizontal="left")
    _empty_highlight(ws, f"A{row}", f"A{row}", APPRECIATION_PLACEHOLDER)
    team = _CLOSING_ROWS["team"]
    ws[f"A{team - 1}"] = closing.team_appreciation
    _style(ws[f"A{team - 1}"], font=_BOLD, fill=_HEADER_FILL)
    ws.merge_cells(f"A{team - 1}:D{team - 1}")
    ws[f"A{team}"] = TEAM_RESERVED_TEXT
    ws.merge_cells(f"A{team}:D{team + 6}")
    _style(ws[f"A{team}"], font=_SMALL, fill=_RESERVED_FILL)
    for label, ref, fmt in (
        (f"{closing.date} (jj/mm/aaaa)", layout.date, "DD/MM/YYYY"),
        (f"{closing.signature} (votre nom)", layout.signature, None),
    ):
        row = int(ref.cell[1:])
        ws[f"A{row}"] = label
        _style(ws[f"A{row}"], font=_BOLD, fill=_HEADER_FILL)
        _input(ws[ref.cell])
        ws.merge_cells(f"{ref.cell}:C{row}")
        if fmt:
            ws[ref.cell].number_format = fmt
        _empty_highlight(ws, ref.cell, ref.cell)
    date_dv = DataValidation(
        type="date",
        operator="between",
        formula1="36526",  # 01/01/2000
        formula2="73051",  # 31/12/2099
        allow_blank=True,
        showErrorMessage=True,
        showInputMessage=True,
        errorTitle="Date invalide",
        error="Tapez une date au format jj/mm/aaaa, par exemple 15/03/2027.",
        promptTitle=closing.date,
        prompt="Date de l'évaluation, au format jj/mm/aaaa.",
    )
    ws.add_data_validation(date_dv)
    date_dv.add(layout.date.cell)
    sig_dv = DataValidation(
        type="textLength",
        operator="between",
        formula1="2",
        formula2="120",
        allow_blank=True,
        showErrorMessage=True,
        showInputMessage=True,
        errorTitle="Signature",
        error="Tapez votre prénom et votre nom.",
        promptTitle=closing.signature,
        prompt="Tapez votre prénom et votre nom : ils valent signature.",
    )
    ws.add_data_validation(sig_dv)
    sig_dv.add(layout.signature.cell)
    _page_setup(ws, "1:2")


def _completion_formula(grid: Grid, layout: Layout) -> str:
    parts = []
    for plan in layout.sections:
        first, last = plan.rows[0][1], plan.rows[-1][1]
        parts.append(
            f"COUNTA({quote_sheetname(plan.section.sheet)}!{RATING_COLUMN}{first}:{RATING_COLUMN}{last})"
        )
    dims = list(layout.dimensions.values())
    parts.append(f"COUNTA({quote_sheetname(dims[0].sheet)}!{dims[0].cell}:{dims[-1].cell})")
    closing = quote_sheetname(grid.closing.sheet)
    app = f"{closing}!{layout.appreciation.cell}"
    placeholder = APPRECIATION_PLACEHOLDER.replace('"', '""')
    parts.append(f'AND(LEN(TRIM({app}))>0,{app}<>"{placeholder}")*1')
    parts.append(f"COUNTA({closing}!{layout.date.cell})")
    parts.append(f"COUNTA({closing}!{layout.signature.cell})")
    return f'=({"+".join(parts)})&" / {layout.field_count} champs renseignés"'


def build_template(grid: Grid, opts: TemplateOptions) -> Workbook:
    """The campaign's workbook, identity fields left as tokens (see `WorkbookStamper`)."""
    layout = plan_layout(grid)
    wb = Workbook()
    lists = _ListSource(wb)
    instructions = wb.active
    assert instructions is not None
    instructions.title = INSTRUCTIONS_SHEET
    _write_instructions(instructions, grid, layout, opts, _completion_formula(grid, layout))
    for plan in layout.sections:
        _write_section(wb.create_sheet(plan.section.sheet), grid, plan, lists)
    _write_global(wb.create_sheet(grid.global_evaluation.sheet), grid, layout, lists)
    _write_closing(wb.create_sheet(grid.closing.sheet), grid, layout)
    if lists.sheet is not None:  # keep the list sheet after the visible ones
        wb.move_sheet(LISTS_SHEET, offset=len(wb.sheetnames))
    meta = wb.create_sheet(META_SHEET)
    values = {
        "format": FORMAT_VERSION,
        "campaign_id": opts.campaign_id,
        "student_id": token("student_id"),
        "grid_id": grid.id,
        "grid_version": grid.version,
        "signature": token("signature"),
    }
    for row, (key, value) in enumerate(values.items(), start=1):
        meta[f"A{row}"] = key
        meta[f"B{row}"] = value
        wb.custom_doc_props.append(StringProperty(name=PROPERTY_PREFIX + key, value=value))
    meta.sheet_state = "veryHidden"
    for ws in wb.worksheets:
        _protect(ws, opts.protection_password)
        ws.sheet_view.showGridLines = ws.title == META_SHEET
    wb.security = WorkbookProtection(lockStructure=True)
    if opts.protection_password:
        wb.security.workbookPassword = opts.protection_password
    wb.properties.title = "Grille d'évaluation de stage"
    wb.properties.creator = "grille"
    wb.properties.subject = grid.title
    wb.active = 0
    return wb


def template_bytes(wb: Workbook) -> bytes:
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- stamping


@dataclass
class WorkbookStamper:
    """Makes each student's file from the template's zip: copies the constant parts,
    fills the tokens of the few parts that have them."""

    template: bytes
    _prefix: bytes = field(init=False, repr=False)
    _variable: list[tuple[zipfile.ZipInfo, bytes]] = field(init=False, repr=False)
    digest: str = field(init=False)  # identifies the template's content, not its save time

    def __post_init__(self) -> None:
        constant = io.BytesIO()
        self._variable = []
        digest = hashlib.sha256()
        with (
            zipfile.ZipFile(io.BytesIO(self.template)) as source,
            zipfile.ZipFile(constant, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            for info in source.infolist():
                data = source.read(info)
                if info.filename != "docProps/core.xml":  # holds the save time
                    digest.update(info.filename.encode() + b"\0" + data)
                new_info = zipfile.ZipInfo(info.filename, _ZIP_DATE)
                new_info.compress_type = zipfile.ZIP_DEFLATED
                if TOKEN_PATTERN.search(data):
                    self._variable.append((new_info, data))
                else:
                    target.writestr(new_info, data)
        self._prefix = constant.getvalue()
        self.digest = digest.hexdigest()

    def stamp(self, values: Mapping[str, str]) -> bytes:
        """The workbook bytes with every token replaced by its (XML-escaped) value."""
        escaped = {
            f"@@GRILLE_{k.upper()}@@".encode(): escape(v, {'"': "&quot;"}).encode("utf-8")
            for k, v in values.items()
        }

        def replace(match: re.Match[bytes]) -> bytes:
            return escaped.get(match.group(0), b"")

        buffer = io.BytesIO(self._prefix)
        buffer.seek(0, io.SEEK_END)
        with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for info, data in self._variable:
                archive.writestr(info, TOKEN_PATTERN.sub(replace, data))
        return buffer.getvalue()


def student_file_name(student: Student) -> str:
    """`NOM_Prenom_ID.xlsx`: readable, unique, safe on Windows and macOS."""
    from pipeline.files import safe_name

    return (
        f"{safe_name(student.last_name).upper()}_{safe_name(student.first_name)}_"
        f"{safe_name(student.student_id, 40)}.xlsx"
    )


# ---------------------------------------------------------------- reading back


@dataclass(frozen=True)
class ReturnedWorkbook:
    """What a returned file holds, read from its cells without trusting anything.

    `answers` maps each input (criterion id, dimension id, "appreciation", "date",
    "signature") to its cell and raw content (None when the cell is empty or absent).
    """

    meta: dict[str, str]
    properties: dict[str, str]
    meta_sheet_state: str | None
    identity: dict[str, str]
    answers: dict[str, tuple[CellRef, RawCell | None]]
    labels: dict[str, tuple[CellRef, str]]
    missing_sheets: tuple[str, ...]
    date1904: bool


def read_identity(package: XlsxPackage) -> tuple[dict[str, str], dict[str, str], str | None]:
    """(metadata sheet values, grille_* properties, metadata sheet state)."""
    properties = {
        name.removeprefix(PROPERTY_PREFIX): value
        for name, value in package.custom_properties().items()
        if name.startswith(PROPERTY_PREFIX)
    }
    meta: dict[str, str] = {}
    sheet = package.sheet(META_SHEET)
    if sheet is not None:
        refs = {f"{column}{row}" for row in range(1, len(META_KEYS) + 1) for column in "AB"}
        cells = package.read_cells(sheet, refs)
        for row in range(1, len(META_KEYS) + 1):
            key, value = cells.get(f"A{row}"), cells.get(f"B{row}")
            if key is not None and value is not None and key.value in META_KEYS:
                text = value.value.strip()
                if value.kind == "n" and re.fullmatch(r"-?[0-9]+\.0+", text):
                    text = text.split(".")[0]
                meta[key.value] = text
    return meta, properties, sheet.state if sheet is not None else None


def read_returned(
    package: XlsxPackage,
    grid: Grid,
    identity: tuple[dict[str, str], dict[str, str], str | None] | None = None,
) -> ReturnedWorkbook:
    """Read every input, the identity and the checked labels of a returned workbook.

    `identity` is what `read_identity` already returned for this package, if called.
    """
    layout = plan_layout(grid)
    meta, properties, meta_state = identity or read_identity(package)
    wanted: dict[str, set[str]] = {}
    inputs: dict[str, CellRef] = {
        **layout.criteria,
        **layout.dimensions,
        "appreciation": layout.appreciation,
        "date": layout.date,
        "signature": layout.signature,
    }
    for ref in [*inputs.values(), *layout.criterion_labels.values(), *layout.identity.values()]:
        wanted.setdefault(ref.sheet, set()).add(ref.cell)
    cells: dict[str, dict[str, RawCell]] = {}
    missing = []
    for sheet_name, refs in wanted.items():
        sheet = package.sheet(sheet_name)
        if sheet is None:
            missing.append(sheet_name)
            continue
        cells[sheet_name] = package.read_cells(sheet, refs)

    def raw(ref: CellRef) -> RawCell | None:
        cell = cells.get(ref.sheet, {}).get(ref.cell)
        if cell is None or not cell.value.strip():
            return None
        return cell

    return ReturnedWorkbook(
        meta=meta,
        properties=properties,
        meta_sheet_state=meta_state,
        identity={
            name: (cell.value if (cell := raw(ref)) is not None else "")
            for name, ref in layout.identity.items()
        },
        answers={key: (ref, raw(ref)) for key, ref in inputs.items()},
        labels={
            cid: (ref, cell.value if (cell := raw(ref)) is not None else "")
            for cid, ref in layout.criterion_labels.items()
        },
        missing_sheets=tuple(missing),
        date1904=package.date1904,
    )
