"""A returned workbook's answers, found where the tutor left them, never guessed.

The usual case: every sheet of the grid under its own name, every label at its address
(`workbook.plan_layout`); answers are read there, as `workbook.read_returned` reads them.
When the layout moved, each answer is found by content instead:

- sheets renamed (« Copie de Intégration », « Intégration (2) »), reordered, or copied
  into a new workbook without the Instructions sheet are recognised by their content:
  the texts of column A only that sheet of the grid has (title, criterion labels…);
- rows inserted or deleted inside a sheet: each criterion, dimension and closing field
  is found by its label in column A, its answer on the same row. A label the sheet no
  longer has leaves that answer unread, reported; a label found more times than the grid
  has it leaves the whole sheet unread, named, so that no rating is ever stored against
  the wrong criterion;
- columns inserted or deleted before the answers (a section's ratings, the global
  evaluation's levels): the answers' column is found by its header (« Tuteur (TI / I / S
  / TS) », « Tuteur : niveau »), named in a warning; a header found in several columns
  leaves the whole sheet unread, named;
- the visible identity (the student's name) is read on the Instructions sheet wherever
  it is, else on the « Stagiaire : NOM Prénom — classe — entreprise » line each sheet
  repeats (its last value survives a copy into another workbook).

The expected texts come from the template grille writes (`workbook.build_template`), built
once per grid, so that this module repeats none of its wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from openpyxl.utils import column_index_from_string, get_column_letter

from pipeline.errors import Problem
from pipeline.grid import Grid
from pipeline.text import fold
from pipeline.workbook import (
    INSTRUCTIONS_SHEET,
    LISTS_SHEET,
    META_SHEET,
    CellRef,
    ReturnedWorkbook,
    TemplateOptions,
    build_template,
    plan_layout,
    read_identity,
)
from pipeline.xlsx import RawCell, Sheet, XlsxPackage, split_ref

EXTRA_ROWS = 500  # rows a tutor may have added below the grid's last row, still read
EXTRA_COLUMNS = 20  # columns a tutor may have inserted before the answers, still read
MAX_SHEETS = 60  # sheets of a returned workbook looked at when looking for the grid's
MATCH_THRESHOLD = 0.5  # share of a sheet's own texts another sheet must have to be it
_SHOWN = 5  # moved rows named in a warning; the others are counted


@dataclass(frozen=True)
class _Item:
    """One answer of a sheet: its key, its label's row, the cell of its value."""

    key: str
    label_row: int
    value_column: str
    value_row: int
    title: str  # « Section › Critère », as validation names it
    missing: str = ""  # the problem code of an answer whose row is gone

    def value_ref(self, sheet: str, label_row: int, column: str = "") -> CellRef:
        """The answer's cell when its label is on `label_row` (in `column` when the
        answers' column moved)."""
        row = label_row + self.value_row - self.label_row
        return CellRef(sheet, f"{column or self.value_column}{row}")


@dataclass(frozen=True)
class _SheetPlan:
    """A sheet of the grid's workbook: its answers and the texts it is known by."""

    name: str
    title: str
    items: tuple[_Item, ...]
    answers: bool  # False for the Instructions sheet: identity only
    rater: str = ""  # who answers (« Tuteur »): the answers' column header starts with it


@dataclass
class Located:
    """A returned workbook read by `read_located`.

    `problems` says what moved and what could not be read (French, located); `unread`
    holds the answers whose cell could not be trusted (their problem is in `problems`);
    `grid_found` is False when no sheet of the grid is in the file at all.
    """

    returned: ReturnedWorkbook
    problems: list[Problem] = field(default_factory=list)
    unread: set[str] = field(default_factory=set)
    grid_found: bool = True


@dataclass(frozen=True)
class _Reference:
    """What the grid's template holds: each sheet's folded texts of column A by row, the
    texts only one sheet has, and the identity line's literal parts."""

    texts: dict[str, dict[int, str]]
    marks: dict[str, frozenset[str]]
    headers: dict[str, str]  # sheet → the answers' column header, as written (one line)
    line_prefix: str  # « Stagiaire : », as written
    line_separator: str  # « — »


