"""Per-student status, and the tracking workbook `output/suivi.xlsx`.

The status of a student comes from the database: the return that counts (the latest
signed or confirmed one, else one « à confirmer », see `state.counted_returns`) gives
complete / incomplete / invalid; without one, a message sent over SMTP gives `sent`,
one written to the outbox `prepared`, a workbook `generated`. The tracking workbook shows
it with colours and filters, and has columns the teacher fills (notes, the teaching
team's appreciation).

Her columns live in the database (`teacher_notes`, see `pipeline.state`): before each
rewrite, what she typed in suivi.xlsx is read back and stored, then the new file is written
from the database. The reading copes with what she does in Excel: a title above the header,
moved or deleted columns (students are then found by name and class), any number of rows.
If both the file and the database changed a field since grille last wrote the file, the
file's text wins (she typed it most recently) and the other goes to the note history.
Text the reading cannot place back (unknown student or column, a title, no header at all)
keeps the old file aside as `suivi_AAAA-MM-JJ_hhmm.xlsx` before it is replaced.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import sqlite3
import textwrap
import zipfile
from collections.abc import Callable, Mapping
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Protection, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.pagebreak import Break
from openpyxl.worksheet.worksheet import Worksheet

from pipeline import state
from pipeline.errors import GrilleError
from pipeline.files import atomic_save
from pipeline.grid import parse_grid_text
from pipeline.kinds import ReturnStatus
from pipeline.roster import Student
from pipeline.state import (
    STANDING_LABELS,
    STANDING_PENDING,
    ReturnStanding,
    pending_returns,
    student_from_row,
)
from pipeline.text import display_name, fold
from pipeline.validation import STATUS_LABELS, sort_problems

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
    return_file: str = ""  # the stored copy, relative to the campaign folder
    return_origin: str = ""
    return_id: int | None = None
    evaluation: dict[str, Any] | None = None
    grid_id: str = ""
    grid_version: str = ""
    left_at: str = ""  # the first message left for sure (SMTP or marked sent), not prepared
    return_name: str = ""  # the returned file's name as received
    return_sha256: str = ""  # of the returned file as received
    total: int | None = None  # of the global evaluation, over the levels given
    total_maximum: int | None = None
    total_missing: int = 0  # dimensions of the global evaluation without a valid level

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


def waiting_note(pending: ReturnStanding, counted_id: int | None, counted_standing: str) -> str:
    """How a return « à confirmer » stands beside the student's return that counts."""
    if counted_id is None or pending.return_id == counted_id:
        return "Aucun retour signé ni confirmé : il compte pour ce stagiaire en attendant."
    if counted_standing == STANDING_PENDING:
        return f"Le retour n° {counted_id}, à confirmer lui aussi, compte en attendant."
    label = STANDING_LABELS.get(counted_standing, counted_standing)
    # which of the two is the more recent is told by the workbooks' save dates (the
    # `counted_returns` view), not by the order they arrived in: say what holds either way
    return (
        f"Le retour {label} n° {counted_id} compte ; confirmé, celui-ci ne compterait à sa "
        "place que s'il est le plus récent des deux (date d'enregistrement du classeur)."
    )


def command_to_decide(return_id: int) -> str:
    """How the teacher decides on a return « à confirmer » from the command line."""
    return (
        f"confirmez-le (« grille confirm {return_id} ») ou rejetez-le "
        f"(« grille confirm {return_id} --reject »)"
    )


def to_decide_in_a_document(return_id: int) -> str:
    """What a bilan or an archive says of a return « à confirmer »: the decision to make,
    not how to make it (juries read them years later)."""
    return "le professeur doit le confirmer (il compte alors) ou le rejeter"


def _confirmation_note(
    row: sqlite3.Row, pending: list[ReturnStanding], how: Callable[[int], str]
) -> str:
    """What the teacher must decide about this student's returns « à confirmer », and how
    (`how(return_id)`: the commands, or the buttons of the interface)."""
    notes = []
    counted, standing = row["return_id"], row["standing"]
    if standing == STANDING_PENDING:
        notes.append(f"{row['match_note']} Retour n° {counted} : {how(counted)}.")
    for other in pending:
        if other.return_id != counted:
            notes.append(
                f"Retour n° {other.return_id} (« {other.file_name} », reçu le "
                f"{other.collected_at[:10]}) à confirmer : son identité cachée a disparu, il a "
                f"été rattaché par le nom écrit dessus. {waiting_note(other, counted, standing)} "
                f"Retour n° {other.return_id} : {how(other.return_id)}."
            )
    return "\n".join(notes)


@functools.lru_cache(maxsize=16)
def _dimensions(source: str, label: str) -> dict[str, tuple[int, ...]] | None:
    """The levels of each dimension of the global evaluation of the grid `source` (TOML),
    parsed once per process (≈ 40 ms a grid: every reading of the statuses needs them)."""
    try:
        grid = parse_grid_text(source, label)
    except GrilleError:
        return None
    return {d.id: d.values for d in grid.global_evaluation.dimensions}


