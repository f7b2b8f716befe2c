"""The teacher's columns of `output/suivi.xlsx` are never lost.

Each test edits a real suivi.xlsx with openpyxl the way a teacher does in Excel (deletes a
column, inserts a title row, moves columns, types on row 5,500…), then runs a real grille
command that rewrites it, and checks that what she typed is still there, in the database
and in the new file, or that the old file was kept aside with a French message.
"""

from __future__ import annotations

import io
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from pipeline import state
from pipeline.errors import GrilleError
from tests.test_collect import ROWS, _answers_for
from tests.tutors import fill, make_campaign, run, workbook_of

NOTES = "Notes du professeur"
TEAM = "Appréciation de l'équipe pédagogique"


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def _tracking(campaign: Path) -> Path:
    return campaign / "output" / "suivi.xlsx"


def _edit(campaign: Path, change: Callable[[Worksheet], None]) -> None:
    """Open suivi.xlsx, let `change` edit its sheet, save it: what the teacher does."""
    path = _tracking(campaign)
    wb = openpyxl.load_workbook(path)
    change(wb["Suivi"])
    wb.save(path)


def _header(ws: Worksheet, row: int = 1) -> list[Any]:
    return [c.value for c in ws[row]]


def _type(ws: Worksheet, last_name: str, texts: dict[str, str], header_row: int = 1) -> None:
    """Type `texts` ({header: text}) on the row of the student called `last_name`."""
    header = _header(ws, header_row)
    name = header.index("Nom")
    for row in ws.iter_rows(min_row=header_row + 1):
        if row[name].value == last_name:
            for title, text in texts.items():
                row[header.index(title)].value = text
            return
    raise AssertionError(f"{last_name} absent de suivi.xlsx")


def _rows(campaign: Path) -> dict[str, dict[str, Any]]:
    """The rows of the freshly written suivi.xlsx, by upper-cased last name."""
    wb = openpyxl.load_workbook(_tracking(campaign), read_only=True)
    rows = wb["Suivi"].iter_rows(values_only=True)
    header = next(rows)
    found = {}
    for row in rows:
        values = dict(zip(header, row, strict=True))
        found[values["Nom"]] = values
    wb.close()
    return found


def _rewrite(campaign: Path, tmp_path: Path) -> str:
    """A command that rewrites suivi.xlsx (collect on an empty folder); its whole output."""
    empty = tmp_path / "rien"
    empty.mkdir(exist_ok=True)
    result = run(campaign, "collect", str(empty))
    assert result.exit_code == 0, result.output
    return result.output


def _kept_aside(campaign: Path) -> list[Path]:
    return sorted((campaign / "output").glob("suivi_*.xlsx"))


def _db_notes(campaign: Path) -> dict[str, tuple[str, str]]:
    """Teacher notes in the database, by upper-cased last name."""
    db = state.connect(campaign / "output" / "grille.sqlite")
    try:
        names = {
            r[0]: r[1].upper() for r in db.execute("SELECT student_id, last_name FROM students")
        }
        return {
            names[sid]: (note.notes, note.team_appreciation)
            for sid, note in state.teacher_notes(db).items()
        }
    finally:
        db.close()


def test_tracking__notes_kept_when_the_identifiant_column_is_deleted(
    campaign: Path, tmp_path: Path
) -> None:
    def change(ws: Worksheet) -> None:
        _type(ws, "ABADIE", {NOTES: "Appeler le tuteur lundi", TEAM: "Stage très réussi."})
        _type(ws, "GARCIA", {NOTES: "Rapport en retard"})
        ws.delete_cols(1)  # the Identifiant column

    _edit(campaign, change)
    output = _rewrite(campaign, tmp_path)
    rows = _rows(campaign)
    assert (rows["ABADIE"][NOTES], rows["ABADIE"][TEAM]) == (
        "Appeler le tuteur lundi",
        "Stage très réussi.",
    )
    assert rows["GARCIA"][NOTES] == "Rapport en retard"
    assert rows["BERNARD"][NOTES] is None
    assert rows["ABADIE"]["Identifiant"]  # the column is back
    assert _db_notes(campaign)["ABADIE"] == ("Appeler le tuteur lundi", "Stage très réussi.")
    assert _kept_aside(campaign) == []  # everything was matched: nothing to keep aside
    assert "suivi.xlsx" not in output.split("Suivi :")[0]


