"""Per-student status, and the tracking workbook `output/suivi.xlsx`.

The status of a student comes from the database: the return that counts (the latest
signed or confirmed one, else one « à confirmer », see `state.counted_returns`) gives
complete / incomplete / invalid; without one, a message sent over SMTP gives `sent`,
one written to the outbox `prepared`, a workbook `generated`. The tracking workbook shows
it with colours and filters, and has columns the teacher fills (notes, the teaching
team's appreciation): rewriting the workbook reads them back first and keeps them, for
every student ever listed.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.utils import get_column_letter

from pipeline.errors import GrilleError
from pipeline.files import atomic_save
from pipeline.roster import Student
from pipeline.state import (
    STANDING_LABELS,
    STANDING_PENDING,
    ReturnStanding,
    pending_returns,
    student_from_row,
)
from pipeline.validation import STATUS_LABELS, fold, sort_problems

SHEET = "Suivi"
NOTES_HEADER = "Notes du professeur"
TEAM_HEADER = "Appréciation de l'équipe pédagogique"
TEACHER_HEADERS = (NOTES_HEADER, TEAM_HEADER)
STATUS_FILLS = {
    "generated": "EDEDED",
    "prepared": "E4DFEC",
    "sent": "DDEBF7",
    "incomplete": "FFE699",
    "invalid": "F4B183",
    "complete": "C6EFCE",
}


@dataclass
class StudentStatus:
    """One student's state in the campaign."""

    student: Student
    in_roster: bool
    status: str
    match: str = ""
    match_note: str = ""  # why the return is « à confirmer », and the returns awaiting it
    standing: str = ""  # of the return that counts: signed / confirmed / pending
    pending_returns: list[int] = field(default_factory=list)  # ids awaiting confirmation
    missing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    generated_at: str = ""
    sent_at: str = ""
    reminded_at: str = ""
    returned_at: str = ""
    workbook_file: str = ""
    return_file: str = ""
    return_origin: str = ""
    return_id: int | None = None
    evaluation: dict[str, Any] | None = None
    grid_id: str = ""
    grid_version: str = ""

    @property
    def student_id(self) -> str:
        return self.student.student_id

    @property
    def last_name(self) -> str:
        return self.student.last_name

    @property
    def first_name(self) -> str:
        return self.student.first_name

    @property
    def class_name(self) -> str:
        return self.student.class_name

    @property
    def to_confirm(self) -> bool:
        """The return that counts was matched on its visible identity, not yet confirmed."""
        return self.standing == STANDING_PENDING

    @property
    def status_label(self) -> str:
        label = STATUS_LABELS.get(self.status, self.status)
        return f"{label} (à confirmer)" if self.to_confirm else label

    def to_json(self) -> dict[str, Any]:
        return {
            "student_id": self.student_id,
            "last_name": self.last_name,
            "first_name": self.first_name,
            "class": self.class_name,
            "company": self.student.company,
            "tutor": self.student.tutor_name,
            "tutor_email": self.student.tutor_email,
            "status": self.status,
            "status_label": self.status_label,
            "to_confirm": self.to_confirm,
            "match_note": self.match_note,
            "return_id": self.return_id,
            "pending_returns": self.pending_returns,
            "missing": self.missing,
            "invalid": self.invalid,
            "warnings": self.warnings,
            "file": self.return_file or self.workbook_file,
            "origin": self.return_origin,
            "generated_at": self.generated_at,
            "sent_at": self.sent_at,
            "reminded_at": self.reminded_at,
            "returned_at": self.returned_at,
            "in_roster": self.in_roster,
        }


_STATUS_QUERY = """
SELECT s.*,
       w.file AS workbook_file, w.generated_at,
       (SELECT MAX(sent_at) FROM sendings
        WHERE student_id = s.student_id AND kind = 'envoi') AS sent_at,
       (SELECT MAX(channel != 'fichier') FROM sendings
        WHERE student_id = s.student_id AND kind = 'envoi') AS sent_for_sure,
       (SELECT MAX(sent_at) FROM sendings
        WHERE student_id = s.student_id AND kind = 'relance') AS reminded_at,
       r.id AS return_id, r.stored_file, r.origin, r.collected_at, r.match, r.match_note,
       r.status AS return_status, r.problems, r.evaluation, r.grid_id, r.grid_version,
       c.standing
FROM students s
LEFT JOIN workbooks w ON w.id = (SELECT MAX(id) FROM workbooks WHERE student_id = s.student_id)
LEFT JOIN counted_returns c ON c.student_id = s.student_id
LEFT JOIN returns r ON r.id = c.return_id
"""