class _GridMaxima:
    """The global evaluation of each grid stored in the campaign, parsed once."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.dimensions: dict[tuple[str, str], dict[str, tuple[int, ...]] | None] = {}

    def of(self, grid_id: str | None, version: str | None) -> dict[str, tuple[int, ...]] | None:
        """The levels of each dimension of the grid stored as (`grid_id`, `version`)."""
        key = (grid_id or "", version or "")
        if key not in self.dimensions:
            source = state.stored_grid_source(self.db, *key)
            self.dimensions[key] = _dimensions(source, f"{key[0]} v{key[1]}") if source else None
        return self.dimensions[key]

    def total(
        self, grid_id: str | None, version: str | None, evaluation: dict[str, Any] | None
    ) -> tuple[int | None, int | None, int]:
        """(total, maximum, dimensions without a valid level) of a return's evaluation."""
        dimensions = self.of(grid_id, version) if evaluation else None
        if evaluation is None or dimensions is None:
            return None, None, 0
        levels = evaluation.get("levels") or {}
        given = [levels.get(i) for i in dimensions]
        valid = [level for level, values in zip(given, dimensions.values(), strict=True)
                 if level in values]  # fmt: skip
        maximum = sum(max(values) for values in dimensions.values())
        return sum(valid), maximum, len(dimensions) - len(valid)


@dataclass(frozen=True)
class _Read:
    """One student's status and what it was made from."""

    row: tuple[Any, ...]  # `state.student_status_rows`
    pending: list[ReturnStanding]
    dimensions: dict[str, tuple[int, ...]] | None  # of the grid of the return that counts
    status: StudentStatus
    order: tuple[str, str, str]  # class, last name, first name, folded


class KeptStatuses:
    """The statuses of a previous reading, each with what it was made from: a reading
    handed them (`student_statuses(..., kept=)`) decodes again only the students whose
    rows changed (≈ 0.15 s saved for 1,000 students when one return arrived)."""

    def __init__(self) -> None:
        self.by_student: dict[str, _Read] = {}
        self.how_to_decide: Callable[[int], str] | None = None  # the wording they were read with


def student_statuses(
    db: sqlite3.Connection,
    student_id: str | None = None,
    *,
    kept: KeptStatuses | None = None,
    how_to_decide: Callable[[int], str] = command_to_decide,
) -> list[StudentStatus]:
    """Every student of the campaign (or only `student_id`: the page of one student reads
    only its rows) with their current status, by class and name. With `kept` (and every
    student), the statuses of students whose rows are unchanged since the reading that
    filled it are reused (shared objects: do not modify them), and `kept` then holds this
    reading.
    `how_to_decide(return_id)` says, in `match_note`, how to confirm or reject a return
    « à confirmer » (the commands by default)."""
    waiting: dict[str, list[ReturnStanding]] = {}
    for waiting_return in pending_returns(db, student_id):
        waiting.setdefault(waiting_return.student.student_id, []).append(waiting_return)
    grids = _GridMaxima(db)
    if student_id is not None:
        kept = None  # one student's rows: the reading of every student stays as it was
    before = {}
    if kept is not None and kept.how_to_decide is how_to_decide:
        before = kept.by_student
    now: dict[str, _Read] = {}
    for row in state.student_status_rows(db, student_id):
        key = row["student_id"]
        values, pending = tuple(row), waiting.get(key, [])
        dimensions = grids.of(row["grid_id"], row["grid_version"]) if row["evaluation"] else None
        old = before.get(key)
        if old is not None and (old.row, old.pending, old.dimensions) == (
            values,
            pending,
            dimensions,
        ):
            now[key] = old
            continue
        status = _status_of(row, pending, grids, how_to_decide)
        order = (fold(status.class_name), fold(status.last_name), fold(status.first_name))
        now[key] = _Read(values, pending, dimensions, status, order)
    if kept is not None:
        kept.by_student, kept.how_to_decide = now, how_to_decide
    return [read.status for read in sorted(now.values(), key=lambda read: read.order)]


def _status_of(
    row: sqlite3.Row,
    pending: list[ReturnStanding],
    grids: _GridMaxima,
    how_to_decide: Callable[[int], str],
) -> StudentStatus:
    """The status of the student of `row` (`state.student_status_rows`)."""
    missing, invalid, warnings = sort_problems(
        json.loads(row["problems"]) if row["problems"] else []
    )
    if row["return_status"]:
        status = ReturnStatus(row["return_status"])
    elif row["sent_for_sure"]:  # over SMTP, or marked sent by the teacher
        status = ReturnStatus.SENT
    elif row["sent_at"]:
        status = ReturnStatus.PREPARED  # written to the outbox: the teacher sends it herself
    else:
        status = ReturnStatus.GENERATED
    evaluation = json.loads(row["evaluation"]) if row["evaluation"] else None
    total, maximum, lacking = grids.total(row["grid_id"], row["grid_version"], evaluation)
    return StudentStatus(
        student=student_from_row(row),
        in_roster=bool(row["in_roster"]),
        status=status,
        match=row["match"] or "",
        match_note=_confirmation_note(row, pending, how_to_decide),
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
        evaluation=evaluation,
        grid_id=row["grid_id"] or "",
        grid_version=row["grid_version"] or "",
        left_at=row["left_at"] or "",
        return_name=row["return_name"] or "",
        return_sha256=row["return_sha256"] or "",
        total=total,
        total_maximum=maximum,
        total_missing=lacking,
    )