def _text(cell: RawCell | None) -> str:
    return "" if cell is None else cell.value


def _shown(cell: RawCell | None) -> RawCell | None:
    """A cell as an answer: None when empty or blank."""
    return cell if cell is not None and cell.value.strip() else None


@cache
def _plans(grid: Grid) -> tuple[_SheetPlan, ...]:
    layout = plan_layout(grid)
    sections = []
    for plan in layout.sections:
        items = []
        for criterion in plan.section.criteria:
            value = layout.criteria[criterion.id]
            column, row = split_ref(value.cell)
            title = f"{plan.section.title} › {criterion.label}"
            items.append(_Item(criterion.id, row, column, row, title, "missing_rating"))
        sheet, title, rater = plan.section.sheet, plan.section.title, plan.section.rater
        sections.append(_SheetPlan(sheet, title, tuple(items), True, rater))
    ge = grid.global_evaluation
    dimensions = []
    for dimension in ge.dimensions:
        column, row = split_ref(layout.dimensions[dimension.id].cell)
        title = f"{ge.title} › {dimension.label}"
        dimensions.append(_Item(dimension.id, row, column, row, title, "missing_level"))
    closing = grid.closing
    fields = []
    for key, ref, label_offset, title in (
        ("appreciation", layout.appreciation, -1, closing.tutor_appreciation),
        ("date", layout.date, 0, closing.date),
        ("signature", layout.signature, 0, closing.signature),
    ):
        column, row = split_ref(ref.cell)
        fields.append(_Item(key, row + label_offset, column, row, title, f"missing_{key}"))
    identity = []
    for key, ref in layout.identity.items():
        column, row = split_ref(ref.cell)
        identity.append(_Item(key, row, column, row, key))
    return (
        _SheetPlan(INSTRUCTIONS_SHEET, INSTRUCTIONS_SHEET, tuple(identity), False),
        *sections,
        _SheetPlan(ge.sheet, ge.title, tuple(dimensions), True, ge.rater),
        _SheetPlan(closing.sheet, closing.sheet, tuple(fields), True),
    )


@cache
def _reference(grid: Grid) -> _Reference:
    """The template's texts (built once per grid and process: about 0.15 s)."""
    workbook = build_template(grid, TemplateOptions(campaign_id=""))
    texts: dict[str, dict[int, str]] = {}
    headers: dict[str, str] = {}
    line = ""
    for plan in _plans(grid):
        ws = workbook[plan.name]
        if plan.rater:
            column_cells = ws[plan.items[0].value_column]
            headers[plan.name] = next(
                " ".join(str(c.value).split())
                for c in column_cells
                if isinstance(c.value, str) and fold(c.value).startswith(fold(plan.rater))
            )
        column = {}
        for row in range(1, ws.max_row + 1):
            value = ws.cell(row=row, column=1).value
            if isinstance(value, str) and value.startswith("="):
                line = line or (value if "&" in value else "")
                continue
            if value is not None and str(value).strip():
                column[row] = fold(str(value))
        texts[plan.name] = column
    counts: dict[str, int] = {}
    for column in texts.values():
        for text in set(column.values()):
            counts[text] = counts.get(text, 0) + 1
    marks = {
        name: frozenset(t for t in column.values() if counts[t] == 1)
        for name, column in texts.items()
    }
    literals = re.findall(r'"((?:[^"]|"")*)"', line)
    prefix = literals[0] if literals else ""
    separator = literals[1] if len(literals) > 1 else ""
    return _Reference(texts, marks, headers, prefix.strip(), separator.strip())


_Read = Callable[[Sheet], dict[str, RawCell]]


def _labels(cells: Mapping[str, RawCell]) -> dict[int, str]:
    """The folded texts of column A, by row."""
    found = {}
    for ref, cell in cells.items():
        column, row = split_ref(ref)
        if column == "A":
            found[row] = fold(cell.value)
    return found