def test_tracking__notes_kept_when_a_title_row_is_inserted_above_the_header(
    campaign: Path, tmp_path: Path
) -> None:
    def change(ws: Worksheet) -> None:
        _type(ws, "BERNARD", {NOTES: "Absent le 12/01", TEAM: "Bon stage"})
        ws.insert_rows(1, amount=2)
        ws["A1"] = "Suivi des stages — BTS 2026"

    _edit(campaign, change)
    output = _rewrite(campaign, tmp_path)
    rows = _rows(campaign)
    assert (rows["BERNARD"][NOTES], rows["BERNARD"][TEAM]) == ("Absent le 12/01", "Bon stage")
    assert _header(openpyxl.load_workbook(_tracking(campaign))["Suivi"])[0] == "Identifiant"
    # her title is text grille cannot put back: the old file is kept aside, and she is told
    [aside] = _kept_aside(campaign)
    assert openpyxl.load_workbook(aside)["Suivi"]["A1"].value == "Suivi des stages — BTS 2026"
    assert f"conservé tel quel sous output/{aside.name}" in output
    assert "cellule A1 (au-dessus des en-têtes)" in output


def test_tracking__notes_kept_when_columns_are_moved(campaign: Path, tmp_path: Path) -> None:
    def change(ws: Worksheet) -> None:
        _type(ws, "CHEVALLIER", {NOTES: "=Relancer", TEAM: "Très bonne intégration"})
        header = _header(ws)
        # cut the two teacher columns and insert them first (Excel: cut, insert cut cells)
        for title in (TEAM, NOTES):
            source = header.index(title) + 1
            ws.insert_cols(1)
            source += 1
            letter = openpyxl.utils.get_column_letter(source)
            ws.move_range(f"{letter}1:{letter}{ws.max_row}", cols=1 - source)
            ws.delete_cols(source)
            header = _header(ws)
        # and the Identifiant column to the end
        ws.move_range(f"C1:C{ws.max_row}", cols=ws.max_column + 1 - 3)
        ws.delete_cols(3)

    _edit(campaign, change)
    header = _header(openpyxl.load_workbook(_tracking(campaign))["Suivi"])
    assert header[:3] == [NOTES, TEAM, "Nom"] and header[-1] == "Identifiant"
    _rewrite(campaign, tmp_path)
    rows = _rows(campaign)
    assert (rows["CHEVALLIER"][NOTES], rows["CHEVALLIER"][TEAM]) == (
        "=Relancer",
        "Très bonne intégration",
    )
    ws = openpyxl.load_workbook(_tracking(campaign))["Suivi"]
    letter = openpyxl.utils.get_column_letter(_header(ws).index(NOTES) + 1)
    cell = next(c for c in ws[letter] if c.value == "=Relancer")
    assert cell.data_type == "s"  # still text, never a formula
    assert _kept_aside(campaign) == []


def _add_students(campaign: Path, count: int) -> None:
    """Add `count` students to the campaign's database, as a big roster would."""
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        db.executemany(
            "INSERT INTO students (student_id, last_name, first_name, class_name, company, "
            "tutor_name, tutor_email, start_date, end_date, updated_at) "
            "VALUES (?, ?, ?, ?, 'Entreprise', 'Tuteur', 't@example.org', '2026-01-05', "
            "'2026-02-27', '2026-01-01 00:00:00')",
            [(f"X{i:05d}", f"Nom{i:05d}", "Prénom", f"BTS {i % 40}") for i in range(count)],
        )