# ------------------------------------------------------------------ the workbook

# (header, width): the columns printed on the first page (after the identifier, which is
# not printed), then the details, then what the screen needs more than paper. The reading
# finds every column by its header, wherever the teacher moved it.
_COLUMNS: list[tuple[str, float]] = [
    ("Identifiant", 11),
    ("Nom", 15),
    ("Prénom", 12),
    ("Classe", 10),
    ("Statut", 13),
    ("Total", 14),
    ("Entreprise", 16),
    ("Tuteur", 15),
    ("Téléphone tuteur", 13),
    ("À faire / manquant", 34),
    ("Envoyé le", 10.5),
    ("Relancé le", 10.5),
    ("Retourné le", 10.5),
    ("Valeurs invalides", 34),
    ("Avertissements", 34),
    (NOTES_HEADER, 30),
    (TEAM_HEADER, 44),
    ("Fichier retourné", 30),
    ("E-mail tuteur", 28),
    ("Généré le", 10.5),
]
_PAGE_BREAKS = ("Retourné le", TEAM_HEADER)  # the last column of each printed page
_PRINT_TITLE_COLUMNS = "B:C"  # Nom, Prénom: repeated on each printed page
_DATES = {"Généré le", "Envoyé le", "Relancé le", "Retourné le"}
SUMMARY_SHEET = "Synthèse"  # written by grille each time, never read back


HEADER_ROWS = 20  # the header is looked for in the first rows (she may add a title above)
_FIELDS = {NOTES_HEADER: "notes", TEAM_HEADER: "team_appreciation"}
_HEADER_OF = {name: header for header, name in _FIELDS.items()}
_ID, _LAST, _FIRST, _CLASS = "Identifiant", "Nom", "Prénom", "Classe"
_SHOWN = 3  # unplaced texts named in the warning; the others are counted
SOURCE = "suivi.xlsx"  # the `source` of the notes read from the workbook
NO_HEADER = (
    f"aucune ligne d'en-têtes reconnue (« {_ID} », ou « {_LAST} » et « {_FIRST} ») "
    f"dans les {HEADER_ROWS} premières lignes"
)


def _key(text: str) -> str:
    """A header as compared: no case, accents, spaces or punctuation."""
    return "".join(ch for ch in fold(text) if ch.isalnum())


_KNOWN_HEADERS = {_key(title): title for title, _ in _COLUMNS}


def clean_text(value: Any) -> str:
    """A cell's value as the text to keep: dates as the teacher reads them, line ends and
    characters a workbook cannot hold normalised, surrounding spaces dropped."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        shown = value.strftime("%d/%m/%Y")
        return shown if value.time() == time() else f"{shown} {value.strftime('%H:%M')}"
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return str(ILLEGAL_CHARACTERS_RE.sub("", text)).strip()


@dataclass
class TrackingSheet:
    """What the teacher's suivi.xlsx holds, as grille could read it."""

    # student id → field of `state.TEACHER_NOTE_FIELDS` → text, for the columns present
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    # French descriptions of text grille cannot place back (empty: nothing would be lost)
    unplaced: list[str] = field(default_factory=list)
    header_found: bool = True