def waiting_note(pending: ReturnStanding, counted_id: int | None, counted_standing: str) -> str:
    """How a return « à confirmer » stands beside the student's return that counts."""
    if counted_id is None or pending.return_id == counted_id:
        return "Aucun retour signé ni confirmé : il compte pour ce stagiaire en attendant."
    if counted_standing == STANDING_PENDING:
        return f"Le plus récent, n° {counted_id}, compte en attendant."
    label = STANDING_LABELS.get(counted_standing, counted_standing)
    if pending.return_id > counted_id:
        return (
            f"Il ne remplace pas le retour {label} n° {counted_id} tant que vous ne l'avez pas "
            "confirmé."
        )
    return f"Le retour {label} n° {counted_id}, plus récent, compte de toute façon."


def _confirmation_note(row: sqlite3.Row, pending: list[ReturnStanding]) -> str:
    """What the teacher must decide about this student's returns « à confirmer »."""
    notes = []
    counted, standing = row["return_id"], row["standing"]
    if standing == STANDING_PENDING:
        notes.append(
            f"{row['match_note']} Retour n° {counted} : confirmez-le (« grille confirm "
            f"{counted} ») ou rejetez-le (« grille confirm {counted} --reject »)."
        )
    for other in pending:
        if other.return_id != counted:
            notes.append(
                f"Retour n° {other.return_id} (« {other.file_name} », reçu le "
                f"{other.collected_at[:10]}) à confirmer : son identité cachée a disparu, il a "
                f"été rattaché par le nom écrit dessus. {waiting_note(other, counted, standing)} "
                f"(« grille confirm {other.return_id} » ou « --reject »)."
            )
    return "\n".join(notes)


def student_statuses(db: sqlite3.Connection) -> list[StudentStatus]:
    """Every student of the campaign with their current status, by class and name."""
    waiting: dict[str, list[ReturnStanding]] = {}
    for waiting_return in pending_returns(db):
        waiting.setdefault(waiting_return.student.student_id, []).append(waiting_return)
    statuses = []
    for row in db.execute(_STATUS_QUERY):
        pending = waiting.get(row["student_id"], [])
        missing, invalid, warnings = sort_problems(
            json.loads(row["problems"]) if row["problems"] else []
        )
        if row["return_status"]:
            status = row["return_status"]
        elif row["sent_for_sure"]:  # over SMTP, or marked sent by the teacher
            status = "sent"
        elif row["sent_at"]:
            status = "prepared"  # written to the outbox: the teacher sends it herself
        else:
            status = "generated"
        statuses.append(
            StudentStatus(
                student=student_from_row(row),
                in_roster=bool(row["in_roster"]),
                status=status,
                match=row["match"] or "",
                match_note=_confirmation_note(row, pending),
                standing=row["standing"] or "",
                pending_returns=[p.return_id for p in pending],
                missing=missing,
                invalid=invalid,
                warnings=warnings,
                generated_at=row["generated_at"] or "",
                sent_at=row["sent_at"] or "",
                reminded_at=row["reminded_at"] or "",
                returned_at=row["collected_at"] or "",
                workbook_file=row["workbook_file"] or "",
                return_file=row["stored_file"] or "",
                return_origin=row["origin"] or "",
                return_id=row["return_id"],
                evaluation=json.loads(row["evaluation"]) if row["evaluation"] else None,
                grid_id=row["grid_id"] or "",
                grid_version=row["grid_version"] or "",
            )
        )
    statuses.sort(key=lambda s: (fold(s.class_name), fold(s.last_name), fold(s.first_name)))
    return statuses


# ------------------------------------------------------------------ the workbook

_COLUMNS: list[tuple[str, int]] = [
    ("Identifiant", 12),
    ("Nom", 18),
    ("Prénom", 14),
    ("Classe", 12),
    ("Entreprise", 24),
    ("Tuteur", 20),
    ("E-mail tuteur", 28),
    ("Téléphone tuteur", 15),
    ("Statut", 14),
    ("À faire / manquant", 60),
    ("Valeurs invalides", 40),
    ("Avertissements", 40),
    ("Généré le", 17),
    ("Envoyé le", 17),
    ("Relancé le", 17),
    ("Retourné le", 17),
    ("Fichier retourné", 30),
    (NOTES_HEADER, 40),
    (TEAM_HEADER, 60),
]


