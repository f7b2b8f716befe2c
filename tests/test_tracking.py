"""The teacher's columns of `output/suivi.xlsx` are never lost.

Each test edits a real suivi.xlsx with openpyxl the way a teacher does in Excel (deletes a
column, inserts a title row, moves columns, types on row 5,500…), then runs a real grille
command that rewrites it, and checks that what she typed is still there, in the database
and in the new file, or that the old file was kept aside with a French message.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import docx
import openpyxl
import pytest
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from pipeline import office, state, tracking
from pipeline.errors import GrilleError
from tests.test_collect import ROWS, _answers_for
from tests.tutors import GRID, fill, make_campaign, run, workbook_of

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


def test_tracking__the_file_grille_wrote_untouched__not_read_back_an_edited_one_is(
    campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading suivi.xlsx back costs ≈ 0.7 s for 1,000 students: a file byte for byte the
    one grille wrote last holds nothing she typed, and is not read; one she saved is."""
    reads: list[Path] = []
    real = tracking.read_tracking_sheet

    def counted(path: Path, db: sqlite3.Connection) -> Any:
        reads.append(path)
        return real(path, db)

    monkeypatch.setattr(tracking, "read_tracking_sheet", counted)
    _rewrite(campaign, tmp_path)
    assert reads == []  # the file `make_campaign` left is the one grille wrote
    _set_in_database(campaign, "Da Silva", notes="Tapée dans l'interface")
    _rewrite(campaign, tmp_path)
    assert reads == []
    assert _rows(campaign)["DA SILVA"][NOTES] == "Tapée dans l'interface"
    _edit(campaign, lambda ws: _type(ws, "ÉTIENNE", {TEAM: "Avis de l'équipe"}))
    _rewrite(campaign, tmp_path)
    assert reads == [_tracking(campaign)]
    assert _db_notes(campaign)["ÉTIENNE"] == ("", "Avis de l'équipe")
    assert _rows(campaign)["DA SILVA"][NOTES] == "Tapée dans l'interface"
    db = state.connect(campaign / "output" / "grille.sqlite")
    try:
        written = state.tracking_file_written(db)
    finally:
        db.close()
    assert written == hashlib.sha256(_tracking(campaign).read_bytes()).hexdigest()


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
    body = docx.Document(str(bilan)).element.body
    text = "\n".join(Paragraph(p, None).text for p in body.iter(qn("w:p")))  # tables in tables
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
    added = []

    def change(ws: Worksheet) -> None:
        _type(ws, "GARCIA", {NOTES: "Dossier complet"})
        added.append(get_column_letter(ws.max_column + 1))
        ws.cell(row=1, column=ws.max_column + 1, value="Remarques")
        ws.cell(row=3, column=ws.max_column, value="À revoir en juin")

    _edit(campaign, change)
    output = _rewrite(campaign, tmp_path)
    [aside] = _kept_aside(campaign)
    [letter] = added
    assert openpyxl.load_workbook(aside)["Suivi"][f"{letter}3"].value == "À revoir en juin"
    assert (
        "du texte que grille ne sait pas rattacher à un stagiaire ni à une de ses colonnes "
        f"(colonne {letter} « Remarques », inconnue de grille)" in output
    )
    assert _rows(campaign)["GARCIA"][NOTES] == "Dossier complet"
    assert "Remarques" not in _header(openpyxl.load_workbook(_tracking(campaign))["Suivi"])
    _rewrite(campaign, tmp_path)  # the new file holds nothing unknown: no second copy
    assert _kept_aside(campaign) == [aside]


# ------------------------------------------------------------------ printed and read


def _sheet(campaign: Path, name: str = "Suivi") -> Worksheet:
    return openpyxl.load_workbook(_tracking(campaign))[name]


def _column(ws: Worksheet, title: str) -> dict[str, Any]:
    """Cell of column `title`, by upper-cased last name."""
    header = _header(ws)
    index, name = header.index(title), header.index("Nom")
    return {row[name].value: row[index] for row in ws.iter_rows(min_row=2)}


def _pixels(width: float) -> float:
    """What a column of `width` takes on screen and paper at 96 dpi (Excel's rule)."""
    return width * 7 + 5