def test_tracking__notes_kept_beyond_5000_rows(campaign: Path, tmp_path: Path) -> None:
    _add_students(campaign, 6000)
    _rewrite(campaign, tmp_path)

    names = {}

    def change(ws: Worksheet) -> None:
        header = _header(ws)
        for row_index in (5500, 6007):
            ws.cell(row=row_index, column=header.index(NOTES) + 1, value=f"Note {row_index}")
            names[row_index] = ws.cell(row=row_index, column=header.index("Nom") + 1).value

    _edit(campaign, change)
    _rewrite(campaign, tmp_path)
    rows = _rows(campaign)
    assert len(rows) == 6007
    assert rows[names[5500]][NOTES] == "Note 5500"
    assert rows[names[6007]][NOTES] == "Note 6007"
    assert _kept_aside(campaign) == []


def test_tracking__unrecognisable_sheet_is_kept_aside_with_a_french_message(
    campaign: Path, tmp_path: Path
) -> None:
    def change(ws: Worksheet) -> None:
        _type(ws, "FAURE", {NOTES: "Voir avec la famille"})
        for cell in ws[1]:
            cell.value = f"Colonne {cell.column}"  # her own headers: grille finds none

    _edit(campaign, change)
    before = _tracking(campaign).read_bytes()
    output = _rewrite(campaign, tmp_path)
    [aside] = _kept_aside(campaign)
    assert aside.read_bytes() == before
    assert aside.name.startswith("suivi_20") and len(aside.stem) == len("suivi_AAAA-MM-JJ_hhmm")
    assert (
        "Attention — output/suivi.xlsx : aucune ligne d'en-têtes reconnue (« Identifiant », "
        "ou « Nom » et « Prénom ») dans les 20 premières lignes" in output
    )
    assert f"conservé tel quel sous output/{aside.name}" in output
    assert _rows(campaign)["FAURE"][NOTES] is None  # the fresh one: what the database holds
    # the same thing again never replaces the first copy
    _edit(campaign, lambda ws: ws.delete_rows(1))
    _rewrite(campaign, tmp_path)
    assert aside.read_bytes() == before


def test_tracking__text_on_a_row_of_no_known_student_keeps_the_file_aside(
    campaign: Path, tmp_path: Path
) -> None:
    def change(ws: Worksheet) -> None:
        _type(ws, "ABADIE", {NOTES: "Bien"})
        header = _header(ws)
        ws.append(
            {header.index("Nom") + 1: "INCONNU", header.index(NOTES) + 1: "Note sans stagiaire"}
        )

    _edit(campaign, change)
    output = _rewrite(campaign, tmp_path)
    [aside] = _kept_aside(campaign)
    assert f"conservé tel quel sous output/{aside.name}" in output
    assert "ligne 9 : stagiaire introuvable (INCONNU)" in output
    assert _rows(campaign)["ABADIE"][NOTES] == "Bien"  # the matched rows are read all the same
    assert "INCONNU" not in _rows(campaign)


def test_tracking__notes_survive_several_commands(campaign: Path, tmp_path: Path) -> None:
    _edit(campaign, lambda ws: _type(ws, "DA SILVA", {NOTES: "Première note"}))
    _rewrite(campaign, tmp_path)
    _edit(campaign, lambda ws: _type(ws, "ÉTIENNE", {TEAM: "Équipe : avis favorable"}))
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier")
    )
    assert run(campaign, "collect", str(filled)).exit_code == 0
    assert run(campaign, "report").exit_code == 0
    config = campaign / "grille.toml"
    config.write_text(
        config.read_text("utf-8").replace('email = ""', 'email = "prof@lycee.example"'), "utf-8"
    )
    assert run(campaign, "send").exit_code == 0
    _rewrite(campaign, tmp_path)
    rows = _rows(campaign)
    assert rows["DA SILVA"][NOTES] == "Première note"
    assert rows["ÉTIENNE"][TEAM] == "Équipe : avis favorable"
    assert rows["ABADIE"]["Statut"] == "complet"
    assert rows["DA SILVA"]["Statut"] == "message prêt"
    assert _db_notes(campaign)["DA SILVA"] == ("Première note", "")
    assert _kept_aside(campaign) == []