def _grid_sheets(package: XlsxPackage) -> list[Sheet]:
    """The sheets that may hold the grid (not grille's own hidden ones), in file order."""
    hidden = {META_SHEET.casefold(), LISTS_SHEET.casefold()}
    return [s for s in package.sheets.values() if s.name.casefold() not in hidden][:MAX_SHEETS]


def _columns(plans: Iterable[_SheetPlan]) -> set[str]:
    """The columns read: the grid's, and as many more as a tutor may have inserted before
    its answers (the whole sheet is parsed in any case)."""
    used = {"A", "B", *(item.value_column for plan in plans for item in plan.items)}
    last = max(column_index_from_string(column) for column in used) + EXTRA_COLUMNS
    return {get_column_letter(index) for index in range(1, last + 1)}


def _column_key(column: str) -> int:
    return int(column_index_from_string(column))


def _last_row(plans: Iterable[_SheetPlan]) -> int:
    return max(max(i.value_row, i.label_row) for p in plans for i in p.items) + 10


def read_located(
    package: XlsxPackage,
    grid: Grid,
    identity: tuple[dict[str, str], dict[str, str], str | None] | None = None,
) -> Located:
    """Read every answer, the visible identity and the criterion labels of a returned
    workbook, by address when nothing moved, else by content (see the module's doc)."""
    meta, properties, meta_state = identity or read_identity(package)
    plans = _plans(grid)
    columns = _columns(plans)
    last = _last_row(plans) + EXTRA_ROWS
    cells: dict[str, dict[str, RawCell]] = {}

    def read(sheet: Sheet) -> dict[str, RawCell]:
        if sheet.name not in cells:
            cells[sheet.name] = package.read_columns(sheet, columns, last)
        return cells[sheet.name]

    found: dict[str, Sheet] = {}
    for plan in plans:
        sheet = package.sheet(plan.name)
        if sheet is not None and sheet.name.casefold() not in (
            META_SHEET.casefold(),
            LISTS_SHEET.casefold(),
        ):
            found[plan.name] = sheet
    reader = _Reader(grid, plans, package, read)
    answered = [plan for plan in plans if plan.answers]
    if all(p.name in found and reader.in_place(p, read(found[p.name])) for p in answered):
        return reader.located(found, {}, meta, properties, meta_state)
    reference = _reference(grid)
    renamed = _by_content(plans, found, _grid_sheets(package), read, reference)
    return reader.located(found, renamed, meta, properties, meta_state, reference)


def _by_content(
    plans: tuple[_SheetPlan, ...],
    found: dict[str, Sheet],
    sheets: list[Sheet],
    read: _Read,
    reference: _Reference,
) -> dict[str, Sheet]:
    """Assign the grid's sheets missing by name to the other sheets of the file by their
    content (updates `found`); the sheets so found, by grid sheet name. A sheet found by
    name that has none of its own texts is dropped (a foreign sheet with the same name)."""
    texts = {sheet.name: set(_labels(read(sheet)).values()) for sheet in sheets}

    def score(plan: _SheetPlan, sheet: Sheet) -> float:
        marks = reference.marks[plan.name]
        return len(marks & texts[sheet.name]) / len(marks) if marks else 0.0

    for name, sheet in list(found.items()):
        plan = next(p for p in plans if p.name == name)
        if sheet.name in texts and score(plan, sheet) == 0:
            del found[name]
    used = {s.name for s in found.values()}
    pairs = sorted(
        (
            (score(plan, sheet), index, plan, sheet)
            for plan in plans
            if plan.name not in found
            for index, sheet in enumerate(sheets)
            if sheet.name not in used
        ),
        key=lambda pair: (-pair[0], pair[1]),
    )
    renamed: dict[str, Sheet] = {}
    for value, _, plan, sheet in pairs:
        if value < MATCH_THRESHOLD or plan.name in found or sheet.name in used:
            continue
        found[plan.name] = renamed[plan.name] = sheet
        used.add(sheet.name)
    return renamed


