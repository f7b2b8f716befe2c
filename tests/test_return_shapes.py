"""Every shape a tutor's client gives a returned workbook is read the same way.

Each test makes a campaign with grille's own generate step, fills a workbook as a tutor
would (`tests.tutors.fill`), reshapes it at the XML level as one client saves it
(`tests.clients`, where each shape is documented), collects it with the CLI, and checks
the recorded evaluation is exactly what the tutor typed.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from pipeline.returns import Candidate, gather
from pipeline.xlsx import XlsxPackage, transitional_package
from tests import clients
from tests.hostile import excel4_sheet, excel2003_xml
from tests.tutors import (
    DAY,
    GRID,
    LAYOUT,
    answers_for,
    fill,
    make_campaign,
    needs_soffice,
    roster_rows,
    run,
    status_json,
    workbook_of,
)

ROWS = roster_rows("Abadie", "Bernard")
FIRST, SECOND = list(LAYOUT.criteria)[:2]
AUTONOMY = GRID.global_evaluation.dimensions[0]


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def answers(**changes: Any) -> dict[str, Any]:
    return answers_for("Sophie Garnier", **changes)


def expected_evaluation(typed: dict[str, Any], **read_as: Any) -> dict[str, Any]:
    """The evaluation grille must record for `typed`; `read_as` overrides some values."""
    values = {**typed, **read_as}
    return {
        "ratings": {c.id: values[c.id] for c in GRID.criteria},
        "levels": {d.id: values[d.id] for d in GRID.global_evaluation.dimensions},
        "tutor_appreciation": values["appreciation"],
        "date": DAY.isoformat(),
        "signature": values["signature"],
    }


def collect_shaped(campaign: Path, tmp_path: Path, shape: Callable[[bytes], bytes], **typed: Any):  # type: ignore[no-untyped-def]
    """Fill Abadie's workbook with `typed`, reshape it, collect it: (status, evaluation)."""
    filled = fill(workbook_of(campaign, "Abadie"), tmp_path / "rempli.xlsx", typed)
    shaped = tmp_path / "retours" / "abadie.xlsx"
    shaped.parent.mkdir()
    shaped.write_bytes(shape(filled.read_bytes()))
    result = run(campaign, "collect", str(shaped))
    assert result.exit_code == 0, result.output
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        [(evaluation,)] = db.execute("SELECT evaluation FROM returns").fetchall()
    return status_json(campaign)["Abadie"], json.loads(evaluation)


def test_excel_shared_and_rich_text_strings__read_as_their_whole_text(
    campaign: Path, tmp_path: Path
) -> None:
    typed = answers()
    rich = {
        LAYOUT.appreciation: [("Stagiaire ", False), ("sérieux", True), (" & <motivé>.", False)],
        LAYOUT.criteria[FIRST]: [("T", True), ("S", False)],
    }
    status, evaluation = collect_shaped(
        campaign, tmp_path, lambda data: clients.excel_shared_strings(data, rich), **typed
    )
    assert (status["status"], status["to_confirm"]) == ("complete", False)
    assert evaluation == expected_evaluation(
        typed, appreciation="Stagiaire sérieux & <motivé>.", **{FIRST: "TS"}
    )


def test_excel_x14_list_validations_on_a_hidden_sheet__change_nothing_read(
    campaign: Path, tmp_path: Path
) -> None:
    typed = answers()
    status, evaluation = collect_shaped(
        campaign, tmp_path, clients.excel_x14_list_validations, **typed
    )
    assert (status["status"], status["to_confirm"]) == ("complete", False)
    assert evaluation == expected_evaluation(typed)


def test_mac_excel_1904_dates__give_the_day_typed(campaign: Path, tmp_path: Path) -> None:
    typed = answers()
    shape = lambda data: clients.mac_excel_1904(data, [LAYOUT.date])  # noqa: E731
    shaped = shape(fill(workbook_of(campaign, "Abadie"), tmp_path / "x.xlsx", typed).read_bytes())
    assert clients.cell_value(shaped, LAYOUT.date) == str(46073 - 1462)  # the shape is real
    status, evaluation = collect_shaped(campaign, tmp_path, shape, **typed)
    assert (status["status"], status["invalid"]) == ("complete", [])
    assert evaluation["date"] == "2026-02-20"


def test_google_sheets_export_without_custom_properties__still_signed(
    campaign: Path, tmp_path: Path
) -> None:
    typed = answers()
    status, evaluation = collect_shaped(campaign, tmp_path, clients.google_sheets_export, **typed)
    assert (status["status"], status["to_confirm"]) == ("complete", False)
    assert evaluation == expected_evaluation(typed)


def test_libreoffice_hidden_metadata_sheet__still_signed(campaign: Path, tmp_path: Path) -> None:
    typed = answers()
    status, _ = collect_shaped(campaign, tmp_path, clients.libreoffice_hidden_metadata, **typed)
    assert (status["status"], status["to_confirm"]) == ("complete", False)


def test_formulas_with_cached_results__read_as_their_results(
    campaign: Path, tmp_path: Path
) -> None:
    typed = answers()
    formulas = {
        LAYOUT.criteria[SECOND]: ('UPPER("ts")', "TS", "str"),
        LAYOUT.dimensions[AUTONOMY.id]: ("1+2", "3", "n"),
        LAYOUT.date: ("DATE(2026,2,20)", "46073", "n"),
        LAYOUT.signature: ('"Sophie "&"Garnier"', "Sophie Garnier", "str"),
    }
    status, evaluation = collect_shaped(
        campaign, tmp_path, lambda data: clients.excel_formulas(data, formulas), **typed
    )
    assert (status["status"], status["invalid"]) == ("complete", [])
    assert evaluation == expected_evaluation(typed, **{SECOND: "TS", AUTONOMY.id: 3})


