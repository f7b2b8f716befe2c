"""Error and problem types shared by every step.

Library code raises `GrilleError` (one French sentence naming place, fault and fix)
for faults that stop a step, and returns `Problem` values for faults in the user's
data, so that every problem of a file is reported at once.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


class GrilleError(Exception):
    """A fault the user can fix; its message is French and shown as is."""


class GridError(GrilleError):
    """The evaluation grid file is malformed."""


class ConfigError(GrilleError):
    """The campaign configuration is missing or malformed."""


class RosterError(GrilleError):
    """The roster cannot be read at all (wrong file type, no header)."""


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
    errno.EROFS: "support en lecture seule",
    errno.EISDIR: "c'est un dossier",
    errno.ENOTDIR: "ce n'est pas un dossier",
    errno.EBUSY: "fichier occupé par un autre programme",
    errno.ENAMETOOLONG: "nom de fichier trop long",
}


def french_os_error(exc: OSError) -> str:
    """What went wrong with a file, in French (the system's own text may be English)."""
    return _OS_ERRORS.get(exc.errno or -1, exc.strerror or "erreur d'entrée-sortie")


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