def test_tracking__prints_landscape_main_columns_first_header_and_names_on_each_page(
    campaign: Path,
) -> None:
    ws = _sheet(campaign)
    header = _header(ws)
    setup = ws.page_setup
    assert (setup.orientation, int(setup.paperSize), setup.pageOrder) == (
        "landscape", 9, "downThenOver",
    )  # fmt: skip
    assert not ws.sheet_properties.pageSetUpPr.fitToPage  # a scale, so the breaks hold
    assert ws.print_title_rows == "$1:$1"
    assert ws.print_title_cols == "$B:$C"
    assert header[1:3] == ["Nom", "Prénom"]
    assert ws.print_area == f"'Suivi'!$B$1:${get_column_letter(len(header))}${ws.max_row}"
    breaks = [b.id for b in ws.col_breaks.brk]
    assert [header[i - 1] for i in breaks] == ["Retourné le", TEAM]
    first_page = header[1 : breaks[0]]
    assert first_page == [
        "Nom", "Prénom", "Classe", "Statut", "Total", "Entreprise", "Tuteur",
        "Téléphone tuteur", "À faire / manquant", "Envoyé le", "Relancé le", "Retourné le",
    ]  # fmt: skip
    # each printed page's columns fit the A4 landscape width (1 cm margins) at the scale
    assert ws.page_margins.left * 2.54 <= 1.01 and ws.page_margins.right * 2.54 <= 1.01
    widths = {title: ws.column_dimensions[get_column_letter(i + 1)].width
              for i, title in enumerate(header)}  # fmt: skip
    titles = widths["Nom"] + widths["Prénom"]
    pages = [first_page, header[breaks[0] : breaks[1]], header[breaks[1] :]]
    for number, page in enumerate(pages):
        pixels = sum(_pixels(widths[t]) for t in page) + (_pixels(titles) if number else 0)
        assert pixels * setup.scale / 100 / 96 * 2.54 <= 27.7 * 0.95, page
    assert setup.scale >= 70  # still readable


