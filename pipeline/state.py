"""SQLite state of a campaign: migrations and the queries each step needs.

What was generated, sent, returned and validated lives in `output/grille.sqlite`.
Schema changes are named functions in `MIGRATIONS`, applied once each, in order,
in a transaction, and recorded in `schema_migrations`.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

from pipeline.errors import GrilleError
from pipeline.files import safe_name
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
    """Open (and migrate) the campaign database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise GrilleError(
            f"Base de suivi « {path} » illisible ({exc}). Restaurez-la depuis une sauvegarde "
            "ou déplacez-la pour repartir de zéro."
        ) from exc
    return db


def student_from_row(row: sqlite3.Row) -> Student:
    """A `Student` from a row of the `students` table."""
    return Student(
        student_id=row["student_id"],
        last_name=row["last_name"],
        first_name=row["first_name"],
        class_name=row["class_name"],
        company=row["company"],
        tutor_name=row["tutor_name"],
        tutor_email=row["tutor_email"],
        start=date.fromisoformat(row["start_date"]),
        end=date.fromisoformat(row["end_date"]),
        student_email=row["student_email"],
        tutor_phone=row["tutor_phone"],
        referent=row["referent"],
    )


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


STANDING_SIGNED = "signed"  # hidden identity verified: counts without a decision
STANDING_CONFIRMED = "confirmed"  # matched « à confirmer », confirmed by the teacher
STANDING_REJECTED = "rejected"  # matched « à confirmer », rejected by the teacher: never counts
STANDING_PENDING = "pending"  # matched « à confirmer », no decision yet
STANDING_LABELS = {
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
    return ReturnStanding(
        return_id=row["return_id"],
        student=student_from_row(row),
        file_name=row["file_name"],
        origin=row["origin"],
        collected_at=row["collected_at"],
        status=row["status"] or "",
        match_note=row["match_note"],
        standing=row["standing"],
        decided_by=row["decided_by"] or "",
        decided_at=row["decided_at"] or "",
    )


def return_standing(db: sqlite3.Connection, return_id: int) -> ReturnStanding | None:
    """Return `return_id` if it was recognised (matched to a student), else None."""
    row = db.execute(_STANDING_QUERY + "WHERE t.return_id = ?", (return_id,)).fetchone()
    return _standing(row) if row else None


def pending_returns(db: sqlite3.Connection, student_id: str | None = None) -> list[ReturnStanding]:
    """The returns matched « à confirmer » still awaiting the teacher's decision, oldest first."""
    query = _STANDING_QUERY + "WHERE t.standing = 'pending'"
    if student_id is None:
        rows = db.execute(query + " ORDER BY t.return_id")
    else:
        rows = db.execute(query + " AND t.student_id = ? ORDER BY t.return_id", (student_id,))
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


def purged_classes(db: sqlite3.Connection) -> set[str]:
    """Classes with a verified archive and no student left: purged, their notes archived."""
    return {
        row[0]
        for row in db.execute(
            "SELECT DISTINCT class_name FROM archives WHERE verified_at IS NOT NULL "
            "AND class_name NOT IN (SELECT class_name FROM students)"
        )
    }


def _stale(lock: Path) -> bool:
    """True when the lock's process is gone (checked on POSIX only)."""
    if os.name != "posix":
        return False
    try:
        pid = int(lock.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextmanager
def run_lock(output_dir: Path) -> Iterator[None]:
    """One grille command at a time per campaign (a lock file in `output/`)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = output_dir / ".grille.lock"
    if _stale(lock):
        lock.unlink(missing_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise GrilleError(
            f"Une autre commande grille travaille déjà sur cette campagne ({lock}). "
            "Attendez qu'elle se termine ; si aucune ne tourne, supprimez ce fichier."
        ) from None
    try:
        os.write(fd, str(os.getpid()).encode("ascii"))
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


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


_VERSIONS_QUERY = """
SELECT v.return_id, v.student_id, v.version_at, v.version_source, r.file_name, r.origin,
       r.collected_at, r.status, t.standing,
       v.return_id IS k.return_id AS counts, v.return_id IS c.return_id AS chosen
FROM return_versions v
JOIN returns r ON r.id = v.return_id
JOIN return_standing t ON t.return_id = v.return_id
LEFT JOIN counted_returns k ON k.student_id = v.student_id
LEFT JOIN chosen_returns c ON c.student_id = v.student_id
"""
_VERSIONS_ORDER = (
    " ORDER BY v.student_id, v.version_at DESC, v.mailed_at DESC, v.file_time DESC, "
    "v.return_id DESC"
)


def _version(row: sqlite3.Row) -> ReturnVersion:
    return ReturnVersion(
        return_id=row["return_id"],
        student_id=row["student_id"],
        file_name=row["file_name"],
        origin=row["origin"],
        collected_at=row["collected_at"],
        status=row["status"] or "",
        standing=row["standing"],
        version_at=row["version_at"],
        version_source=row["version_source"],
        counts=bool(row["counts"]),
        chosen=bool(row["chosen"]),
    )


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
        RefusedFile(
            file_name=row["file_name"],
            origin=row["origin"],
            code=row["code"],
            reason=row["reason"],
            sha256=row["sha256"],
            first_seen_at=row["first_seen_at"],
            last_seen_at=row["last_seen_at"],
        )
        for row in db.execute("SELECT * FROM refused_files ORDER BY last_seen_at DESC, id DESC")
    ]
