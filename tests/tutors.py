"""Simulated tutors and campaigns for end-to-end tests: real files, real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.grid import Grid, load_grid
from pipeline.workbook import plan_layout

GRID = load_grid()
LAYOUT = plan_layout(GRID)
ROSTER_HEADER = ["Nom", "Prénom", "Classe", "Entreprise", "Tuteur", "Email tuteur", "Début", "Fin"]


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


def status_json(root: Path) -> dict[str, dict[str, Any]]:
    result = run(root, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    return {s["last_name"]: s for s in json.loads(result.output)["stagiaires"]}