class _Students:
    """The campaign's students, to find the one a row of suivi.xlsx is about."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.names: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.by_name: dict[tuple[str, ...], list[str]] = {}
        for row in state.student_names(db):
            sid = row["student_id"]
            self.names[sid] = display_name(row["last_name"], row["first_name"])
            self.ids[sid.casefold()] = sid
            last, first = fold(row["last_name"]), fold(row["first_name"])
            self.by_name.setdefault((last, first), []).append(sid)
            self.by_name.setdefault((last, first, fold(row["class_name"])), []).append(sid)
        self.purged_classes = {fold(name) for name in state.purged_classes(db)}

    def find(self, student_id: str, last: str, first: str, klass: str) -> str | None:
        """The id of the student of a row: by identifier, else by a unique name (+ class)."""
        if student_id and student_id.casefold() in self.ids:
            return self.ids[student_id.casefold()]
        if not (last and first):
            return None
        key = (fold(last), fold(first), fold(klass)) if klass else (fold(last), fold(first))
        found = self.by_name.get(key, [])
        return found[0] if len(found) == 1 else None


def _find_header(ws: Any) -> tuple[int, dict[int, str]] | None:
    """(row number, column index → grille header) of the header row, if it is in sight."""
    for number, values in enumerate(
        ws.iter_rows(min_row=1, max_row=HEADER_ROWS, values_only=True), start=1
    ):
        columns: dict[int, str] = {}
        for index, value in enumerate(values):
            title = _KNOWN_HEADERS.get(_key(clean_text(value)))
            if title and title not in columns.values():
                columns[index] = title
        titles = set(columns.values())
        if _ID in titles or {_LAST, _FIRST} <= titles:
            return number, columns
    return None


def _has_text(ws: Any) -> bool:
    return any(clean_text(v) for values in ws.iter_rows(values_only=True) for v in values)


def _at(texts: list[str], where: dict[str, int], title: str) -> str:
    index = where.get(title)
    return texts[index] if index is not None and index < len(texts) else ""


def _read_sheet(
    ws: Any, header_row: int, columns: dict[int, str], students: _Students, sheet: TrackingSheet
) -> None:
    """Read the teacher's columns of the rows below the header into `sheet`."""
    where = {title: index for index, title in columns.items()}
    foreign: dict[int, str] = {}  # columns grille does not know that hold text → their header
    for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
        texts = [clean_text(v) for v in values]
        if number < header_row:
            sheet.unplaced.extend(
                f"cellule {get_column_letter(i + 1)}{number} (au-dessus des en-têtes)"
                for i, text in enumerate(texts)
                if text
            )
            continue
        for index, text in enumerate(texts):
            if text and index not in columns and index not in foreign:
                header = texts[index] if number == header_row else ""
                foreign[index] = header
        if number == header_row:
            continue
        typed = {_FIELDS[t]: _at(texts, where, t) for t in TEACHER_HEADERS if t in where}
        sid, last, first, klass = (_at(texts, where, t) for t in (_ID, _LAST, _FIRST, _CLASS))
        student_id = students.find(sid, last, first, klass)
        if student_id is None:
            # a purged class's rows are dropped: its notes are in its verified archive
            if any(typed.values()) and fold(klass) not in students.purged_classes:
                who = " ".join(t for t in (last, first, klass) if t) or (
                    f"Identifiant {sid}" if sid else "ni identifiant ni nom"
                )
                sheet.unplaced.append(f"ligne {number} : stagiaire introuvable ({who})")
            continue
        kept = sheet.texts.setdefault(student_id, {})
        for name, text in typed.items():
            if kept.get(name) and text and kept[name] != text:
                sheet.unplaced.append(
                    f"ligne {number} : {students.names[student_id]} figure sur deux lignes"
                )
            elif text or name not in kept:
                kept[name] = text
    for index, header in sorted(foreign.items()):
        letter = get_column_letter(index + 1)
        sheet.unplaced.append(
            f"colonne {letter} « {header} », inconnue de grille"
            if header
            else f"colonne {letter}, sans en-tête connu"
        )


def read_tracking_sheet(path: Path, db: sqlite3.Connection) -> TrackingSheet | None:
    """What the teacher typed in `suivi.xlsx` (None when there is no such file).

    The header row is looked for in the first 20 rows of the sheet « Suivi » (or of the
    first sheet that has one), the columns by their header wherever they are, the students
    by identifier or else by a unique name and class. Read in streaming mode: any number of
    rows, memory bounded. Text grille could not place back is listed in `unplaced`.
    """
    if not path.exists():
        return None
    try:
        wb = load_workbook(path, read_only=True)  # formulas as typed: nothing is lost
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise GrilleError(
            f"{path.name} est illisible ({exc}) : il n'est pas remplacé, pour ne rien perdre de "
            "ce que vous y avez écrit. Réparez-le ou renommez-le, puis relancez."
        ) from exc
    try:
        sheets = sorted(
            (
                ws for ws in wb.worksheets if ws.title not in (SUMMARY_SHEET, REFUSED_SHEET)
            ),  # grille's own, redone
            key=lambda ws: ws.title != SHEET,
        )
        for ws in sheets:
            ws.reset_dimensions()  # stream the cells there are, not a declared range
        sheet = TrackingSheet()
        chosen = None
        for ws in sheets:
            found = _find_header(ws)
            if found:
                chosen = ws
                _read_sheet(ws, found[0], found[1], _Students(db), sheet)
                break
        sheet.header_found = chosen is not None
        others = [ws for ws in sheets if ws is not chosen and _has_text(ws)]
        if chosen is None and others:
            sheet.unplaced.append(NO_HEADER)
        elif chosen is not None:
            sheet.unplaced.extend(f"feuille « {ws.title} »" for ws in others)
        return sheet
    except (KeyError, ValueError, SyntaxError, zipfile.BadZipFile) as exc:  # XML ParseError too
        raise GrilleError(
            f"{path.name} est illisible ({exc}) : il n'est pas remplacé, pour ne rien perdre de "
            "ce que vous y avez écrit. Réparez-le ou renommez-le, puis relancez."
        ) from exc
    finally:
        wb.close()


def import_teacher_columns(db: sqlite3.Connection, sheet: TrackingSheet) -> list[str]:
    """Store in the database what the teacher changed in suivi.xlsx; French warnings.

    A field counts as changed in the file when it differs from what grille last wrote
    there. If it also changed in the database since (the web interface), both sides were
    edited: the file's text wins, as the one she typed most recently, and the database's
    goes to the note history marked as a conflict, with a warning: nothing is lost.
    """
    notes = state.teacher_notes(db)
    in_file = state.teacher_notes_in_file(db)
    warnings = []
    with state.transaction(db):
        for student_id, typed in sheet.texts.items():
            note = notes.get(student_id, state.TeacherNote(student_id))
            for name, text in typed.items():
                current = clean_text(getattr(note, name))
                written = in_file.get(student_id, {}).get(name, "")
                if text in (written, current):
                    continue  # unchanged in the file, or already so in the database
                conflict = current != written
                state.set_teacher_note(
                    db, student_id, source=SOURCE, conflict=conflict, **{name: text}
                )
                if conflict:
                    warnings.append(
                        f"{_name(db, student_id)} : « {_HEADER_OF[name]} » a été modifié à la "
                        "fois dans suivi.xlsx et ailleurs ; le texte de suivi.xlsx est gardé, "
                        "l'autre est conservé dans l'historique des notes."
                    )
    return warnings


