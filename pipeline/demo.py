"""The demonstration campaign: the bundled class, and tutors simulated with openpyxl.

`grille demo` runs the whole flow on embedded sample data: a roster of 12 students in
two classes whose internship just ended, workbooks, the tutors' messages written to the
outbox, returns filled by simulated tutors, collection, reminders, reports, archive.
The simulated tutors cover what happens in a real season: most grids come back
complete, one incomplete, one with a word typed over a dropdown, one renamed by the
tutor, one inside a saved email, and two never come back.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import openpyxl

from pipeline import state
from pipeline.campaign import Campaign, init_campaign
from pipeline.campaign_setup import install_roster
from pipeline.files import atomic_save, atomic_write_bytes
from pipeline.grid import Grid
from pipeline.roster import DEMO_ROSTER
from pipeline.settings import Workspace
from pipeline.workbook import Layout, plan_layout

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


@dataclass(frozen=True)
class DemoStudent:
    """A student of the demo, as the simulated tutor sees it."""

    name: str
    workbook: Path
    tutor_name: str
    tutor_email: str


def start_demo(workspace: Workspace, today: date) -> Path:
    """Create the demonstration campaign (what exists is kept) and write its roster, with
    internships that ended a week before `today`, where `generate` and the interface read
    it (`input_templates/roster.csv`; the blank roster.xlsx goes to anciennes_listes/);
    the roster's path."""
    init_campaign(
        workspace,
        school="Lycée de démonstration",
        session="BTS MUC — session de démonstration",
        teacher_name="Mme Claire Martin",
        teacher_email="claire.martin@lycee-demo.example",
        deadline=today + timedelta(days=14),
    )
    roster = demo_roster(workspace.templates_dir / "demo_roster.csv", today)
    current = workspace.roster_path
    if not current.is_file() or current.read_bytes() != roster.read_bytes():
        install_roster(workspace, roster)
    return workspace.roster_path


def latest_workbooks(campaign: Campaign) -> list[DemoStudent]:
    """Every student's latest workbook, by class and name."""
    root = campaign.workspace.root
    demo = []
    for row in state.students_with_workbooks(campaign.db):
        student = state.student_from_row(row)
        demo.append(
            DemoStudent(
                student.display_name,
                root / row["workbook_file"],
                student.tutor_name,
                student.tutor_email,
            )
        )
    return demo


def simulate_returns(campaign: Campaign, folder: Path, today: date) -> list[tuple[str, str]]:
    """The tutors' simulated returns of every student's latest workbook, written into
    `folder`; (student, what the tutor did)."""
    return simulate_tutors(
        campaign.grid, latest_workbooks(campaign), folder, today, campaign.config.teacher_email
    )


# What each simulated tutor does, by the student's place in the class list.
SCENARIOS = (
    "complet", "incomplet", "renommé", "dans un e-mail", "complet", "sans réponse",
    "complet", "saisie hors liste", "complet", "complet", "sans réponse", "complet",
)  # fmt: skip


def _fill(grid: Grid, layout: Layout, student: DemoStudent, index: int, day: date,
          chance: random.Random) -> openpyxl.Workbook:  # fmt: skip
    """The workbook as a tutor fills it in Excel."""
    wb = openpyxl.load_workbook(student.workbook)
    for ref in layout.criteria.values():
        wb[ref.sheet][ref.cell] = chance.choices(grid.scale_codes, weights=(1, 3, 8, 6))[0]
    for dimension in grid.global_evaluation.dimensions:
        ref = layout.dimensions[dimension.id]
        wb[ref.sheet][ref.cell] = chance.choice(dimension.values[1:])
    wb[layout.appreciation.sheet][layout.appreciation.cell] = APPRECIATIONS[index % 4]
    wb[layout.date.sheet][layout.date.cell] = day
    wb[layout.signature.sheet][layout.signature.cell] = student.tutor_name
    return wb


def simulate_tutors(
    grid: Grid, students: list[DemoStudent], folder: Path, today: date, teacher_email: str
) -> list[tuple[str, str]]:
    """Write the simulated tutors' returns into `folder`; (student, what the tutor did)."""
    layout = plan_layout(grid)
    chance = random.Random(2027)
    done = []
    for index, student in enumerate(students):
        scenario = SCENARIOS[index % len(SCENARIOS)]
        done.append((student.name, scenario))
        if scenario == "sans réponse":
            continue
        wb = _fill(grid, layout, student, index, today - timedelta(days=3), chance)
        name = student.workbook.name
        if scenario == "incomplet":  # three ratings and the appreciation left blank
            for criterion_id in list(layout.criteria)[5:8]:
                ref = layout.criteria[criterion_id]
                wb[ref.sheet][ref.cell] = None
            wb[layout.appreciation.sheet][layout.appreciation.cell] = None
        elif scenario == "saisie hors liste":  # a word typed over a dropdown
            ref = next(iter(layout.criteria.values()))
            wb[ref.sheet][ref.cell] = "Bien"
        elif scenario == "renommé":
            name = f"grille stage {student.name.split()[-1]} - version finale (2).xlsx"
        if scenario == "dans un e-mail":
            buffer = io.BytesIO()
            wb.save(buffer)
            message = EmailMessage()
            message["From"] = f"{student.tutor_name} <{student.tutor_email}>"
            message["To"] = teacher_email
            message["Subject"] = f"RE: Évaluation de stage — {student.name}"
            message["Date"] = formatdate(localtime=True)
            message.set_content("Bonjour,\n\nVoici la grille remplie.\n\nCordialement,\n")
            message.add_attachment(
                buffer.getvalue(),
                "application",
                "vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                filename=name,
            )
            atomic_write_bytes(folder / "reponse_du_tuteur.eml", message.as_bytes())
            continue
        atomic_save(folder / name, wb.save)
    return done
