"""Two classes whose names make the same file name never share a folder (real CLI, real files).

« BTS MUC 2A » and « BTS MUC (2A) » both give `BTS_MUC_2A`: each class gets its own folder,
assigned once in the database, for its workbooks, its reports and its archive; `archive` and
`purge` only take the files the database records for that class.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx
import pytest

from pipeline import state
from tests.test_collect import _answers_for
from tests.tutors import fill, make_campaign, run, status_json

YEAR = "2026-2027"
FIRST, SECOND = "BTS MUC 2A", "BTS MUC (2A)"
ROWS = [
    ["Abadie", "Chloé", FIRST, "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Bernard", "Yanis", FIRST, "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
    ["Chevallier", "Inès", SECOND, "Assurances B", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Da Silva", "Mathéo", SECOND, "Immo Quartz", "Julien Lemaître", "jl@quartz.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip
TUTORS = {"Abadie": "Sophie Garnier", "Bernard": "Marc Dubreuil",
          "Chevallier": "Sophie Garnier", "Da Silva": "Julien Lemaître"}  # fmt: skip


def _rows(root: Path, sql: str, *params: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(root / "output" / "grille.sqlite") as db:
        return db.execute(sql, params).fetchall()


def _workbook(root: Path, student_id: str) -> Path:
    rows = _rows(
        root, "SELECT file FROM workbooks WHERE student_id = ? ORDER BY id DESC", student_id
    )
    return root / rows[0][0]


def _files_under(root: Path, *folders: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for folder in folders
        for p in (root / folder).rglob("*")
        if p.is_file()
    }


@pytest.fixture
def season(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    """Two colliding classes, every workbook returned, reports written."""
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    students = status_json(root)
    for name, tutor in TUTORS.items():
        fill(
            _workbook(root, students[name]["student_id"]),
            tmp_path / "retours" / f"{name}.xlsx",
            _answers_for(tutor),
        )
    assert run(root, "collect", str(tmp_path / "retours")).exit_code == 0
    result = run(root, "report")
    assert result.exit_code == 0, result.output
    return root


def test_two_classes_with_the_same_file_name__distinct_workbook_and_report_folders(
    season: Path,
) -> None:
    students = status_json(season)
    folders = {name: _workbook(season, s["student_id"]).parent.name for name, s in students.items()}
    assert folders == {
        "Abadie": "BTS_MUC_2A",
        "Bernard": "BTS_MUC_2A",
        "Chevallier": "BTS_MUC_2A_2",
        "Da Silva": "BTS_MUC_2A_2",
    }
    assert _rows(season, "SELECT class_name, folder FROM class_folders ORDER BY folder") == [
        (FIRST, "BTS_MUC_2A"),
        (SECOND, "BTS_MUC_2A_2"),
    ]
    reports = season / "output" / "rapports"
    for folder, klass, own, other in (
        ("BTS_MUC_2A", FIRST, ("ABADIE", "BERNARD"), ("CHEVALLIER", "DA SILVA")),
        ("BTS_MUC_2A_2", SECOND, ("CHEVALLIER", "DA SILVA"), ("ABADIE", "BERNARD")),
    ):
        names = sorted(p.name for p in (reports / folder).iterdir())
        assert len(names) == 3, names
        assert f"bilan_classe_{folder}.docx" in names
        assert all(any(n.startswith(f"bilan_{o.replace(' ', '_')}_") for n in names) for o in own)
        document = docx.Document(str(reports / folder / f"bilan_classe_{folder}.docx"))
        text = "\n".join(p.text for p in document.paragraphs)
        text += "\n".join(c.text for t in document.tables for r in t.rows for c in r.cells)
        assert f"Bilan des stages — {klass}" in text
        assert all(o in text for o in own) and not any(o in text for o in other)


def test_two_classes_with_the_same_file_name__each_archive_carries_only_its_own_bilans(
    season: Path,
) -> None:
    result = run(season, "archive", "--year", YEAR)
    assert result.exit_code == 0, result.output
    year_dir = season / "output" / "archive" / YEAR
    assert sorted(p.name for p in year_dir.iterdir()) == [
        "BTS_MUC_2A",
        "BTS_MUC_2A.zip",
        "BTS_MUC_2A_2",
        "BTS_MUC_2A_2.zip",
    ]
    for name, klass, own in (
        ("BTS_MUC_2A", FIRST, {"ABADIE Chloé", "BERNARD Yanis"}),
        ("BTS_MUC_2A_2", SECOND, {"CHEVALLIER Inès", "DA SILVA Mathéo"}),
    ):
        with zipfile.ZipFile(year_dir / f"{name}.zip") as package:
            manifest = json.loads(package.read("manifeste.json"))
        assert manifest["class"] == klass
        files = manifest["files"]
        assert {i["student"] for i in files if i["kind"] == "bilan"} == own
        assert {i["student"] for i in files if i["kind"] == "retour"} == own
        assert [i["path"] for i in files if i["kind"] == "bilan_classe"] == [
            f"rapports/bilan_classe_{name}.docx"
        ]


def test_purge_of_one_class__every_file_of_the_other_class_is_left_byte_for_byte(
    season: Path,
) -> None:
    assert run(season, "archive", "--year", YEAR).exit_code == 0
    zip_first = season / "output" / "archive" / YEAR / "BTS_MUC_2A.zip"
    assert run(season, "archive", "verify", str(zip_first)).exit_code == 0
    ids_second = [r[0] for r in _rows(season, "SELECT student_id FROM students WHERE class_name = ?", SECOND)]  # fmt: skip
    second_files = {
        **_files_under(season, "output/classeurs/BTS_MUC_2A_2", "output/rapports/BTS_MUC_2A_2"),
        **_files_under(season, f"output/archive/{YEAR}"),
    }
    marks = ", ".join("?" for _ in ids_second)
    for (stored,) in _rows(
        season, f"SELECT stored_file FROM returns WHERE student_id IN ({marks})", *ids_second
    ):
        second_files[stored] = (season / stored).read_bytes()
    assert len(second_files) > 10

    result = run(season, "purge", "--class", FIRST, "--oui")

    assert result.exit_code == 0, result.output
    assert "  2 classeur(s) dans output/classeurs\n" in result.output
    assert "  3 bilan(s) dans output/rapports\n" in result.output
    for path, data in second_files.items():
        assert (season / path).read_bytes() == data, path
    assert not (season / "output" / "classeurs" / "BTS_MUC_2A").exists()
    assert not (season / "output" / "rapports" / "BTS_MUC_2A").exists()
    assert sorted(status_json(season)) == ["Chevallier", "Da Silva"]
    again = run(season, "report", "--class", SECOND)  # the other class still works as before
    assert again.exit_code == 0, again.output
    assert "a été modifié à la main" not in again.output


def test_archive_and_purge__a_file_grille_did_not_write__neither_archived_nor_deleted(
    season: Path,
) -> None:
    folder = season / "output" / "rapports" / "BTS_MUC_2A"
    stray = folder / "notes_du_professeur.docx"
    stray.write_bytes(b"mes notes")
    assert run(season, "archive", "--year", YEAR, "--class", FIRST).exit_code == 0
    zip_first = season / "output" / "archive" / YEAR / "BTS_MUC_2A.zip"
    with zipfile.ZipFile(zip_first) as package:
        assert not any("notes_du_professeur" in n for n in package.namelist())
    assert run(season, "archive", "verify", str(zip_first)).exit_code == 0

    result = run(season, "purge", "--class", FIRST, "--oui")

    assert result.exit_code == 0, result.output
    assert (
        "  Conservé — output/rapports/BTS_MUC_2A/notes_du_professeur.docx : grille ne l'a pas "
        "écrit ; supprimez-le vous-même s'il contient des données personnelles.\n"
    ) in result.output
    assert stray.read_bytes() == b"mes notes"
    assert [p.name for p in folder.iterdir()] == ["notes_du_professeur.docx"]


# ------------------------------------------------------------------ the folder of a class


def test_class_folder__same_file_name__suffix__case_insensitive__stable_across_connections(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "grille.sqlite"
    db = state.connect(db_path)
    long_a = "Classe " + "a" * 70 + " du matin"
    long_b = "Classe " + "a" * 70 + " du soir"
    names = [FIRST, SECOND, "bts muc 2a", "1ère", "1ere", "Classe 🎓", "Classe 📚",
             "Класс А", "Класс Б", long_a, long_b]  # fmt: skip
    folders = [state.class_folder(db, name) for name in names]
    assert folders == [
        "BTS_MUC_2A", "BTS_MUC_2A_2", "bts_muc_2a_3", "1ere", "1ere_2", "Classe", "Classe_2",
        "sans_nom", "sans_nom_2", "Classe_" + "a" * 53, "Classe_" + "a" * 53 + "_2",
    ]  # fmt: skip
    assert len({f.casefold() for f in folders}) == len(folders)
    db.close()
    again = state.connect(db_path)
    assert [state.class_folder(again, name) for name in reversed(names)] == folders[::-1]
    again.close()


def database_before(path: Path, first_missing: str) -> sqlite3.Connection:
    """A campaign database as grille left it before migration `first_missing` (its number)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for name, migration in state.MIGRATIONS:
        if name >= first_missing:
            break
        migration(db)
        db.execute("INSERT INTO schema_migrations VALUES (?, '2027-01-01')", (name,))
    return db


