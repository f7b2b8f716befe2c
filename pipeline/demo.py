"""The demonstration campaign: the bundled class, and tutors simulated with openpyxl.

`grille demo` runs the whole flow on embedded sample data: a roster of 30 students
whose internship just ended, workbooks, returns filled by simulated tutors (most
complete, some incomplete, one invalid, some not returned), collection, reports.
"""

from __future__ import annotations

import csv
import io
import random
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import openpyxl

from pipeline.files import atomic_write_bytes
from pipeline.grid import Grid
from pipeline.roster import DEMO_ROSTER
from pipeline.workbook import plan_layout

APPRECIATIONS = [
    "Stagiaire sérieux et ponctuel, bien intégré à l'équipe.\nA su prendre des initiatives "
    "lors des rendez-vous clients.",
    "Très bon stage : curiosité, écoute et sens du contact. Doit encore gagner en "
    "autonomie sur la préparation des entretiens.",
    "Stage satisfaisant. Quelques retards en début de période, corrigés ensuite.",
    "Excellent état d'esprit ; « une vraie force de proposition » selon l'équipe & le "
    "directeur d'agence.",
]


def demo_roster(target: Path, today: date) -> Path:
    """The bundled roster with internships that ended a week before `today`."""
    text = DEMO_ROSTER.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    start = today - timedelta(weeks=9)
    end = today - timedelta(weeks=1)
    header = rows[0]
    begin_col, end_col = header.index("Début"), header.index("Fin")
    for row in rows[1:]:
        row[begin_col] = f"{start:%d/%m/%Y}"
        row[end_col] = f"{end:%d/%m/%Y}"
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows(rows)
    atomic_write_bytes(target, buffer.getvalue().encode("utf-8-sig"))
    return target


def latest_workbooks(db: sqlite3.Connection, root: Path) -> list[tuple[Path, str]]:
    """(workbook file, tutor name) of every student, their latest workbook."""
    rows = db.execute(
        "SELECT w.file, s.tutor_name FROM students s JOIN workbooks w ON w.id = "
        "(SELECT MAX(id) FROM workbooks WHERE student_id = s.student_id)"
    )
    return [(root / row[0], row[1]) for row in rows]


def simulate_tutors(
    grid: Grid, workbooks: list[tuple[Path, str]], folder: Path, today: date
) -> int:
    """Fill copies of `workbooks` (path, tutor name) as tutors would; return how many."""
    layout = plan_layout(grid)
    chance = random.Random(2027)
    written = 0
    for index, (source, tutor) in enumerate(sorted(workbooks)):
        if index % 10 == 9:  # one tutor in ten has not answered yet
            continue
        wb = openpyxl.load_workbook(source)
        for ref in layout.criteria.values():
            wb[ref.sheet][ref.cell] = chance.choices(grid.scale_codes, weights=(1, 3, 8, 6))[0]
        for dimension in grid.global_evaluation.dimensions:
            ref = layout.dimensions[dimension.id]
            wb[ref.sheet][ref.cell] = chance.choice(dimension.values[1:])
        wb[layout.appreciation.sheet][layout.appreciation.cell] = APPRECIATIONS[index % 4]
        wb[layout.date.sheet][layout.date.cell] = today - timedelta(days=3)
        wb[layout.signature.sheet][layout.signature.cell] = tutor
        if index % 10 == 4:  # incomplete: three ratings and the appreciation left blank
            for criterion_id in list(layout.criteria)[5:8]:
                ref = layout.criteria[criterion_id]
                wb[ref.sheet][ref.cell] = None
            wb[layout.appreciation.sheet][layout.appreciation.cell] = None
        if index == 7:  # invalid: a word typed over a dropdown
            ref = next(iter(layout.criteria.values()))
            wb[ref.sheet][ref.cell] = "Bien"
        folder.mkdir(parents=True, exist_ok=True)
        wb.save(folder / f"retour_{index + 1:02d}.xlsx")
        written += 1
    return written
