"""Simulated tutors and campaigns for end-to-end tests: real files, real CLI, a real SMTP
server on the loopback. The helpers every end-to-end test file shares live here."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.grid import Grid, load_grid
from pipeline.office import find_soffice
from pipeline.workbook import plan_layout

GRID = load_grid()
LAYOUT = plan_layout(GRID)
DAY = date(2026, 2, 20)  # the day the simulated tutors sign their grid
needs_soffice = pytest.mark.skipif(find_soffice() is None, reason="LibreOffice (soffice) absent")
ROSTER_HEADER = ["Nom", "Prénom", "Classe", "Entreprise", "Tuteur", "Email tuteur", "Début", "Fin"]
# The students the tests' rosters are made of (one line under ROSTER_HEADER each).
STUDENT_ROWS = {
    row[0]: row
    for row in [
        ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
        ["Bernard", "Yanis", "BTS 2A", "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
        ["Chevallier", "Inès", "BTS 2A", "Assurances B", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
        ["Da Silva", "Mathéo", "BTS 2B", "Immo Quartz", "Julien Lemaître", "jl@quartz.example", "05/01/2026", "27/02/2026"],
        ["Étienne", "Lou", "BTS 2B", "Immo Quartz", "Julien Lemaître", "jl@quartz.example", "05/01/2026", "27/02/2026"],
        ["Faure", "Gaëtan", "BTS 2B", "Mutuelle H", "Bruno Caron", "bc@mutuelle.example", "05/01/2026", "27/02/2026"],
        ["Garcia", "Léa", "BTS 2B", "Mutuelle H", "Bruno Caron", "bc@mutuelle.example", "05/01/2026", "27/02/2026"],
    ]
}  # fmt: skip


def roster_rows(*last_names: str) -> list[list[str]]:
    """The roster lines of the students of `STUDENT_ROWS` called so, in that order."""
    return [list(STUDENT_ROWS[name]) for name in last_names]


def run(root: Path, *args: str) -> Result:
    """Run the grille CLI on campaign `root`; exceptions are never swallowed."""
    return CliRunner().invoke(cli, ["--dir", str(root), *args], catch_exceptions=False)


def make_campaign(root: Path, rows: list[list[str]], write_csv: Callable[..., Path]) -> Path:
    """`grille init` then `grille generate` on a roster written from `rows`."""
    assert run(root, "init", "--school", "Lycée Test").exit_code == 0
    roster = write_csv(root / "liste.csv", [ROSTER_HEADER, *rows])
    result = run(root, "generate", "--roster", str(roster), "--jobs", "1")
    assert result.exit_code == 0, result.output
    return root


def workbook_of(root: Path, last_name: str) -> Path:
    """The generated workbook of the student called `last_name` (upper-cased in file names)."""
    from pipeline.files import safe_name

    pattern = f"*/{safe_name(last_name).upper()}_*.xlsx"
    matches = sorted((root / "output" / "classeurs").glob(pattern))
    assert len(matches) == 1, matches
    return matches[0]


def complete_answers(grid: Grid = GRID) -> dict[str, Any]:
    """A full, valid set of answers for `grid`, keyed like its layout."""
    answers: dict[str, Any] = {}
    for index, criterion in enumerate(grid.criteria):
        answers[criterion.id] = grid.scale_codes[index % len(grid.scale_codes)]
    for dimension in grid.global_evaluation.dimensions:
        answers[dimension.id] = dimension.values[-1]
    answers["appreciation"] = (
        "Stagiaire sérieux.\nTrès bonne intégration « à l'agence » & <équipe>."
    )
    answers["date"] = date(2027, 2, 20)
    answers["signature"] = "Sophie Garnier"
    return answers


def answers_for(tutor: str, **changes: Any) -> dict[str, Any]:
    """`complete_answers`, signed by `tutor` on `DAY`; `changes` replace some answers."""
    answers = complete_answers()
    answers.update(signature=tutor, date=DAY)
    answers.update(changes)
    return answers


def fill(source: Path, target: Path, answers: dict[str, Any], grid: Grid = GRID) -> Path:
    """What a tutor does in Excel: open, type the answers (None clears), save."""
    wb = openpyxl.load_workbook(source)
    layout = plan_layout(grid)
    refs = {
        **layout.criteria,
        **layout.dimensions,
        "appreciation": layout.appreciation,
        "date": layout.date,
        "signature": layout.signature,
    }
    for key, value in answers.items():
        ref = refs[key]
        wb[ref.sheet][ref.cell].value = value
    target.parent.mkdir(parents=True, exist_ok=True)
    wb.save(target)
    return target


def without_hidden_identity(path: Path) -> Path:
    """What some spreadsheet programs do to a workbook: the hidden « _grille » sheet and the
    custom document properties gone. grille falls back on the visible identity."""
    wb = openpyxl.load_workbook(path)
    del wb["_grille"]
    wb.custom_doc_props.props = []
    wb.save(path)
    return path


def status_json(root: Path) -> dict[str, dict[str, Any]]:
    result = run(root, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    return {s["last_name"]: s for s in json.loads(result.output)["stagiaires"]}


def with_teacher_email(root: Path, email: str = "prof@lycee.example") -> Path:
    """Give campaign `root` a teacher's address (messages cannot be built without one)."""
    config = root / "grille.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('email = ""', f'email = "{email}"', 1), "utf-8")
    return root


# ------------------------------------------------------------------ a real SMTP server


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


class Server:
    """aiosmtpd handler: keeps what it accepts; can refuse or hang on chosen recipients."""

    def __init__(self) -> None:
        self.accepted: list[EmailMessage] = []
        self.refuse: set[str] = set()
        self.hang_on: str = ""
        self.hanging = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipients = set(envelope.rcpt_tos)
        if recipients & self.refuse:
            return "550 5.7.1 Refusé pour le test"
        if self.hang_on in recipients:
            self.hanging = True
            await asyncio.sleep(60)  # the sender is killed meanwhile
            return "451 trop tard"
        self.accepted.append(parse(envelope.content))
        return "250 OK"

    def count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for message in self.accepted:
            address = message["To"].addresses[0].addr_spec
            counts[address] = counts.get(address, 0) + 1
        return counts


@contextmanager
def smtp_server() -> Iterator[tuple[Server, int]]:
    """A real SMTP server on a free port of the loopback, and what it accepted."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Server()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
