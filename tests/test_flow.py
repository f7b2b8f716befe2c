"""The flow from the CLI after sending: collect, report, on one process or two."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pytest

from tests.test_collect import ROWS, _answers_for
from tests.tutors import GRID, ROSTER_HEADER, fill, make_campaign, run, status_json, workbook_of

APPRECIATION = "Très bon stage « à l'agence » & <équipe>.\nDeuxième ligne : 100 % satisfait."


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def _collect_three(campaign: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "retours"
    fill(
        workbook_of(campaign, "Abadie"),
        inbox / "a.xlsx",
        _answers_for("Sophie Garnier", appreciation=APPRECIATION),
    )
    fill(
        workbook_of(campaign, "Bernard"),
        inbox / "b.xlsx",
        _answers_for("Marc Dubreuil", **{"integration.ponctualite": None}, appreciation=None),
    )
    fill(
        workbook_of(campaign, "Chevallier"),
        inbox / "c.xlsx",
        _answers_for("Sophie Garnier", **{"clientele.decouverte": "Bien"}),
    )
    assert run(campaign, "collect", str(inbox)).exit_code == 0


def _text(document: Any) -> str:
    parts = [p.text for p in document.paragraphs]
    tables = list(document.tables)
    while tables:  # tables inside tables too (the appreciations are held on one page)
        table = tables.pop(0)
        for row in table.rows:
            for cell in row.cells:
                parts.append(cell.text)
                tables.extend(cell.tables)
    return "\n".join(parts)


def _report(campaign: Path, name: str) -> Any:
    matches = list((campaign / "output" / "rapports").rglob(f"bilan_{name.upper()}_*.docx"))
    assert len(matches) == 1, matches
    return docx.Document(str(matches[0]))


def test_report__per_student_documents_match_the_collected_returns(
    campaign: Path, tmp_path: Path
) -> None:
    _collect_three(campaign, tmp_path)
    result = run(campaign, "report")
    assert result.exit_code == 0, result.output
    for name in ("DA SILVA Mathéo", "ÉTIENNE Lou", "FAURE Gaëtan", "GARCIA Léa"):
        assert f"Pas de bilan pour {name}" in result.output
    abadie = _report(campaign, "Abadie")
    text = _text(abadie)
    assert APPRECIATION in text
    assert "INCOMPLET" not in text and "INVALIDE" not in text
    answers = _answers_for("Sophie Garnier")
    marks = {}
    for table in abadie.tables:
        header = [c.text for c in table.rows[0].cells]
        if header[-4:] == ["TI", "I", "S", "TS"]:
            for row in table.rows[1:]:
                cells = [c.text for c in row.cells]
                if cells[0] != cells[-1] and any(cells[-4:]):  # not a merged heading row
                    marks[cells[0]] = header[-4 + [bool(c) for c in cells[-4:]].index(True)]
    expected = {c.label: answers[c.id] for c in GRID.criteria}
    assert marks == expected
    for dimension in GRID.global_evaluation.dimensions:
        assert dimension.descriptor(dimension.values[-1]) in text
    assert "Total : 24 / 24" in text

    bernard = _text(_report(campaign, "Bernard"))
    assert "INCOMPLET" in bernard
    assert "Ponctualité (cellule D15) : non renseigné." in bernard
    assert "(cellule A4) : non renseignée." in bernard
    chevallier = _text(_report(campaign, "Chevallier"))
    assert "INVALIDE" in chevallier
    assert "« Bien » n'est pas une note de l'échelle" in chevallier


def test_report__class_report_has_every_appreciation_and_counts_matching_the_database(
    campaign: Path, tmp_path: Path
) -> None:
    _collect_three(campaign, tmp_path)
    tracking = campaign / "output" / "suivi.xlsx"
    wb = openpyxl.load_workbook(tracking)
    ws = wb["Suivi"]
    header = [c.value for c in ws[1]]
    team = header.index("Appréciation de l'équipe pédagogique")
    for row in ws.iter_rows(min_row=2):
        if row[1].value == "CHEVALLIER":
            row[team].value = "Avis de l'équipe : stage validé."
    wb.save(tracking)
    assert run(campaign, "report").exit_code == 0
    folder = campaign / "output" / "rapports" / "BTS_2A"
    document = docx.Document(str(folder / "bilan_classe_BTS_2A.docx"))
    text = _text(document)
    assert APPRECIATION in text
    assert "Avis de l'équipe : stage validé." in text
    assert "Avis de l'équipe : stage validé." in _text(_report(campaign, "Chevallier"))
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        stored = {
            sid: json.loads(evaluation)["ratings"]
            for sid, evaluation in db.execute("SELECT student_id, evaluation FROM returns")
        }
        names = dict(db.execute("SELECT student_id, last_name FROM students"))
    summary = next(
        t
        for t in document.tables
        if [c.text for c in t.rows[0].cells][-4:] == ["TI", "I", "S", "TS"]
    )
    rows = {row.cells[0].text: [c.text for c in row.cells] for row in summary.rows[1:]}
    assert len(rows) == 3
    for student_id, ratings in stored.items():
        row = next(r for name, r in rows.items() if name.startswith(names[student_id].upper()))
        counts = [
            str(sum(1 for v in ratings.values() if v == code)) for code in ("TI", "I", "S", "TS")
        ]
        assert row[-4:] == counts


def test_report__restricted_to_a_student_and_hand_edited_report_is_kept(
    campaign: Path, tmp_path: Path
) -> None:
    _collect_three(campaign, tmp_path)
    assert run(campaign, "report").exit_code == 0
    abadie_path = next((campaign / "output" / "rapports").rglob("bilan_ABADIE_*.docx"))
    edited = docx.Document(str(abadie_path))
    edited.add_paragraph("Note manuscrite du professeur.")
    edited.save(str(abadie_path))
    student_id = status_json(campaign)["Abadie"]["student_id"]
    result = run(campaign, "report", "--student", student_id)
    assert result.exit_code == 0, result.output
    assert "a été modifié à la main : conservé" in result.output
    assert "Note manuscrite du professeur." in _text(docx.Document(str(abadie_path)))
    new = abadie_path.with_name(abadie_path.stem + "_nouveau.docx")
    assert new.exists()
    assert "écrit :" in result.output and "bilan_classe" not in result.output
    only_class = run(campaign, "report", "--class", "BTS 2B")
    assert only_class.exit_code == 0
    assert "bilan_ABADIE" not in only_class.output


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent")
def test_report__pdf_through_libreoffice_and_first_page_rendered(
    campaign: Path, tmp_path: Path
) -> None:
    _collect_three(campaign, tmp_path)
    result = run(campaign, "report", "--pdf", "--class", "BTS 2A")
    assert result.exit_code == 0, result.output
    pdfs = sorted((campaign / "output" / "rapports" / "BTS_2A").glob("*.pdf"))
    assert len(pdfs) == 4  # three students and the class
    assert all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    if shutil.which("pdftoppm"):
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "40",
                "-f",
                "1",
                "-l",
                "1",
                str(pdfs[0]),
                str(tmp_path / "p"),
            ],
            check=True,
            timeout=60,
        )
        page = next(tmp_path.glob("p*.png"))
        assert page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report__without_any_return__says_so(campaign: Path) -> None:
    result = run(campaign, "report")
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "0 bilan(s) écrit(s) dans output/rapports."
    assert len(re.findall("Pas de bilan pour", result.output)) == len(ROWS)


def test_flow__dates_used_by_tests_are_in_the_past() -> None:
    assert date(2026, 2, 20) < date.today()


def test_generate_and_collect__on_two_processes__same_results(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    rows = [
        [
            f"Élève{i:03d}",
            "Zoé",
            f"BTS {i % 3}",
            "Agence",
            "Sophie Garnier",
            "sg@x.example",
            "05/01/2026",
            "27/02/2026",
        ]
        for i in range(420)
    ]
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    roster = write_csv(tmp_path / "l.csv", [ROSTER_HEADER, *rows])
    result = run(root, "generate", "--roster", str(roster), "--jobs", "2")  # ≥ 400: processes
    assert result.exit_code == 0, result.output
    workbooks = sorted((root / "output" / "classeurs").rglob("*.xlsx"))
    assert len(workbooks) == 420
    inbox = tmp_path / "retours"
    for path in workbooks[:30]:
        fill(path, inbox / path.name, _answers_for("Sophie Garnier"))
    collected = run(root, "collect", str(inbox), "--jobs", "2")  # > one chunk: processes
    assert collected.exit_code == 0, collected.output
    statuses = [s["status"] for s in status_json(root).values()]
    assert statuses.count("complete") == 30
    assert statuses.count("generated") == 390
