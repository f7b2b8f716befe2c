"""How `grille report` writes bilans: nothing the teacher edited is replaced, and a crash
never turns grille's own file into a « hand-edited » one.

A `grille report` killed between writing a bilan and recording it (real child, SIGKILL): the
child runs the real CLI; the only thing added is a kill: right after the first
bilan's bytes are renamed into place (`atomic_write_bytes` returned), the process sends
itself SIGKILL, before grille records what it wrote. The next `grille report` must know
the file as its own: no « modifié à la main » sibling, one bilan per student in the archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import docx
import openpyxl
import pytest

from tests.test_collect import ROWS, _answers_for
from tests.tutors import fill, make_campaign, run, workbook_of

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")

YEAR = "2026-2027"
KILL_AFTER_FIRST_BILAN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from pipeline import report_files
    from pipeline.cli import cli

    write = report_files.atomic_write_bytes

    def write_then_die(path: Path, data: bytes, **options: object) -> None:
        write(path, data, **options)
        if path.name.startswith("bilan_") and path.suffix == ".docx":
            os.kill(os.getpid(), signal.SIGKILL)  # renamed into place, not yet recorded

    report_files.atomic_write_bytes = write_then_die
    cli.main(["--dir", sys.argv[1], "report"])
    """
)


def _sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _db(root: Path, sql: str, *params: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(root / "output" / "grille.sqlite") as db:
        return db.execute(sql, params).fetchall()


def _set_team_note(root: Path, text: str) -> None:
    """What the teacher does in suivi.xlsx: an appreciation for every student."""
    path = root / "output" / "suivi.xlsx"
    wb = openpyxl.load_workbook(path)
    ws = wb["Suivi"]
    column = [c.value for c in ws[1]].index("Appréciation de l'équipe pédagogique")
    for row in ws.iter_rows(min_row=2):
        row[column].value = text
    wb.save(path)


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    inbox = tmp_path / "retours"
    fill(workbook_of(root, "Abadie"), inbox / "a.xlsx", _answers_for("Sophie Garnier"))
    fill(workbook_of(root, "Bernard"), inbox / "b.xlsx", _answers_for("Marc Dubreuil"))
    fill(workbook_of(root, "Da Silva"), inbox / "d.xlsx", _answers_for("Julien Lemaître"))
    assert run(root, "collect", str(inbox)).exit_code == 0
    return root


@pytest.mark.parametrize("before", ["no report yet", "a report already written"])
def test_report_killed_after_the_rename_before_the_record__next_run_knows_its_own_file(
    campaign: Path, before: str
) -> None:
    if before == "a report already written":
        assert run(campaign, "report").exit_code == 0
        _set_team_note(campaign, "Stage validé par l'équipe.")  # the next bytes differ

    child = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_BILAN, str(campaign)],
        capture_output=True,
        timeout=300,
    )

    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    reports = campaign / "output" / "rapports"
    (killed,) = [  # the bilan written when the child died: on disk, its record not final
        p
        for p in reports.rglob("bilan_*.docx")
        if not any(
            confirmed == _sha_of(p)
            for (confirmed,) in _db(
                campaign,
                "SELECT sha256 FROM reports WHERE file = ?",
                p.relative_to(campaign).as_posix(),
            )
        )
    ]
    assert killed.is_file()

    again = run(campaign, "report")

    assert again.exit_code == 0, again.output
    assert "modifié à la main" not in again.output
    assert not list(reports.rglob("*_nouveau*"))
    assert run(campaign, "archive", "--year", YEAR).exit_code == 0
    expected = {"BTS_2A": ["ABADIE Chloé", "BERNARD Yanis"], "BTS_2B": ["DA SILVA Mathéo"]}
    for name, students in expected.items():
        zip_path = campaign / "output" / "archive" / YEAR / f"{name}.zip"
        with zipfile.ZipFile(zip_path) as package:
            manifest = json.loads(package.read("manifeste.json"))
        bilans = sorted(i["student"] for i in manifest["files"] if i["kind"] == "bilan")
        assert bilans == students, name
        assert run(campaign, "archive", "verify", str(zip_path)).exit_code == 0


def test_report__teacher_edits_the_new_version_too__it_is_kept_as_well(campaign: Path) -> None:
    assert run(campaign, "report").exit_code == 0
    original = next((campaign / "output" / "rapports").rglob("bilan_ABADIE_*.docx"))
    first_new = original.with_name(f"{original.stem}_nouveau.docx")
    second_new = original.with_name(f"{original.stem}_nouveau_2.docx")

    def edit(path: Path, note: str) -> bytes:
        document = docx.Document(str(path))
        document.add_paragraph(note)
        document.save(str(path))
        return path.read_bytes()

    edited = edit(original, "Note du professeur.")
    assert "nouvelle version dans " + first_new.name in run(campaign, "report").output
    edited_new = edit(first_new, "Seconde note du professeur.")

    result = run(campaign, "report")

    assert result.exit_code == 0, result.output
    assert f"nouvelle version dans {second_new.name}" in result.output
    assert original.read_bytes() == edited and first_new.read_bytes() == edited_new
    assert second_new.is_file()
    again = run(campaign, "report")  # the file grille wrote is its own: replaced in place
    assert f"nouvelle version dans {second_new.name}" in again.output
    assert original.read_bytes() == edited and first_new.read_bytes() == edited_new
    assert not list(original.parent.glob("*_nouveau_3*"))