def test_tracking__named_font_and_rows_tall_enough_for_their_wrapped_text(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    answers = _answers_for("Sophie Garnier", **{c.id: None for c in GRID.criteria[:8]})
    fill(workbook_of(campaign, "Abadie"), inbox / "a.xlsx", answers)
    assert run(campaign, "collect", str(inbox)).exit_code == 0
    ws = _sheet(campaign)
    header = _header(ws)
    widths = [ws.column_dimensions[get_column_letter(i + 1)].width for i in range(len(header))]
    fonts = {c.font.name for row in ws.iter_rows() for c in row if c.value is not None}
    assert fonts == {"Arial"}
    for row in ws.iter_rows(min_row=2):
        height = ws.row_dimensions[row[0].row].height
        assert height is not None
        for cell, width in zip(row, widths, strict=True):
            if isinstance(cell.value, str) and cell.alignment.wrap_text:
                # lower bound: at best 1.3 characters of Arial 10 per unit of width
                lines = sum(
                    -(-max(len(line), 1) // int(width * 1.3)) for line in cell.value.split("\n")
                )
                assert height >= lines * 12, (cell.coordinate, lines, height)
    abadie = _column(ws, "À faire / manquant")["ABADIE"]
    assert abadie.value.count("non renseigné") == 8
    assert ws.row_dimensions[abadie.row].height >= 8 * 2 * 12  # each message wraps once


def test_tracking__real_dates_and_sent_empty_until_a_message_left(campaign: Path) -> None:
    ws = _sheet(campaign)
    generated = _column(ws, "Généré le")["ABADIE"]
    assert isinstance(generated.value, datetime) and generated.number_format == "dd/mm/yyyy"
    assert {c.value for c in _column(ws, "Envoyé le").values()} == {None}  # nothing sent yet
    config = campaign / "grille.toml"  # the teacher's address, that messages need
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('email = ""', 'email = "prof@lycee.example"'), "utf-8")
    sent = run(campaign, "send")  # written to output/envoi: not left yet
    assert sent.exit_code == 0, sent.output
    ws = _sheet(campaign)
    assert _column(ws, "Statut")["ABADIE"].value == "message prêt"
    assert _column(ws, "Envoyé le")["ABADIE"].value is None
    assert run(campaign, "send", "--mark-sent", "--class", "BTS 2A").exit_code == 0
    ws = _sheet(campaign)
    sent = _column(ws, "Envoyé le")
    assert isinstance(sent["ABADIE"].value, datetime)
    assert sent["ABADIE"].value.date() == date.today()
    assert sent["ABADIE"].number_format == "dd/mm/yyyy"
    assert sent["GARCIA"].value is None  # BTS 2B: still only prepared


def test_tracking__returned_file_by_its_name_linked_to_the_stored_copy(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    original = fill(workbook_of(campaign, "Abadie"), inbox / "grille Chloé (version 2).xlsx",
                    _answers_for("Sophie Garnier"))  # fmt: skip
    assert run(campaign, "collect", str(inbox)).exit_code == 0
    cell = _column(_sheet(campaign), "Fichier retourné")["ABADIE"]
    assert cell.value == "grille Chloé (version 2).xlsx"
    assert cell.font.underline == "single"
    target = cell.hyperlink.target
    assert not Path(unquote(target)).is_absolute()  # works wherever the campaign is moved
    stored = (_tracking(campaign).parent / unquote(target)).resolve()
    assert stored.is_relative_to((campaign / "output" / "retours").resolve())
    assert stored.read_bytes() == original.read_bytes()
    assert _column(_sheet(campaign), "Fichier retourné")["BERNARD"].value is None


def test_tracking__total_of_the_global_evaluation_partial_marked(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    dims = GRID.global_evaluation.dimensions
    fill(workbook_of(campaign, "Abadie"), inbox / "a.xlsx", _answers_for("Sophie Garnier"))
    fill(workbook_of(campaign, "Bernard"), inbox / "b.xlsx",
         _answers_for("Marc Dubreuil", **{dims[0].id: None, dims[1].id: None}))  # fmt: skip
    assert run(campaign, "collect", str(inbox)).exit_code == 0
    totals = _column(_sheet(campaign), "Total")
    full = sum(d.values[-1] for d in dims)
    assert (totals["ABADIE"].value, totals["ABADIE"].number_format) == (full, '0" / 24"')
    partial = full - dims[0].values[-1] - dims[1].values[-1]
    assert (totals["BERNARD"].value, totals["BERNARD"].number_format) == (
        partial, '0" / 24 partiel"',
    )  # fmt: skip
    assert totals["GARCIA"].value is None


def test_student_statuses__kept__only_students_whose_rows_changed_are_read_again(
    campaign: Path, tmp_path: Path
) -> None:
    """`grille ui` reads the statuses again after each change with what it kept: the
    students untouched keep their status objects, the changed ones are read again, and
    the whole equals a fresh reading (the grid's total included)."""
    db = state.connect(campaign / "output" / "grille.sqlite")
    try:
        kept = tracking.KeptStatuses()
        first = {s.last_name: s for s in tracking.student_statuses(db, kept=kept)}
        assert tracking.student_statuses(db, kept=kept) == list(first.values())
        inbox = tmp_path / "retours"
        fill(workbook_of(campaign, "Abadie"), inbox / "a.xlsx", _answers_for("Sophie Garnier"))
        assert run(campaign, "collect", str(inbox)).exit_code == 0  # another connection
        again = tracking.student_statuses(db, kept=kept)
        fresh = tracking.student_statuses(db)
        assert [s.to_json() for s in again] == [s.to_json() for s in fresh]
        by_name = {s.last_name: s for s in again}
        assert by_name["Abadie"] is not first["Abadie"]
        assert (by_name["Abadie"].status, by_name["Abadie"].total) == (
            "complete",
            sum(d.values[-1] for d in GRID.global_evaluation.dimensions),
        )
        assert all(by_name[name] is first[name] for name in first if name != "Abadie")
        assert set(kept.by_student) == {s.student_id for s in fresh}
        one = by_name["Bernard"].student_id
        assert tracking.student_statuses(db, one, kept=kept)[0].student_id == one
        assert set(kept.by_student) == {s.student_id for s in fresh}  # one student: kept as is
        worded = tracking.student_statuses(db, kept=kept, how_to_decide=lambda n: f"n° {n}")
        assert worded[0] is not again[0]  # another wording: read again, not reused
    finally:
        db.close()


def test_tracking__summary_sheet_counts_per_status_and_is_never_read_back(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    fill(workbook_of(campaign, "Abadie"), inbox / "a.xlsx", _answers_for("Sophie Garnier"))
    fill(workbook_of(campaign, "Bernard"), inbox / "b.xlsx",
         _answers_for("Marc Dubreuil", appreciation=None))  # fmt: skip
    assert run(campaign, "collect", str(inbox)).exit_code == 0
    ws = _sheet(campaign, "Synthèse")
    rows = {row[0]: row[1:] for row in ws.iter_rows(values_only=True) if row and row[0]}
    assert rows["Nombre de stagiaires"] == ("BTS 2A", "BTS 2B", "Ensemble")
    assert rows["complet"] == (1, 0, 1)
    assert rows["incomplet"] == (1, 0, 1)
    assert rows["généré"] == (1, 4, 5)
    assert rows["Total"] == (3, 4, 7)
    assert {c.font.name for row in ws.iter_rows() for c in row if c.value is not None} == {"Arial"}
    # grille's own sheet: a rewrite keeps nothing aside and reads nothing from it
    _rewrite(campaign, tmp_path)
    assert _kept_aside(campaign) == []


@pytest.mark.soffice
@pytest.mark.skipif(
    shutil.which("soffice") is None or shutil.which("pdftotext") is None,
    reason="LibreOffice (soffice) ou pdftotext absent",
)
def test_tracking_pdf__main_columns_on_the_first_page_header_and_names_repeated(
    campaign: Path, tmp_path: Path
) -> None:
    [pdf] = office.convert_all([_tracking(campaign)], "pdf", tmp_path)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip
    pages = [page for page in text.split("\f") if page.strip()]
    first, details, files = pages[0], pages[1], pages[2]
    for title in ("Nom", "Statut", "Total", "À faire / manquant", "Envoyé le", "Retourné le"):
        assert title in first
    assert "Valeurs invalides" not in first and "Identifiant" not in first
    for page in (details, files):
        assert page.lstrip().startswith("Nom") and "ABADIE" in page
    assert "Valeurs invalides" in details and "Appréciation de l'équipe pédagogique" in details
    assert "Fichier retourné" in files
    assert "Page 1 / " in first
    assert any("Suivi des stages au" in page for page in pages[3:])  # the summary sheet