def _name(db: sqlite3.Connection, student_id: str) -> str:
    return state.student_label(db, student_id)


def read_teacher_columns(db: sqlite3.Connection, path: Path) -> dict[str, state.TeacherNote]:
    """Every student's teacher notes, after storing what she typed in `path` (suivi.xlsx)."""
    sheet = _typed_sheet(path, db)
    if sheet is not None:
        import_teacher_columns(db, sheet)
    return state.teacher_notes(db)


def _text(cell: WriteOnlyCell, value: str) -> WriteOnlyCell:
    """Text that stays text (a tutor's "=…" must not become a formula); no value for an
    empty text (a lighter file to read back)."""
    if value:
        cell.value = value
        cell.data_type = "s"
    return cell


_FONT_NAME = "Arial"
_LINE_PT = 13.0  # one line of Arial 10, with LibreOffice's and Excel's spacing
_MAX_ROW_PT = 409.0  # Excel's limit
_PAGE_WIDTH_CM = 29.7 - 2 * 1.0  # A4 landscape, 1 cm margins
_THIN = Side(style="thin", color="A6A6A6")
_GRID_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


def _lines(text: str, width: float) -> int:
    """Lines `text` takes, word-wrapped in a column `width` characters wide (Arial 10 fits
    about 1.2 characters per unit of width; 1.05 is assumed, on the safe side)."""
    per_line = max(1, int(width * 1.05))
    if len(text) <= per_line and "\n" not in text:
        return 1  # most cells: nothing to wrap
    return sum(
        len(textwrap.wrap(line, per_line, break_on_hyphens=False)) or 1 for line in text.split("\n")
    )


def _row_height(texts: list[tuple[str, float]]) -> float:
    """Row height (points) that shows each wrapped text whole, in LibreOffice and Excel
    alike (openpyxl cannot autofit, and neither program does it on opening)."""
    lines = max((_lines(text, width) for text, width in texts if text), default=1)
    return min(_MAX_ROW_PT, max(15.0, lines * _LINE_PT + 4))


def _column_pixels(width: float) -> int:
    """A column's width on screen and paper, in pixels at 96 dpi (7 per unit, plus 5)."""
    return int(width * 7 + 5)


def _print_scale() -> int:
    """The print scale (%) at which each printed page's columns fit the page width."""
    widths = dict(_COLUMNS)
    titles = widths["Nom"] + widths["Prénom"]
    pages: list[list[float]] = [[]]
    for title, width in _COLUMNS[1:]:  # the identifier is not printed
        pages[-1].append(width)
        if title in _PAGE_BREAKS:
            pages.append([titles])
    available = _PAGE_WIDTH_CM / 2.54 * 96 * 0.92  # LibreOffice prints 3 % wider; Excel too
    widest = max(sum(_column_pixels(w) for w in page) for page in pages)
    return min(100, int(available / widest * 100))


