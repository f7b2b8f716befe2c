"""Answers read from a returned workbook → evaluation + problems (no openpyxl here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pipeline.grid import Grid

STATUS_LABELS = {
    "generated": "généré",
    "sent": "envoyé",
    "incomplete": "incomplet",
    "invalid": "invalide",
    "complete": "complet",
}


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
