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

import itertools
import json
import os
import sqlite3
import zipfile
from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from pipeline import state
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
        for row in db.execute("SELECT student_id, last_name, first_name, class_name FROM students"):
            sid = row["student_id"]
            self.names[sid] = f"{row['last_name'].upper()} {row['first_name']}"
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
            (ws for ws in wb.worksheets if ws.title != REFUSED_SHEET),  # grille's own: rewritten
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
    row = db.execute(
        "SELECT last_name, first_name, class_name FROM students WHERE student_id = ?",
        (student_id,),
    ).fetchone()
    return f"{row[0].upper()} {row[1]} ({row[2]})" if row else student_id


def read_teacher_columns(db: sqlite3.Connection, path: Path) -> dict[str, state.TeacherNote]:
    """Every student's teacher notes, after storing what she typed in `path` (suivi.xlsx)."""
    sheet = read_tracking_sheet(path, db)
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


def build_tracking(
    statuses: list[StudentStatus], notes: Mapping[str, state.TeacherNote]
) -> Workbook:
    """The tracking workbook; `notes` holds the teacher's columns (from the database).

    Written row by row (write-only mode): memory stays small whatever the number of rows.
    """
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(SHEET)
    for index, (_, width) in enumerate(_COLUMNS, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width
    last = max(2, len(statuses) + 1)
    ws.auto_filter.ref = f"A1:{get_column_letter(len(_COLUMNS))}{last}"
    ws.freeze_panes = "D2"
    ws.row_dimensions[1].height = 32
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = "1:1"
    header_fill = PatternFill("solid", fgColor="1F3864")
    header = []
    for title, _ in _COLUMNS:
        cell = _text(WriteOnlyCell(ws), title)
        cell.font = Font(bold=True, color="FFFFFF")
        cell.fill = (
            header_fill if title not in TEACHER_HEADERS else PatternFill("solid", fgColor="7F6000")
        )
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        header.append(cell)
    ws.append(header)
    styles = _row_styles(ws)
    for st in statuses:
        note = notes.get(st.student_id, state.TeacherNote(st.student_id))
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
            clean_text(note.notes),
            clean_text(note.team_appreciation),
        ]
        row = []
        for (title, _), value in zip(_COLUMNS, values, strict=True):
            cell = _text(WriteOnlyCell(ws), value)
            style = styles.get(st.status if title == "Statut" else title, styles[""])
            cell._style = copy(style)  # as openpyxl copies styles: no lookup per cell
            row.append(cell)
        ws.append(row)
    return wb


def _row_styles(ws: Any) -> dict[str, Any]:
    """Style of the data cells: "" for most, a teacher header for hers, a status for
    the status cell."""
    wrap = Alignment(wrap_text=True, vertical="top")
    styles = {}
    for key in ("", *TEACHER_HEADERS, *STATUS_FILLS):
        cell = WriteOnlyCell(ws)
        cell.alignment = wrap
        if key in TEACHER_HEADERS:
            cell.fill = PatternFill("solid", fgColor="FFF9DB")
            cell.protection = Protection(locked=False)
        elif key:
            cell.fill = PatternFill("solid", fgColor=STATUS_FILLS[key])
        styles[key] = cell._style
    return styles


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


def write_tracking(path: Path, db: sqlite3.Connection) -> TrackingOutcome:
    """Rewrite `suivi.xlsx` from the database, after storing what the teacher typed in it.

    Her columns are read back first (`import_teacher_columns`) and written again from the
    database, so neither the file nor the database loses the other's text. If the file
    holds text grille cannot place back (no header, unknown student, unknown column, a
    title…), it is kept aside (`keep_aside`) before being replaced. Atomic write.
    """
    outcome = TrackingOutcome(path)
    sheet = read_tracking_sheet(path, db)
    if sheet is not None:
        outcome.conflicts = import_teacher_columns(db, sheet)
        outcome.unplaced = sheet.unplaced
        outcome.header_found = sheet.header_found
    notes = state.teacher_notes(db)
    wb = build_tracking(student_statuses(db), notes)
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
    return outcome


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