def test_tracking__team_appreciation_in_the_bilan_after_suivi_is_rewritten(
    campaign: Path, tmp_path: Path
) -> None:
    filled = fill(
        workbook_of(campaign, "Bernard"), tmp_path / "b.xlsx", _answers_for("Marc Dubreuil")
    )
    assert run(campaign, "collect", str(filled)).exit_code == 0

    def change(ws: Worksheet) -> None:
        _type(ws, "BERNARD", {TEAM: "L'équipe salue un stage exemplaire."})
        ws.delete_cols(1)

    _edit(campaign, change)
    _rewrite(campaign, tmp_path)
    assert run(campaign, "report").exit_code == 0
    [bilan] = (campaign / "output" / "rapports").rglob("bilan_BERNARD_*.docx")
    text = "\n".join(
        [p.text for p in docx.Document(str(bilan)).paragraphs]
        + [c.text for t in docx.Document(str(bilan)).tables for r in t.rows for c in r.cells]
    )
    assert "L'équipe salue un stage exemplaire." in text


def _set_in_database(campaign: Path, last_name: str, **texts: str) -> None:
    """What the web interface will do: set a student's notes in the database."""
    db = state.connect(campaign / "output" / "grille.sqlite")
    try:
        [(student_id,)] = db.execute(
            "SELECT student_id FROM students WHERE last_name = ?", (last_name,)
        ).fetchall()
        assert state.set_teacher_note(db, student_id, source="interface", **texts)
    finally:
        db.close()


def _history(campaign: Path, last_name: str) -> list[tuple[str, str, str, str, bool]]:
    db = state.connect(campaign / "output" / "grille.sqlite")
    try:
        [(student_id,)] = db.execute(
            "SELECT student_id FROM students WHERE last_name = ?", (last_name,)
        ).fetchall()
        return [
            (c.field, c.old_value, c.new_value, c.source, c.conflict)
            for c in state.teacher_note_history(db, student_id)
        ]
    finally:
        db.close()


def test_tracking__a_database_edit_reaches_the_file_and_is_not_undone_by_it(
    campaign: Path, tmp_path: Path
) -> None:
    _edit(campaign, lambda ws: _type(ws, "FAURE", {NOTES: "Tapé dans Excel"}))
    _rewrite(campaign, tmp_path)
    _set_in_database(campaign, "Faure", team_appreciation="Écrit dans l'interface")
    _set_in_database(campaign, "Garcia", notes="=1+1")
    output = _rewrite(campaign, tmp_path)  # the file still holds the old (empty) texts
    rows = _rows(campaign)
    assert (rows["FAURE"][NOTES], rows["FAURE"][TEAM]) == (
        "Tapé dans Excel",
        "Écrit dans l'interface",
    )
    assert rows["GARCIA"][NOTES] == "=1+1"
    assert _db_notes(campaign)["FAURE"] == ("Tapé dans Excel", "Écrit dans l'interface")
    assert "Attention" not in output
    db = state.connect(campaign / "output" / "grille.sqlite")
    with pytest.raises(GrilleError, match="Stagiaire « X999 » inconnu de la campagne"):
        state.set_teacher_note(db, "X999", source="interface", notes="Perdu ?")
    db.close()