@dataclass
class _Placement:
    """Where each item of a sheet was found: key → label row; what could not be placed."""

    rows: dict[str, int]
    moved: list[tuple[_Item, int]] = field(default_factory=list)
    lost: list[_Item] = field(default_factory=list)  # label gone from a sheet that moved
    ambiguous: str = ""  # why the whole sheet is unread


class _Reader:
    def __init__(
        self,
        grid: Grid,
        plans: tuple[_SheetPlan, ...],
        package: XlsxPackage,
        read: _Read,
    ) -> None:
        self.grid = grid
        self.plans = plans
        self.package = package
        self.read = read
        self.criteria = {c.id for c in grid.criteria}
        self.labels = {c.id: c.label for c in grid.criteria}
        self.labels.update({d.id: d.label for d in grid.global_evaluation.dimensions})
        closing = grid.closing
        self.prefixes = {
            "appreciation": closing.tutor_appreciation,
            "date": closing.date,
            "signature": closing.signature,
        }

    def in_place(self, plan: _SheetPlan, cells: Mapping[str, RawCell]) -> bool:
        """Whether every label of `plan` is at its address (a closing label may carry a
        hint after it); the Instructions sheet is read by address in any case."""
        if not plan.answers:
            return True
        for item in plan.items:
            text = fold(_text(cells.get(f"A{item.label_row}")))
            if item.key in self.prefixes:
                if not text.startswith(fold(self.prefixes[item.key])):
                    return False
            elif text != fold(self.labels[item.key]):
                return False
        return True

    def place(
        self, plan: _SheetPlan, cells: Mapping[str, RawCell], reference: _Reference | None
    ) -> _Placement:
        """Find each item's label row: at its address unless rows moved, else by label."""
        expected = {item.key: item.label_row for item in plan.items}
        if reference is None or (plan.answers and self.in_place(plan, cells)):
            return _Placement(expected)
        wanted = reference.texts[plan.name]
        column = _labels(cells)
        label = {item.key: wanted.get(item.label_row, "") for item in plan.items}
        labels = set(label.values())
        mismatched = [i for i in plan.items if column.get(i.label_row) != label[i.key]]
        moved = any(
            label[i.key] in column.values() or column.get(i.label_row) in labels for i in mismatched
        )
        if not moved:  # labels edited in place (a warning), nothing moved: read by address
            return _Placement(expected)
        occurrences: dict[str, list[int]] = {}
        for row, text in sorted(column.items()):
            occurrences.setdefault(text, []).append(row)
        by_label: dict[str, list[_Item]] = {}
        for item in plan.items:
            by_label.setdefault(label[item.key], []).append(item)
        placement = _Placement({})
        for text, items in by_label.items():
            rows = occurrences.get(text, [])
            if not rows:
                placement.lost.extend(items)
            elif len(rows) != len(items):
                shown = ", ".join(str(r) for r in rows[:6])
                why = (
                    f"« {items[0].title.split(' › ')[-1]} » y figure {len(rows)} fois "
                    f"(lignes {shown}) au lieu de {len(items)}"
                )
                return _Placement({}, ambiguous=why)  # nothing of the sheet is read
            else:
                for item, row in zip(items, rows, strict=True):
                    placement.rows[item.key] = row
                    if row != item.label_row:
                        placement.moved.append((item, row))
        return placement

    def located(
        self,
        found: dict[str, Sheet],
        renamed: dict[str, Sheet],
        meta: dict[str, str],
        properties: dict[str, str],
        meta_state: str | None,
        reference: _Reference | None = None,
    ) -> Located:
        answers: dict[str, tuple[CellRef, RawCell | None]] = {}
        labels: dict[str, tuple[CellRef, str]] = {}
        identity: dict[str, str] = {}
        problems: list[Problem] = []
        unread: set[str] = set()
        missing = []
        for plan in self.plans:
            sheet = found.get(plan.name)
            if sheet is None:
                if plan.answers:
                    missing.append(plan.name)
                for item in plan.items:
                    if plan.answers:
                        answers[item.key] = (item.value_ref(plan.name, item.label_row), None)
                continue
            cells = self.read(sheet)
            if not plan.answers:  # the identity: by its labels, wherever rows moved
                placement = self.place(plan, cells, reference or _reference(self.grid))
                for item in plan.items:
                    if (row := placement.rows.get(item.key)) is not None:
                        identity[item.key] = _text(cells.get(item.value_ref(sheet.name, row).cell))
                continue
            column, moved_columns = self.answer_column(plan, sheet, cells)
            if moved_columns is not None:
                problems.append(moved_columns)
            placement = self.place(plan, cells, reference)
            if column is None:  # the answers' column is not known for sure: nothing is read
                placement = _Placement({})
            else:
                problems += self._report(plan, sheet, placement, cells, column)
            for item in plan.items:
                row = placement.rows.get(item.key)
                if row is None:
                    unread.add(item.key)
                    answers[item.key] = (item.value_ref(sheet.name, item.label_row), None)
                    continue
                ref = item.value_ref(sheet.name, row, column or "")
                answers[item.key] = (ref, _shown(cells.get(ref.cell)))
                if item.key in self.criteria:
                    label_ref = CellRef(sheet.name, f"A{row}")
                    labels[item.key] = (label_ref, _text(_shown(cells.get(f"A{row}"))))
        if renamed:
            names = " ; ".join(
                f"« {renamed[plan.name].name} » pour « {plan.name} »"
                for plan in self.plans
                if plan.name in renamed
            )
            problems.insert(
                0,
                Problem(
                    "renamed_sheets",
                    f"feuilles reconnues à leur contenu (onglets renommés, ou recopiés dans un "
                    f"autre classeur) : {names}.",
                    severity="warning",
                ),
            )
        if not identity.get("student_name", "").strip():
            identity.update(self._identity_line(found, reference or _reference(self.grid)))
        grid_found = any(plan.name in found for plan in self.plans if plan.answers)
        returned = ReturnedWorkbook(
            meta=meta,
            properties=properties,
            meta_sheet_state=meta_state,
            identity={item.key: identity.get(item.key, "") for item in self.plans[0].items},
            answers=answers,
            labels=labels,
            missing_sheets=tuple(missing),
            date1904=self.package.date1904,
        )
        return Located(returned, problems, unread, grid_found)

    def answer_column(
        self, plan: _SheetPlan, sheet: Sheet, cells: Mapping[str, RawCell]
    ) -> tuple[str | None, Problem | None]:
        """The column of the sheet's answers, and what to say about it: "" (each answer in
        its usual column) while the rater's header is there and nowhere else, or nowhere
        (read by address, as before); else the one column holding the header, with a
        warning; None when the header is in several columns, with the problem that leaves
        the sheet unread. The closing sheet, with no such header, is read by address."""
        if not plan.rater:
            return "", None
        expected = plan.items[0].value_column
        rater = fold(plan.rater)
        marked = {split_ref(ref)[0] for ref, c in cells.items() if fold(c.value).startswith(rater)}
        if marked <= {expected}:
            return "", None
        header = _reference(self.grid).headers[plan.name]
        columns = sorted(
            {split_ref(ref)[0] for ref, c in cells.items() if fold(c.value) == fold(header)},
            key=_column_key,
        )
        if not columns or columns == [expected]:
            return "", None
        tab = sheet.name
        what = "les notes" if plan.items[0].key in self.criteria else "les niveaux"
        if len(columns) == 1:
            message = (
                f"feuille « {tab} » : des colonnes ont été insérées ou supprimées ; {what} ont "
                f"été lu{'e' if what == 'les notes' else ''}s dans la colonne {columns[0]} (au "
                f"lieu de {expected}), sous son en-tête « {header} »."
            )
            return columns[0], Problem("moved_columns", message, sheet=tab, severity="warning")
        message = (
            f"feuille « {tab} » ({plan.title}) : des colonnes ont été insérées ou supprimées et "
            f"l'en-tête {what.replace('les ', 'des ')} « {header} » y figure dans les colonnes "
            f"{', '.join(columns)} : cette partie n'est pas lue, pour ne pas attribuer une note "
            "au mauvais critère. Demandez au tuteur de reprendre le classeur envoyé, sans "
            "ajouter ni supprimer de colonne."
        )
        return None, Problem("invalid_layout", message, sheet=tab)

    def _report(
        self,
        plan: _SheetPlan,
        sheet: Sheet,
        placement: _Placement,
        cells: Mapping[str, RawCell],
        column: str,
    ) -> list[Problem]:
        """What moved, what is lost, what is unread, in French, for one sheet."""
        tab = sheet.name
        if placement.ambiguous:
            return [
                Problem(
                    "invalid_layout",
                    f"feuille « {tab} » ({plan.title}) : des lignes ont été insérées ou "
                    f"supprimées et {placement.ambiguous} : cette partie n'est pas lue, pour "
                    "ne pas attribuer une note au mauvais critère. Demandez au tuteur de "
                    "reprendre le classeur envoyé, sans ajouter ni supprimer de ligne.",
                    sheet=tab,
                )
            ]
        problems = []
        if placement.moved:
            shown = ", ".join(
                f"« {item.title.split(' › ')[-1]} » en ligne {row} (au lieu de {item.label_row})"
                for item, row in placement.moved[:_SHOWN]
            )
            more = len(placement.moved) - _SHOWN
            extra = self._extra_rows(plan, placement, cells, column)
            problems.append(
                Problem(
                    "moved_rows",
                    f"feuille « {tab} » : des lignes ont été insérées ou supprimées ; chaque "
                    f"réponse a été retrouvée par son libellé : {shown}"
                    f"{f' et {more} autre(s)' if more > 0 else ''}.{extra}",
                    sheet=tab,
                    severity="warning",
                )
            )
        for item in placement.lost:
            problems.append(
                Problem(
                    item.missing,
                    f"{item.title} : ligne introuvable dans la feuille « {tab} » (supprimée ou "
                    "modifiée par le tuteur ?) : non renseigné.",
                    sheet=tab,
                )
            )
        return problems

    def _extra_rows(
        self, plan: _SheetPlan, placement: _Placement, cells: Mapping[str, RawCell], column: str
    ) -> str:
        """Rows among the answers (in `column`, or the usual one when "") that are no item
        of the grid and hold a value: named."""
        if not placement.rows:
            return ""
        column = column or plan.items[0].value_column
        used = set(placement.rows.values())
        first, last = min(used), max(used)
        extra = []
        for row in range(first, last + 1):
            value = _shown(cells.get(f"{column}{row}"))
            if row not in used and value is not None:
                label = _text(cells.get(f"A{row}")).strip()[:40]
                extra.append(f"ligne {row}" + (f" (« {label} »)" if label else ""))
        if not extra:
            return ""
        return (
            f" Ligne(s) ajoutée(s) qui ne sont pas des critères de la grille, non lues : "
            f"{', '.join(extra[:_SHOWN])}."
        )

    def _identity_line(self, found: dict[str, Sheet], reference: _Reference) -> dict[str, str]:
        """The student's name, class and company from a « Stagiaire : … » line, on any sheet
        of the file (the grid's first)."""
        if not reference.line_prefix:
            return {}
        known = list(found.values())
        others = [s for s in _grid_sheets(self.package) if s not in known]
        for sheet in [*known, *others]:
            cells = self.read(sheet)
            prefix = reference.line_prefix
            for row in range(1, 6):
                text = _text(cells.get(f"A{row}")).strip()
                if fold(text[: len(prefix)]) == fold(prefix):
                    parts = text[len(prefix) :].split(reference.line_separator)
                    values = [part.strip() for part in parts]
                    if values and values[0]:
                        keys = ("student_name", "class_name", "company")
                        return dict(zip(keys, values, strict=False))
        return {}
