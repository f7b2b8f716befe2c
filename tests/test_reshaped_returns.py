"""Workbooks a tutor reshaped: sheets copied into a new workbook, rows inserted or deleted.

Each test makes a campaign with grille's generate step, fills a workbook as a tutor does
(`tests.tutors.fill`), reshapes it as a client does (`tests.clients`: where each shape is
documented), collects it with the CLI and checks that every answer recorded is the one the
tutor gave for that criterion, and what the teacher is told. A rating is never stored
against the wrong criterion: when the rows cannot be mapped for sure, the sheet is refused
by name.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import clients
from tests.tutors import (
    GRID,
    LAYOUT,
    answers_for,
    fill,
    make_campaign,
    needs_soffice,
    roster_rows,
    run,
    status_json,
    without_hidden_identity,
    workbook_of,
)

ROWS = roster_rows("Abadie", "Garcia")
SECTION = GRID.sections[0]  # « Intégration »: criteria in rows 10 to 16, one rating each
GLOBAL = GRID.global_evaluation


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def _typed() -> dict[str, Any]:
    """Every criterion rated (the four codes in turn: neighbours always differ), each
    dimension a different level."""
    typed = answers_for("Bruno Caron")
    for index, dimension in enumerate(GLOBAL.dimensions):
        typed[dimension.id] = dimension.values[index % len(dimension.values)]
    return typed


def _recorded(campaign: Path) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """(evaluation, [(item, sheet, cell)]) of the only return recorded."""
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        [(return_id, evaluation)] = db.execute("SELECT id, evaluation FROM returns").fetchall()
        cells = db.execute(
            "SELECT item_id, sheet, cell FROM answers WHERE return_id = ? ORDER BY item_id",
            (return_id,),
        ).fetchall()
    return json.loads(evaluation), cells


def _ratings(typed: dict[str, Any]) -> dict[str, Any]:
    return {c.id: typed[c.id] for c in GRID.criteria}


def _levels(typed: dict[str, Any]) -> dict[str, Any]:
    return {d.id: typed[d.id] for d in GLOBAL.dimensions}


# ------------------------------------------------------------------ copied sheets


def test_sheets_copied_by_google_sheets__copie_de__found_by_content_to_confirm(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    filled = fill(workbook_of(campaign, "Garcia"), tmp_path / "rempli.xlsx", typed)
    copy = clients.copied_into_new_workbook(
        filled, tmp_path / "retours" / "grille.xlsx", prefix="Copie de ", leave_out=(),
        reverse=True,
    )  # fmt: skip
    result = run(campaign, "collect", str(copy))
    assert result.exit_code == 0, result.output
    assert "à confirmer (retour n° 1)" in result.output
    garcia = status_json(campaign)["Garcia"]
    assert (garcia["status"], garcia["to_confirm"]) == ("complete", True)
    assert "reconnu par le nom affiché « GARCIA Léa »" in garcia["match_note"]
    assert garcia["warnings"][0] == (
        "feuilles reconnues à leur contenu (onglets renommés, ou recopiés dans un autre "
        "classeur) : « Copie de Instructions » pour « Instructions » ; « Copie de Intégration » "
        "pour « Intégration » ; « Copie de Fonctionnement » pour « Fonctionnement » ; « Copie de "
        "Clientèle » pour « Clientèle » ; « Copie de Organisation » pour « Organisation » ; "
        "« Copie de Évaluation globale » pour « Évaluation globale » ; « Copie de Appréciations » "
        "pour « Appréciations »."
    )
    evaluation, cells = _recorded(campaign)
    assert evaluation["ratings"] == _ratings(typed)
    assert evaluation["levels"] == _levels(typed)
    assert evaluation["signature"] == "Bruno Caron"
    assert ("integration.ponctualite", "Copie de Intégration", "D15") in cells


def test_sheets_copied_by_excel_into_a_new_workbook_without_instructions__name_from_each_sheet(
    campaign: Path, tmp_path: Path
) -> None:
    """Excel keeps the tab names; the Instructions sheet was left behind: the name is read
    on the « Stagiaire : … » line each sheet keeps (its last value)."""
    typed = _typed()
    filled = fill(workbook_of(campaign, "Garcia"), tmp_path / "rempli.xlsx", typed)
    copy = clients.copied_into_new_workbook(
        filled,
        tmp_path / "copie.xlsx",
        identity_line="Stagiaire : GARCIA Léa — BTS 2B — Mutuelle H",
    )
    result = run(campaign, "collect", str(copy))
    assert result.exit_code == 0, result.output
    garcia = status_json(campaign)["Garcia"]
    assert (garcia["status"], garcia["to_confirm"]) == ("complete", True)
    assert garcia["missing"] == []  # no « feuille Instructions absente »: it holds no answer
    assert _recorded(campaign)[0]["ratings"] == _ratings(typed)


def test_sheets_copied_by_libreoffice__renamed_reordered__read_by_content(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    filled = fill(workbook_of(campaign, "Garcia"), tmp_path / "rempli.xlsx", typed)
    copy = clients.copied_into_new_workbook(
        filled, tmp_path / "copie.xlsx", suffix="_2", reverse=True,
        identity_line="Stagiaire : GARCIA Léa — BTS 2B — Mutuelle H",
    )  # fmt: skip
    assert run(campaign, "collect", str(copy)).exit_code == 0
    evaluation, cells = _recorded(campaign)
    assert evaluation["ratings"] == _ratings(typed)
    assert evaluation["levels"] == _levels(typed)
    assert ("date", "Appréciations_2", "B25") in cells


def test_sheets_copied_without_any_name__refused_as_a_grid_workbook_of_nobody(
    campaign: Path, tmp_path: Path
) -> None:
    filled = fill(workbook_of(campaign, "Garcia"), tmp_path / "rempli.xlsx", _typed())
    copy = clients.copied_into_new_workbook(
        filled, tmp_path / "sans_nom.xlsx", prefix="Copie de "
    )  # Google Sheets: the line is #REF!, no Instructions sheet
    result = run(campaign, "collect", str(copy))
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"  Refusé — {copy} : classeur grille sans identité cachée ni nom de stagiaire lisible "
        "(feuilles recopiées sans la feuille Instructions ?) : impossible de savoir de quel "
        "stagiaire il s'agit. Demandez au tuteur de renvoyer le classeur qu'il a reçu."
    )


def _soffice(source: Path, out: Path, profile: Path) -> Path:
    subprocess.run(
        [
            "soffice", "--headless", "--norestore", f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(out), str(source),
        ],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    return out / f"{source.stem}.xlsx"


@pytest.mark.soffice
@needs_soffice
def test_copied_sheets_then_saved_by_libreoffice__still_read_by_content(
    campaign: Path, tmp_path: Path
) -> None:
    """The copy, opened and saved again by LibreOffice Calc (which rewrites every part,
    shared strings, styles and the external reference), reads the same."""
    typed = _typed()
    filled = fill(workbook_of(campaign, "Garcia"), tmp_path / "rempli.xlsx", typed)
    copy = clients.copied_into_new_workbook(
        filled, tmp_path / "copie.xlsx", prefix="Copie de ", reverse=True,
        identity_line="Stagiaire : GARCIA Léa — BTS 2B — Mutuelle H",
    )  # fmt: skip
    saved = _soffice(copy, tmp_path / "lo", tmp_path / "profile")
    result = run(campaign, "collect", str(saved))
    assert result.exit_code == 0, result.output
    garcia = status_json(campaign)["Garcia"]
    assert (garcia["status"], garcia["to_confirm"]) == ("complete", True)
    evaluation, _ = _recorded(campaign)
    assert evaluation["ratings"] == _ratings(typed)
    assert evaluation["levels"] == _levels(typed)


# ------------------------------------------------------------------ rows inserted or deleted


def test_a_row_inserted_in_a_section__each_rating_stays_with_its_criterion(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    clients.excel_insert_row(path, SECTION.sheet, 12, {"A": "Accueil téléphonique", "D": "TS"})
    result = run(campaign, "collect", str(path))
    assert result.exit_code == 0, result.output

    evaluation, cells = _recorded(campaign)
    assert evaluation["ratings"] == _ratings(typed)  # not shifted, « TS » of row 12 not taken
    assert ("integration.curiosite", "Intégration", "D13") in cells
    assert ("integration.connaissance_equipe", "Intégration", "D11") in cells
    garcia = status_json(campaign)["Garcia"]
    assert garcia["status"] == "complete"
    assert garcia["warnings"] == [
        "feuille « Intégration » : des lignes ont été insérées ou supprimées ; chaque réponse a "
        "été retrouvée par son libellé : « Curiosité intellectuelle, ouverture d’esprit » en "
        "ligne 13 (au lieu de 12), « Motivation et implication » en ligne 14 (au lieu de 13), "
        "« Présentation physique, tenue » en ligne 15 (au lieu de 14), « Ponctualité » en ligne "
        "16 (au lieu de 15), « Intégration à l’équipe de l’agence » en ligne 17 (au lieu de 16). "
        "Ligne(s) ajoutée(s) qui ne sont pas des critères de la grille, non lues : ligne 12 "
        "(« Accueil téléphonique »)."
    ]
    line = next(line for line in result.output.splitlines() if "des lignes ont été" in line)
    assert line.startswith("      • Attention — feuille « Intégration »")


def test_a_row_deleted_in_a_section__that_criterion_is_missing_the_others_read_right(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    clients.excel_delete_row(path, SECTION.sheet, 13)  # « Motivation et implication »
    assert run(campaign, "collect", str(path)).exit_code == 0

    evaluation, _ = _recorded(campaign)
    expected = _ratings(typed) | {"integration.motivation": None}
    assert evaluation["ratings"] == expected
    garcia = status_json(campaign)["Garcia"]
    assert garcia["status"] == "incomplete"
    assert garcia["missing"] == [
        "Phase préparatoire du stage : intégration dans l’agence › Motivation et implication : "
        "ligne introuvable dans la feuille « Intégration » (supprimée ou modifiée par le "
        "tuteur ?) : non renseigné."
    ]


def test_a_criterion_row_copied_twice__the_section_is_refused_by_name_not_guessed(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    label = SECTION.criteria[2].label  # row 12: the tutor duplicated it and rated both
    clients.excel_insert_row(path, SECTION.sheet, 13, {"A": label, "D": "TI"})
    result = run(campaign, "collect", str(path))
    assert result.exit_code == 0, result.output

    evaluation, _ = _recorded(campaign)
    assert all(evaluation["ratings"][c.id] is None for c in SECTION.criteria)
    others = [c for c in GRID.criteria if c.section_id != SECTION.id]
    assert all(evaluation["ratings"][c.id] == typed[c.id] for c in others)
    garcia = status_json(campaign)["Garcia"]
    assert garcia["status"] == "invalid"
    assert garcia["invalid"] == [
        f"feuille « Intégration » ({SECTION.title}) : des lignes ont été insérées ou "
        f"supprimées et « {label} » y figure 2 fois (lignes 12, 13) au lieu de 1 : cette "
        "partie n'est pas lue, pour ne pas attribuer une note au mauvais critère. Demandez au "
        "tuteur de reprendre le classeur envoyé, sans ajouter ni supprimer de ligne."
    ]
    assert garcia["missing"] == []  # one problem for the section, not one per criterion


def test_a_row_inserted_in_the_global_evaluation__each_level_stays_with_its_dimension(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    clients.excel_insert_row(path, GLOBAL.sheet, 9, {})
    assert run(campaign, "collect", str(path)).exit_code == 0
    evaluation, _ = _recorded(campaign)
    assert evaluation["levels"] == _levels(typed)
    assert status_json(campaign)["Garcia"]["status"] == "complete"


def test_a_column_inserted_before_the_ratings__each_rating_read_in_its_moved_column(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    clients.excel_insert_column(path, SECTION.sheet, "D", {"D10": "vu en réunion"})
    result = run(campaign, "collect", str(path))
    assert result.exit_code == 0, result.output

    evaluation, cells = _recorded(campaign)
    assert evaluation["ratings"] == _ratings(typed)
    assert ("integration.ponctualite", "Intégration", "E15") in cells
    garcia = status_json(campaign)["Garcia"]
    assert garcia["status"] == "complete"
    assert garcia["warnings"] == [
        "feuille « Intégration » : des colonnes ont été insérées ou supprimées ; les notes "
        "ont été lues dans la colonne E (au lieu de D), sous son en-tête « Tuteur (TI / I / S "
        "/ TS) »."
    ]


def test_a_column_inserted_in_the_global_evaluation__each_level_read_in_its_moved_column(
    campaign: Path, tmp_path: Path
) -> None:
    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    clients.excel_insert_column(path, GLOBAL.sheet, "B", {})
    assert run(campaign, "collect", str(path)).exit_code == 0

    evaluation, _ = _recorded(campaign)
    assert evaluation["levels"] == _levels(typed)
    assert status_json(campaign)["Garcia"]["status"] == "complete"


def test_a_rating_column_copied_twice__the_section_is_refused_by_name_not_guessed(
    campaign: Path, tmp_path: Path
) -> None:
    """The tutor inserted a column and copied the header and other ratings into it: which
    column holds the ratings cannot be told; nothing of the section is read."""
    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    header = f"{SECTION.rater}\n(TI / I / S / TS)"
    ratings = {f"D{row}": "TI" for row in range(10, 17)}
    clients.excel_insert_column(path, SECTION.sheet, "D", {"D9": header, **ratings})
    assert run(campaign, "collect", str(path)).exit_code == 0

    evaluation, _ = _recorded(campaign)
    assert all(evaluation["ratings"][c.id] is None for c in SECTION.criteria)
    others = [c for c in GRID.criteria if c.section_id != SECTION.id]
    assert all(evaluation["ratings"][c.id] == typed[c.id] for c in others)
    garcia = status_json(campaign)["Garcia"]
    assert garcia["status"] == "invalid"
    assert garcia["invalid"] == [
        f"feuille « Intégration » ({SECTION.title}) : des colonnes ont été insérées ou "
        "supprimées et l'en-tête des notes « Tuteur (TI / I / S / TS) » y figure dans les "
        "colonnes D, E : cette partie n'est pas lue, pour ne pas attribuer une note au "
        "mauvais critère. Demandez au tuteur de reprendre le classeur envoyé, sans ajouter ni "
        "supprimer de colonne."
    ]
    assert garcia["missing"] == []


def test_an_edited_label_in_place__is_still_a_warning_and_read_by_address(
    campaign: Path, tmp_path: Path
) -> None:
    """Nothing moved, one label typed over: read at its address, as before (a warning)."""
    import openpyxl

    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    wb = openpyxl.load_workbook(path)
    ref = LAYOUT.criterion_labels["integration.motivation"]
    wb[ref.sheet][ref.cell] = "Motivation"
    wb.save(path)
    assert run(campaign, "collect", str(path)).exit_code == 0
    assert _recorded(campaign)[0]["ratings"] == _ratings(typed)
    assert status_json(campaign)["Garcia"]["warnings"] == [
        "libellé du critère modifié (cellule A13) : « Motivation » au lieu de « Motivation et "
        "implication »."
    ]


def test_reading_by_content__expects_the_texts_the_template_writes() -> None:
    """`reading` takes the texts it looks for from the template itself: the identity line's
    parts, each sheet's own texts."""
    from pipeline import reading

    reference = reading._reference(GRID)
    assert (reference.line_prefix, reference.line_separator) == ("Stagiaire :", "—")
    assert "ponctualite" in reference.marks[SECTION.sheet]
    assert "ponctualite" not in reference.marks[GRID.sections[1].sheet]


def test_rows_inserted_on_the_instructions_sheet__the_name_is_found_by_its_label(
    campaign: Path, tmp_path: Path
) -> None:
    """A copy without its hidden identity whose Instructions sheet got two more rows above
    the identity block: the name is read beside the label « Stagiaire », not at B5."""

    typed = _typed()
    path = fill(workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", typed)
    without_hidden_identity(path)
    clients.excel_insert_row(path, "Instructions", 4, {"A": "Remarque", "B": "BTS 2B"})
    clients.excel_insert_row(path, "Instructions", 4, {})
    result = run(campaign, "collect", str(path))
    assert result.exit_code == 0, result.output
    garcia = status_json(campaign)["Garcia"]
    assert (garcia["status"], garcia["to_confirm"]) == ("complete", True)
    assert "reconnu par le nom affiché « GARCIA Léa »" in garcia["match_note"]