def read_teacher_columns(path: Path) -> dict[str, dict[str, str]]:
    """What the teacher typed in `suivi.xlsx`: student id → {header: text}."""
    if not path.exists():
        return {}
    try:
        wb = load_workbook(path, read_only=True)  # formulas as typed: nothing is lost
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise GrilleError(
            f"{path.name} est illisible ({exc}) : il n'est pas remplacé, pour ne rien perdre de "
            "ce que vous y avez écrit. Réparez-le ou renommez-le, puis relancez."
        ) from exc
    try:
        ws = wb[SHEET] if SHEET in wb.sheetnames else wb.worksheets[0]
        rows = ws.iter_rows(min_row=1, max_row=5001, max_col=len(_COLUMNS) + 10, values_only=True)
        header = [str(v).strip() if v is not None else "" for v in next(rows, ())]
        if "Identifiant" not in header:
            return {}
        id_index = header.index("Identifiant")
        wanted = {h: header.index(h) for h in TEACHER_HEADERS if h in header}
        kept: dict[str, dict[str, str]] = {}
        for values in rows:
            if id_index >= len(values) or values[id_index] in (None, ""):
                continue
            texts = {
                h: str(values[i])
                for h, i in wanted.items()
                if i < len(values) and values[i] not in (None, "")
            }
            if texts:
                kept[str(values[id_index]).strip()] = texts
        return kept
    finally:
        wb.close()


def _text(cell: Any, value: str) -> None:
    """Write text that stays text (a tutor's "=…" must not become a formula)."""
    cell.value = value
    cell.data_type = "s"


def build_tracking(statuses: list[StudentStatus], teacher: dict[str, dict[str, str]]) -> Workbook:
    """The tracking workbook; `teacher` holds the teacher's columns to put back."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SHEET
    header_fill = PatternFill("solid", fgColor="1F3864")
    teacher_fill = PatternFill("solid", fgColor="FFF9DB")
    for index, (title, width) in enumerate(_COLUMNS, start=1):
        cell = ws.cell(row=1, column=index, value=title)
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = (
            header_fill if title not in TEACHER_HEADERS else PatternFill("solid", fgColor="7F6000")
        )
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        ws.column_dimensions[get_column_letter(index)].width = width
    wrap = Alignment(wrap_text=True, vertical="top")
    for row_index, st in enumerate(statuses, start=2):
        kept = teacher.get(st.student_id, {})
        values = [
            st.student_id,
            st.last_name.upper(),
            st.first_name,
            st.class_name,
            st.student.company,
            st.student.tutor_name,
            st.student.tutor_email,
            st.student.tutor_phone,
            st.status_label + ("" if st.in_roster else " — retiré de la liste"),
            "\n".join([*([st.match_note] if st.match_note else []), *st.missing]),
            "\n".join(st.invalid),
            "\n".join(st.warnings),
            st.generated_at,
            st.sent_at,
            st.reminded_at,
            st.returned_at,
            st.return_file,
            kept.get(NOTES_HEADER, ""),
            kept.get(TEAM_HEADER, ""),
        ]
        for column, value in enumerate(values, start=1):
            cell = ws.cell(row=row_index, column=column)
            _text(cell, value)
            cell.alignment = wrap
            if _COLUMNS[column - 1][0] in TEACHER_HEADERS:
                cell.fill = teacher_fill
                cell.protection = Protection(locked=False)
        ws.cell(row=row_index, column=9).fill = PatternFill(
            "solid", fgColor=STATUS_FILLS.get(st.status, "FFFFFF")
        )
    last = max(2, len(statuses) + 1)
    ws.auto_filter.ref = f"A1:{get_column_letter(len(_COLUMNS))}{last}"
    ws.freeze_panes = "D2"
    ws.row_dimensions[1].height = 32
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = "1:1"
    return wb


def write_tracking(path: Path, statuses: list[StudentStatus]) -> None:
    """Rewrite `suivi.xlsx`, keeping the teacher's columns (atomic write)."""
    teacher = read_teacher_columns(path)
    wb = build_tracking(statuses, teacher)
    try:
        atomic_save(path, wb.save)
    except PermissionError as exc:
        raise GrilleError(
            f"Impossible de remplacer {path.name} : fermez-le dans Excel ou LibreOffice, "
            "puis relancez."
        ) from exc


def team_appreciations(path: Path) -> dict[str, str]:
    """The teaching team's appreciation per student id, from `suivi.xlsx`."""
    return {
        student_id: texts[TEAM_HEADER]
        for student_id, texts in read_teacher_columns(path).items()
        if texts.get(TEAM_HEADER, "").strip()
    }
