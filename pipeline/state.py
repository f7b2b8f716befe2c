"""SQLite state of a campaign: migrations and the queries each step needs.

What was generated, sent, returned and validated lives in `output/grille.sqlite`.
Schema changes are named functions in `MIGRATIONS`, applied once each, in order,
in a transaction, and recorded in `schema_migrations`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO

from pipeline.errors import GrilleError, StorageError, french_os_error, storage_problem
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


def _010_campaign_identity(db: sqlite3.Connection) -> None:
    """Which campaign this database belongs to, and a fingerprint of the key that signs its
    workbooks (an HMAC of a fixed text, never the key): a replaced key is named as such."""
    db.execute(
        "CREATE TABLE campaign_identity (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "campaign_id TEXT NOT NULL, key_fingerprint TEXT NOT NULL, recorded_at TEXT NOT NULL)"
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_students_and_workbooks", _001_students_and_workbooks),
    ("002_grids_and_returns", _002_grids_and_returns),
    ("003_reports", _003_reports),
    ("004_sending_kinds", _004_sending_kinds),
    ("005_archives", _005_archives),
    ("006_fetched_messages", _006_fetched_messages),
    ("010_campaign_identity", _010_campaign_identity),
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


def restore(copy: Path, db_path: Path, backups_dir: Path) -> Restored:
    """Put the backup `copy` back as the campaign database; the current one is kept.

    A readable current database is backed up first (so a restore can be undone); a
    damaged one is moved aside as `grille.sqlite.abimee-AAAAMMJJ-hhmmss`. Call it under
    the run lock.
    """
    fault = check_backup(copy)
    if fault is not None:
        raise GrilleError(f"Sauvegarde « {copy.name} » {fault} : choisissez-en une autre.")
    saved_as: Path | None = None
    set_aside: Path | None = None
    if db_path.is_file() and db_path.stat().st_size > 0:
        saved_as = backup(db_path, backups_dir, keep=BACKUPS_KEPT + 1)
        if saved_as is None:  # damaged: keep it aside, untouched, for an expert
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            set_aside = db_path.with_name(f"{db_path.name}.abimee-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                side = db_path.with_name(db_path.name + suffix)
                if side.exists():
                    os.replace(side, set_aside.with_name(set_aside.name + suffix))
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
    return Restored(saved_as, set_aside)
