"""The student workbook format: the one place that knows which cell holds what.

Writing: `build_template(grid, options)` builds, once per campaign, a complete workbook
with openpyxl in which every per-student text is a token (`@@GRILLE_…@@`). A
`WorkbookStamper` then makes each student's file at the package level: the parts
without tokens are copied as they are, the few parts with tokens (shared strings,
custom properties) get the student's values. This is ~50× faster than building each
workbook with openpyxl, and every file has exactly the same structure.

Reading back, from the same `plan_layout(grid)` that places the cells when writing:
`read_identity` (the signed hidden identity) and `read_returned` (every answer at its
address); `pipeline.reading` finds the answers by content when the layout moved.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import textwrap
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
from openpyxl.utils import column_index_from_string, get_column_letter, quote_sheetname
from openpyxl.workbook.protection import WorkbookProtection
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.grid import Closing, GlobalEvaluation, Grid, ScaleLevel, Section
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
APPRECIATION_LIMIT = 1500  # characters: the box is sized to show this much, on screen and paper
TEAM_RESERVED_TEXT = "Réservé à l'équipe pédagogique : ne pas remplir."
_STAMP = "Cachet de l'entreprise"
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
_INPUT_FILL = PatternFill("solid", fgColor="FFEB80")  # « cellules jaunes » : still to fill
# A filled input turns green. In a conditional format Excel paints a solid fill with its
# bgColor and LibreOffice with its fgColor: set both.
_FILLED_FILL = PatternFill("solid", fgColor="D8EBCB", bgColor="D8EBCB")
_RESERVED_FILL = PatternFill("solid", fgColor="F2F2F2")
_WRAP = Alignment(wrap_text=True, vertical="top")
_CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
_LINE_PT = 13.0  # one line of Arial 10, with LibreOffice's and Excel's spacing
_MAX_TICK_BOXES = 6  # a longer scale gets no tick-box columns: they would not fit on paper
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


def _wrapped_lines(text: str, width_chars: float, *, bold: bool = False) -> int:
    """Lines `text` takes, word-wrapped in a column (or merged range) `width_chars` wide.

    openpyxl cannot autofit and Excel does not autofit merged cells: the height is computed
    here, on the safe side (Arial 10 fits about 1.3 characters per unit of width; 1.1 is
    assumed, 0.95 in bold).
    """
    per_line = max(1, int(width_chars * (0.95 if bold else 1.1)))
    return sum(
        len(textwrap.wrap(paragraph, per_line, break_on_hyphens=False)) or 1
        for paragraph in text.split("\n")
    )


def _line_height(
    text: str, width_chars: float, line_pt: float = _LINE_PT, *, bold: bool = False
) -> float:
    """Row height (points) that shows wrapped `text` whole in a column `width_chars` wide."""
    return max(15.0, _wrapped_lines(text, width_chars, bold=bold) * line_pt + 4)


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


def _filled_highlight(ws: Worksheet, cells: str, first_cell: str, placeholder: str = "") -> None:
    """Turn the (yellow) input green once filled, its placeholder not counting as filled.

    Yellow is the cell's own fill, so a client that drops conditional formats still shows
    the cells to fill in yellow, as the instructions and the e-mail say.
    """
    empty = f"LEN(TRIM({first_cell}))=0"
    if placeholder:
        empty = f'OR({empty},{first_cell}="{placeholder.replace(chr(34), chr(34) * 2)}")'
    rule = FormulaRule(formula=[f"NOT({empty})"], fill=_FILLED_FILL)
    ws.conditional_formatting.add(cells, rule)


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
    rate_by_hand = (
        f"cochez une case ({' / '.join(grid.scale_codes)})"
        if len(grid.scale) <= _MAX_TICK_BOXES
        else "écrivez une note"
    )
    steps = [
        "Comment remplir cette grille",
        f"1. Pour chaque critère des feuilles {', '.join(s.sheet for s in grid.sections)}, "
        "choisissez une note dans la liste de la cellule jaune : " + _scale_prompt(grid) + ".",
        f"2. Feuille « {grid.global_evaluation.sheet} » : choisissez le niveau de chaque "
        "dimension ; la signification de chaque niveau est écrite à droite.",
        f"3. Feuille « {grid.closing.sheet} » : écrivez votre appréciation, la date et votre "
        "nom (il vaut signature).",
        "Les cellules jaunes sont à remplir ; une cellule remplie devient verte. "
        "Le reste du classeur est protégé.",
        f"4. Enregistrez le fichier au format Excel (.xlsx), sans changer sa structure, et "
        f"renvoyez-le en réponse au message reçu, avant le {deadline}.",
        "Vous pouvez le remplir avec Excel, LibreOffice Calc ou Google Sheets "
        "(dans ce cas : Fichier › Télécharger › Microsoft Excel).",
        f"Sur papier, si vous préférez : imprimez le classeur, {rate_by_hand} par critère, "
        "écrivez le niveau de chaque dimension, puis signez et apposez le cachet de "
        f"l'entreprise (feuille « {grid.closing.sheet} »).",
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


def _merged_width(ws: Worksheet, first: str, last: str) -> float:
    """Width in characters of columns `first`..`last` (letters)."""
    start, stop = column_index_from_string(first), column_index_from_string(last)
    return float(
        sum(ws.column_dimensions[get_column_letter(c)].width for c in range(start, stop + 1))
    )


def _fit_row(ws: Worksheet, row: int, *cells: tuple[str, str]) -> None:
    """Make `row` tall enough for each (first column, last column) span's wrapped text."""
    heights = [15.0]
    for first, last in cells:
        cell = ws[f"{first}{row}"]
        if isinstance(cell.value, str) and not cell.value.startswith("="):
            bold = bool(cell.font is not None and cell.font.b)
            width = _merged_width(ws, first, last)
            heights.append(_line_height(cell.value, width, bold=bold))
    ws.row_dimensions[row].height = max(heights)