def test_migration__legacy_campaign_with_a_shared_folder__first_class_keeps_it(
    tmp_path: Path,
) -> None:
    """A campaign made before 007: the class first generated keeps its folder, the other
    class's files keep their recorded paths and its reports are told apart by student."""
    db = database_before(tmp_path / "grille.sqlite", "007")
    for sid, last, klass in (("E1", "Abadie", FIRST), ("E2", "Colin", SECOND)):
        db.execute(
            "INSERT INTO students (student_id, last_name, first_name, class_name, company, "
            "tutor_name, tutor_email, start_date, end_date, updated_at) "
            "VALUES (?, ?, 'Lou', ?, 'C', 'T', 't@x.example', '2027-01-04', '2027-02-12', '')",
            (sid, last, klass),
        )
        db.execute(
            "INSERT INTO workbooks (student_id, file, sha256, signature, grid_id, grid_version, "
            "fingerprint, template_digest, generated_at) "
            "VALUES (?, ?, '', '', 'g', '1', '', '', '')",
            (sid, f"output/classeurs/BTS_MUC_2A/{last.upper()}_Lou_{sid}.xlsx"),
        )
    for file in ("bilan_ABADIE_Lou_E1.docx", "bilan_COLIN_Lou_E2_nouveau.docx",
                 "bilan_classe_BTS_MUC_2A.docx"):  # fmt: skip
        db.execute(
            "INSERT INTO reports VALUES (?, 'x', '2027-03-01')",
            (f"output/rapports/BTS_MUC_2A/{file}",),
        )
    db.close()

    migrated = state.connect(tmp_path / "grille.sqlite")

    folders = migrated.execute("SELECT class_name, folder FROM class_folders ORDER BY folder")
    assert [tuple(row) for row in folders] == [
        (FIRST, "BTS_MUC_2A"),
        (SECOND, "BTS_MUC_2A_2"),
    ]
    reports = migrated.execute(
        "SELECT file, class_name, student_id FROM reports ORDER BY file"
    ).fetchall()
    assert [tuple(r) for r in reports] == [
        ("output/rapports/BTS_MUC_2A/bilan_ABADIE_Lou_E1.docx", FIRST, "E1"),
        ("output/rapports/BTS_MUC_2A/bilan_COLIN_Lou_E2_nouveau.docx", SECOND, "E2"),
        ("output/rapports/BTS_MUC_2A/bilan_classe_BTS_MUC_2A.docx", FIRST, None),
    ]
    migrated.close()
