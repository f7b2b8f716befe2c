"""`grille rebuild`: a lost database (and no backup) is rebuilt from the campaign's files.

The workbooks carry their signed identity, the returns are kept content-addressed, the
messages to the tutors are kept as .eml files with the workbooks attached, the reports
carry grille's own marks: from these (and the roster), the database comes back so that
nobody is mailed again, nothing is regenerated and every return is already collected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tutors import make_campaign, run

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Bernard", "Yanis", "BTS 2A", "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
    ["Da Silva", "Mathéo", "BTS 2B", "Immo Quartz", "Julien Lemaître", "jl@quartz.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    config = root / "grille.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('email = ""', 'email = "prof@lycee.example"'), "utf-8")
    return root


def _lose_database(root: Path) -> None:
    """The database and every backup of it, gone."""
    for path in (root / "output").glob("grille.sqlite*"):
        path.unlink()
    for path in (root / "output" / ".sauvegardes").iterdir():
        path.unlink()


def test_database_and_backups_gone__refused_with_the_rebuild_offered(campaign: Path) -> None:
    assert run(campaign, "send").exit_code == 0
    _lose_database(campaign)

    result = run(campaign, "status")

    assert result.exit_code == 1
    assert "Aucun stagiaire" not in result.output
    assert (
        "Aucune sauvegarde dans output/.sauvegardes : reconstruisez la base à partir des "
        "fichiers de la campagne (classeurs, retours, messages envoyés, bilans) avec "
        "« grille rebuild »"
    ) in result.output
    assert "\n  rebuild " in run(campaign, "--help").output
