"""Error and problem types shared by every step.

Library code raises `GrilleError` (one French sentence naming place, fault and fix)
for faults that stop a step, and returns `Problem` values for faults in the user's
data, so that every problem of a file is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass


class GrilleError(Exception):
    """A fault the user can fix; its message is French and shown as is."""


class GridError(GrilleError):
    """The evaluation grid file is malformed."""


class ConfigError(GrilleError):
    """The campaign configuration is missing or malformed."""


class RosterError(GrilleError):
    """The roster cannot be read at all (wrong file type, no header)."""


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
