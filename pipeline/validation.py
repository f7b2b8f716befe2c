"""Answers read from a returned workbook → evaluation + problems (no openpyxl here).

Harmless variants are normalised ("ts", " S ", "Très satisfaisant", "3", 3.0,
"3 - Prend des initiatives utiles", 15/03/2027 as text); anything else outside the
scale is reported with its sheet, cell and raw value. Each problem says what and
where, in French: « Contacts avec la clientèle › Découverte (cellule D38) : non
renseigné. »
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pipeline.errors import Problem
from pipeline.grid import Dimension, Grid
from pipeline.kinds import ReturnStatus, Status
from pipeline.text import fold
from pipeline.workbook import APPRECIATION_PLACEHOLDER, CellRef, ReturnedWorkbook
from pipeline.xlsx import RawCell

STATUS_LABELS: dict[str, str] = {
    Status.GENERATED: "généré",
    Status.PREPARED: "message prêt",
    Status.SENT: "envoyé",
    Status.INCOMPLETE: "incomplet",
    Status.INVALID: "invalide",
    Status.COMPLETE: "complet",
}
IDENTITY_LABELS = {
    "student_name": "le nom du stagiaire",
    "class_name": "la classe",
    "company": "l'entreprise",
    "tutor_name": "le tuteur",
    "tutor_email": "l'e-mail du tuteur",
    "period": "la période de stage",
}
_FRENCH_MONTHS = {
    "janvier": 1, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7,
    "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11, "decembre": 12,
}  # fmt: skip
_LEVEL_TEXT = re.compile(r"^\s*([0-9]+)(?:[.,]0+)?\s*(?:[-–—:.)]\s*(.*))?$", re.S)


@dataclass
class Evaluation:
    """What the tutor answered, normalised: `None` where nothing valid was given."""

    ratings: dict[str, str | None] = field(default_factory=dict)  # criterion id → "TS"…
    levels: dict[str, int | None] = field(default_factory=dict)  # dimension id → level
    tutor_appreciation: str = ""
    date: date | None = None
    signature: str = ""

    def total(self, grid: Grid) -> int:
        """Sum of the global levels given (missing ones count 0)."""
        return sum(self.levels.get(d.id) or 0 for d in grid.global_evaluation.dimensions)

    def rating_counts(self, grid: Grid) -> dict[str, int]:
        """How many criteria got each scale code, in scale order."""
        counts = {code: 0 for code in grid.scale_codes}
        for value in self.ratings.values():
            if value in counts:
                counts[value] += 1
        return counts

    def to_json(self) -> dict[str, object]:
        return {
            "ratings": self.ratings,
            "levels": self.levels,
            "tutor_appreciation": self.tutor_appreciation,
            "date": self.date.isoformat() if self.date else None,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Evaluation:
        raw_date = data.get("date")
        return cls(
            ratings=_mapping(data.get("ratings")),
            levels=_mapping(data.get("levels")),
            tutor_appreciation=str(data.get("tutor_appreciation") or ""),
            date=date.fromisoformat(raw_date) if isinstance(raw_date, str) else None,
            signature=str(data.get("signature") or ""),
        )


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ExpectedStudent:
    """What the school knows of the student, to check the return against."""

    tutor_name: str
    start: date
    end: date
    identity: dict[str, str]  # the identity values the workbook was generated with
    in_roster: bool = True  # False once removed from the roster (its workbook is kept)


@dataclass
class ValidationResult:
    """The evaluation, its problems and the resulting status code."""

    evaluation: Evaluation
    problems: list[Problem]

    @property
    def status(self) -> ReturnStatus:
        severities = {p.code for p in self.problems if p.severity == "error"}
        if any(code.startswith("invalid") for code in severities):
            return ReturnStatus.INVALID
        if severities:
            return ReturnStatus.INCOMPLETE
        return ReturnStatus.COMPLETE


def sort_problems(problems: list[dict[str, str]]) -> tuple[list[str], list[str], list[str]]:
    """(missing, invalid, warnings) messages of stored problems (`asdict(Problem)`)."""
    missing = [p["message"] for p in problems if p["code"].startswith("missing")]
    invalid = [p["message"] for p in problems if p["code"].startswith("invalid")]
    warnings = [p["message"] for p in problems if p["severity"] == "warning"]
    return missing, invalid, warnings


def _shown(cell: RawCell) -> str:
    value = cell.value if len(cell.value) <= 60 else cell.value[:57] + "…"
    return value.replace("\n", " ")


def _number(cell: RawCell) -> float | None:
    if cell.kind not in ("n", "str"):
        return None
    try:
        return float(cell.value.strip().replace(",", "."))
    except ValueError:
        return None


def normalise_rating(cell: RawCell, grid: Grid) -> str | None:
    """The scale code meant by a cell ("ts", " S ", "Très satisfaisant"), or None."""
    text = fold(cell.value)
    for level in grid.scale:
        code, label = fold(level.code), fold(level.label)
        if text in (code, label) or text in (f"{code} - {label}", f"{code} – {label}"):
            return level.code
    return None


def normalise_level(cell: RawCell, dimension: Dimension) -> int | None:
    """The level meant by a cell (3, 3.0, "3", "3 - descriptor", the descriptor), or None."""
    number = _number(cell)
    if number is not None and number.is_integer() and int(number) in dimension.values:
        return int(number)
    if cell.kind != "str":
        return None
    match = _LEVEL_TEXT.match(cell.value)
    if match:
        value = int(match.group(1))
        rest = fold(match.group(2) or "")
        if value in dimension.values and (not rest or rest == fold(dimension.descriptor(value))):
            return value
        return None
    text = fold(cell.value)
    for level in dimension.levels:
        if text == fold(level.text):
            return level.value
    return None


def parse_date(cell: RawCell, date1904: bool = False) -> date | None:
    """A real date, an Excel serial number, or a day-first text date."""
    if cell.kind == "d":
        try:
            return datetime.fromisoformat(cell.value.strip()[:19]).date()
        except ValueError:
            return None
    if cell.kind == "n":
        number = _number(cell)
        if number is None or not 1 <= number < 2_958_466:
            return None
        epoch = date(1904, 1, 1) if date1904 else date(1899, 12, 30)
        return epoch + timedelta(days=int(number))
    text = fold(cell.value)
    match = re.fullmatch(r"(\d{1,2})\s*[/.-]\s*(\d{1,2})\s*[/.-]\s*(\d{2}|\d{4})", text)
    if match:
        day, month, year = (int(g) for g in match.groups())
        year = year + 2000 if year < 100 else year
    elif match := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", text):
        year, month, day = (int(g) for g in match.groups())
    elif match := re.fullmatch(r"(?:[a-z]+\s+)?(\d{1,2})(?:er)?\s+([a-z]+)\s+(\d{4})", text):
        day, year = int(match.group(1)), int(match.group(3))
        month = _FRENCH_MONTHS.get(match.group(2), 0)
    else:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _name_tokens(text: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", fold(text)) if len(t) >= 2}


def validate(
    grid: Grid,
    returned: ReturnedWorkbook,
    expected: ExpectedStudent,
    today: date,
    *,
    reading: Sequence[Problem] = (),
    unread: Collection[str] = (),
) -> ValidationResult:
    """Check every input of a returned workbook; collect all problems at once.

    `reading` holds what reading the file found (rows moved, a sheet left unread: see
    `reading.read_located`), `unread` the answers it could not trust: those are left
    empty, their problem already in `reading`."""
    evaluation = Evaluation()
    problems: list[Problem] = list(reading)

    def problem(code: str, ref: CellRef, message: str, severity: str = "error") -> None:
        problems.append(Problem(code, message, sheet=ref.sheet, cell=ref.cell, severity=severity))

    for sheet in returned.missing_sheets:
        problems.append(
            Problem(
                "missing_sheet", f"feuille « {sheet} » absente du classeur retourné.", sheet=sheet
            )
        )
    for section in grid.sections:
        for criterion in section.criteria:
            ref, cell = returned.answers[criterion.id]
            where = f"{section.title} › {criterion.label} (cellule {ref.cell})"
            if criterion.id in unread:
                evaluation.ratings[criterion.id] = None
                continue
            if cell is None:
                evaluation.ratings[criterion.id] = None
                problem("missing_rating", ref, f"{where} : non renseigné.")
                continue
            rating = normalise_rating(cell, grid)
            evaluation.ratings[criterion.id] = rating
            if rating is None:
                codes = ", ".join(grid.scale_codes)
                problem(
                    "invalid_rating",
                    ref,
                    f"{where} : « {_shown(cell)} » n'est pas une note de l'échelle ({codes}).",
                )
    ge = grid.global_evaluation
    for dimension in ge.dimensions:
        ref, cell = returned.answers[dimension.id]
        where = f"{ge.title} › {dimension.label} (cellule {ref.cell})"
        if dimension.id in unread:
            evaluation.levels[dimension.id] = None
            continue
        if cell is None:
            evaluation.levels[dimension.id] = None
            problem("missing_level", ref, f"{where} : non renseigné.")
            continue
        level = normalise_level(cell, dimension)
        evaluation.levels[dimension.id] = level
        if level is None:
            allowed = ", ".join(str(v) for v in dimension.values)
            problem(
                "invalid_level",
                ref,
                f"{where} : « {_shown(cell)} » n'est pas un niveau possible ({allowed}).",
            )
    closing = grid.closing
    ref, cell = returned.answers["appreciation"]
    text = cell.value.strip() if cell is not None and cell.kind == "str" else ""
    if cell is not None and cell.kind != "str":
        text = cell.value.strip()
    if "appreciation" in unread:
        pass
    elif not text or fold(text) == fold(APPRECIATION_PLACEHOLDER):
        problem(
            "missing_appreciation",
            ref,
            f"{closing.tutor_appreciation} (cellule {ref.cell}) : non renseignée.",
        )
    else:
        evaluation.tutor_appreciation = text
    ref, cell = returned.answers["date"]
    where = f"{closing.date} (cellule {ref.cell})"
    if "date" in unread:
        pass
    elif cell is None:
        problem("missing_date", ref, f"{where} : non renseignée.")
    else:
        day = parse_date(cell, returned.date1904)
        if day is None:
            problem(
                "invalid_date",
                ref,
                f"{where} : « {_shown(cell)} » n'est pas une date (jj/mm/aaaa).",
            )
        elif day < expected.start:
            problem(
                "invalid_date",
                ref,
                f"{where} : le {day:%d/%m/%Y} est avant le début du stage "
                f"({expected.start:%d/%m/%Y}).",
            )
        elif day > today:
            problem("invalid_date", ref, f"{where} : le {day:%d/%m/%Y} est dans le futur.")
        else:
            evaluation.date = day
    ref, cell = returned.answers["signature"]
    where = f"{closing.signature} (cellule {ref.cell})"
    signature = cell.value.strip() if cell is not None else ""
    evaluation.signature = signature
    if "signature" in unread:
        pass
    elif not signature:
        problem("missing_signature", ref, f"{where} : le tuteur n'a pas écrit son nom.")
    elif not _name_tokens(signature) & _name_tokens(expected.tutor_name):
        problem(
            "signature_mismatch",
            ref,
            f"{where} : « {signature[:60]} » ne correspond pas au tuteur prévu "
            f"({expected.tutor_name}) ; vérifiez qui a signé.",
            severity="warning",
        )
    _check_locked_cells(grid, returned, expected, problems)
    return ValidationResult(evaluation, problems)


def _check_locked_cells(
    grid: Grid, returned: ReturnedWorkbook, expected: ExpectedStudent, problems: list[Problem]
) -> None:
    """Warn when locked cells (identity, criterion labels) were changed."""
    labels = {c.id: c.label for c in grid.criteria}
    for criterion_id, (ref, found) in returned.labels.items():
        if ref.sheet in returned.missing_sheets:
            continue
        if fold(found) != fold(labels[criterion_id]):
            problems.append(
                Problem(
                    "changed_label",
                    f"libellé du critère modifié (cellule {ref.cell}) : « {found[:60]} » "
                    f"au lieu de « {labels[criterion_id][:60]} ».",
                    sheet=ref.sheet,
                    cell=ref.cell,
                    severity="warning",
                )
            )
    for name, value in expected.identity.items():
        if name in returned.identity and fold(returned.identity[name]) != fold(value):
            problems.append(
                Problem(
                    "changed_identity",
                    f"{IDENTITY_LABELS.get(name, name)} a été modifié dans le classeur : "
                    f"« {returned.identity[name][:60]} » au lieu de « {value[:60]} ».",
                    sheet="Instructions",
                    severity="warning",
                )
            )
