"""The grille command line end to end: init, generate, help, bad rosters."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import click
import openpyxl
import pytest
from click.testing import CliRunner
from openpyxl.utils import get_column_letter

from pipeline.cli import cli
from pipeline.roster import read_roster
from pipeline.settings import Workspace
from pipeline.workbook import META_SHEET, plan_layout, verify_identity
from pipeline.xlsx import XlsxPackage
from tests.tutors import GRID, ROSTER_HEADER, run

LAYOUT = plan_layout(GRID)


def test_help__lists_commands_in_the_order_of_the_flow() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    commands = [
        line.split()[0]
        for line in result.output.split("Commandes:")[-1].splitlines()
        if line.startswith("  ")
    ]
    assert commands == [
        "init", "generate", "send", "collect", "confirm", "status", "remind", "report",
        "archive", "purge", "demo", "grid", "rebuild", "restore", "ui",
    ]  # fmt: skip
    assert sorted(commands) == sorted(cli.commands)
    assert "Utilisation :" in result.output


def test_help__every_command_has_a_french_help_with_an_example() -> None:
    for name, command in cli.commands.items():
        assert command.help, name
        assert "Exemple" in command.help, name
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Affiche cette aide et quitte." in result.output
        english = re.findall(
            r"\b(?:TEXT|INTEGER|RANGE|PATHS?|DIRECTORY|FILE|FLOAT)\b", result.output
        )
        assert english == [], (name, english)  # metavars are French too


def test_unknown_option__french_error_and_usage_exit_code() -> None:
    result = CliRunner().invoke(cli, ["generate", "--nope"])
    assert result.exit_code == 2
    assert "Erreur : Option inconnue : '--nope'." in result.output


def test_init__creates_config_key_and_roster_template_and_keeps_existing(tmp_path: Path) -> None:
    root = tmp_path / "c"
    first = run(root, "init", "--school", "Lycée Jean Moulin", "--deadline", "15/03/2027")
    assert first.exit_code == 0, first.output
    assert "créé : grille.toml" in first.output
    assert "créé : input_templates/roster.xlsx" in first.output
    workspace = Workspace(root)
    config = workspace.load_config()
    assert config.school == "Lycée Jean Moulin"
    assert config.deadline is not None and config.deadline.isoformat() == "2027-03-15"
    key = workspace.load_key()
    (root / "grille.toml").write_text(
        (root / "grille.toml").read_text(encoding="utf-8") + "# note du professeur\n",
        encoding="utf-8",
    )
    second = run(root, "init")
    assert second.exit_code == 0
    assert "conservé (déjà présent) : grille.toml" in second.output
    assert "# note du professeur" in (root / "grille.toml").read_text(encoding="utf-8")
    assert workspace.load_key() == key


def test_generate__without_campaign__french_error(tmp_path: Path) -> None:
    result = run(tmp_path, "generate")
    assert result.exit_code == 1
    assert result.output.startswith("Erreur : Aucune campagne dans")


THIRTY_STUDENTS = Path(__file__).parent / "data" / "classe_30.csv"  # a real class's size


def _thirty_student_campaign(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "campagne"
    assert run(root, "init").exit_code == 0
    roster = root / "input_templates" / "classe.csv"
    shutil.copyfile(THIRTY_STUDENTS, roster)
    return root, roster


def test_generate__thirty_students__faithful_locked_signed_workbooks(tmp_path: Path) -> None:
    root, roster = _thirty_student_campaign(tmp_path)
    result = run(root, "generate", "--roster", str(roster), "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "30 classeur(s) créé(s), 0 régénéré(s), 0 inchangé(s), dans output/classeurs."
    )
    students = read_roster(roster).students
    files = sorted((root / "output" / "classeurs").rglob("*.xlsx"))
    assert len(files) == 30
    assert len({f.name for f in files}) == 30 or len({f.parent for f in files}) == 2
    key = Workspace(root).load_key()
    by_id = {s.student_id: s for s in students}
    seen_ids = set()
    for path in files:
        wb = openpyxl.load_workbook(path)
        meta_ws = wb[META_SHEET]
        meta = {meta_ws[f"A{r}"].value: meta_ws[f"B{r}"].value for r in range(1, 7)}
        assert verify_identity(key, meta), path
        student = by_id[meta["student_id"]]
        seen_ids.add(student.student_id)
        assert (
            wb["Instructions"][LAYOUT.identity["student_name"].cell].value == student.display_name
        )
        assert wb["Instructions"][LAYOUT.identity["company"].cell].value == student.company
        labels = [wb[ref.sheet][ref.cell].value for ref in LAYOUT.criterion_labels.values()]
        assert labels == [c.label for c in GRID.criteria]
        formulas = {}
        for ws in wb.worksheets:
            for dv in ws.data_validations.dataValidation:
                for cell in str(dv.sqref).split():
                    formulas[(ws.title, cell)] = dv.formula1
        ratings = [formulas[(r.sheet, r.cell)] for r in LAYOUT.criteria.values()]
        assert ratings == ['"TI,I,S,TS"'] * 44
        levels = [formulas[(r.sheet, r.cell)] for r in LAYOUT.dimensions.values()]
        assert levels == [
            '"0,1,2,3"', '"0,1,3,4"', '"0,1,3,4"', '"0,1,3,4"', '"0,1,2,3"', '"0,1,2,3"', '"0,1,2,3"'
        ]  # fmt: skip
        for ref in LAYOUT.criteria.values():
            assert not wb[ref.sheet][ref.cell].protection.locked
        assert wb[LAYOUT.criterion_labels["integration.ponctualite"].sheet][
            LAYOUT.criterion_labels["integration.ponctualite"].cell
        ].protection.locked
    assert seen_ids == set(by_id)
    homonyms = [s for s in students if (s.last_name, s.first_name) == ("Martin", "Lucas")]
    assert {s.class_name for s in homonyms} == {"BTS MUC 2A", "BTS MUC 2B"}


def test_generate__rerun_is_idempotent_and_reports_changed_and_removed_lines(
    tmp_path: Path,
) -> None:
    root, roster = _thirty_student_campaign(tmp_path)
    assert run(root, "generate", "--roster", str(roster)).exit_code == 0
    files = sorted((root / "output" / "classeurs").rglob("*.xlsx"))
    before = {f: f.stat().st_mtime_ns for f in files}
    again = run(root, "generate", "--roster", str(roster))
    assert again.output.splitlines()[-1] == (
        "0 classeur(s) créé(s), 0 régénéré(s), 30 inchangé(s), dans output/classeurs."
    )
    assert {f: f.stat().st_mtime_ns for f in files} == before
    lines = roster.read_text(encoding="utf-8-sig").splitlines()
    header, first, _second, *rest = lines
    changed = first.replace("Agence Horizon Immobilier", "Agence Horizon Immobilier Sud")
    roster.write_text("\n".join([header, changed, *rest]) + "\n", encoding="utf-8")
    third = run(root, "generate", "--roster", str(roster))
    assert third.exit_code == 0, third.output
    out = third.output.splitlines()
    assert out[-1] == "0 classeur(s) créé(s), 1 régénéré(s), 28 inchangé(s), dans output/classeurs."
    assert any(
        line.startswith("  régénéré (ligne de la liste modifiée) : ABADIE Chloé") for line in out
    )
    assert any("BERNARD Yanis (BTS MUC 2A) n'est plus dans la liste" in line for line in out)


def _bad(tmp_path: Path, name: str, content: bytes) -> tuple[Path, Path]:
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    path = tmp_path / name
    path.write_bytes(content)
    return root, path


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows([ROSTER_HEADER, *rows])
    return buffer.getvalue().encode("utf-8")


GOOD = [
    "Dupont",
    "Jean",
    "BTS 2A",
    "Acme",
    "Paul Tuteur",
    "p@acme.example",
    "05/01/2027",
    "26/02/2027",
]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [[*GOOD[:5], "paul.acme.example", *GOOD[6:]]],
            ["ligne 2, colonne Email tuteur : adresse e-mail invalide"],
        ),
        (
            [[*GOOD[:6], "26/02/2027", "05/01/2027"]],
            ["ligne 2, colonne Fin : la date de fin (05/01/2027) n'est pas après la date de début"],
        ),
        (
            [GOOD, [*GOOD[:3], "Autre", *GOOD[4:]]],
            ["ligne 3, colonne Nom : doublon de la ligne 2"],
        ),
        (
            [["Dupont\r\nX", *GOOD[1:]]],
            ["ligne 2, colonne Nom : retour à la ligne dans « Dupont↵↵X »"],
        ),
    ],
    ids=["bad_email", "end_before_start", "duplicate", "crlf_in_name"],
)
def test_generate__bad_roster__french_problems_exit_2_nothing_written(
    tmp_path: Path, rows: list[list[str]], expected: list[str]
) -> None:
    root, roster = _bad(tmp_path, "liste.csv", _csv(rows))
    result = run(root, "generate", "--roster", str(roster))
    assert result.exit_code == 2, result.output
    assert "aucun classeur n'a été produit" in result.output
    for text in expected:
        assert f"liste.csv, {text}" in result.output, result.output
    assert not (root / "output" / "classeurs").exists()
    assert "Traceback" not in result.output


def test_generate__missing_column__exit_2(tmp_path: Path) -> None:
    content = "\n".join([";".join(ROSTER_HEADER[:-1]), ";".join(GOOD[:-1])]).encode("utf-8")
    root, roster = _bad(tmp_path, "liste.csv", content)
    result = run(root, "generate", "--roster", str(roster))
    assert result.exit_code == 2
    assert "Fin" in result.output
    assert not (root / "output" / "classeurs").exists()


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("vide.csv", b"", "vide"),
        ("liste.xlsx", b"", "vide"),
        ("liste.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, ".xlsx"),
        ("hasard.xlsx", bytes(range(256)) * 8, "Erreur"),
    ],
)
def test_generate__unreadable_roster_file__french_message_exit_2(
    tmp_path: Path, name: str, content: bytes, fragment: str
) -> None:
    root, roster = _bad(tmp_path, name, content)
    result = run(root, "generate", "--roster", str(roster))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Erreur : ")
    assert fragment in result.output
    assert not (root / "output" / "classeurs").exists()


def test_generate__ods_renamed_xlsx__french_message_exit_2(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    root, roster = _bad(tmp_path, "liste.xlsx", buffer.getvalue())
    result = run(root, "generate", "--roster", str(roster))
    assert result.exit_code == 2
    assert "OpenDocument (.ods)" in result.output
    assert not (root / "output" / "classeurs").exists()


def test_python_m_pipeline__runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "grille" in result.stdout


def test_demo__as_the_readme_runs_it__relative_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README's first command runs; tests/test_demo.py checks every artefact."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    demo = tmp_path / "output" / "demo" / "output"
    assert len(list((demo / "classeurs").rglob("*.xlsx"))) == 12
    assert len(list((demo / "rapports").rglob("bilan_classe_*.docx"))) == 2
    assert (demo / "suivi.xlsx").is_file()
    assert "Terminé. À regarder :" in result.output


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent")
def test_workbook_resaved_by_libreoffice__keeps_identity_and_validations(tmp_path: Path) -> None:
    root, roster = _thirty_student_campaign(tmp_path)
    assert run(root, "generate", "--roster", str(roster)).exit_code == 0
    source = sorted((root / "output" / "classeurs").rglob("*.xlsx"))[0]
    out = tmp_path / "lo"
    subprocess.run(
        [
            "soffice", "--headless", "--norestore",
            f"-env:UserInstallation=file://{tmp_path}/profile",
            "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(out), str(source),
        ],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    resaved = out / source.name
    package = XlsxPackage(resaved.read_bytes(), resaved.name)
    from pipeline.workbook import read_identity

    meta, properties, state = read_identity(package)
    key = Workspace(root).load_key()
    assert verify_identity(key, meta) and verify_identity(key, properties)
    assert state in ("hidden", "veryHidden")
    wb = openpyxl.load_workbook(resaved)
    formulas = {
        (ws.title, f"{get_column_letter(col)}{row}"): dv.formula1
        for ws in wb.worksheets
        for dv in ws.data_validations.dataValidation
        for cell_range in dv.sqref.ranges
        for col, row in (
            (c, r)
            for r in range(cell_range.min_row, cell_range.max_row + 1)
            for c in range(cell_range.min_col, cell_range.max_col + 1)
        )
    }
    assert [formulas.get((r.sheet, r.cell)) for r in LAYOUT.dimensions.values()][1] == '"0,1,3,4"'
    assert all(formulas.get((r.sheet, r.cell)) == '"TI,I,S,TS"' for r in LAYOUT.criteria.values())
    assert wb["Instructions"]["B12"].value.endswith('" / 54 champs renseignés"')
    computed = openpyxl.load_workbook(resaved, data_only=True)  # values LibreOffice calculated
    assert computed["Instructions"]["B12"].value == "0 / 54 champs renseignés"
    name = computed["Instructions"]["B5"].value
    assert computed["Clientèle"]["A2"].value.startswith(f"Stagiaire : {name} — ")


def test_click_is_french_for_usage_errors() -> None:
    assert click.exceptions._("Error: {message}") == "Erreur : {message}"  # type: ignore[attr-defined]


Writer = Callable[..., Path]


def test_repository_templates__roster_and_report_template_are_usable() -> None:
    root = Path(__file__).parent.parent / "input_templates"
    roster = read_roster(root / "roster.xlsx")
    assert roster.students == []
    assert [p.code for p in roster.problems] == ["example_row"]
    import docx

    document = docx.Document(str(root / "modele_rapport.docx"))
    assert document.sections[0].page_width is not None