def test_values_in_lower_case_or_with_spaces__are_the_scale_codes(
    campaign: Path, tmp_path: Path
) -> None:
    """LibreOffice's list check ignores case and pasted text is kept as typed
    (FIELD-NOTES): « ts », «  S  », « Très satisfaisant », « 3 » reach grille as text."""
    typed = answers(**{FIRST: "ts", SECOND: "  S  ", AUTONOMY.id: " 3 "})
    third = list(LAYOUT.criteria)[2]
    typed[third] = "très SATISFAISANT"
    status, evaluation = collect_shaped(campaign, tmp_path, lambda data: data, **typed)
    assert (status["status"], status["invalid"]) == ("complete", [])
    assert evaluation == expected_evaluation(
        typed, **{FIRST: "TS", SECOND: "S", third: "TS", AUTONOMY.id: 3}
    )


def test_strict_open_xml__read_like_the_usual_format(campaign: Path, tmp_path: Path) -> None:
    typed = answers()
    shape = lambda data: clients.excel_strict(data, [LAYOUT.date])  # noqa: E731
    shaped = shape(fill(workbook_of(campaign, "Abadie"), tmp_path / "x.xlsx", typed).read_bytes())
    assert b"http://schemas.openxmlformats.org/spreadsheetml" not in shaped  # all Strict
    status, evaluation = collect_shaped(campaign, tmp_path, shape, **typed)
    assert (status["status"], status["to_confirm"], status["invalid"]) == ("complete", False, [])
    assert evaluation == expected_evaluation(typed)


def test_strict_open_xml__made_readable_for_openpyxl(campaign: Path, tmp_path: Path) -> None:
    filled = fill(workbook_of(campaign, "Abadie"), tmp_path / "x.xlsx", answers())
    strict = clients.excel_strict(filled.read_bytes(), [LAYOUT.date])
    with pytest.warns(UserWarning):  # openpyxl knows only the usual namespaces
        assert "Instructions" not in openpyxl.load_workbook(io.BytesIO(strict)).sheetnames
    usual = openpyxl.load_workbook(io.BytesIO(transitional_package(strict, "x.xlsx")))
    ref = LAYOUT.criteria[FIRST]
    assert usual[ref.sheet][ref.cell].value == answers()[FIRST]
    assert usual[LAYOUT.date.sheet][LAYOUT.date.cell].value.date() == DAY


def test_unusual_part_names__read_through_the_relationships(campaign: Path, tmp_path: Path) -> None:
    typed = answers()
    shaped = clients.renamed_parts(
        fill(workbook_of(campaign, "Abadie"), tmp_path / "x.xlsx", typed).read_bytes()
    )
    package = XlsxPackage(shaped, "x.xlsx")
    assert package.workbook_part == "xl/workbook2.xml"
    assert package.sheets["Instructions"].path == "xl/worksheets/Sheet_A.xml"
    status, evaluation = collect_shaped(campaign, tmp_path, clients.renamed_parts, **typed)
    assert (status["status"], status["to_confirm"]) == ("complete", False)
    assert evaluation == expected_evaluation(typed)


def test_collect__an_empty_zip_named_xlsx__is_an_error_and_exit_code_1(
    campaign: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "grille remplie.xlsx"
    with zipfile.ZipFile(empty, "w"):
        pass
    result = run(campaign, "collect", str(empty))
    assert result.exit_code == 1
    assert result.stderr == (
        f"  Erreur — {empty} : fichier « classeur » qui n'est qu'une archive zip vide : "
        "demandez au tuteur de renvoyer le classeur.\n"
    )
    assert result.stdout.startswith("0 retour(s) enregistré(s), 1 fichier(s) refusé(s)")


@pytest.mark.soffice
@needs_soffice
def test_libreoffice_flat_ods_excel2003_xml_and_excel4__converted_then_collected(
    campaign: Path, tmp_path: Path
) -> None:
    """A tutor who saves as « Classeur OpenDocument à plat (.fods) » in LibreOffice (made
    here by LibreOffice itself), an Excel 2003 XML and an Excel 4.0 sheet (LibreOffice
    cannot write those two: built from their specifications) are converted, two at a time."""
    filled = fill(workbook_of(campaign, "Abadie"), tmp_path / "abadie.xlsx", answers())
    returned = tmp_path / "retours"
    subprocess.run(
        ["soffice", "--headless", "--norestore",
         f"-env:UserInstallation={(tmp_path / 'profil').as_uri()}",
         "--convert-to", "fods", "--outdir", str(returned), str(filled)],
        check=True, capture_output=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    (returned / "excel4.xls").write_bytes(excel4_sheet({(0, 0): "Dupont", (0, 1): 3.0}))
    (returned / "tableur2003.xml").write_bytes(excel2003_xml("Martin"))
    items = list(gather([returned], jobs=2))
    assert [(c.name, c.converted_from) for c in items if isinstance(c, Candidate)] == [
        ("abadie.fods", "fods"),
        ("excel4.xls", "biff"),
        ("tableur2003.xml", "xml2003"),
    ]
    sheets = [openpyxl.load_workbook(io.BytesIO(c.data)).active for c in items[1:]]  # type: ignore[union-attr]
    assert [(s["A1"].value, s["B1"].value) for s in sheets] == [("Dupont", 3), ("Martin", None)]
    result = run(campaign, "collect", str(returned / "abadie.fods"))
    assert result.exit_code == 0, result.output
    abadie = status_json(campaign)["Abadie"]
    assert (abadie["status"], abadie["to_confirm"]) == ("complete", False)