def test_tracking__edited_on_both_sides__the_file_wins_and_the_other_text_is_kept(
    campaign: Path, tmp_path: Path
) -> None:
    _edit(campaign, lambda ws: _type(ws, "ABADIE", {NOTES: "Version 1"}))
    _rewrite(campaign, tmp_path)
    _set_in_database(campaign, "Abadie", notes="Version de l'interface")
    _edit(campaign, lambda ws: _type(ws, "ABADIE", {NOTES: "Version d'Excel"}))
    output = _rewrite(campaign, tmp_path)
    assert _rows(campaign)["ABADIE"][NOTES] == "Version d'Excel"
    assert _db_notes(campaign)["ABADIE"] == ("Version d'Excel", "")
    assert _history(campaign, "Abadie") == [
        ("notes", "Version 1", "Version de l'interface", "interface", False),
        ("notes", "Version de l'interface", "Version d'Excel", "suivi.xlsx", True),
    ]
    assert (
        "Attention — ABADIE Chloé (BTS 2A) : « Notes du professeur » a été modifié à la fois "
        "dans suivi.xlsx et ailleurs ; le texte de suivi.xlsx est gardé, l'autre est conservé "
        "dans l'historique des notes." in output
    )
    # a cleared cell clears the note; the text stays in the history
    _edit(campaign, lambda ws: _type(ws, "ABADIE", {NOTES: ""}))
    _rewrite(campaign, tmp_path)
    assert _rows(campaign)["ABADIE"][NOTES] is None
    assert _history(campaign, "Abadie")[-1] == ("notes", "Version d'Excel", "", "suivi.xlsx", False)


def test_tracking__purge_deletes_the_class_notes_and_keeps_no_copy_of_them(
    campaign: Path, tmp_path: Path
) -> None:
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier")
    )
    assert run(campaign, "collect", str(filled)).exit_code == 0
    assert run(campaign, "report").exit_code == 0
    _edit(campaign, lambda ws: _type(ws, "BERNARD", {NOTES: "Note personnelle"}))
    _rewrite(campaign, tmp_path)
    _edit(campaign, lambda ws: _type(ws, "ABADIE", {TEAM: "Tapé juste avant l'archive"}))
    assert run(campaign, "archive", "--year", "2026-2027", "--class", "BTS 2A").exit_code == 0
    [archived] = (campaign / "output" / "archive").rglob("BTS_2A.zip")
    with zipfile.ZipFile(archived) as package:
        ws = openpyxl.load_workbook(io.BytesIO(package.read("suivi.xlsx")))["Suivi"]
    texts = {c.value for row in ws.iter_rows() for c in row}
    assert {"Note personnelle", "Tapé juste avant l'archive"} <= texts
    assert run(campaign, "archive", "verify", str(archived)).exit_code == 0

    result = run(campaign, "purge", "--class", "BTS 2A", "--oui")

    assert result.exit_code == 0, result.output
    assert "Attention" not in result.output
    assert _kept_aside(campaign) == []  # no copy of the purged class's notes
    assert set(_rows(campaign)) == {"DA SILVA", "ÉTIENNE", "FAURE", "GARCIA"}
    assert _db_notes(campaign) == {}
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM teacher_note_history").fetchone() == (0,)


def test_tracking__a_column_of_her_own_keeps_the_file_aside(campaign: Path, tmp_path: Path) -> None:
    def change(ws: Worksheet) -> None:
        _type(ws, "GARCIA", {NOTES: "Dossier complet"})
        ws.cell(row=1, column=ws.max_column + 1, value="Remarques")
        ws.cell(row=3, column=ws.max_column, value="À revoir en juin")

    _edit(campaign, change)
    output = _rewrite(campaign, tmp_path)
    [aside] = _kept_aside(campaign)
    assert openpyxl.load_workbook(aside)["Suivi"]["T3"].value == "À revoir en juin"
    assert (
        "du texte que grille ne sait pas rattacher à un stagiaire ni à une de ses colonnes "
        "(colonne T « Remarques », inconnue de grille)" in output
    )
    assert _rows(campaign)["GARCIA"][NOTES] == "Dossier complet"
    assert "Remarques" not in _header(openpyxl.load_workbook(_tracking(campaign))["Suivi"])
    _rewrite(campaign, tmp_path)  # the new file holds nothing unknown: no second copy
    assert _kept_aside(campaign) == [aside]
