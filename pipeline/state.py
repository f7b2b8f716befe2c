"""SQLite state of a campaign: migrations and the queries each step needs.

What was generated, sent, returned and validated lives in `output/grille.sqlite`; every
query and write of that data is here, as a view or a named function the other modules
call (only transaction control and pragmas are issued elsewhere).
Schema changes are named functions in `MIGRATIONS`, applied once each, in order,
in a transaction, and recorded in `schema_migrations`.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pipeline.errors import GrilleError, StorageError, french_os_error, storage_problem
from pipeline.files import safe_name
from pipeline.kinds import Channel, SendingKind, Standing
from pipeline.parallel import closed_in_workers
from pipeline.roster import Student


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the caller's transaction (executescript would commit)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _001_students_and_workbooks(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE students (
            student_id TEXT PRIMARY KEY,
            last_name TEXT NOT NULL,
            first_name TEXT NOT NULL,
            class_name TEXT NOT NULL,
            company TEXT NOT NULL,
            tutor_name TEXT NOT NULL,
            tutor_email TEXT NOT NULL,
            tutor_phone TEXT NOT NULL DEFAULT '',
            student_email TEXT NOT NULL DEFAULT '',
            referent TEXT NOT NULL DEFAULT '',
            start_date TEXT NOT NULL,
            end_date TEXT NOT NULL,
            in_roster INTEGER NOT NULL DEFAULT 1,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE workbooks (
            id INTEGER PRIMARY KEY,
            student_id TEXT NOT NULL REFERENCES students(student_id),
            file TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            signature TEXT NOT NULL,
            grid_id TEXT NOT NULL,
            grid_version TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            template_digest TEXT NOT NULL,
            generated_at TEXT NOT NULL
        );
        CREATE INDEX workbooks_student ON workbooks(student_id, id);
        """,
    )