def _tick_formula(cell: str, level: ScaleLevel) -> str:
    """« X » when `cell` holds this level (code or label, any case), else nothing."""
    value = f"UPPER(TRIM({cell}))"
    options = dict.fromkeys((level.code.upper(), level.label.upper()))
    tests = ",".join(f'{value}="{option.replace(chr(34), chr(34) * 2)}"' for option in options)
    return f'=IF(OR({tests}),"X","")'


def _write_section(ws: Worksheet, grid: Grid, plan: SectionPlan, lists: _ListSource) -> None:
    """A rated section: activities table, then the criteria, rated in column D.

    Columns E… repeat the rating as tick boxes (TI / I / S / TS, as in the paper grid): they
    show an « X » on screen, and a printed blank copy can be ticked by hand.
    """
    section = plan.section
    ticks = grid.scale if len(grid.scale) <= _MAX_TICK_BOXES else ()
    last_column = get_column_letter(column_index_from_string(RATING_COLUMN) + len(ticks))
    widths = {"A": 42, "B": 48, "C": 24, RATING_COLUMN: 18}
    first_tick = column_index_from_string(RATING_COLUMN) + 1
    tick_columns = [get_column_letter(first_tick + i) for i in range(len(ticks))]
    widths.update(dict.fromkeys(tick_columns, 5.5))
    for column, width in widths.items():
        ws.column_dimensions[column].width = width
    ws["A1"] = section.title
    _style(ws["A1"], font=_TITLE_FONT, border=False, align=Alignment(vertical="center"))
    ws.merge_cells(f"A1:{last_column}1")
    ws.row_dimensions[1].height = 24
    ws["A2"] = _IDENTITY_LINE
    _style(ws["A2"], font=_BOLD, border=False)
    ws.merge_cells(f"A2:{last_column}2")
    first = plan.rows[0][1]
    last = plan.rows[-1][1]
    rating_range = f"{RATING_COLUMN}{first}:{RATING_COLUMN}{last}"
    ws["A3"] = f'=COUNTA({rating_range})&" / {len(section.criteria)} critères notés"'
    _style(ws["A3"], font=_SMALL, border=False)
    ws["A5"] = "Compétences professionnelles à mobiliser et activités à mener"
    _style(ws["A5"], font=_BOLD, border=False)
    ws.merge_cells(f"A5:{last_column}5")
    for column, title in zip(
        "ABC", ("Référentiel", "Activités", "Moyens et ressources"), strict=True
    ):
        ws[f"{column}6"] = title
        _style(ws[f"{column}6"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
    ws.merge_cells(f"C6:{last_column}6")
    all_columns = [
        get_column_letter(c) for c in range(1, column_index_from_string(last_column) + 1)
    ]
    for column in all_columns[3:]:
        _style(ws[f"{column}6"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
    resources_width = _merged_width(ws, "C", last_column)
    for block, row in zip(section.blocks, plan.block_rows, strict=True):
        ws[f"A{row}"] = block.referential
        ws[f"B{row}"] = block.activities
        ws[f"C{row}"] = block.resources
        ws.merge_cells(f"C{row}:{last_column}{row}")
        for column in all_columns:
            _style(ws[f"{column}{row}"])
        ws.row_dimensions[row].height = min(
            409.0,
            max(
                _line_height(block.referential, widths["A"], 12),
                _line_height(block.activities, widths["B"], 12),
                _line_height(block.resources, resources_width, 12),
            ),
        )
    header = plan.criteria_header_row
    ws[f"A{header}"] = section.criteria_title
    ws.merge_cells(f"A{header}:C{header}")
    ws[f"{RATING_COLUMN}{header}"] = f"{section.rater}\n({' / '.join(grid.scale_codes)})"
    for column, level in zip(tick_columns, ticks, strict=True):
        ws[f"{column}{header}"] = level.code
    for column in ["A", "B", "C", RATING_COLUMN, *tick_columns]:
        _style(ws[f"{column}{header}"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
    _fit_row(ws, header, ("A", "C"), (RATING_COLUMN, RATING_COLUMN))
    labels = {c.id: c.label for c in section.criteria}
    labels_width = _merged_width(ws, "A", "C")
    for kind, row, value in plan.rows:
        if kind == "heading":
            ws[f"A{row}"] = value
            ws.merge_cells(f"A{row}:{last_column}{row}")
            for column in all_columns:
                _style(ws[f"{column}{row}"], font=_BOLD, fill=_HEADING_FILL)
            ws.row_dimensions[row].height = _line_height(value, labels_width, bold=True)
        else:
            ws[f"A{row}"] = labels[value]
            ws.merge_cells(f"A{row}:C{row}")
            for column in "ABC":
                _style(ws[f"{column}{row}"])
            _input(ws[f"{RATING_COLUMN}{row}"])
            for column, level in zip(tick_columns, ticks, strict=True):
                ws[f"{column}{row}"] = _tick_formula(f"{RATING_COLUMN}{row}", level)
                _style(ws[f"{column}{row}"], font=_BOLD, align=_CENTER)
            ws.row_dimensions[row].height = _line_height(labels[value], labels_width)
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
            _filled_highlight(ws, cell, cell)
    ws.freeze_panes = "A3"
    _page_setup(ws, "1:2")


def _total_formulas(ge: GlobalEvaluation, first: int, last: int) -> tuple[str, str]:
    """(total, « sur N » caption): the total stays empty until every level is chosen, and
    the caption says how many are missing; a blank form never shows « 0 sur 24 »."""
    cells = f"{LEVEL_COLUMN}{first}:{LEVEL_COLUMN}{last}"
    count = len(ge.dimensions)
    done = f"COUNT({cells})={count}"
    missing = f"{count}-COUNT({cells})"
    caption = (
        f'=IF({done},"sur {ge.maximum}",IF({missing}=1,'
        f'"sur {ge.maximum} : encore 1 niveau à choisir",'
        f'"sur {ge.maximum} : encore "&({missing})&" niveaux à choisir"))'
    )
    return f'=IF({done},SUM({cells}),"")', caption


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
    intro_height = _line_height(intro, _merged_width(ws, "A", "C")) if intro else 15.0
    for row in (3, 4, 5):  # the merged area shares the height
        ws.row_dimensions[row].height = max(15.0, intro_height / 3)
    ws["A7"] = "Dimension"
    ws["B7"] = f"{ge.rater} : niveau"
    ws["C7"] = "Niveaux (choisissez le numéro dans la cellule jaune)"
    for column in "ABC":
        _style(ws[f"{column}7"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
    _fit_row(ws, 7, ("A", "A"), ("B", "B"), ("C", "C"))
    for dim in ge.dimensions:
        ref = layout.dimensions[dim.id]
        row = int(ref.cell[1:])
        ws[f"A{row}"] = dim.label
        _style(ws[f"A{row}"], font=_BOLD)
        _input(ws[ref.cell])
        descriptors = "\n".join(f"{level.value} – {level.text}" for level in dim.levels)
        ws[f"C{row}"] = descriptors
        _style(ws[f"C{row}"])
        _fit_row(ws, row, ("A", "A"), ("C", "C"))
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
        _filled_highlight(ws, ref.cell, ref.cell)
    first = _GLOBAL_FIRST_ROW
    last = first + len(ge.dimensions) - 1
    total_row = last + 1
    ws[f"A{total_row}"] = "Total"
    ws[f"B{total_row}"], ws[f"C{total_row}"] = _total_formulas(ge, first, last)
    for column in "ABC":
        _style(ws[f"{column}{total_row}"], font=_BOLD, fill=_HEADER_FILL)
    ws[f"B{total_row}"].alignment = _CENTER
    ws.freeze_panes = "A3"
    _page_setup(ws, "1:2")


def _appreciation_validation(closing: Closing, cell: str) -> DataValidation:
    limit = f"{APPRECIATION_LIMIT:,}".replace(",", "\u00a0")  # 1 500, French style
    dv = DataValidation(
        type="textLength",
        operator="lessThanOrEqual",
        formula1=str(APPRECIATION_LIMIT),
        allow_blank=True,
        showErrorMessage=True,
        showInputMessage=True,
        errorTitle="Texte trop long",
        error=f"Votre appréciation dépasse {limit} caractères : raccourcissez-la un peu.",
        promptTitle="Appréciation du tuteur",
        prompt=(
            f"{limit} caractères au plus. Pour aller à la ligne : Alt+Entrée (Excel), "
            "Ctrl+Entrée (LibreOffice)."
        ),
    )
    dv.add(cell)
    return dv


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
    limit = f"{APPRECIATION_LIMIT:,}".replace(",", "\u00a0")
    ws[f"A{row - 1}"] = f"{closing.tutor_appreciation} ({limit} caractères au plus)"
    _style(ws[f"A{row - 1}"], font=_BOLD, fill=_HEADER_FILL)
    ws.merge_cells(f"A{row - 1}:D{row - 1}")
    _fit_row(ws, row - 1, ("A", "D"))
    box_rows = range(row, _CLOSING_ROWS["team"] - 2)
    ws[f"A{row}"] = APPRECIATION_PLACEHOLDER
    ws.merge_cells(f"A{row}:D{box_rows[-1]}")
    _input(ws[f"A{row}"])
    ws[f"A{row}"].alignment = Alignment(wrap_text=True, vertical="top", horizontal="left")
    # Room for APPRECIATION_LIMIT characters in a few paragraphs, shared by the merged rows.
    lines = -(-APPRECIATION_LIMIT // int(_merged_width(ws, "A", "D") * 1.1)) + 8
    for box_row in box_rows:
        ws.row_dimensions[box_row].height = round(lines * _LINE_PT / len(box_rows) + 0.5)
    _filled_highlight(ws, f"A{row}", f"A{row}", APPRECIATION_PLACEHOLDER)
    ws.add_data_validation(_appreciation_validation(closing, f"A{row}"))
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
        _filled_highlight(ws, ref.cell, ref.cell)
        _fit_row(ws, row, ("A", "A"))
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
    _write_paper_signature(ws, int(layout.signature.cell[1:]) + 2)
    _page_setup(ws, "1:2")


def _write_paper_signature(ws: Worksheet, row: int) -> None:
    """Boxes for a handwritten signature and the company stamp, for a printed copy."""
    ws[f"A{row}"] = "Sur une copie imprimée et remplie à la main :"
    _style(ws[f"A{row}"], font=_BOLD, border=False)
    ws.merge_cells(f"A{row}:D{row}")
    for first, last, label in (("A", "B", "Signature du tuteur"), ("C", "D", _STAMP)):
        ws[f"{first}{row + 1}"] = label
        _style(ws[f"{first}{row + 1}"], font=_BOLD, fill=_HEADER_FILL, align=_CENTER)
        ws.merge_cells(f"{first}{row + 1}:{last}{row + 1}")
        ws.merge_cells(f"{first}{row + 2}:{last}{row + 7}")
        for column in (first, last):
            for box_row in range(row + 1, row + 8):
                ws[f"{column}{box_row}"].border = _BORDER
    for box_row in range(row + 2, row + 8):
        ws.row_dimensions[box_row].height = 18


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
    from pipeline.files import student_stem

    return f"{student_stem(student.last_name, student.first_name, student.student_id)}.xlsx"


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