def _date(text: str) -> datetime | str:
    """A stored timestamp (« 2026-11-30 14:56:31 ») as a real date for the workbook."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _total_format(st: StudentStatus) -> str:
    """Number format of the total: « 17 / 24 », or « 17 / 24 partiel » when a dimension
    of the global evaluation has no valid level (« À faire / manquant » names it). The
    value stays a number, to sort and filter by."""
    return f'0" / {st.total_maximum}{" partiel" if st.total_missing else ""}"'


def _return_link(st: StudentStatus, root: Path | None, folder: Path | None) -> str:
    """The stored copy of the return, relative to `folder` (where suivi.xlsx is), when
    the campaign folder `root` is known and the copy is there."""
    if root is None or folder is None or not st.return_file:
        return ""
    stored = root / st.return_file
    if not stored.is_file():
        return ""
    return quote(Path(os.path.relpath(stored, folder)).as_posix())


def build_tracking(
    statuses: list[StudentStatus],
    notes: Mapping[str, state.TeacherNote],
    *,
    root: Path | None = None,
    folder: Path | None = None,
    links: Mapping[str, str] | None = None,
) -> Workbook:
    """The tracking workbook; `notes` holds the teacher's columns (from the database).

    Made to be read on screen and printed: A4 landscape, the first columns on the first
    pages, the details on the following ones (a column break after « Retourné le » and
    after the teacher's columns), the header row and the names repeated on each page;
    rows as tall as their wrapped text; real dates. When the campaign folder `root` and
    the `folder` of suivi.xlsx are given, each returned file links to its stored copy;
    `links` (student id → path relative to suivi.xlsx, POSIX) gives those links instead
    (the copies in an archive).
    A second sheet counts the students per status. Written row by row (write-only mode):
    memory stays small whatever the number of rows.
    """
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(SHEET)
    for index, (_, width) in enumerate(_COLUMNS, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width
    last_column = get_column_letter(len(_COLUMNS))
    last = max(2, len(statuses) + 1)
    ws.auto_filter.ref = f"A1:{last_column}{last}"
    ws.freeze_panes = "D2"
    _print_setup(ws, f"B1:{last_column}{last}")
    header = []
    for title, _ in _COLUMNS:
        cell = _text(WriteOnlyCell(ws), title)
        cell.font = Font(name=_FONT_NAME, size=10, bold=True, color="FFFFFF")
        fill = "7F6000" if title in TEACHER_HEADERS else "1F3864"
        cell.fill = PatternFill("solid", fgColor=fill)
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        cell.border = _GRID_BORDER
        header.append(cell)
    ws.row_dimensions[1].height = _row_height([(t, w * 0.9) for t, w in _COLUMNS])  # bold
    ws.append(header)
    styles = _row_styles(ws)
    for number, st in enumerate(statuses, start=2):
        note = notes.get(st.student_id, state.TeacherNote(st.student_id))
        values: list[str | datetime | int | None] = [
            st.student_id,
            st.last_name.upper(),
            st.first_name,
            st.class_name,
            st.status_label + ("" if st.in_roster else " — retiré de la liste"),
            st.total if st.total_maximum else None,
            st.student.company,
            st.student.tutor_name,
            st.student.tutor_phone,
            "\n".join([*([st.match_note] if st.match_note else []), *st.missing]),
            _date(st.left_at) if st.left_at else None,
            _date(st.reminded_at) if st.reminded_at else None,
            _date(st.returned_at) if st.returned_at else None,
            "\n".join(st.invalid),
            "\n".join(st.warnings),
            clean_text(note.notes),
            clean_text(note.team_appreciation),
            st.return_name or (Path(st.return_file).name if st.return_file else ""),
            st.student.tutor_email,
            _date(st.generated_at) if st.generated_at else None,
        ]
        if links is not None:
            link = quote(links[st.student_id]) if st.student_id in links else ""
        else:
            link = _return_link(st, root, folder)
        row = []
        wrapped = []
        for (title, width), value in zip(_COLUMNS, values, strict=True):
            if isinstance(value, str):
                cell = _text(WriteOnlyCell(ws), value)
                wrapped.append((value, width))
            else:
                cell = WriteOnlyCell(ws, value)
            key = st.status if title == "Statut" else title
            if title == "Fichier retourné" and link:
                key = "link"
            cell._style = copy(styles.get(key, styles[""]))  # no lookup per cell
            if title == "Total" and value is not None:
                cell.number_format = _total_format(st)
            if key == "link":
                cell.hyperlink = Hyperlink(ref="", target=link, tooltip="Ouvrir la copie reçue")
            row.append(cell)
        ws.row_dimensions[number].height = _row_height(wrapped)
        ws.append(row)
    _write_summary(wb, statuses)
    return wb


def _print_setup(ws: Any, area: str) -> None:
    """A4 landscape at the scale where each page's columns fit; the header row and the
    names on every page; the pages down the rows first, then across the columns."""
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    ws.page_setup.scale = _print_scale()
    ws.page_setup.pageOrder = "downThenOver"
    ws.page_margins.left = ws.page_margins.right = 1.0 / 2.54
    ws.page_margins.top = ws.page_margins.bottom = 1.5 / 2.54
    ws.page_margins.header = ws.page_margins.footer = 0.6 / 2.54
    ws.print_area = area
    ws.print_title_rows = "1:1"
    ws.print_title_cols = _PRINT_TITLE_COLUMNS
    titles = [title for title, _ in _COLUMNS]
    for title in _PAGE_BREAKS:
        ws.col_breaks.append(Break(id=titles.index(title) + 1))
    stamp = datetime.now().strftime("%d/%m/%Y à %H:%M")
    ws.oddFooter.left.text = f"Suivi des stages — mis à jour le {stamp}"
    ws.oddFooter.right.text = "Page &P / &N"
    for part in (ws.oddFooter.left, ws.oddFooter.right):
        part.font, part.size = _FONT_NAME, 8


def _row_styles(ws: Any) -> dict[str, Any]:
    """Style of the data cells: "" for most, a teacher header for hers, a status for the
    status cell, a date column for its dates, "link" for a returned file with its link."""
    wrap = Alignment(wrap_text=True, vertical="top")
    styles = {}
    for key in ("", *TEACHER_HEADERS, *STATUS_FILLS, *_DATES, "Total", "link"):
        cell = WriteOnlyCell(ws)
        cell.font = Font(name=_FONT_NAME, size=10)
        cell.alignment = wrap
        cell.border = _GRID_BORDER
        if key in TEACHER_HEADERS:
            cell.fill = PatternFill("solid", fgColor="FFF9DB")
            cell.protection = Protection(locked=False)
        elif key in STATUS_FILLS:
            cell.fill = PatternFill("solid", fgColor=STATUS_FILLS[key])
        elif key in _DATES:
            cell.number_format = "dd/mm/yyyy"
            cell.alignment = Alignment(horizontal="center", vertical="top")
        elif key == "Total":
            cell.alignment = Alignment(horizontal="center", vertical="top")
        elif key == "link":
            cell.font = Font(name=_FONT_NAME, size=10, color="0563C1", underline="single")
        styles[key] = cell._style
    return styles


_SUMMARY_ROWS = ("generated", "prepared", "sent", "incomplete", "invalid", "complete")


def _write_summary(wb: Workbook, statuses: list[StudentStatus]) -> None:
    """The sheet « Synthèse »: how many students per status, per class and in all."""
    ws = wb.create_sheet(SUMMARY_SHEET)
    classes = sorted({st.class_name for st in statuses}, key=fold)
    columns = [*classes, "Ensemble"] if len(classes) != 1 else classes
    ws.column_dimensions["A"].width = 34
    for index in range(len(columns)):
        ws.column_dimensions[get_column_letter(index + 2)].width = 14
    ws.page_setup.orientation = "portrait" if len(columns) < 6 else "landscape"
    ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    plain = Font(name=_FONT_NAME, size=10)
    bold = Font(name=_FONT_NAME, size=10, bold=True)

    def line(values: list[Any], font: Font = plain, fill: str = "", fmt: str = "") -> None:
        cells = []
        for index, value in enumerate(values):
            cell = WriteOnlyCell(ws, value)
            cell.font = font
            if fill:
                cell.fill = PatternFill("solid", fgColor=fill)
            if index and fmt:
                cell.number_format = fmt
            if index:
                cell.alignment = Alignment(horizontal="center")
            cells.append(cell)
        ws.append(cells)

    def per_column(count: Any) -> list[Any]:
        groups = [[st for st in statuses if st.class_name == c] for c in classes]
        if len(columns) > len(classes):
            groups.append(list(statuses))
        return [count(group) for group in groups]

    stamp = datetime.now().strftime("%d/%m/%Y à %H:%M")
    line([f"Suivi des stages au {stamp}"], Font(name=_FONT_NAME, size=13, bold=True))
    line(["Feuille refaite par grille à chaque mise à jour : n'y écrivez pas."],
         Font(name=_FONT_NAME, size=9, italic=True))  # fmt: skip
    line([])
    line(["Nombre de stagiaires", *columns], Font(name=_FONT_NAME, size=10, bold=True,
         color="FFFFFF"), "1F3864")  # fmt: skip
    for status in _SUMMARY_ROWS:
        counts = per_column(lambda group, s=status: sum(1 for st in group if st.status == s))
        line([STATUS_LABELS[status], *counts], plain, STATUS_FILLS[status])
    line(["dont retour à confirmer", *per_column(lambda g: sum(st.to_confirm for st in g))])
    line(["retirés de la liste", *per_column(lambda g: sum(not st.in_roster for st in g))])
    line(["Total", *per_column(len)], bold)
    line([])

    def mean(group: list[StudentStatus]) -> float | None:
        totals = [st.total for st in group if st.total is not None and not st.total_missing]
        return round(sum(totals) / len(totals), 1) if totals else None

    maxima = {st.total_maximum for st in statuses if st.total_maximum}
    label = f"Moyenne du total / {maxima.pop()}" if len(maxima) == 1 else "Moyenne du total"
    line([label, *per_column(mean)], bold, "", "0.0")
    line(["(évaluations globales complètes seulement)"], Font(name=_FONT_NAME, size=9,
         italic=True))  # fmt: skip


def _aside_name(path: Path, stamp: datetime, number: int) -> Path:
    suffix = "" if number == 1 else f"_{number}"
    return path.with_name(f"{path.stem}_{stamp:%Y-%m-%d_%H%M}{suffix}{path.suffix}")


def keep_aside(path: Path) -> Path:
    """Keep `path` as `suivi_AAAA-MM-JJ_hhmm.xlsx` beside it, never replacing a file.

    A hard link (atomic, nothing copied); where the disk has none, an exclusive copy: the
    original stays untouched until the new suivi.xlsx replaces it.
    """
    stamp = datetime.now()
    for number in itertools.count(1):
        target = _aside_name(path, stamp, number)
        try:
            os.link(path, target)
            return target
        except FileExistsError:
            continue
        except OSError:
            pass
        try:
            with target.open("xb") as handle:
                handle.write(path.read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            return target
        except FileExistsError:
            continue
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    raise AssertionError("unreachable")


@dataclass
class TrackingOutcome:
    """What `write_tracking` had to say: the old file kept aside, and why; conflicts."""

    path: Path
    kept_aside: Path | None = None
    header_found: bool = True
    unplaced: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def warnings(self, root: Path) -> list[str]:
        """French warnings for the teacher, paths shown relative to the campaign `root`."""
        shown = [f"Attention — {text}" for text in self.conflicts]
        if self.kept_aside is not None:
            if self.header_found:
                named = " ; ".join(self.unplaced[:_SHOWN])
                more = len(self.unplaced) - _SHOWN
                reason = (
                    "du texte que grille ne sait pas rattacher à un stagiaire ni à une de ses "
                    f"colonnes ({named}{f' ; et {more} autre(s)' if more > 0 else ''})"
                )
            else:
                reason = NO_HEADER
            shown.append(
                f"Attention — {_relative(self.path, root)} : {reason}. Pour ne rien perdre, "
                f"il est conservé tel quel sous {_relative(self.kept_aside, root)} ; le nouveau "
                "suivi.xlsx reprend les notes enregistrées. Recopiez-y ce qui doit l'être."
            )
        return shown


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def write_tracking(path: Path, db: sqlite3.Connection, root: Path | None = None) -> TrackingOutcome:
    """Rewrite `suivi.xlsx` from the database, after storing what the teacher typed in it.

    Her columns are read back first (`import_teacher_columns`: skipped when the file is
    the very one grille wrote last, `_typed_sheet`) and written again from the database,
    so neither the file nor the database loses the other's text. If the file
    holds text grille cannot place back (no header, unknown student, unknown column, a
    title…), it is kept aside (`keep_aside`) before being replaced. Atomic write. The
    returned files link to their stored copies under the campaign folder `root` (by
    default the parent of `path`'s folder: suivi.xlsx is in <campagne>/output).
    """
    outcome = TrackingOutcome(path)
    sheet = _typed_sheet(path, db)
    if sheet is not None:
        outcome.conflicts = import_teacher_columns(db, sheet)
        outcome.unplaced = sheet.unplaced
        outcome.header_found = sheet.header_found
    notes = state.teacher_notes(db)
    root = path.parent.parent if root is None else root
    wb = build_tracking(student_statuses(db), notes, root=root, folder=path.parent)
    add_refused_sheet(wb, state.refused_files(db))
    if outcome.unplaced:
        outcome.kept_aside = keep_aside(path)
    try:
        atomic_save(path, wb.save)
    except BaseException as exc:
        if outcome.kept_aside is not None:  # the original is still there: one copy is enough
            outcome.kept_aside.unlink(missing_ok=True)
        if isinstance(exc, PermissionError):
            raise GrilleError(
                f"Impossible de remplacer {path.name} : fermez-le dans Excel ou LibreOffice, "
                "puis relancez."
            ) from exc
        raise
    state.record_teacher_notes_in_file(
        db,
        {
            student_id: {name: clean_text(getattr(note, name)) for name in _HEADER_OF}
            for student_id, note in notes.items()
        },
    )
    state.record_tracking_file(db, _sha256(path))
    return outcome


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _typed_sheet(path: Path, db: sqlite3.Connection) -> TrackingSheet | None:
    """`read_tracking_sheet`, unless `path` is byte for byte the suivi.xlsx grille wrote
    last (`state.tracking_file_written`): the teacher typed nothing in it since, and
    reading it back (≈ 0.7 s for 1,000 students) is skipped."""
    try:
        unchanged = path.is_file() and _sha256(path) == state.tracking_file_written(db)
    except OSError:
        unchanged = False  # read as usual, which says what is wrong
    return None if unchanged else read_tracking_sheet(path, db)


def team_appreciations(db: sqlite3.Connection, path: Path) -> dict[str, str]:
    """The teaching team's appreciation per student id, from the database once what the
    teacher typed in `path` (suivi.xlsx) is stored there."""
    return {
        student_id: note.team_appreciation
        for student_id, note in read_teacher_columns(db, path).items()
        if note.team_appreciation.strip()
    }


# ------------------------------------------------------------------ refused files

REFUSED_SHEET = "Fichiers refusés"
_REFUSED_COLUMNS: list[tuple[str, int]] = [
    ("Reçu le", 17),
    ("Fichier", 30),
    ("Provenance", 50),
    ("Raison", 70),
    ("Empreinte SHA-256", 30),
    ("Revu le", 17),
]


def add_refused_sheet(wb: Workbook, refused: list[state.RefusedFile]) -> None:
    """Add the sheet « Fichiers refusés » to the (write-only) tracking workbook: each file
    `collect` refused or could not read, the most recently seen first. grille rewrites it
    every time (it is protected, without password: nothing typed there is read back)."""
    ws = wb.create_sheet(REFUSED_SHEET)
    for index, (_, width) in enumerate(_REFUSED_COLUMNS, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width
    ws.freeze_panes = "A2"
    ws.protection.sheet = True
    ws.protection.autoFilter = False
    ws.protection.sort = False
    ws.auto_filter.ref = f"A1:{get_column_letter(len(_REFUSED_COLUMNS))}{max(2, len(refused) + 1)}"
    header = []
    for title, _ in _REFUSED_COLUMNS:
        cell = _text(WriteOnlyCell(ws), title)
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = PatternFill("solid", fgColor="833C0B")
        header.append(cell)
    ws.append(header)
    wrap = Alignment(wrap_text=True, vertical="top")
    for item in refused:
        values = (
            item.first_seen_at,
            item.file_name,
            item.origin,
            item.reason,
            item.sha256,
            item.last_seen_at,
        )
        row = []
        for value in values:
            cell = _text(WriteOnlyCell(ws), clean_text(value))
            cell.alignment = wrap
            row.append(cell)
        ws.append(row)
