"""Small read-only queries the pages need and `pipeline.state` does not have yet.

They only read the database; each should move to `pipeline/state.py` (beside
`pending_returns`, `counted_return`, `teacher_notes`) when the library is next reworked.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from pipeline.state import STANDING_LABELS


@dataclass(frozen=True)
class ReturnProblem:
    """One fault of a return, located as the tutor sees it."""

    kind: str  # "manquant", "invalide" or "avertissement"
    sheet: str
    cell: str
    message: str


@dataclass(frozen=True)
class ReturnRecord:
    """One file received for a student, and where it stands."""

    return_id: int
    file_name: str
    stored_file: str
    origin: str
    collected_at: str
    status: str  # complete / incomplete / invalid, "" when refused
    match: str  # signed / visible / rejected
    match_note: str
    standing: str  # signed / confirmed / rejected / pending, or "refused" at collection
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
        return self.standing in ("pending", "confirmed", "rejected")


REFUSED = "refused"
_KINDS = (("missing", "manquant"), ("invalid", "invalide"))


def _problems(text: str | None) -> list[ReturnProblem]:
    """A return's stored problems (`asdict(Problem)` as JSON): errors first, in file order."""
    stored: list[dict[str, Any]] = json.loads(text) if text else []
    found = []
    for problem in stored:
        code = str(problem.get("code", ""))
        kind = next((label for prefix, label in _KINDS if code.startswith(prefix)), "")
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
    records = []
    for row in db.execute(
        "SELECT r.*, t.standing, t.decided_by, t.decided_at FROM returns r "
        "LEFT JOIN return_standing t ON t.return_id = r.id "
        "WHERE r.student_id = ? ORDER BY r.id DESC",
        (student_id,),
    ):
        records.append(
            ReturnRecord(
                return_id=row["id"],
                file_name=row["file_name"],
                stored_file=row["stored_file"],
                origin=row["origin"],
                collected_at=row["collected_at"],
                status=row["status"] or "",
                match=row["match"],
                match_note=row["match_note"],
                standing=row["standing"] or REFUSED,
                decided_by=row["decided_by"] or "",
                decided_at=row["decided_at"] or "",
                counts=counted is not None and counted[0] == row["id"],
                problems=_problems(row["problems"]),
                decisions=decisions.get(row["id"], []),
            )
        )
    return records


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
