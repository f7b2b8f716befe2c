"""Error and problem types shared by every step.

Library code raises `GrilleError` (one French sentence naming place, fault and fix)
for faults that stop a step, and returns `Problem` values for faults in the user's
data, so that every problem of a file is reported at once.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path


class GrilleError(Exception):
    """A fault the user can fix; its message is French and shown as is.

    `exit_code` is the command's exit code when it stops on this fault.
    """

    exit_code = 1


class RequestError(GrilleError):
    """What was asked cannot be done as asked: it names something the campaign does not
    have (a class, a student), or contradicts itself. Exit code 2, as a wrong option."""

    exit_code = 2


class UnknownClassError(RequestError):
    """A class name (`--class`) that is none of the campaign's classes."""


class GridError(GrilleError):
    """The evaluation grid file is malformed."""


class ConfigError(GrilleError):
    """The campaign configuration is missing or malformed."""


class RosterError(GrilleError):
    """The roster cannot be read at all (wrong file type, no header): exit code 2."""

    exit_code = 2


class StorageError(GrilleError):
    """The disk refuses to write: full, read-only, or inaccessible."""


def toml_position(exc: Exception) -> str:
    """« à la ligne 3, colonne 7 » from a tomllib error (its own text is English)."""
    import re

    match = re.search(r"line (\d+), column (\d+)", str(exc))
    return f"à la ligne {match.group(1)}, colonne {match.group(2)}" if match else "quelque part"


_OS_ERRORS = {
    errno.ENOENT: "fichier ou dossier introuvable",
    errno.EACCES: "accès refusé",
    errno.EPERM: "opération non permise",
    errno.ENOSPC: "disque plein",
    errno.EDQUOT: "disque plein (quota atteint)",
    errno.EFBIG: "fichier trop grand pour ce disque",
    errno.EROFS: "support en lecture seule",
    errno.EISDIR: "c'est un dossier",
    errno.ENOTDIR: "ce n'est pas un dossier",
    errno.EBUSY: "fichier occupé par un autre programme",
    errno.ENAMETOOLONG: "nom de fichier trop long",
}


def french_os_error(exc: OSError) -> str:
    """What went wrong with a file, in French (the system's own text may be English)."""
    return _OS_ERRORS.get(exc.errno or -1, exc.strerror or "erreur d'entrée-sortie")


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
# SQLite's primary result codes (the low byte of `sqlite_errorcode`)
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 10, 13, 14


def _read_only_medium(folder: Path) -> bool:
    """True when nothing can be written in `folder` (read-only mount or no permission)."""
    if not folder.is_dir():
        return False
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        pass
    return not os.access(folder, os.W_OK)


def _nearly_full(folder: Path) -> bool:
    """True when the disk holding `folder` has (almost) no space left for grille."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return stats.f_bavail * stats.f_frsize < 64 * 1024


def disk_full_message(where: Path | str | None) -> str:
    """French: the disk is full, what to do."""
    place = f" (« {where} »)" if where else ""
    return (
        f"disque plein{place}. Libérez de la place sur ce disque (ou copiez la campagne sur "
        "un autre), puis relancez la commande : ce qui était enregistré est intact."
    )


def read_only_message(where: Path | str | None) -> str:
    """French: the campaign's folder or file is read-only, what to do."""
    place = f" (« {where} »)" if where else ""
    return (
        f"la campagne est en lecture seule{place} : grille ne peut rien y écrire. Copiez le "
        "dossier de la campagne sur un support où vous pouvez écrire (pas un CD, ni un "
        "partage en lecture seule), ou demandez-en le droit d'écriture, puis relancez."
    )


def storage_problem(exc: BaseException, folder: Path | None = None) -> str | None:
    """A French sentence when `exc` is a full disk or a read-only medium, else None.

    `folder` is where grille was writing (the campaign's output folder): SQLite does not
    say which file failed, nor always why (a full disk can surface as an I/O error).
    """
    if isinstance(exc, OSError):
        where = exc.filename or folder
        if exc.errno in _FULL:
            return disk_full_message(where)
        if exc.errno == errno.EROFS:
            return read_only_message(where)
        if exc.errno in _READ_ONLY:
            parent = Path(exc.filename).parent if exc.filename else folder
            if parent is not None and _read_only_medium(Path(parent)):
                return read_only_message(where)
        return None
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        text = str(exc).lower()
        if code == _SQLITE_FULL or "disk is full" in text:
            return disk_full_message(folder)
        if code == _SQLITE_READONLY or "readonly" in text:
            return read_only_message(folder)
        if code in (_SQLITE_IOERR, _SQLITE_CANTOPEN) and folder is not None:
            if _read_only_medium(folder):
                return read_only_message(folder)
            if _nearly_full(folder):
                return disk_full_message(folder)
    return None


@dataclass(frozen=True)
class Problem:
    """One fault in the user's data, located as the user sees it.

    `code` is machine-readable (tests compare it); `message` is the French text.
    `severity` is "error" (blocks) or "warning" (reported, does not block).
    """

    code: str
    message: str
    file: str = ""
    sheet: str = ""
    cell: str = ""
    row: int | None = None
    column: str = ""
    severity: str = "error"

    def location(self) -> str:
        """Where the problem is, in French: file, sheet, cell or row/column."""
        parts = []
        if self.file:
            parts.append(self.file)
        if self.sheet:
            parts.append(f"feuille « {self.sheet} »")
        if self.cell:
            parts.append(f"cellule {self.cell}")
        elif self.row is not None and self.column:
            parts.append(f"ligne {self.row}, colonne {self.column}")
        elif self.row is not None:
            parts.append(f"ligne {self.row}")
        elif self.column:
            parts.append(f"colonne {self.column}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        return f"{where} : {self.message}" if where else self.message


def problem_text(exc: BaseException, folder: Path | None = None) -> str:
    """What to tell the teacher of `exc`, in French: a `GrilleError`'s own text, else the
    full disk or read-only medium `storage_problem` names, else what went wrong with the
    file (`french_os_error`), else the error's text."""
    if isinstance(exc, GrilleError):
        return str(exc)
    storage = storage_problem(exc, folder)
    if storage is not None:
        return storage
    if isinstance(exc, OSError):
        return f"{exc.filename} : {french_os_error(exc)}" if exc.filename else french_os_error(exc)
    return str(exc)
