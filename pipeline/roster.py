"""Roster spreadsheet or CSV → students, with row-precise problems."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import date


@dataclass(frozen=True)
class Student:
    """One student of the roster, with the company placement and the tutor."""

    student_id: str
    last_name: str
    first_name: str
    class_name: str
    company: str
    tutor_name: str
    tutor_email: str
    start: date
    end: date
    student_email: str = ""
    tutor_phone: str = ""
    referent: str = ""
    row: int = 0

    @property
    def display_name(self) -> str:
        """« DUPONT Jean », the way French school documents name a student."""
        return f"{self.last_name.upper()} {self.first_name}"

    def fingerprint(self) -> str:
        """Hash of every roster field (not the row): changes when the line changes."""
        fields = asdict(self)
        fields.pop("row")
        text = "\x1f".join(f"{k}={v}" for k, v in sorted(fields.items()))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