def _002_grids_and_returns(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE grids (
            grid_id TEXT NOT NULL,
            grid_version TEXT NOT NULL,
            source TEXT NOT NULL,
            stored_at TEXT NOT NULL,
            PRIMARY KEY (grid_id, grid_version)
        );
        CREATE TABLE returns (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            stored_file TEXT NOT NULL,
            origin TEXT NOT NULL,
            file_name TEXT NOT NULL,
            converted_from TEXT NOT NULL DEFAULT '',
            collected_at TEXT NOT NULL,
            student_id TEXT REFERENCES students(student_id),
            match TEXT NOT NULL,
            match_note TEXT NOT NULL DEFAULT '',
            status TEXT,
            grid_id TEXT,
            grid_version TEXT,
            problems TEXT NOT NULL DEFAULT '[]',
            evaluation TEXT
        );
        CREATE INDEX returns_student ON returns(student_id, id);
        CREATE TABLE answers (
            return_id INTEGER NOT NULL REFERENCES returns(id),
            item_id TEXT NOT NULL,
            sheet TEXT NOT NULL,
            cell TEXT NOT NULL,
            raw TEXT,
            value TEXT,
            PRIMARY KEY (return_id, item_id)
        );
        CREATE TABLE sendings (
            id INTEGER PRIMARY KEY,
            student_id TEXT NOT NULL REFERENCES students(student_id),
            workbook_id INTEGER REFERENCES workbooks(id),
            recipient TEXT NOT NULL,
            message_id TEXT NOT NULL,
            sent_at TEXT NOT NULL
        );
        """,
    )


def _003_reports(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE reports "
        "(file TEXT PRIMARY KEY, sha256 TEXT NOT NULL, written_at TEXT NOT NULL)"
    )


def _004_sending_kinds(db: sqlite3.Connection) -> None:
    """Reminders beside first sendings; .eml files written instead of SMTP; unsure sends."""
    _script(
        db,
        """
        ALTER TABLE sendings ADD COLUMN kind TEXT NOT NULL DEFAULT 'envoi';
        ALTER TABLE sendings ADD COLUMN channel TEXT NOT NULL DEFAULT 'smtp';
        ALTER TABLE sendings ADD COLUMN file TEXT NOT NULL DEFAULT '';
        ALTER TABLE sendings ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX sendings_student ON sendings(student_id, kind)
        """,
    )


def _006_fetched_messages(db: sqlite3.Connection) -> None:
    """Messages read from an IMAP folder by « collect --imap »: never fetched twice."""
    _script(
        db,
        """
        CREATE TABLE fetched_messages (
            server TEXT NOT NULL,
            user_name TEXT NOT NULL,
            folder TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            message_id TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL,
            stored_file TEXT NOT NULL DEFAULT '',
            fetched_at TEXT NOT NULL,
            PRIMARY KEY (server, user_name, folder, uidvalidity, uid)
        );
        CREATE INDEX fetched_messages_id ON fetched_messages(server, user_name, folder, message_id)
        """,
    )


def _005_archives(db: sqlite3.Connection) -> None:
    """Class archives written by « grille archive », and when each was verified."""
    db.execute(
        "CREATE TABLE archives (id INTEGER PRIMARY KEY, path TEXT NOT NULL, "
        "sha256 TEXT NOT NULL, class_name TEXT NOT NULL, school_year TEXT NOT NULL, "
        "created_at TEXT NOT NULL, verified_at TEXT)"
    )


def _007_class_folders(db: sqlite3.Connection) -> None:
    """Each class's own folder name; reports tied to their class and student, with the bytes
    being written; the manifest of each archive.

    Before 007 a class's folder was its name made safe, so two classes could share one: the
    class whose workbooks were made first keeps the folder it has, the other gets a new one
    (its files already written keep their recorded paths).
    """
    _script(
        db,
        """
        CREATE TABLE class_folders (
            class_name TEXT PRIMARY KEY,
            folder TEXT NOT NULL UNIQUE COLLATE NOCASE,
            assigned_at TEXT NOT NULL
        );
        ALTER TABLE reports ADD COLUMN class_name TEXT;
        ALTER TABLE reports ADD COLUMN student_id TEXT;
        ALTER TABLE reports ADD COLUMN pending_sha256 TEXT;
        CREATE INDEX reports_class ON reports(class_name);
        ALTER TABLE archives ADD COLUMN manifest_sha256 TEXT
        """,
    )
    rows = db.execute(
        "SELECT s.class_name, w.file FROM workbooks w JOIN students s USING (student_id) "
        "ORDER BY w.id"
    ).fetchall()
    for class_name, file in rows:
        parts = PurePosixPath(file).parts
        used = parts[2] if len(parts) == 4 and parts[:2] == ("output", "classeurs") else None
        if db.execute("SELECT 1 FROM class_folders WHERE class_name = ?", (class_name,)).fetchone():
            continue
        _assign_folder(db, class_name, used)
    _007_attribute_reports(db)


def _007_attribute_reports(db: sqlite3.Connection) -> None:
    """Tie each report written before 007 to its student (by its file name, as grille named
    reports then) or, for a class report, to the class that owns its folder."""
    stems = sorted(
        (
            (
                f"bilan_{safe_name(row['last_name']).upper()}_{safe_name(row['first_name'])}_"
                f"{safe_name(row['student_id'])}"
            ),
            row["student_id"],
            row["class_name"],
        )
        for row in db.execute("SELECT student_id, last_name, first_name, class_name FROM students")
    )
    owners = dict(db.execute("SELECT folder, class_name FROM class_folders").fetchall())
    for (file,) in db.execute("SELECT file FROM reports").fetchall():
        path = PurePosixPath(file)
        match = max(
            (item for item in stems if path.stem == item[0] or path.stem.startswith(item[0] + "_")),
            key=lambda item: len(item[0]),
            default=None,
        )
        if match is not None:
            student_id, class_name = match[1], match[2]
        else:
            student_id, class_name = None, owners.get(path.parent.name)
        db.execute(
            "UPDATE reports SET class_name = ?, student_id = ? WHERE file = ?",
            (class_name, student_id, file),
        )


def _009_return_confirmation(db: sqlite3.Connection) -> None:
    """The teacher's decisions on returns matched « à confirmer », and the return that counts.

    `return_standing` gives each recognised return its standing: `signed` (hidden identity
    verified), else the teacher's latest decision (`confirmed`, `rejected`), else `pending`.
    `counted_returns` gives, per student, the one return that counts: the latest signed or
    confirmed one; a pending one only when the student has none of those.
    """
    _script(
        db,
        """
        CREATE TABLE return_decisions (
            id INTEGER PRIMARY KEY,
            return_id INTEGER NOT NULL REFERENCES returns(id) ON DELETE CASCADE,
            decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
            decided_by TEXT NOT NULL,
            decided_at TEXT NOT NULL
        );
        CREATE INDEX return_decisions_return ON return_decisions(return_id, id);
        CREATE VIEW return_standing AS
        SELECT r.id AS return_id, r.student_id AS student_id,
               CASE WHEN r.match = 'signed' THEN 'signed'
                    ELSE COALESCE(d.decision, 'pending') END AS standing,
               d.decided_by AS decided_by, d.decided_at AS decided_at
        FROM returns r
        LEFT JOIN return_decisions d
            ON d.id = (SELECT MAX(id) FROM return_decisions WHERE return_id = r.id)
        WHERE r.student_id IS NOT NULL AND r.match != 'rejected';
        CREATE VIEW counted_returns AS
        SELECT t.student_id, t.return_id, t.standing, t.decided_by, t.decided_at
        FROM return_standing t
        WHERE t.return_id = (
            SELECT u.return_id FROM return_standing u
            WHERE u.student_id = t.student_id AND u.standing != 'rejected'
            ORDER BY u.standing = 'pending', u.return_id DESC
            LIMIT 1)
        """,
    )


def _008_teacher_notes(db: sqlite3.Connection) -> None:
    """What the teacher writes about each student (her notes, the teaching team's
    appreciation), typed in suivi.xlsx or, later, in the web interface; the text grille last
    wrote in suivi.xlsx (to tell what she changed there); every replaced text, kept."""
    _script(
        db,
        """
        CREATE TABLE teacher_notes (
            student_id TEXT PRIMARY KEY REFERENCES students(student_id) ON DELETE CASCADE,
            notes TEXT NOT NULL DEFAULT '',
            team_appreciation TEXT NOT NULL DEFAULT '',
            updated_at TEXT NOT NULL,
            source TEXT NOT NULL,
            notes_in_file TEXT NOT NULL DEFAULT '',
            team_appreciation_in_file TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE teacher_note_history (
            id INTEGER PRIMARY KEY,
            student_id TEXT NOT NULL REFERENCES students(student_id) ON DELETE CASCADE,
            field TEXT NOT NULL,
            old_value TEXT NOT NULL,
            new_value TEXT NOT NULL,
            source TEXT NOT NULL,
            conflict INTEGER NOT NULL DEFAULT 0,
            changed_at TEXT NOT NULL
        );
        CREATE INDEX teacher_note_history_student ON teacher_note_history(student_id, id)
        """,
    )


def _010_campaign_identity(db: sqlite3.Connection) -> None:
    """Which campaign this database belongs to, and a fingerprint of the key that signs its
    workbooks (an HMAC of a fixed text, never the key): a replaced key is named as such."""
    db.execute(
        "CREATE TABLE campaign_identity (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "campaign_id TEXT NOT NULL, key_fingerprint TEXT NOT NULL, recorded_at TEXT NOT NULL)"
    )


def _011_archive_split(db: sqlite3.Connection) -> None:
    """Each PDF of a bilan records the SHA-256 of the .docx it was made from, so that a PDF
    older than its Word file is told apart (`source_sha256`).

    A PDF recorded before: it was made right after its .docx was written, from that .docx,
    so it gets the .docx's recorded SHA-256 when it was recorded no earlier than the .docx;
    otherwise the .docx was rewritten since, and its source stays unknown (NULL: stale).
    """
    db.execute("ALTER TABLE reports ADD COLUMN source_sha256 TEXT")
    db.execute(
        "UPDATE reports SET source_sha256 = (SELECT d.sha256 FROM reports d "
        "WHERE d.file = substr(reports.file, 1, length(reports.file) - 4) || '.docx' "
        "AND d.written_at <= reports.written_at) "
        "WHERE file LIKE '%.pdf'"
    )


def _013_latest_workbook(db: sqlite3.Connection) -> None:
    """`latest_workbooks`: each student's latest workbook, the one that is sent, reminded
    about and expected back (`latest_workbooks` is the one place that says which)."""
    db.execute(
        "CREATE VIEW latest_workbooks AS SELECT w.* FROM workbooks w "
        "WHERE w.id IN (SELECT MAX(id) FROM workbooks GROUP BY student_id)"
    )


def _014_tracking_file(db: sqlite3.Connection) -> None:
    """The SHA-256 of the suivi.xlsx grille wrote last: the same file found at the next
    rewrite holds nothing the teacher typed, and is not read back."""
    db.execute(
        "CREATE TABLE tracking_file (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "sha256 TEXT NOT NULL, written_at TEXT NOT NULL)"
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_students_and_workbooks", _001_students_and_workbooks),
    ("002_grids_and_returns", _002_grids_and_returns),
    ("003_reports", _003_reports),
    ("004_sending_kinds", _004_sending_kinds),
    ("005_archives", _005_archives),
    ("006_fetched_messages", _006_fetched_messages),
    ("007_class_folders", _007_class_folders),
    ("008_teacher_notes", _008_teacher_notes),
    ("009_return_confirmation", _009_return_confirmation),
    ("010_campaign_identity", _010_campaign_identity),
    ("011_archive_split", _011_archive_split),
    ("013_latest_workbook", _013_latest_workbook),
    ("014_tracking_file", _014_tracking_file),
]


def now() -> str:
    """Local time, to the second, ISO format: what the teacher reads."""
    return datetime.now().replace(microsecond=0).isoformat(sep=" ")


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded; return their names."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
    )
    done = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
    applied = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            migration(db)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate) the campaign database; a French `GrilleError` says why not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        raise database_error(path, exc) from exc
    return db


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def database_error(path: Path, exc: sqlite3.Error) -> GrilleError:
    """The French error for a database that cannot be opened or written."""
    storage = storage_problem(exc, path.parent)
    if storage is not None:
        return StorageError(f"Base de suivi « {path.name} » : {storage}")
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    damaged = "malformed" in str(exc) or "not a database" in str(exc)
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or damaged:
        return GrilleError(
            f"Base de suivi « {path} » abîmée ({exc}). Remettez la dernière sauvegarde : "
            "« grille restore --list » montre les sauvegardes, « grille restore NOM » en "
            "remet une (l'actuelle est mise de côté, rien n'est effacé)."
        )
    return GrilleError(
        f"Base de suivi « {path} » inaccessible ({exc}). Fermez les programmes qui l'utilisent, "
        "puis relancez la commande."
    )


def student_from_row(row: sqlite3.Row) -> Student:
    """A `Student` from a row of the `students` table."""
    start, end = date.fromisoformat(row["start_date"]), date.fromisoformat(row["end_date"])
    return Student(**_columns(Student, row, start=start, end=end))


def _assign_folder(db: sqlite3.Connection, class_name: str, preferred: str | None = None) -> str:
    """Give `class_name` the first folder name no other class has (case ignored, as on
    Windows and macOS): `preferred`, else its name made safe, then `_2`, `_3`…"""
    taken = {row[0].casefold() for row in db.execute("SELECT folder FROM class_folders")}
    base = safe_name(class_name, 60)
    candidates = itertools.chain(
        [preferred] if preferred else [], [base], (f"{base}_{n}" for n in itertools.count(2))
    )
    folder = next(name for name in candidates if name.casefold() not in taken)
    db.execute(
        "INSERT INTO class_folders (class_name, folder, assigned_at) VALUES (?, ?, ?)",
        (class_name, folder, now()),
    )
    return folder


def class_folder(db: sqlite3.Connection, class_name: str) -> str:
    """The folder name of a class under `output/classeurs/`, `output/rapports/` and its
    archive: assigned once, on first use, unique among the campaign's classes."""
    row = db.execute(
        "SELECT folder FROM class_folders WHERE class_name = ?", (class_name,)
    ).fetchone()
    if row is not None:
        return str(row[0])
    if db.in_transaction:
        return _assign_folder(db, class_name)
    with transaction(db):
        again = db.execute(
            "SELECT folder FROM class_folders WHERE class_name = ?", (class_name,)
        ).fetchone()
        return str(again[0]) if again is not None else _assign_folder(db, class_name)


STANDING_SIGNED = Standing.SIGNED  # the old names of `kinds.Standing`'s members
STANDING_CONFIRMED = Standing.CONFIRMED
STANDING_REJECTED = Standing.REJECTED
STANDING_PENDING = Standing.PENDING
STANDING_LABELS: dict[str, str] = {
    STANDING_SIGNED: "signé",
    STANDING_CONFIRMED: "confirmé",
    STANDING_REJECTED: "rejeté",
    STANDING_PENDING: "à confirmer",
}


@dataclass(frozen=True)
class ReturnStanding:
    """A recognised return (matched to a student) and where it stands with the teacher."""

    return_id: int
    student: Student
    file_name: str
    origin: str
    collected_at: str
    status: str
    match_note: str
    standing: str
    decided_by: str
    decided_at: str


_STANDING_QUERY = """
SELECT t.return_id, t.standing, t.decided_by, t.decided_at, r.file_name, r.origin,
       r.collected_at, r.status, r.match_note, s.*
FROM return_standing t
JOIN returns r ON r.id = t.return_id
JOIN students s ON s.student_id = t.student_id
"""


def _standing(row: sqlite3.Row) -> ReturnStanding:
    given = {name: row[name] or "" for name in ("status", "decided_by", "decided_at")}
    return ReturnStanding(**_columns(ReturnStanding, row, student=student_from_row(row), **given))


def return_standing(db: sqlite3.Connection, return_id: int) -> ReturnStanding | None:
    """Return `return_id` if it was recognised (matched to a student), else None."""
    row = db.execute(_STANDING_QUERY + "WHERE t.return_id = ?", (return_id,)).fetchone()
    return _standing(row) if row else None


def pending_returns(db: sqlite3.Connection, student_id: str | None = None) -> list[ReturnStanding]:
    """The returns matched « à confirmer » still awaiting the teacher's decision, oldest first."""
    query = _STANDING_QUERY + "WHERE t.standing = :pending"
    wanted = {"pending": Standing.PENDING, "student": student_id}
    if student_id is None:
        rows = db.execute(query + " ORDER BY t.return_id", wanted)
    else:
        rows = db.execute(query + " AND t.student_id = :student ORDER BY t.return_id", wanted)
    return [_standing(row) for row in rows]


def counted_return(db: sqlite3.Connection, student_id: str) -> ReturnStanding | None:
    """The return that counts for `student_id` (see `counted_returns`), or None."""
    row = db.execute(
        _STANDING_QUERY + "WHERE t.return_id = "
        "(SELECT return_id FROM counted_returns WHERE student_id = ?)",
        (student_id,),
    ).fetchone()
    return _standing(row) if row else None


def decide_return(
    db: sqlite3.Connection, return_id: int, decision: str, decided_by: str
) -> tuple[ReturnStanding, ReturnStanding]:
    """Record the teacher's decision (`confirmed` or `rejected`) on a return matched
    « à confirmer », with who and when; (the return before, the return after).

    Earlier decisions are kept, the latest one stands; the same decision twice is recorded
    once. A signed return, or a file refused at collection, cannot be decided on.
    """
    if decision not in (STANDING_CONFIRMED, STANDING_REJECTED):
        raise ValueError(f"decide_return: unknown decision {decision!r}")
    row = db.execute("SELECT file_name, match FROM returns WHERE id = ?", (return_id,)).fetchone()
    before = return_standing(db, return_id)
    if row is None:
        raise GrilleError(
            f"aucun retour n° {return_id} dans cette campagne. « grille confirm » sans "
            "argument liste les retours à confirmer."
        )
    if before is None:
        raise GrilleError(
            f"le retour n° {return_id} (« {row['file_name']} ») a été refusé à la collecte : "
            "il n'est rattaché à aucun stagiaire et ne peut pas être confirmé."
        )
    if before.standing == STANDING_SIGNED:
        raise GrilleError(
            f"le retour n° {return_id} (« {row['file_name']} ») porte l'identité signée de son "
            "classeur : il n'a pas besoin de confirmation."
        )
    if before.standing != decision:
        with transaction(db):
            db.execute(
                "INSERT INTO return_decisions (return_id, decision, decided_by, decided_at) "
                "VALUES (?, ?, ?, ?)",
                (return_id, decision, decided_by, now()),
            )
    after = return_standing(db, return_id)
    assert after is not None
    return before, after


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short write transaction (BEGIN IMMEDIATE … COMMIT, ROLLBACK on error)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# ------------------------------------------------------------------ teacher notes

TEACHER_NOTE_FIELDS = ("notes", "team_appreciation")


@dataclass(frozen=True)
class TeacherNote:
    """What the teacher wrote about one student, and where she wrote it last."""

    student_id: str
    notes: str = ""
    team_appreciation: str = ""
    updated_at: str = ""
    source: str = ""  # "suivi.xlsx", or the interface that set it


@dataclass(frozen=True)
class TeacherNoteChange:
    """A text of `teacher_notes` that was replaced: the old one is never lost."""

    student_id: str
    field: str
    old_value: str
    new_value: str
    source: str
    conflict: bool  # changed in suivi.xlsx and elsewhere since grille last wrote the file
    changed_at: str


@contextmanager
def _within_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The caller's open transaction, or a new one."""
    if db.in_transaction:
        yield db
    else:
        with transaction(db):
            yield db


def teacher_notes(db: sqlite3.Connection) -> dict[str, TeacherNote]:
    """The teacher's notes and team appreciation, by student id (students without any absent)."""
    return {
        row["student_id"]: TeacherNote(
            student_id=row["student_id"],
            notes=row["notes"],
            team_appreciation=row["team_appreciation"],
            updated_at=row["updated_at"],
            source=row["source"],
        )
        for row in db.execute(
            "SELECT student_id, notes, team_appreciation, updated_at, source FROM teacher_notes"
        )
    }


def set_teacher_note(
    db: sqlite3.Connection,
    student_id: str,
    *,
    source: str,
    notes: str | None = None,
    team_appreciation: str | None = None,
    conflict: bool = False,
) -> bool:
    """Set one student's notes and/or team appreciation (None leaves a field as it is).

    Used by the import of suivi.xlsx and by the web interface. A replaced non-empty text
    goes to `teacher_note_history`; `conflict` marks it as overwritten by a concurrent edit.
    True when something changed. Runs in the caller's transaction when one is open.
    """
    wanted = {"notes": notes, "team_appreciation": team_appreciation}
    stamp = now()
    with _within_transaction(db):
        known = db.execute("SELECT 1 FROM students WHERE student_id = ?", (student_id,))
        if known.fetchone() is None:
            raise GrilleError(f"Stagiaire « {student_id} » inconnu de la campagne.")
        row = db.execute(
            "SELECT notes, team_appreciation FROM teacher_notes WHERE student_id = ?",
            (student_id,),
        ).fetchone()
        old = {f: row[f] if row else "" for f in TEACHER_NOTE_FIELDS}
        changed = {f: text for f, text in wanted.items() if text is not None and text != old[f]}
        if not changed:
            return False
        db.executemany(
            "INSERT INTO teacher_note_history (student_id, field, old_value, new_value, source, "
            "conflict, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (student_id, f, old[f], text, source, int(conflict), stamp)
                for f, text in changed.items()
                if old[f].strip()
            ],
        )
        new = {**old, **changed}
        db.execute(
            "INSERT INTO teacher_notes (student_id, notes, team_appreciation, updated_at, source) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(student_id) DO UPDATE SET "
            "notes = excluded.notes, team_appreciation = excluded.team_appreciation, "
            "updated_at = excluded.updated_at, source = excluded.source",
            (student_id, new["notes"], new["team_appreciation"], stamp, source),
        )
    return True


def teacher_note_history(db: sqlite3.Connection, student_id: str) -> list[TeacherNoteChange]:
    """Every replaced text of one student's notes, oldest first."""
    return [
        TeacherNoteChange(
            student_id=row["student_id"],
            field=row["field"],
            old_value=row["old_value"],
            new_value=row["new_value"],
            source=row["source"],
            conflict=bool(row["conflict"]),
            changed_at=row["changed_at"],
        )
        for row in db.execute(
            "SELECT * FROM teacher_note_history WHERE student_id = ? ORDER BY id", (student_id,)
        )
    ]


def teacher_notes_in_file(db: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """What grille last wrote in suivi.xlsx's teacher columns: student id → field → text."""
    return {
        row["student_id"]: {
            "notes": row["notes_in_file"],
            "team_appreciation": row["team_appreciation_in_file"],
        }
        for row in db.execute(
            "SELECT student_id, notes_in_file, team_appreciation_in_file FROM teacher_notes"
        )
    }


def record_teacher_notes_in_file(
    db: sqlite3.Connection, written: dict[str, dict[str, str]]
) -> None:
    """Remember what grille just wrote in suivi.xlsx (student id → field → text)."""
    with _within_transaction(db):
        db.executemany(
            "UPDATE teacher_notes SET notes_in_file = ?, team_appreciation_in_file = ? "
            "WHERE student_id = ?",
            [
                (texts.get("notes", ""), texts.get("team_appreciation", ""), student_id)
                for student_id, texts in written.items()
            ],
        )


def tracking_file_written(db: sqlite3.Connection) -> str | None:
    """The SHA-256 of the suivi.xlsx grille wrote last, None when not recorded."""
    row = db.execute("SELECT sha256 FROM tracking_file WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def record_tracking_file(db: sqlite3.Connection, sha256: str) -> None:
    """Remember the SHA-256 of the suivi.xlsx grille just wrote."""
    with _within_transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO tracking_file (id, sha256, written_at) VALUES (1, ?, ?)",
            (sha256, now()),
        )


def purged_classes(db: sqlite3.Connection) -> set[str]:
    """Classes with a verified archive and no student left: purged, their notes archived."""
    return {
        row[0]
        for row in db.execute(
            "SELECT DISTINCT class_name FROM archives WHERE verified_at IS NOT NULL "
            "AND class_name NOT IN (SELECT class_name FROM students)"
        )
    }


# ------------------------------------------------------------------ campaign identity


def recorded_identity(db: sqlite3.Connection) -> sqlite3.Row | None:
    """The campaign id and key fingerprint this database was made with, if recorded."""
    row: sqlite3.Row | None = db.execute(
        "SELECT campaign_id, key_fingerprint, recorded_at FROM campaign_identity WHERE id = 1"
    ).fetchone()
    return row


def record_identity(db: sqlite3.Connection, campaign_id: str, key_fingerprint: str) -> None:
    """Remember (or replace) the campaign id and the fingerprint of its key."""
    with transaction(db):
        db.execute(
            "INSERT INTO campaign_identity VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "campaign_id = excluded.campaign_id, key_fingerprint = excluded.key_fingerprint, "
            "recorded_at = excluded.recorded_at",
            (campaign_id, key_fingerprint, now()),
        )


def latest_signatures(db: sqlite3.Connection, limit: int = 20) -> list[sqlite3.Row]:
    """The identity fields and signatures of the latest workbooks generated."""
    return db.execute(
        "SELECT student_id, grid_id, grid_version, signature FROM workbooks "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()


def blank_database(path: Path) -> str | None:
    """« absente » or « vide » when `path` holds no campaign yet, else None.

    Blank: no file, an empty file, or a database where no campaign was ever recorded
    (neither its identity nor a workbook). A file SQLite cannot read is not called blank:
    `connect` names that fault.
    """
    if not path.exists():
        return "absente"
    if path.stat().st_size == 0:
        wal = path.with_name(path.name + "-wal")
        return None if wal.is_file() and wal.stat().st_size > 0 else "vide"
    try:
        db = sqlite3.connect(path, timeout=30)
    except sqlite3.Error:
        return None
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if (
            "campaign_identity" in tables
            and db.execute("SELECT 1 FROM campaign_identity").fetchone()
        ):
            return None
        if "workbooks" in tables and db.execute("SELECT 1 FROM workbooks LIMIT 1").fetchone():
            return None
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return "vide"


# ------------------------------------------------------------------ one command at a time

LOCK_NAME = ".grille.lock"
# What `files.atomic_write_*` (mkstemp) and `tempfile.mkdtemp` leave when a run is killed:
# « .NAME.8 random characters.tmp », and a temp database's own journal beside it.
_LEFTOVER = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(?:-journal|-wal|-shm)?$")


def _try_lock(handle: IO[bytes]) -> bool:
    """Take the exclusive lock on `handle` without waiting; False when another has it."""
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise GrilleError(
                f"Le dossier de la campagne ne permet pas de verrou ({handle.name} : "
                f"{french_os_error(exc)}) ; c'est le cas de certains partages réseau. Copiez "
                "la campagne sur un disque de l'ordinateur, puis relancez la commande."
            ) from exc
        raise
    return True


def _unlock(handle: IO[bytes]) -> None:
    if sys.platform == "win32":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _holder(lock: Path) -> str:
    """« (processus 1234) » from the lock file, when it can be read."""
    try:
        pid = lock.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f", processus {pid}" if pid.isdigit() else ""


@contextmanager
def run_lock(output_dir: Path) -> Iterator[None]:
    """One grille command at a time per campaign: an exclusive lock on `output/.grille.lock`.

    The system holds the lock for the open file, so it is free again the moment the
    command ends, even killed; the file itself stays. Once the lock is taken, what a
    killed run left behind (temp files and folders) is removed.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = output_dir / LOCK_NAME
    handle = lock.open("a+b")  # never truncated before it is ours
    try:
        if not _try_lock(handle):
            raise GrilleError(
                f"Une autre commande grille travaille déjà sur cette campagne ({lock}"
                f"{_holder(lock)}). Attendez qu'elle se termine, puis relancez la vôtre."
            )
        try:
            if sys.platform != "win32":  # on Windows the locked byte cannot be rewritten
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()).encode("ascii"))
                handle.flush()
            with closed_in_workers(handle.fileno()):
                remove_leftovers(output_dir)
                yield
        finally:
            _unlock(handle)
    finally:
        handle.close()


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temp files and folders a killed run left under `folder`; the paths.

    Call it only under the run lock. Another campaign kept inside `folder` (a folder with
    its own grille.toml, e.g. a demo) is left alone.
    """
    removed: list[Path] = []
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        for name in list(dirs):
            if _LEFTOVER.match(name):
                shutil.rmtree(here / name, ignore_errors=True)
                removed.append(here / name)
                dirs.remove(name)
            elif (here / name / "grille.toml").exists():
                dirs.remove(name)
        for name in files:
            if _LEFTOVER.match(name):
                try:
                    (here / name).unlink()
                except FileNotFoundError:
                    continue
                removed.append(here / name)
    return removed


# ------------------------------------------------------------------ backups

BACKUPS_KEPT = 5
_BACKUP_NAME = re.compile(r"^grille-(\d{8})-(\d{6})(?:-(\d+))?\.sqlite$")


@dataclass(frozen=True)
class Backup:
    """A copy of the database in `output/.sauvegardes/`, and what it holds."""

    path: Path
    made_at: datetime
    size: int
    students: int | None  # None: the copy cannot be read
    returns: int | None


def backups(backups_dir: Path) -> list[Path]:
    """The database copies in `backups_dir`, oldest first."""
    if not backups_dir.is_dir():
        return []
    found = [p for p in backups_dir.iterdir() if _BACKUP_NAME.match(p.name) and p.is_file()]
    return sorted(found, key=_backup_order)


def _backup_order(path: Path) -> tuple[str, str, int]:
    match = _BACKUP_NAME.match(path.name)
    assert match is not None
    return match.group(1), match.group(2), int(match.group(3) or 1)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_database(source: sqlite3.Connection, target: Path) -> None:
    """Write a consistent copy of `source` to the (new, empty) file `target`, fsynced."""
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        copy.close()
    with target.open("rb") as handle:
        os.fsync(handle.fileno())


def backup(db_path: Path, backups_dir: Path, *, keep: int = BACKUPS_KEPT) -> Path | None:
    """Copy the database into `backups_dir` (SQLite's online backup); keep the `keep` newest.

    Returns the copy that holds the database as it is now: the new one, or the newest
    copy when nothing changed since. Nothing is copied (None) when there is no database,
    or when SQLite finds it damaged: the older copies are then the good ones.
    """
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return None
    backups_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=backups_dir, prefix=".grille.sqlite.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        source = sqlite3.connect(db_path, timeout=30)
        try:
            if source.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                return None
            _copy_database(source, tmp)
        except sqlite3.Error as exc:
            storage = storage_problem(exc, backups_dir)
            if storage is not None:
                raise StorageError(f"Sauvegarde de la base : {storage}") from exc
            return None
        finally:
            source.close()
        existing = backups(backups_dir)
        if existing and _sha256(existing[-1]) == _sha256(tmp):
            return existing[-1]
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        target = backups_dir / f"grille-{stamp}.sqlite"
        serial = 1
        while target.exists():
            serial += 1
            target = backups_dir / f"grille-{stamp}-{serial}.sqlite"
        os.replace(tmp, target)
        for old in backups(backups_dir)[:-keep]:
            old.unlink(missing_ok=True)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def forget_backups(db: sqlite3.Connection, backups_dir: Path) -> int:
    """After a purge: rewrite the database without the deleted rows' pages (VACUUM) and
    delete every copy, which still hold them; the number of copies deleted."""
    db.execute("VACUUM")
    copies = backups(backups_dir)
    for copy in copies:
        copy.unlink(missing_ok=True)
    return len(copies)


def describe_backup(path: Path) -> Backup:
    """When a copy was made and how many students and returns it holds."""
    match = _BACKUP_NAME.match(path.name)
    assert match is not None
    made_at = datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S")
    students: int | None = None
    returns: int | None = None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            students = db.execute("SELECT COUNT(*) FROM students").fetchone()[0]
            returns = db.execute("SELECT COUNT(*) FROM returns").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        pass
    return Backup(path, made_at, path.stat().st_size, students, returns)


def check_backup(path: Path) -> str | None:
    """Why the copy `path` cannot be restored (French), or None when it is sound."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"illisible ({exc})"
    if verdict != "ok":
        return f"abîmée ({verdict})"
    if "schema_migrations" not in tables:
        return "ce n'est pas une base de grille"
    return None


@dataclass(frozen=True)
class Restored:
    """What `restore` did with the database it replaced."""

    saved_as: Path | None  # the backup that holds the replaced database
    set_aside: Path | None  # the replaced database, when damaged, moved aside


def _keep_replaced(db_path: Path, backups_dir: Path) -> Restored:
    """Back up the database about to be replaced; a damaged one (no backup possible) is
    moved aside, untouched, for an expert, with its journal."""
    saved_as = backup(db_path, backups_dir, keep=BACKUPS_KEPT + 1)
    if saved_as is not None:
        return Restored(saved_as, None)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    set_aside = db_path.with_name(f"{db_path.name}.abimee-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        side = db_path.with_name(db_path.name + suffix)
        if side.exists():
            os.replace(side, set_aside.with_name(set_aside.name + suffix))
    return Restored(None, set_aside)


def restore(copy: Path, db_path: Path, backups_dir: Path) -> Restored:
    """Put the backup `copy` back as the campaign database; the current one is kept.

    A readable current database is backed up first (so a restore can be undone); a
    damaged one is moved aside as `grille.sqlite.abimee-AAAAMMJJ-hhmmss`. Call it under
    the run lock.
    """
    fault = check_backup(copy)
    if fault is not None:
        raise GrilleError(f"Sauvegarde « {copy.name} » {fault} : choisissez-en une autre.")
    kept = Restored(None, None)
    if db_path.is_file() and db_path.stat().st_size > 0:
        kept = _keep_replaced(db_path, backups_dir)
    else:
        for suffix in ("", "-wal", "-shm"):
            db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        source = sqlite3.connect(f"{copy.resolve().as_uri()}?mode=ro", uri=True)
        target = sqlite3.connect(db_path, timeout=30)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    except sqlite3.Error as exc:
        raise database_error(db_path, exc) from exc
    return kept


# ------------------------------------------------------------------ reports, archives, purge
# The SQL of closing the season: the bilans grille writes and records (`report_files`), the
# class archives (`archive`) and the deletion of a class's personal data (`purge`).


@dataclass(frozen=True)
class ReportRecord:
    """A report grille wrote (a .docx bilan or its PDF), as the `reports` table records it."""

    file: str  # relative to the campaign folder, POSIX
    sha256: str  # of the bytes last written ("" until the first write is confirmed)
    written_at: str
    class_name: str | None
    student_id: str | None  # None: a class report
    pending_sha256: str | None  # bytes being written (recorded before the rename)
    source_sha256: str | None  # a PDF: SHA-256 of the .docx it was made from


def _report_record(row: sqlite3.Row) -> ReportRecord:
    return ReportRecord(**{column.name: row[column.name] for column in fields(ReportRecord)})


def report_record(db: sqlite3.Connection, file: str) -> ReportRecord | None:
    """The record of the report at `file` (relative, POSIX), or None."""
    row = db.execute("SELECT * FROM reports WHERE file = ?", (file,)).fetchone()
    return _report_record(row) if row is not None else None


def class_reports(db: sqlite3.Connection, class_name: str) -> list[ReportRecord]:
    """Every report recorded for a class, by file name."""
    rows = db.execute("SELECT * FROM reports WHERE class_name = ? ORDER BY file", (class_name,))
    return [_report_record(row) for row in rows]


def begin_report_write(
    db: sqlite3.Connection,
    file: str,
    sha256: str,
    class_name: str,
    student_id: str | None,
) -> None:
    """Record the bytes about to be written at `file` as pending (before the rename)."""
    with _within_transaction(db):
        db.execute(
            "INSERT INTO reports (file, sha256, written_at, class_name, student_id, "
            "pending_sha256) VALUES (?, '', ?, ?, ?, ?) ON CONFLICT(file) DO UPDATE SET "
            "class_name = excluded.class_name, student_id = excluded.student_id, "
            "pending_sha256 = excluded.pending_sha256",
            (file, now(), class_name, student_id, sha256),
        )


def finish_report_write(db: sqlite3.Connection, file: str) -> None:
    """The pending bytes of `file` are in place: they become its recorded SHA-256."""
    with _within_transaction(db):
        db.execute(
            "UPDATE reports SET sha256 = pending_sha256, pending_sha256 = NULL, written_at = ? "
            "WHERE file = ?",
            (now(), file),
        )


def record_pdf(
    db: sqlite3.Connection, file: str, sha256: str, source: str, source_sha256: str
) -> None:
    """Record the PDF at `file`, made from the .docx at `source` whose bytes had
    `source_sha256`; it belongs to the class and student of that .docx."""
    with _within_transaction(db):
        owner = db.execute(
            "SELECT class_name, student_id FROM reports WHERE file = ?", (source,)
        ).fetchone()
        db.execute(
            "INSERT INTO reports (file, sha256, written_at, class_name, student_id, "
            "source_sha256) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(file) DO UPDATE SET "
            "sha256 = excluded.sha256, written_at = excluded.written_at, class_name = "
            "excluded.class_name, student_id = excluded.student_id, pending_sha256 = NULL, "
            "source_sha256 = excluded.source_sha256",
            (
                file,
                sha256,
                now(),
                owner["class_name"] if owner else None,
                owner["student_id"] if owner else None,
                source_sha256,
            ),
        )


def forget_report(db: sqlite3.Connection, file: str) -> None:
    """Drop the record of the report at `file`: grille no longer takes it as its own."""
    with _within_transaction(db):
        db.execute("DELETE FROM reports WHERE file = ?", (file,))


def class_names(db: sqlite3.Connection, *, in_roster: bool = False) -> list[str]:
    """The classes of the campaign's students (only those still in the roster with
    `in_roster`), sorted."""
    where = " WHERE in_roster = 1" if in_roster else ""
    return sorted(row[0] for row in db.execute(f"SELECT DISTINCT class_name FROM students{where}"))


def students_by_id(db: sqlite3.Connection) -> dict[str, Student]:
    """Every student of the campaign, by id."""
    return {
        row["student_id"]: student_from_row(row) for row in db.execute("SELECT * FROM students")
    }


def class_returns(db: sqlite3.Connection, class_name: str) -> list[sqlite3.Row]:
    """Every return recorded for a class's students (earlier ones too), oldest first, with
    the student's `last_name` and `first_name`."""
    return db.execute(
        "SELECT r.*, s.last_name, s.first_name FROM returns r "
        "JOIN students s ON s.student_id = r.student_id WHERE s.class_name = ? ORDER BY r.id",
        (class_name,),
    ).fetchall()


def class_grid_versions(db: sqlite3.Connection, class_name: str) -> set[tuple[str, str]]:
    """The (grid id, version) pairs a class's workbooks and returns were made with."""
    students = "SELECT student_id FROM students WHERE class_name = ?"
    return {
        (row[0], row[1])
        for row in db.execute(
            f"SELECT grid_id, grid_version FROM workbooks WHERE student_id IN ({students}) "
            f"UNION SELECT grid_id, grid_version FROM returns WHERE student_id IN ({students})",
            (class_name, class_name),
        )
    }


def grid_sources(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(id, version, TOML source) of every grid stored in the campaign, in order."""
    rows = db.execute(
        "SELECT grid_id, grid_version, source FROM grids ORDER BY grid_id, grid_version"
    )
    return [(row[0], row[1], row[2]) for row in rows]


def record_archive(
    db: sqlite3.Connection,
    path: str,
    sha256: str,
    class_name: str,
    school_year: str,
    created_at: str,
    manifest_sha256: str,
) -> None:
    """Record a class archive just written (its zip's path, relative, and SHA-256)."""
    with _within_transaction(db):
        db.execute(
            "INSERT INTO archives (path, sha256, class_name, school_year, created_at, "
            "manifest_sha256) VALUES (?, ?, ?, ?, ?, ?)",
            (path, sha256, class_name, school_year, created_at, manifest_sha256),
        )


def archives(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every archive the campaign wrote, oldest first."""
    return db.execute("SELECT * FROM archives ORDER BY id").fetchall()


def latest_archive(db: sqlite3.Connection, class_name: str) -> sqlite3.Row | None:
    """The latest archive written for a class, or None."""
    row: sqlite3.Row | None = db.execute(
        "SELECT * FROM archives WHERE class_name = ? ORDER BY id DESC LIMIT 1", (class_name,)
    ).fetchone()
    return row


def mark_archives_verified(db: sqlite3.Connection, sha256: str) -> list[str]:
    """Mark every archive whose zip has `sha256` as verified now; their classes."""
    with _within_transaction(db):
        classes = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT class_name FROM archives WHERE sha256 = ?", (sha256,)
            )
        ]
        db.execute("UPDATE archives SET verified_at = ? WHERE sha256 = ?", (now(), sha256))
    return classes


_CLASS_STUDENTS = "SELECT student_id FROM students WHERE class_name = ?"


def returns_collected_since(db: sqlite3.Connection, class_name: str, since: str) -> int:
    """How many returns of a class's students were collected after `since`."""
    count: int = db.execute(
        "SELECT COUNT(*) FROM returns WHERE collected_at > ? "
        f"AND student_id IN ({_CLASS_STUDENTS})",
        (since, class_name),
    ).fetchone()[0]
    return count


def class_student_ids(db: sqlite3.Connection, classes: list[str]) -> set[str]:
    """The ids of the students of `classes`."""
    marks = ", ".join("?" for _ in classes)
    return {
        row[0]
        for row in db.execute(
            f"SELECT student_id FROM students WHERE class_name IN ({marks})", classes
        )
    }


def class_workbook_files(db: sqlite3.Connection, class_name: str) -> list[str]:
    """The workbook files generated for a class's students (relative paths)."""
    return [
        row[0]
        for row in db.execute(
            f"SELECT file FROM workbooks WHERE student_id IN ({_CLASS_STUDENTS})", (class_name,)
        )
    ]


def class_return_files(db: sqlite3.Connection, class_name: str) -> list[str]:
    """The stored copies of the returns of a class's students (relative paths)."""
    return [
        row[0]
        for row in db.execute(
            f"SELECT stored_file FROM returns WHERE student_id IN ({_CLASS_STUDENTS})",
            (class_name,),
        )
    ]


def message_students(db: sqlite3.Connection) -> dict[str, set[str | None]]:
    """Each stored .eml file (written for sending, or fetched from a mailbox) and the
    students it concerns; a fetched message concerns the students of the returns it held."""
    concerned: dict[str, set[str | None]] = {}
    for file, student in db.execute("SELECT file, student_id FROM sendings WHERE file != ''"):
        concerned.setdefault(file, set()).add(student)
    origins = db.execute("SELECT student_id, origin FROM returns").fetchall()
    for (file,) in db.execute("SELECT stored_file FROM fetched_messages WHERE stored_file != ''"):
        concerned[file] = {student for student, origin in origins if file in origin}
    return concerned


def delete_classes(db: sqlite3.Connection, classes: list[str]) -> None:
    """Delete every row about the students of `classes` (answers, returns, sendings,
    workbooks, reports, the students), in one transaction; their archives stay."""
    with _within_transaction(db):
        for class_name in classes:
            db.execute(
                "DELETE FROM answers WHERE return_id IN "
                f"(SELECT id FROM returns WHERE student_id IN ({_CLASS_STUDENTS}))",
                (class_name,),
            )
            for table in ("returns", "sendings", "workbooks"):
                db.execute(
                    f"DELETE FROM {table} WHERE student_id IN ({_CLASS_STUDENTS})", (class_name,)
                )
            db.execute("DELETE FROM reports WHERE class_name = ?", (class_name,))
            db.execute("DELETE FROM students WHERE class_name = ?", (class_name,))


# ------------------------------------------------------------------ the steps' queries
# What `campaign` (generate), `mail` (send), `remind`, `demo`, `inbox` and
# `tracking.student_statuses` read and write, by name. Each student's latest workbook
# comes from the `latest_workbooks` view (migration 013).


@dataclass(frozen=True)
class NewWorkbook:
    """A workbook `generate` just wrote, as `record_generation` stores it."""

    student_id: str
    file: str  # relative to the campaign folder, with « / »
    sha256: str
    signature: str
    grid_id: str
    grid_version: str
    fingerprint: str
    template_digest: str


def latest_workbooks(db: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    """Each student's latest workbook (every column of `workbooks`), by student id."""
    return {row["student_id"]: row for row in db.execute("SELECT * FROM latest_workbooks")}


_WITH_WORKBOOK = """
SELECT s.*, w.id AS workbook_id, w.file AS workbook_file, w.sha256 AS workbook_sha256,
       w.grid_id AS workbook_grid_id, w.grid_version AS workbook_grid_version
FROM students s JOIN latest_workbooks w ON w.student_id = s.student_id
"""


def students_with_workbooks(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every student who has a workbook, with the latest one (`workbook_id`,
    `workbook_file`, `workbook_sha256`, `workbook_grid_id`, `workbook_grid_version`), by
    class and name."""
    return db.execute(
        _WITH_WORKBOOK + "ORDER BY s.class_name, s.last_name, s.first_name, s.student_id"
    ).fetchall()


def workbooks_to_send(db: sqlite3.Connection, *, resend: bool = False) -> list[sqlite3.Row]:
    """The roster's students whose latest workbook was never sent nor written to the outbox
    (every one with `resend`), as `students_with_workbooks` gives them, by name."""
    return db.execute(
        _WITH_WORKBOOK + "WHERE s.in_roster = 1 AND (:resend OR NOT EXISTS (SELECT 1 FROM "
        "sendings d WHERE d.workbook_id = w.id AND d.kind = :send)) "
        "ORDER BY s.last_name, s.first_name, s.student_id",
        {"resend": resend, "send": SendingKind.SEND},
    ).fetchall()


def roster_students(db: sqlite3.Connection) -> list[Student]:
    """The students of the roster last used by `generate`."""
    return [
        student_from_row(row) for row in db.execute("SELECT * FROM students WHERE in_roster = 1")
    ]


def record_generation(
    db: sqlite3.Connection, roster: Sequence[Student], workbooks: Sequence[NewWorkbook]
) -> None:
    """In one transaction: `roster` becomes the campaign's roster (its students added or
    updated, the others kept but out of it), and `workbooks` are recorded."""
    stamp = now()
    with transaction(db):
        db.execute("UPDATE students SET in_roster = 0")
        db.executemany(
            "INSERT INTO students (student_id, last_name, first_name, class_name, company, "
            "tutor_name, tutor_email, tutor_phone, student_email, referent, start_date, "
            "end_date, in_roster, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1,?) "
            "ON CONFLICT(student_id) DO UPDATE SET last_name=excluded.last_name, "
            "first_name=excluded.first_name, class_name=excluded.class_name, "
            "company=excluded.company, tutor_name=excluded.tutor_name, "
            "tutor_email=excluded.tutor_email, tutor_phone=excluded.tutor_phone, "
            "student_email=excluded.student_email, referent=excluded.referent, "
            "start_date=excluded.start_date, end_date=excluded.end_date, in_roster=1, "
            "updated_at=excluded.updated_at",
            [
                (s.student_id, s.last_name, s.first_name, s.class_name, s.company,
                 s.tutor_name, s.tutor_email, s.tutor_phone, s.student_email, s.referent,
                 s.start.isoformat(), s.end.isoformat(), stamp)
                for s in roster
            ],
        )  # fmt: skip
        db.executemany(
            "INSERT INTO workbooks (student_id, file, sha256, signature, grid_id, grid_version, "
            "fingerprint, template_digest, generated_at) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (w.student_id, w.file, w.sha256, w.signature, w.grid_id, w.grid_version,
                 w.fingerprint, w.template_digest, stamp)
                for w in workbooks
            ],
        )  # fmt: skip


def latest_generation_grid(db: sqlite3.Connection) -> sqlite3.Row | None:
    """(grid_id, grid_version, source) of the grid the last workbook was made with."""
    row: sqlite3.Row | None = db.execute(
        "SELECT g.grid_id, g.grid_version, g.source FROM workbooks w JOIN grids g "
        "ON g.grid_id = w.grid_id AND g.grid_version = w.grid_version "
        "ORDER BY w.id DESC LIMIT 1"
    ).fetchone()
    return row


def stored_grid_source(db: sqlite3.Connection, grid_id: str, grid_version: str) -> str | None:
    """The TOML text kept for a grid, or None when it was never stored."""
    row = db.execute(
        "SELECT source FROM grids WHERE grid_id = ? AND grid_version = ?", (grid_id, grid_version)
    ).fetchone()
    return None if row is None else str(row[0])


def stored_grids(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every grid kept (grid_id, grid_version, source, stored_at), oldest first."""
    return db.execute(
        "SELECT grid_id, grid_version, source, stored_at FROM grids ORDER BY stored_at, rowid"
    ).fetchall()


def store_grid(db: sqlite3.Connection, grid_id: str, grid_version: str, source: str) -> None:
    """Keep (or replace) the TOML text of a grid."""
    with transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO grids VALUES (?, ?, ?, ?)",
            (grid_id, grid_version, source, now()),
        )


def grid_in_use(db: sqlite3.Connection, grid_id: str, grid_version: str) -> bool:
    """True once a workbook made with this grid has left (sent or written to the outbox)
    or a return was read with it."""
    return bool(
        db.execute(
            "SELECT EXISTS (SELECT 1 FROM sendings s JOIN workbooks w ON w.id = s.workbook_id "
            "WHERE w.grid_id = ?1 AND w.grid_version = ?2) OR EXISTS (SELECT 1 FROM returns "
            "WHERE grid_id = ?1 AND grid_version = ?2)",
            (grid_id, grid_version),
        ).fetchone()[0]
    )


@dataclass(frozen=True)
class Sending:
    """One workbook that left in a message, as `record_sendings` stores it."""

    student_id: str
    workbook_id: int
    recipient: str
    message_id: str
    kind: SendingKind
    channel: Channel
    file: str = ""  # the message's copy, relative to the campaign folder
    uncertain: bool = False  # the connection was lost after the data went out


def record_sendings(
    db: sqlite3.Connection, sendings: Sequence[Sending], sent_at: str | None = None
) -> None:
    """Store the workbooks of one message, in one transaction, stamped `sent_at` (now)."""
    stamp = sent_at or now()
    with transaction(db):
        db.executemany(
            "INSERT INTO sendings (student_id, workbook_id, recipient, message_id, sent_at, "
            "kind, channel, file, uncertain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(s.student_id, s.workbook_id, s.recipient, s.message_id, stamp, s.kind,
              s.channel, s.file, int(s.uncertain)) for s in sendings],
        )  # fmt: skip


def outbox_only_sendings(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Latest workbooks written to the outbox and not sent otherwise since: one row per
    student (the `sendings` columns and the student's), by class and name."""
    return db.execute(
        "SELECT d.student_id, d.workbook_id, d.recipient, d.message_id, d.file, s.* "
        "FROM sendings d JOIN students s ON s.student_id = d.student_id "
        "JOIN latest_workbooks w ON w.id = d.workbook_id "
        "WHERE d.kind = :send AND d.channel = :file AND NOT EXISTS (SELECT 1 FROM sendings o "
        "WHERE o.workbook_id = d.workbook_id AND o.kind = :send AND o.channel != :file) "
        "GROUP BY d.student_id ORDER BY s.class_name, s.last_name, s.first_name",
        {"send": SendingKind.SEND, "file": Channel.FILE},
    ).fetchall()


def return_problems(db: sqlite3.Connection, return_id: int) -> list[dict[str, str]]:
    """The problems validation found in a return, as stored (JSON objects)."""
    row = db.execute("SELECT problems FROM returns WHERE id = ?", (return_id,)).fetchone()
    problems: list[dict[str, str]] = json.loads(row[0]) if row and row[0] else []
    return problems


def student_status_rows(db: sqlite3.Connection, student_id: str | None = None) -> list[sqlite3.Row]:
    """Per student (every column of `students`; only `student_id` when given): the latest
    workbook (`workbook_file`, `generated_at`), the first and reminder sendings (`sent_at`,
    `sent_for_sure`: over SMTP or marked sent; `left_at`: when one surely left;
    `reminded_at`), and the return that counts (its file name and SHA-256 too) with its
    standing."""
    return db.execute(
        """
        SELECT s.*,
               w.file AS workbook_file, w.generated_at,
               (SELECT MAX(sent_at) FROM sendings
                WHERE student_id = s.student_id AND kind = :send) AS sent_at,
               (SELECT MAX(channel != :file) FROM sendings
                WHERE student_id = s.student_id AND kind = :send) AS sent_for_sure,
               (SELECT MAX(sent_at) FROM sendings
                WHERE student_id = s.student_id AND kind = :send AND channel != :file)
                   AS left_at,
               (SELECT MAX(sent_at) FROM sendings
                WHERE student_id = s.student_id AND kind = :remind) AS reminded_at,
               r.id AS return_id, r.stored_file, r.origin, r.collected_at, r.match,
               r.match_note, r.file_name AS return_name, r.sha256 AS return_sha256,
               r.status AS return_status, r.problems, r.evaluation, r.grid_id,
               r.grid_version, c.standing
        FROM students s
        -- the row `latest_workbooks` gives, found through the index: joined to the view,
        -- SQLite evaluates its subquery again for each student (≈ 0.5 s for 1,000)
        LEFT JOIN workbooks w
            ON w.id = (SELECT MAX(id) FROM workbooks WHERE student_id = s.student_id)
        LEFT JOIN counted_returns c ON c.student_id = s.student_id
        LEFT JOIN returns r ON r.id = c.return_id
        WHERE :student IS NULL OR s.student_id = :student
        """,
        {
            "send": SendingKind.SEND,
            "remind": SendingKind.REMIND,
            "file": Channel.FILE,
            "student": student_id,
        },
    ).fetchall()


def fetched_uids(
    db: sqlite3.Connection, mailbox: tuple[str, str, str], uidvalidity: int
) -> set[int]:
    """UIDs of the messages of a mailbox folder (server, user, folder) already processed,
    under this UIDVALIDITY."""
    return {
        row[0]
        for row in db.execute(
            "SELECT uid FROM fetched_messages "
            "WHERE server = ? AND user_name = ? AND folder = ? AND uidvalidity = ?",
            (*mailbox, uidvalidity),
        )
    }


def fetched_message_ids(db: sqlite3.Connection, mailbox: tuple[str, str, str]) -> set[str]:
    """Message-IDs of the messages of a mailbox folder already processed, whatever their UID."""
    return {
        row[0]
        for row in db.execute(
            "SELECT message_id FROM fetched_messages "
            "WHERE server = ? AND user_name = ? AND folder = ? AND message_id != ''",
            mailbox,
        )
    }


def record_fetched_messages(
    db: sqlite3.Connection,
    mailbox: tuple[str, str, str],
    uidvalidity: int,
    messages: Sequence[tuple[int, str, str, str]],
) -> None:
    """Remember the messages processed from a mailbox folder: (uid, Message-ID, outcome,
    stored .eml file), in one transaction."""
    stamp = now()
    with transaction(db):
        db.executemany(
            "INSERT OR REPLACE INTO fetched_messages (server, user_name, folder, uidvalidity, "
            "uid, message_id, outcome, stored_file, fetched_at) VALUES (?,?,?,?,?,?,?,?,?)",
            [(*mailbox, uidvalidity, *message, stamp) for message in messages],
        )


# ------------------------------------------------------------------ rebuild from the files
# Written by `pipeline.rebuild` only, into a new database it then installs: each function
# records one thing found on disk (a workbook, a message, a report…) as grille would have
# recorded it when it made or received it.


def record_rebuilt_student(
    db: sqlite3.Connection, student: Student, *, in_roster: bool, updated_at: str
) -> None:
    """A student found on disk: from the roster, or (not in it) from his or her workbook."""
    db.execute(
        "INSERT INTO students (student_id, last_name, first_name, class_name, company, "
        "tutor_name, tutor_email, tutor_phone, student_email, referent, start_date, end_date, "
        "in_roster, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            student.student_id,
            student.last_name,
            student.first_name,
            student.class_name,
            student.company,
            student.tutor_name,
            student.tutor_email,
            student.tutor_phone,
            student.student_email,
            student.referent,
            student.start.isoformat(),
            student.end.isoformat(),
            int(in_roster),
            updated_at,
        ),
    )


def record_class_folder(db: sqlite3.Connection, class_name: str, folder: str) -> bool:
    """Give `class_name` the folder its files are in; False when the class already has one
    or another class has that folder (the first found keeps it)."""
    taken = db.execute(
        "SELECT 1 FROM class_folders WHERE class_name = ? OR folder = ? COLLATE NOCASE",
        (class_name, folder),
    ).fetchone()
    if taken is not None:
        return False
    db.execute(
        "INSERT INTO class_folders (class_name, folder, assigned_at) VALUES (?, ?, ?)",
        (class_name, folder, now()),
    )
    return True


def record_rebuilt_grid(
    db: sqlite3.Connection, grid_id: str, grid_version: str, source: str, stored_at: str
) -> None:
    """The text of a grid the campaign's workbooks were made with."""
    db.execute(
        "INSERT OR IGNORE INTO grids (grid_id, grid_version, source, stored_at) "
        "VALUES (?, ?, ?, ?)",
        (grid_id, grid_version, source, stored_at),
    )


@dataclass(frozen=True)
class RebuiltWorkbook:
    """A workbook found in `output/classeurs/`, as `generate` records one."""

    student_id: str
    file: str  # relative to the campaign folder, POSIX
    sha256: str
    signature: str
    grid_id: str
    grid_version: str
    fingerprint: str  # "" when unknown: `generate` makes it again
    template_digest: str  # likewise
    generated_at: str


def record_rebuilt_workbook(db: sqlite3.Connection, workbook: RebuiltWorkbook) -> int:
    """Record a workbook found on disk; its id."""
    cursor = db.execute(
        "INSERT INTO workbooks (student_id, file, sha256, signature, grid_id, grid_version, "
        "fingerprint, template_digest, generated_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            workbook.student_id,
            workbook.file,
            workbook.sha256,
            workbook.signature,
            workbook.grid_id,
            workbook.grid_version,
            workbook.fingerprint,
            workbook.template_digest,
            workbook.generated_at,
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


@dataclass(frozen=True)
class RebuiltSending:
    """A message to a tutor found on disk (or in suivi.xlsx), as `send`/`remind` record one."""

    student_id: str
    workbook_id: int | None  # None: the workbook attached is no longer on disk
    recipient: str
    message_id: str
    sent_at: str
    kind: str  # "envoi" or "relance"
    channel: str  # "smtp", "fichier" or "manuel"
    file: str


def record_rebuilt_sending(db: sqlite3.Connection, sending: RebuiltSending) -> None:
    """Record a message to a tutor found on disk, for one student."""
    db.execute(
        "INSERT INTO sendings (student_id, workbook_id, recipient, message_id, sent_at, kind, "
        "channel, file) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sending.student_id,
            sending.workbook_id,
            sending.recipient,
            sending.message_id,
            sending.sent_at,
            sending.kind,
            sending.channel,
            sending.file,
        ),
    )


def set_return_collected(
    db: sqlite3.Connection, sha256: str, collected_at: str, origin: str
) -> None:
    """When a return read again from `output/retours/` was first collected, and where from."""
    db.execute(
        "UPDATE returns SET collected_at = ?, origin = ? WHERE sha256 = ?",
        (collected_at, origin, sha256),
    )


def record_rebuilt_report(
    db: sqlite3.Connection,
    file: str,
    sha256: str,
    written_at: str,
    class_name: str | None,
    student_id: str | None,
) -> None:
    """A report (or its PDF) found on disk holding grille's own bytes."""
    db.execute(
        "INSERT INTO reports (file, sha256, written_at, class_name, student_id) "
        "VALUES (?, ?, ?, ?, ?)",
        (file, sha256, written_at, class_name, student_id),
    )


def install_database(built: Path, db_path: Path, backups_dir: Path) -> Restored:
    """Put the complete, closed database file `built` (in the same folder) in place of the
    campaign database, in one rename; the current one is kept as `restore` keeps it.

    A database that holds a campaign is backed up first (or, damaged, moved aside as
    `grille.sqlite.abimee-AAAAMMJJ-hhmmss`); a blank one is dropped. A journal left beside
    it is removed first: SQLite would apply it to the new file. Call it under the run lock.
    """
    kept = Restored(None, None)
    if db_path.exists() and blank_database(db_path) is None:
        kept = _keep_replaced(db_path, backups_dir)
    for suffix in ("-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    with built.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(built, db_path)
    if sys.platform != "win32":
        folder = os.open(db_path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return kept


# ================================================================== return versions
# Migration 012 and the functions on what it adds: which version of a student's workbook
# counts (the most recent, or the teacher's choice), and the files collect refused.

UTC_FORMAT = "%Y-%m-%d %H:%M:%S"  # dates of versions, stored in UTC, sortable as text
VERSION_SAVED = "saved"  # the workbook's own save date (docProps/core.xml)
VERSION_MAILED = "mailed"  # the Date of the e-mail that brought it
VERSION_FILE = "file"  # the modification time of the file (or of its member in a .zip)
VERSION_COLLECTED = "collected"  # none of those known: when grille collected it


def _012_return_versions(db: sqlite3.Connection) -> None:
    """The version of a student's workbook that counts; the teacher's choice; refused files.

    `returns` gets the dates that order the versions of one student's workbook, in UTC:
    `saved_at` (the workbook's own save date), `mailed_at` (the Date of the e-mail that
    brought it), `file_time` (the file's modification time). `return_versions` gives each
    recognised return its version date, the first of these it knows, else when it was
    collected. `return_choices` records the teacher's explicit choices (« grille collect
    --use »), the latest per student standing (`chosen_returns`). `counted_returns` now picks,
    per student: the chosen return; else, as before, a signed or confirmed return before one
    « à confirmer »; then the most recent version date, e-mail date, file time and number.
    `refused_files` keeps each file `collect` refused or could not read.

    Returns collected before 012 get `saved_at` from their kept .xlsx file when it says it.
    """
    _script(
        db,
        """
        ALTER TABLE returns ADD COLUMN saved_at TEXT;
        ALTER TABLE returns ADD COLUMN mailed_at TEXT;
        ALTER TABLE returns ADD COLUMN file_time TEXT;
        CREATE TABLE return_choices (
            id INTEGER PRIMARY KEY,
            student_id TEXT NOT NULL REFERENCES students(student_id) ON DELETE CASCADE,
            return_id INTEGER NOT NULL REFERENCES returns(id) ON DELETE CASCADE,
            chosen_by TEXT NOT NULL,
            chosen_at TEXT NOT NULL
        );
        CREATE INDEX return_choices_student ON return_choices(student_id, id);
        CREATE VIEW chosen_returns AS
        SELECT c.student_id, c.return_id, c.chosen_by, c.chosen_at
        FROM return_choices c
        WHERE c.id = (SELECT MAX(id) FROM return_choices WHERE student_id = c.student_id);
        CREATE VIEW return_versions AS
        SELECT r.id AS return_id, r.student_id,
               COALESCE(r.saved_at, r.mailed_at, r.file_time, datetime(r.collected_at, 'utc'))
                   AS version_at,
               CASE WHEN r.saved_at IS NOT NULL THEN 'saved'
                    WHEN r.mailed_at IS NOT NULL THEN 'mailed'
                    WHEN r.file_time IS NOT NULL THEN 'file'
                    ELSE 'collected' END AS version_source,
               r.mailed_at, r.file_time
        FROM returns r
        WHERE r.student_id IS NOT NULL AND r.match != 'rejected';
        DROP VIEW counted_returns;
        CREATE VIEW counted_returns AS
        SELECT t.student_id, t.return_id, t.standing, t.decided_by, t.decided_at,
               EXISTS (SELECT 1 FROM chosen_returns c WHERE c.return_id = t.return_id) AS chosen
        FROM return_standing t
        WHERE t.return_id = (
            SELECT u.return_id FROM return_standing u
            JOIN return_versions v ON v.return_id = u.return_id
            LEFT JOIN chosen_returns c ON c.student_id = u.student_id
            WHERE u.student_id = t.student_id AND u.standing != 'rejected'
            ORDER BY u.return_id IS c.return_id DESC, u.standing = 'pending',
                     v.version_at DESC, v.mailed_at DESC, v.file_time DESC, u.return_id DESC
            LIMIT 1);
        CREATE TABLE refused_files (
            id INTEGER PRIMARY KEY,
            file_name TEXT NOT NULL,
            origin TEXT NOT NULL,
            code TEXT NOT NULL,
            reason TEXT NOT NULL,
            sha256 TEXT NOT NULL DEFAULT '',
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            UNIQUE (origin, code, sha256)
        )
        """,
    )
    _012_saved_dates_of_kept_files(db)


def _012_saved_dates_of_kept_files(db: sqlite3.Connection) -> None:
    """Set `saved_at` of the returns already collected from their kept .xlsx originals
    (`output/retours/…`, beside the database): unreadable or absent files are skipped."""
    from pipeline.safe_zip import UnsafeFile
    from pipeline.xlsx import XlsxPackage

    main = next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "")
    if not main:
        return  # an in-memory database: no campaign folder
    root = Path(main).resolve().parent.parent
    rows = db.execute(
        "SELECT id, stored_file FROM returns WHERE stored_file LIKE '%.xlsx'"
    ).fetchall()
    for return_id, stored in rows:
        path = root / stored
        try:
            if not path.resolve().is_relative_to(root):
                continue
            saved = XlsxPackage(path.read_bytes(), path.name).saved_at()
        except (OSError, UnsafeFile, ValueError):
            continue
        if saved is not None:
            db.execute("UPDATE returns SET saved_at = ? WHERE id = ?", (utc_text(saved), return_id))


MIGRATIONS.append(("012_return_versions", _012_return_versions))


def utc_text(moment: datetime | None) -> str | None:
    """A moment as stored in the version columns (UTC, `UTC_FORMAT`); None stays None.
    A moment without a zone is taken as local time."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime(UTC_FORMAT)


def local_time(stored: str) -> datetime:
    """A UTC moment of the version columns in the local time the teacher reads."""
    moment = datetime.strptime(stored, UTC_FORMAT).replace(tzinfo=UTC)
    return moment.astimezone()


@dataclass(frozen=True)
class ReturnVersion:
    """One recognised return of a student, as a version of the student's workbook."""

    return_id: int
    student_id: str
    file_name: str
    origin: str
    collected_at: str
    status: str
    standing: str
    version_at: str  # UTC, `UTC_FORMAT`
    version_source: str  # VERSION_SAVED, VERSION_MAILED, VERSION_FILE or VERSION_COLLECTED
    counts: bool  # the return that counts for the student (`counted_returns`)
    chosen: bool  # chosen by the teacher (« grille collect --use »), latest choice

    @property
    def local_version_at(self) -> datetime:
        return local_time(self.version_at)


# `counts` and `chosen` as subqueries on the student: joined to the views, SQLite would
# build them for every student at each call (≈ 5 ms instead of 0.05 for 1,000 returns)
_VERSIONS_QUERY = """
SELECT v.return_id, v.student_id, v.version_at, v.version_source, r.file_name, r.origin,
       r.collected_at, r.status, t.standing,
       v.return_id IS (SELECT return_id FROM counted_returns WHERE student_id = v.student_id)
           AS counts,
       v.return_id IS (SELECT return_id FROM chosen_returns WHERE student_id = v.student_id)
           AS chosen
FROM return_versions v
JOIN returns r ON r.id = v.return_id
JOIN return_standing t ON t.return_id = v.return_id
"""
_VERSIONS_ORDER = (
    " ORDER BY v.student_id, v.version_at DESC, v.mailed_at DESC, v.file_time DESC, "
    "v.return_id DESC"
)


def _version(row: sqlite3.Row) -> ReturnVersion:
    given = {"status": row["status"] or "", "counts": bool(row["counts"])}
    return ReturnVersion(**_columns(ReturnVersion, row, chosen=bool(row["chosen"]), **given))


def return_versions(
    db: sqlite3.Connection, student_id: str | None = None
) -> dict[str, list[ReturnVersion]]:
    """Every recognised return by student id, most recent version first (rejected
    ones included: they are part of the history, `standing` says so)."""
    if student_id is None:
        rows = db.execute(_VERSIONS_QUERY + _VERSIONS_ORDER)
    else:
        rows = db.execute(
            _VERSIONS_QUERY + " WHERE v.student_id = ?" + _VERSIONS_ORDER, (student_id,)
        )
    found: dict[str, list[ReturnVersion]] = {}
    for row in rows:
        found.setdefault(row["student_id"], []).append(_version(row))
    return found


def return_version(db: sqlite3.Connection, return_id: int) -> ReturnVersion | None:
    """Return `return_id` as a version of its student's workbook; None if not recognised."""
    row = db.execute(_VERSIONS_QUERY + " WHERE v.return_id = ?", (return_id,)).fetchone()
    return _version(row) if row else None


def counted_version(db: sqlite3.Connection, student_id: str) -> ReturnVersion | None:
    """The version that counts for `student_id`, or None."""
    return next((v for v in return_versions(db, student_id).get(student_id, []) if v.counts), None)


def choose_return(db: sqlite3.Connection, return_id: int, chosen_by: str) -> ReturnVersion:
    """Record the teacher's choice of `return_id` as the version that counts for its student,
    whatever its date (earlier choices are kept; the latest stands); the version chosen.

    A return refused at collection, or rejected by the teacher, cannot be chosen."""
    row = db.execute("SELECT file_name, match FROM returns WHERE id = ?", (return_id,)).fetchone()
    if row is None:
        raise GrilleError(
            f"aucun retour n° {return_id} dans cette campagne : « grille status --format json » "
            "donne les retours de chaque stagiaire (« versions »)."
        )
    chosen = return_version(db, return_id)
    if chosen is None:
        raise GrilleError(
            f"le retour n° {return_id} (« {row['file_name']} ») a été refusé à la collecte : il "
            "n'est rattaché à aucun stagiaire et ne peut pas être retenu."
        )
    if chosen.standing == STANDING_REJECTED:
        raise GrilleError(
            f"le retour n° {return_id} (« {row['file_name']} ») a été rejeté (« grille confirm "
            f"{return_id} --reject ») : confirmez-le d'abord (« grille confirm {return_id} »)."
        )
    with _within_transaction(db):
        db.execute(
            "INSERT INTO return_choices (student_id, return_id, chosen_by, chosen_at) "
            "VALUES (?, ?, ?, ?)",
            (chosen.student_id, return_id, chosen_by, now()),
        )
    after = return_version(db, return_id)
    assert after is not None
    return after


def returns_named(db: sqlite3.Connection, file_name: str) -> list[ReturnVersion]:
    """The recognised returns whose file was called `file_name` (case ignored), oldest first."""
    rows = db.execute(
        _VERSIONS_QUERY + " WHERE r.file_name = ? COLLATE NOCASE ORDER BY v.return_id",
        (file_name,),
    )
    return [_version(row) for row in rows]


def return_with_sha256(db: sqlite3.Connection, sha256: str) -> tuple[int, bool] | None:
    """(number, recognised) of the return whose original file has this SHA-256, or None."""
    row = db.execute(
        "SELECT id, student_id IS NOT NULL AND match != 'rejected' FROM returns WHERE sha256 = ?",
        (sha256,),
    ).fetchone()
    return (int(row[0]), bool(row[1])) if row else None


@dataclass(frozen=True)
class RefusedFile:
    """A file `collect` refused or could not read: enough to find it again."""

    file_name: str
    origin: str
    code: str  # the problem's code (`returns`), or "rejected" for a workbook refused
    reason: str  # in French, as the teacher read it
    sha256: str = ""  # of the bytes received; "" when they could not be read
    first_seen_at: str = ""  # local time, as `now()`
    last_seen_at: str = ""


def record_refused_files(db: sqlite3.Connection, refused: list[RefusedFile]) -> None:
    """Remember each refused file; one seen again (same origin, reason and bytes) gets a
    new `last_seen_at`. Runs in the caller's transaction when one is open."""
    stamp = now()
    with _within_transaction(db):
        db.executemany(
            "INSERT INTO refused_files (file_name, origin, code, reason, sha256, first_seen_at, "
            "last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, code, sha256) DO "
            "UPDATE SET last_seen_at = excluded.last_seen_at, reason = excluded.reason",
            [(f.file_name, f.origin, f.code, f.reason, f.sha256, stamp, stamp) for f in refused],
        )


def refused_files(db: sqlite3.Connection) -> list[RefusedFile]:
    """Every file `collect` refused, the most recently seen first."""
    return [
        RefusedFile(**_columns(RefusedFile, row))
        for row in db.execute("SELECT * FROM refused_files ORDER BY last_seen_at DESC, id DESC")
    ]


# ---- w3e-one-home
# Reads and writes that `collect`, `tracking`, `cli/returns` and the web pages wrote
# themselves before (issue 10: SQL lives here).


def _columns(cls: type[Any], row: sqlite3.Row, **given: Any) -> dict[str, Any]:
    """The fields of the dataclass `cls` read from the columns of `row` that bear their
    names; `given` sets the others (or replaces what a column holds)."""
    names = set(row.keys())
    read = {f.name: row[f.name] for f in fields(cls) if f.name in names and f.name not in given}
    return {**read, **given}


def find_student(db: sqlite3.Connection, student_id: str) -> Student | None:
    """The student `student_id` (in the roster or removed from it since), or None."""
    row = db.execute("SELECT * FROM students WHERE student_id = ?", (student_id,)).fetchone()
    return student_from_row(row) if row else None


def student_exists(db: sqlite3.Connection, student_id: str) -> bool:
    """True when the campaign knows the student `student_id`."""
    return find_student(db, student_id) is not None


def student_in_roster(db: sqlite3.Connection, student_id: str) -> bool:
    """True when `student_id` is in the roster last used by `generate`."""
    row = db.execute("SELECT in_roster FROM students WHERE student_id = ?", (student_id,))
    found = row.fetchone()
    return bool(found and found[0])


def student_label(db: sqlite3.Connection, student_id: str) -> str:
    """« DUPONT Jean (BTS MCO 2A) »: a student as messages name him (the class tells two
    homonyms apart); the identifier itself for an unknown one."""
    student = find_student(db, student_id)
    return student.label if student else student_id


def student_names(db: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every student's `student_id`, `last_name`, `first_name` and `class_name`."""
    return db.execute(
        "SELECT student_id, last_name, first_name, class_name FROM students"
    ).fetchall()


def return_owner(db: sqlite3.Connection, return_id: int) -> str | None:
    """The student return `return_id` is tied to (None: unknown return, or refused)."""
    row = db.execute("SELECT student_id FROM returns WHERE id = ?", (return_id,)).fetchone()
    return row[0] if row else None


def collected_sha256s(db: sqlite3.Connection) -> set[str]:
    """The SHA-256 of every file already collected (each is recorded once)."""
    return {row[0] for row in db.execute("SELECT sha256 FROM returns")}


def generated_sha256s(db: sqlite3.Connection) -> set[str]:
    """The SHA-256 of every workbook grille wrote: such a file returned is unfilled."""
    return {row[0] for row in db.execute("SELECT sha256 FROM workbooks")}


@dataclass(frozen=True)
class NewReturn:
    """A file `collect` just processed, as `record_return` stores it (one field a column
    of `returns`, but `answers`)."""

    origin: str  # where it came from: a path, a message, an attachment
    file_name: str
    converted_from: str
    stored_file: str  # the original kept, under the campaign folder
    sha256: str
    collected_at: str
    student_id: str | None
    match: str  # a `kinds.MatchKind`
    match_note: str
    status: str | None  # a `kinds.ReturnStatus`, None when refused
    grid_id: str
    grid_version: str
    problems: str  # JSON: a list of `asdict(Problem)`
    evaluation: str | None  # JSON, None when refused
    saved_at: str | None
    mailed_at: str | None
    file_time: str | None
    # (item id, sheet, cell, raw text, value) of every answer read
    answers: Sequence[tuple[str, str, str, str | None, str | None]] = ()


def record_return(db: sqlite3.Connection, new: NewReturn) -> int:
    """Store one collected file and its answers; its return id. Runs in the caller's
    transaction when one is open."""
    with _within_transaction(db):
        columns = [f.name for f in fields(NewReturn) if f.name != "answers"]
        cursor = db.execute(
            f"INSERT INTO returns ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [getattr(new, name) for name in columns],
        )
        return_id = cursor.lastrowid
        assert return_id is not None
        db.executemany(
            "INSERT INTO answers VALUES (?,?,?,?,?,?)",
            [(return_id, *answer) for answer in new.answers],
        )
    return return_id


@dataclass(frozen=True)
class ReturnProblem:
    """One fault of a return, located as the tutor sees it."""

    kind: str  # "manquant", "invalide" or "avertissement"
    sheet: str
    cell: str
    message: str


REFUSED = "refused"  # the standing of a return refused at collection (no student)
_PROBLEM_KINDS = (("missing", "manquant"), ("invalid", "invalide"))


@dataclass(frozen=True)
class ReturnRecord:
    """One file received for a student, and where it stands."""

    return_id: int
    file_name: str
    stored_file: str
    origin: str
    collected_at: str
    status: str  # a `kinds.ReturnStatus`, "" when refused
    match: str  # a `kinds.MatchKind`
    match_note: str
    standing: str  # a `kinds.Standing`, or `REFUSED` at collection
    decided_by: str
    decided_at: str
    counts: bool  # the return that counts for the student
    problems: list[ReturnProblem] = field(default_factory=list)
    decisions: list[tuple[str, str, str]] = field(default_factory=list)  # (decision, by, at)

    @property
    def standing_label(self) -> str:
        if self.standing == REFUSED:
            return "refusé à la collecte"
        return STANDING_LABELS.get(self.standing, self.standing)

    @property
    def decidable(self) -> bool:
        """Matched on its visible identity: the teacher confirms or rejects it."""
        return self.standing in (Standing.PENDING, Standing.CONFIRMED, Standing.REJECTED)


def _return_problems(text: str | None) -> list[ReturnProblem]:
    """A return's stored problems (`asdict(Problem)` as JSON): errors first, in file order."""
    stored: list[dict[str, object]] = json.loads(text) if text else []
    found = []
    for problem in stored:
        code = str(problem.get("code", ""))
        kind = next((label for prefix, label in _PROBLEM_KINDS if code.startswith(prefix)), "")
        if problem.get("severity") == "warning":
            kind = "avertissement"
        found.append(
            ReturnProblem(
                kind=kind or "problème",
                sheet=str(problem.get("sheet") or ""),
                cell=str(problem.get("cell") or ""),
                message=str(problem.get("message") or ""),
            )
        )
    found.sort(key=lambda p: p.kind == "avertissement")
    return found


def student_returns(db: sqlite3.Connection, student_id: str) -> list[ReturnRecord]:
    """Every file received for `student_id`, newest first, with its standing, whether it
    counts (`counted_returns`), its problems and the teacher's decisions on it."""
    counted = db.execute(
        "SELECT return_id FROM counted_returns WHERE student_id = ?", (student_id,)
    ).fetchone()
    decisions: dict[int, list[tuple[str, str, str]]] = {}
    for row in db.execute(
        "SELECT d.return_id, d.decision, d.decided_by, d.decided_at FROM return_decisions d "
        "JOIN returns r ON r.id = d.return_id WHERE r.student_id = ? ORDER BY d.id",
        (student_id,),
    ):
        decisions.setdefault(row[0], []).append((row[1], row[2], row[3]))
    return [
        ReturnRecord(
            **_columns(
                ReturnRecord,
                row,
                return_id=row["id"],
                standing=row["standing"] or REFUSED,
                counts=counted is not None and counted[0] == row["id"],
                problems=_return_problems(row["problems"]),
                decisions=decisions.get(row["id"], []),
                **{name: row[name] or "" for name in ("status", "decided_by", "decided_at")},
            )
        )
        for row in db.execute(
            "SELECT r.*, t.standing, t.decided_by, t.decided_at FROM returns r "
            "LEFT JOIN return_standing t ON t.return_id = r.id "
            "WHERE r.student_id = ? ORDER BY r.id DESC",
            (student_id,),
        )
    ]


@dataclass(frozen=True)
class ReportFile:
    """A report grille wrote for a student (Word, or its PDF)."""

    file: str  # relative to the campaign folder
    written_at: str


def student_reports(db: sqlite3.Connection, student_id: str) -> list[ReportFile]:
    """The reports written for `student_id`, newest first."""
    return [
        ReportFile(row["file"], row["written_at"])
        for row in db.execute(
            "SELECT file, written_at FROM reports WHERE student_id = ? "
            "ORDER BY written_at DESC, file",
            (student_id,),
        )
    ]


# ---- w3d-returns-docs


def forget_refused_files(db: sqlite3.Connection, refused: list[RefusedFile]) -> None:
    """Delete the records of these refused files (their name may be personal data)."""
    with _within_transaction(db):
        db.executemany(
            "DELETE FROM refused_files WHERE origin = ? AND code = ? AND sha256 = ?",
            [(f.origin, f.code, f.sha256) for f in refused],
        )


# ---- w3b-ui-mail-returns


def rename_origins(db: sqlite3.Connection, renamed: dict[str, str]) -> None:
    """Give the returns and refused files whose origin is a key of `renamed` (or lies
    inside it: « key › member ») that key's value instead: the files dropped in the
    interface are named as the teacher gave them, not by the path of their passing copy.
    A refused file already known under its new origin is seen again, not doubled.
    One reading of each table (the keys share their folder), then the rows concerned."""
    if not renamed:
        return
    # character by character on purpose: the keys are origins (texts), not paths to split
    prefix = os.path.commonprefix(list(renamed))  # noqa: RUF071

    def new_origin(origin: str) -> str | None:
        cut = len(origin)
        while cut != -1:  # the origin itself, then each part before a « › »
            new = renamed.get(origin[:cut])
            if new is not None:
                return new + origin[cut:]
            cut = origin.rfind(" › ", 0, cut)
        return None

    within = "WHERE substr(origin, 1, ?) = ?"
    with transaction(db):
        for row in db.execute(
            f"SELECT id, origin FROM returns {within}", (len(prefix), prefix)
        ).fetchall():
            if (new := new_origin(row["origin"])) is not None:
                db.execute("UPDATE returns SET origin = ? WHERE id = ?", (new, row["id"]))
        for row in db.execute(
            f"SELECT id, origin, code, sha256, last_seen_at, reason FROM refused_files {within}",
            (len(prefix), prefix),
        ).fetchall():
            if (new := new_origin(row["origin"])) is None:
                continue
            known = db.execute(
                "SELECT id FROM refused_files WHERE origin = ? AND code = ? AND sha256 = ?",
                (new, row["code"], row["sha256"]),
            ).fetchone()
            if known is None:
                db.execute("UPDATE refused_files SET origin = ? WHERE id = ?", (new, row["id"]))
                continue
            db.execute(
                "UPDATE refused_files SET last_seen_at = ?, reason = ? WHERE id = ?",
                (row["last_seen_at"], row["reason"], known["id"]),
            )
            db.execute("DELETE FROM refused_files WHERE id = ?", (row["id"],))
