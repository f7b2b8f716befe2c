"""Roster reading: file types, headers, row checks, identifiers, and the template."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from pipeline.errors import Problem, RosterError
from pipeline.roster import (
    DEMO_ROSTER,
    ROSTER_COLUMNS,
    RosterResult,
    Student,
    derive_student_id,
    read_roster,
    read_rosters,
)
from tests.tutors import run

Writer = Callable[..., Path]

HEADER = ["Nom", "Prénom", "Classe", "Entreprise", "Tuteur", "Email tuteur", "Début", "Fin"]


def line(
    nom: object = "Dupont",
    prenom: object = "Léa",
    classe: object = "BTS MUC 2A",
    entreprise: object = "Agence Horizon",
    tuteur: object = "Claire Morel",
    email: object = "claire.morel@agence-horizon.example",
    debut: object = "04/01/2027",
    fin: object = "26/02/2027",
) -> list[object]:
    """One valid roster line in HEADER order; override the cell under test."""
    return [nom, prenom, classe, entreprise, tuteur, email, debut, fin]


def located(result: RosterResult) -> list[tuple[int | None, str, str]]:
    return [(p.row, p.column, p.code) for p in result.problems]


# --------------------------------------------------------------------------- whole files


def test_demo_roster__bundled_sample__twelve_students_in_two_classes_without_problems() -> None:
    result = read_roster(DEMO_ROSTER)

    assert result.problems == []
    assert result.valid
    assert len(result.students) == 12
    assert {s.class_name for s in result.students} == {"BTS MUC 2A", "BTS MUC 2B"}
    assert len({s.student_id for s in result.students}) == 12
    homonyms = [s for s in result.students if (s.last_name, s.first_name) == ("Martin", "Lucas")]
    assert [s.class_name for s in homonyms] == ["BTS MUC 2A", "BTS MUC 2B"]
    assert DEMO_ROSTER.read_bytes().startswith(b"\xef\xbb\xbfNom;Pr\xc3\xa9nom;")


def test_roster__xlsx_with_every_column__builds_the_student(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    headers = [c.header for c in ROSTER_COLUMNS]
    path = write_xlsx(
        tmp_path / "liste.xlsx",
        [
            headers,
            [
                " N'Diaye ",
                "Jean-Baptiste",
                "BTS MUC 2A",
                "Agence  Horizon",
                "Claire Morel",
                "claire.morel@agence-horizon.example",
                date(2027, 1, 4),
                date(2027, 2, 26),
                "MUC2A-07",
                "jb.ndiaye@lycee.example",
                612345678,
                "Mme Lambert",
            ],
        ],
    )

    result = read_roster(path)

    assert result.problems == []
    (student,) = result.students
    assert student.student_id == "MUC2A-07"
    assert (student.last_name, student.company) == ("N'Diaye", "Agence Horizon")
    assert (student.start, student.end) == (date(2027, 1, 4), date(2027, 2, 26))
    assert (student.student_email, student.tutor_phone) == ("jb.ndiaye@lycee.example", "0612345678")
    assert (student.referent, student.row) == ("Mme Lambert", 2)


def test_roster__every_fault_of_every_row__collected_in_row_order(
    tmp_path: Path, write_csv: Writer
) -> None:
    path = write_csv(
        tmp_path / "liste.csv",
        [
            HEADER,
            line(nom="", email="claire@"),
            line(prenom="Paul"),
            line(prenom="Zoé", debut="31/02/2027", fin="pas encore"),
            line(prenom="Hugo", tuteur=None, fin="01/01/2027"),
        ],
    )

    result = read_roster(path)

    assert located(result) == [
        (2, "Nom", "missing_value"),
        (2, "Email tuteur", "bad_email"),
        (4, "Début", "bad_date"),
        (4, "Fin", "bad_date"),
        (5, "Tuteur", "missing_value"),
        (5, "Fin", "end_before_start"),
    ]
    assert [s.first_name for s in result.students] == ["Paul"]
    assert not result.valid


# --------------------------------------------------------------------------- file types


def test_roster__utf8_with_commas__read_like_semicolons(tmp_path: Path, write_csv: Writer) -> None:
    path = write_csv(
        tmp_path / "liste.csv",
        [HEADER, line(entreprise="Dupont, Fils et Cie")],
        encoding="utf-8",
        delimiter=",",
    )

    result = read_roster(path)

    assert result.problems == []
    assert [(s.first_name, s.company) for s in result.students] == [("Léa", "Dupont, Fils et Cie")]


def test_roster__windows_1252_csv__accents_decoded(tmp_path: Path, write_csv: Writer) -> None:
    path = write_csv(
        tmp_path / "liste.csv", [HEADER, line(nom="Lefèvre", prenom="Maëlys")], encoding="cp1252"
    )

    result = read_roster(path)

    assert result.problems == []
    assert [(s.last_name, s.first_name) for s in result.students] == [("Lefèvre", "Maëlys")]


def test_roster__windows_1252_accent_past_the_first_megabyte__encoding_read_from_it(
    tmp_path: Path, write_csv: Writer
) -> None:
    filler = [[*line(prenom=f"P{n}"), "x" * 100_000] for n in range(12)]  # 1.2 MB of ASCII
    rows = [[*HEADER, "Remarques"], *filler, line(nom="Lefèvre", prenom="Maëlys")]
    path = write_csv(tmp_path / "liste.csv", rows, encoding="cp1252")

    result = read_roster(path)

    assert path.stat().st_size > 1024 * 1024
    assert result.problems == []
    assert (result.students[-1].last_name, result.students[-1].row) == ("Lefèvre", 14)


def test_roster__utf16_tab_separated_csv__read(tmp_path: Path, write_csv: Writer) -> None:
    path = write_csv(
        tmp_path / "liste.csv",
        [HEADER, line(nom="Lefèvre", prenom="Maëlys")],
        encoding="utf-16",
        delimiter="\t",
    )

    result = read_roster(path)

    assert result.problems == []
    assert [(s.last_name, s.row) for s in result.students] == [("Lefèvre", 2)]


def test_roster__quoted_cell_over_several_lines_at_the_end_of_the_header_sample__rows_kept(
    tmp_path: Path, write_csv: Writer
) -> None:
    long_note = "a" * 70_000 + "\r\n" + "b" * 10  # its second line lies past the sample
    rows = [[*HEADER, "Remarques"], [*line(), long_note], [*line(prenom="Paul"), "ok"]]
    path = write_csv(tmp_path / "liste.csv", rows)

    result = read_roster(path)

    assert result.problems == []
    assert [(s.first_name, s.row) for s in result.students] == [("Léa", 2), ("Paul", 3)]


def test_roster__xlsx_named_csv__type_decided_from_the_bytes(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    path = write_xlsx(tmp_path / "liste.csv", [HEADER, line()])

    result = read_roster(path)

    assert (result.problems, len(result.students)) == ([], 1)


def test_roster__excel_sep_line__delimiter_taken_and_rows_numbered_as_excel(
    tmp_path: Path,
) -> None:
    text = "sep=,\r\n" + ",".join(HEADER) + "\r\n" + ",".join(map(str, line(email="x"))) + "\r\n"
    path = tmp_path / "liste.csv"
    path.write_text(text, encoding="utf-8")

    assert located(read_roster(path)) == [(2, "Email tuteur", "bad_email")]


def test_roster__empty_file__roster_error(tmp_path: Path) -> None:
    path = tmp_path / "liste.xlsx"
    path.write_bytes(b"")

    with pytest.raises(RosterError) as error:
        read_roster(path)

    assert str(error.value) == (
        "liste.xlsx : le fichier est vide. Remplissez la liste (une ligne par stagiaire) "
        "puis relancez."
    )


def test_roster__ods_renamed_xlsx__asks_to_save_as_xlsx_or_csv(tmp_path: Path) -> None:
    path = tmp_path / "liste.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")

    with pytest.raises(RosterError) as error:
        read_roster(path)

    assert str(error.value) == (
        "liste.xlsx est un classeur OpenDocument (.ods) : enregistrez-le au format Excel "
        "(.xlsx) ou CSV depuis LibreOffice (Fichier › Enregistrer sous)."
    )


def test_roster__xls_magic__asks_to_save_as_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "liste.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)

    with pytest.raises(RosterError) as error:
        read_roster(path)

    assert str(error.value) == (
        "liste.xlsx est au format Excel 97-2003 (.xls) : ouvrez-le dans Excel ou LibreOffice "
        "et enregistrez-le au format Excel (.xlsx) (Fichier › Enregistrer sous)."
    )


@pytest.mark.parametrize(
    ("content", "start"),
    [
        (bytes(range(256)) * 16, "liste.xlsx n'est ni un classeur Excel (.xlsx) ni un fichier CSV"),
        (b"PK\x03\x04" + b"\x8f\x01" * 300, "liste.xlsx est un fichier compressé abîmé"),
        (b"<html><body>liste</body></html>", "liste.xlsx est une page web (HTML/XML)"),
    ],
    ids=["random-bytes", "broken-zip", "html"],
)
def test_roster__unreadable_content__roster_error_not_traceback(
    tmp_path: Path, content: bytes, start: str
) -> None:
    path = tmp_path / "liste.xlsx"
    path.write_bytes(content)

    with pytest.raises(RosterError) as error:
        read_roster(path)

    assert str(error.value).startswith(start)


def test_roster__zip_that_is_not_a_workbook__roster_error(tmp_path: Path) -> None:
    path = tmp_path / "liste.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")

    with pytest.raises(RosterError, match="n'est pas un classeur Excel"):
        read_roster(path)


def test_roster__xlsx_with_broken_parts__roster_error(tmp_path: Path) -> None:
    path = tmp_path / "liste.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types")
        archive.writestr("xl/workbook.xml", "pas du XML")

    with pytest.raises(RosterError, match="abîmé"):
        read_roster(path)


def test_roster__far_cell_at_xfd1048576__read_quickly_and_correctly(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(line())
    sheet["XFD1048576"] = "x"
    path = tmp_path / "liste.xlsx"
    workbook.save(path)

    started = time.perf_counter()
    result = read_roster(path)

    assert time.perf_counter() - started < 5
    assert (result.problems, [s.row for s in result.students]) == ([], [2])


def test_roster__after_fifty_empty_rows__reading_stops(tmp_path: Path, write_xlsx: Writer) -> None:
    path = write_xlsx(tmp_path / "liste.xlsx", [HEADER, line(), *[[]] * 50, line(prenom="Paul")])

    result = read_roster(path)

    assert (result.problems, [s.row for s in result.students]) == ([], [2])


def test_roster__encrypted_workbook__asks_to_remove_the_password(tmp_path: Path) -> None:
    path = tmp_path / "liste.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptionInfo".encode("utf-16-le"))

    with pytest.raises(RosterError, match="est protégé par un mot de passe : ouvrez-le dans Excel"):
        read_roster(path)


def test_roster__sheet_named_stagiaires__preferred_to_the_first_sheet(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.append(["Notes de la secrétaire"])
    workbook.create_sheet("Stagiaires").append(HEADER)
    workbook["Stagiaires"].append(line())
    path = tmp_path / "liste.xlsx"
    workbook.save(path)

    result = read_roster(path)

    assert [(s.row, s.last_name) for s in result.students] == [(2, "Dupont")]


# --------------------------------------------------------------------------- headers


def test_roster__header_variations__case_accents_and_spaces_ignored(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    headers = ["  NOM ", "prenom", "CLASSE", "entreprise", "Tuteur ", "  EMAIL TUTEUR ", "debut"]
    path = write_xlsx(
        tmp_path / "liste.xlsx",
        [
            ["Liste des stagiaires 2026-2027"],
            [],
            [*headers, "FIN", "Remarques"],
            [*line(), "absent lundi"],
        ],
    )

    result = read_roster(path)

    assert result.problems == []
    assert [(s.row, s.tutor_email) for s in result.students] == [
        (4, "claire.morel@agence-horizon.example")
    ]


def test_roster__missing_columns__reported_on_the_header_row(
    tmp_path: Path, write_csv: Writer
) -> None:
    path = write_csv(
        tmp_path / "liste.csv",
        [[*HEADER[:5], "Début"], [*line()[:5], "04/01/2027"]],
    )

    result = read_roster(path)

    assert located(result) == [(1, "Email tuteur", "missing_column"), (1, "Fin", "missing_column")]
    assert str(result.problems[0]) == (
        "liste.csv, ligne 1, colonne Email tuteur : colonne obligatoire absente : ajoutez une "
        "colonne « Email tuteur » à la ligne d'en-tête (ligne 1)."
    )
    assert result.students == []


def test_roster__workbook_without_headers__lists_missing_required_columns(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    path = write_xlsx(tmp_path / "liste.xlsx", [["Dupont", "Léa", "BTS MUC 2A"]])

    with pytest.raises(RosterError) as error:
        read_roster(path)

    assert str(error.value) == (
        "liste.xlsx, feuille « Feuil1 » : ligne d'en-tête introuvable dans les 10 premières "
        "lignes. Colonnes obligatoires absentes : « Nom », « Prénom », « Classe », "
        "« Entreprise », « Tuteur », « Email tuteur », « Début », « Fin ». La ligne d'en-tête "
        "doit contenir : Nom, Prénom, Classe, Entreprise, Tuteur, Email tuteur, Début, Fin "
        "(partez du modèle de liste)."
    )


def test_roster__same_column_twice__first_one_read(tmp_path: Path, write_csv: Writer) -> None:
    path = write_csv(tmp_path / "liste.csv", [[*HEADER, "Nom"], [*line(), "Autre"]])

    result = read_roster(path)

    assert located(result) == [(1, "Nom", "duplicate_column")]
    assert [s.last_name for s in result.students] == ["Dupont"]


# --------------------------------------------------------------------------- cells


def test_roster__bad_email__names_row_column_fault_and_fix(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    path = write_xlsx(tmp_path / "liste.xlsx", [HEADER, line(email="jean.dupont@")])

    result = read_roster(path)

    assert located(result) == [(2, "Email tuteur", "bad_email")]
    assert str(result.problems[0]) == (
        "liste.xlsx, feuille « Feuil1 », ligne 2, colonne Email tuteur : adresse e-mail "
        "invalide « jean.dupont@ » : corrigez-la (exemple : prenom.nom@entreprise.fr)."
    )


@pytest.mark.parametrize(
    "cell", ["a@x.fr, b@y.fr", "a@x.fr;b@y.fr", "a@x.fr b@y.fr"], ids=["comma", "semi", "space"]
)
def test_roster__two_emails_in_one_cell__one_address_per_cell(
    tmp_path: Path, cell: str, write_xlsx: Writer
) -> None:
    path = write_xlsx(tmp_path / "liste.xlsx", [HEADER, line(email=cell)])

    result = read_roster(path)

    assert located(result) == [(2, "Email tuteur", "multiple_emails")]
    assert "une seule adresse par cellule" in result.problems[0].message


@pytest.mark.parametrize(
    "cell", ["claire morel@x.fr", "claire@x", "@x.fr", "claire..morel@x.fr", "claire@x.fr\u200b"]
)
def test_roster__malformed_email__bad_email(tmp_path: Path, cell: str, write_xlsx: Writer) -> None:
    path = write_xlsx(tmp_path / "liste.xlsx", [HEADER, line(email=cell)])

    assert located(read_roster(path)) == [(2, "Email tuteur", "bad_email")]


def test_roster__optional_student_email__checked_when_filled(
    tmp_path: Path, write_csv: Writer
) -> None:
    path = write_csv(
        tmp_path / "liste.csv",
        [[*HEADER, "Email étudiant"], [*line(), "lea@"], [*line(prenom="Paul"), ""]],
    )

    assert located(read_roster(path)) == [(2, "Email étudiant", "bad_email")]


def test_roster__end_before_start__names_row_and_column(tmp_path: Path, write_xlsx: Writer) -> None:
    path = write_xlsx(
        tmp_path / "liste.xlsx",
        [HEADER, line(), line(prenom="Paul", debut="26/02/2027", fin="04/01/2027")],
    )

    result = read_roster(path)

    assert located(result) == [(3, "Fin", "end_before_start")]
    assert result.problems[0].message == (
        "la date de fin (04/01/2027) n'est pas après la date de début (26/02/2027) : corrigez "
        "Début ou Fin."
    )


@pytest.mark.parametrize(
    "cell",
    ["31/02/2027", "demain", "05/01/27", "2027/01/05", "05/01-2027", "05/01/0207", "13/13/2027"],
)
def test_roster__invalid_date_text__bad_date(tmp_path: Path, cell: str, write_csv: Writer) -> None:
    path = write_csv(tmp_path / "liste.csv", [HEADER, line(debut=cell)])

    result = read_roster(path)

    assert located(result) == [(2, "Début", "bad_date")]
    assert result.problems[0].message == (
        f"date invalide « {cell} » : écrivez-la au format jj/mm/aaaa (exemple : 04/01/2027)."
    )


@pytest.mark.parametrize(
    "cell", ["05/01/2027", "5/1/2027", "05-01-2027", "05.01.2027", "2027-01-05", "05/01/2027 00:00"]
)
def test_roster__date_text_formats__accepted(tmp_path: Path, cell: str, write_csv: Writer) -> None:
    path = write_csv(tmp_path / "liste.csv", [HEADER, line(debut=cell)])

    result = read_roster(path)

    assert result.problems == []
    assert [s.start for s in result.students] == [date(2027, 1, 5)]


def test_roster__real_dates_from_xlsx__read_as_dates(tmp_path: Path, write_xlsx: Writer) -> None:
    path = write_xlsx(
        tmp_path / "liste.xlsx",
        [HEADER, line(debut=datetime(2027, 1, 4, 0, 0), fin=date(2027, 2, 26))],
    )

    result = read_roster(path)

    assert result.problems == []
    assert [(s.start, s.end) for s in result.students] == [(date(2027, 1, 4), date(2027, 2, 26))]


def test_roster__line_break_in_a_name__control_character(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    path = write_xlsx(
        tmp_path / "liste.xlsx",
        [HEADER, line(prenom="Jean\nBaptiste"), line(prenom="Paul", tuteur="Claire\tMorel")],
    )

    result = read_roster(path)

    assert located(result) == [
        (2, "Prénom", "control_character"),
        (3, "Tuteur", "control_character"),
    ]
    assert result.problems[0].message == (
        "retour à la ligne dans « Jean↵Baptiste » : retapez la cellule sur une seule ligne, "
        "sans caractère spécial."
    )


def test_roster__line_break_inside_quoted_csv_field__control_character(
    tmp_path: Path, write_csv: Writer
) -> None:
    path = write_csv(tmp_path / "liste.csv", [HEADER, line(nom="Du\r\npont"), line(prenom="Paul")])

    result = read_roster(path)

    assert located(result) == [(2, "Nom", "control_character")]
    assert [s.row for s in result.students] == [3]


def test_roster__spaces_in_cells__trimmed_and_collapsed(tmp_path: Path, write_csv: Writer) -> None:
    path = write_csv(
        tmp_path / "liste.csv",
        [HEADER, line(nom="  Martin   Lefèvre ", prenom="\u00a0Léa", email=" lea@x.example ")],
    )

    (student,) = read_roster(path).students

    assert (student.last_name, student.first_name, student.tutor_email) == (
        "Martin Lefèvre",
        "Léa",
        "lea@x.example",
    )


def test_roster__fully_empty_rows__skipped(tmp_path: Path, write_xlsx: Writer) -> None:
    path = write_xlsx(tmp_path / "liste.xlsx", [HEADER, [], [None] * 8, line(), ["", " "]])

    result = read_roster(path)

    assert (result.problems, [s.row for s in result.students]) == ([], [4])


# --------------------------------------------------------------------------- duplicates, ids


def test_roster__same_student_twice_in_a_class__duplicate_names_the_first_row(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    path = write_xlsx(
        tmp_path / "liste.xlsx",
        [HEADER, line(prenom="Paul"), line(), line(prenom="Zoé"), line(nom="DUPONT", prenom="lea")],
    )

    result = read_roster(path)

    assert located(result) == [(5, "Nom", "duplicate")]
    assert result.problems[0].message.startswith("doublon de la ligne 3 ")
    assert "ajoutez une colonne Identifiant" in result.problems[0].message
    assert [s.row for s in result.students] == [2, 3, 4]


def test_roster__homonyms_in_two_classes__both_accepted(tmp_path: Path, write_xlsx: Writer) -> None:
    path = write_xlsx(
        tmp_path / "liste.xlsx", [HEADER, line(classe="BTS MUC 2A"), line(classe="BTS MUC 2B")]
    )

    result = read_roster(path)

    assert result.problems == []
    assert len({s.student_id for s in result.students}) == 2


def test_roster__homonyms_with_distinct_identifiers__both_accepted(
    tmp_path: Path, write_csv: Writer
) -> None:
    path = write_csv(
        tmp_path / "liste.csv", [[*HEADER, "Identifiant"], [*line(), "A1"], [*line(), "A2"]]
    )

    result = read_roster(path)

    assert result.problems == []
    assert [s.student_id for s in result.students] == ["A1", "A2"]


def test_roster__identifier_reused_or_malformed__reported(
    tmp_path: Path, write_csv: Writer
) -> None:
    path = write_csv(
        tmp_path / "liste.csv",
        [
            [*HEADER, "Identifiant"],
            [*line(prenom="Paul"), "A1"],
            [*line(prenom="Zoé"), "a1"],
            [*line(prenom="Hugo"), "A 3"],
        ],
    )

    result = read_roster(path)

    assert located(result) == [
        (3, "Identifiant", "duplicate"),
        (4, "Identifiant", "bad_identifier"),
    ]
    assert result.problems[0].message == (
        "identifiant « a1 » déjà utilisé à la ligne 2 : donnez à chaque stagiaire un "
        "identifiant différent."
    )


def test_roster__identifiers__stable_across_runs_row_order_and_other_fields(
    tmp_path: Path, write_xlsx: Writer, write_csv: Writer
) -> None:
    rows = [line(prenom="Paul"), line(nom="N'Diaye", prenom="Awa"), line(prenom="Zoé")]
    first = write_csv(tmp_path / "a.csv", [HEADER, *rows])
    changed = [line(nom="N’DIAYE", prenom="awa", email="autre@x.example"), *rows[::2][::-1]]
    second = write_xlsx(tmp_path / "b.xlsx", [HEADER, *changed])

    ids_first = {s.first_name.casefold(): s.student_id for s in read_roster(first).students}
    ids_again = {s.first_name.casefold(): s.student_id for s in read_roster(first).students}
    ids_second = {s.first_name.casefold(): s.student_id for s in read_roster(second).students}

    assert ids_first == ids_again == ids_second
    assert ids_first["awa"] == derive_student_id("BTS MUC 2A", "N'Diaye", "Awa") == "Ed73c939f"


# --------------------------------------------------------------------------- large rosters, several files


def _write_big_xlsx(path: Path, count: int) -> Path:
    """A real .xlsx of `count` distinct students, with the dimension Excel writes."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Stagiaires"
    sheet.append(HEADER)
    for n in range(count):
        sheet.append(line(nom=f"Nom{n}", prenom=f"Prénom{n}", debut=date(2027, 1, 4)))
    workbook.save(path)
    return path


def _many_lines(count: int, first: int = 0) -> list[list[object]]:
    return [line(nom=f"Nom{n}", prenom=f"P{n}") for n in range(first, first + count)]


def test_roster__ten_thousand_rows_xlsx__every_student_read(tmp_path: Path) -> None:
    path = _write_big_xlsx(tmp_path / "liste.xlsx", 10_000)

    result = read_roster(path)

    assert result.problems == []
    assert len(result.students) == 10_000
    assert len({s.student_id for s in result.students}) == 10_000
    assert (result.students[0].row, result.students[-1].row) == (2, 10_001)
    assert result.students[-1].last_name == "Nom9999"
    assert result.students[-1].start == date(2027, 1, 4)


def test_rosters__over_the_limit_across_two_files__too_many_rows_without_advice_to_split(
    tmp_path: Path, write_csv: Writer
) -> None:
    first = write_csv(tmp_path / "a.csv", [HEADER, *_many_lines(3)])
    second = write_csv(tmp_path / "b.csv", [HEADER, *_many_lines(3, 3), [], line(prenom="Paul")])
    third = write_csv(tmp_path / "c.csv", [HEADER, line(prenom="Zoé")])

    result = read_rosters([first, second, third], max_rows=5)

    assert [(p.file, p.row, p.code) for p in result.problems] == [("b.csv", 4, "too_many_rows")]
    assert len(result.students) == 5
    assert result.files == ["a.csv", "b.csv"]  # reading stopped there
    assert result.problems[0].message.startswith(
        "plus de 5 stagiaires dans la liste : la lecture s'arrête à cette ligne et aucun "
        "classeur n'est produit."
    )
    assert "plusieurs fichiers" not in result.problems[0].message
    assert not result.valid


def test_rosters__xlsx_and_csv__read_as_one_roster_in_the_given_order(
    tmp_path: Path, write_xlsx: Writer, write_csv: Writer
) -> None:
    second = write_xlsx(tmp_path / "b.xlsx", [HEADER, line(prenom="Paul"), line(prenom="Zoé")])
    first = write_csv(tmp_path / "a.csv", [HEADER, line(classe="BTS MUC 2B")])

    result = read_rosters([second, first])

    assert result.problems == []
    assert result.files == ["b.xlsx", "a.csv"]
    assert [(s.first_name, s.class_name, s.row) for s in result.students] == [
        ("Paul", "BTS MUC 2A", 2),
        ("Zoé", "BTS MUC 2A", 3),
        ("Léa", "BTS MUC 2B", 2),
    ]


def test_rosters__folder__its_xlsx_and_csv_sorted_lock_hidden_and_other_files_left_out(
    tmp_path: Path, write_xlsx: Writer, write_csv: Writer
) -> None:
    folder = tmp_path / "stagiaires"
    (folder / "anciens").mkdir(parents=True)
    write_csv(folder / "2B.CSV", [HEADER, line(classe="BTS MUC 2B")])
    write_xlsx(folder / "2A.xlsx", [HEADER, line()])
    (folder / "~$2A.xlsx").write_bytes(b"\x0bverrou Excel")
    (folder / ".2A.xlsx.swp").write_bytes(b"\x00cache")
    write_csv(folder / ".cache.csv", [HEADER, line(classe="BTS MUC 2C")])
    write_csv(folder / "anciens" / "2C.csv", [HEADER, line(classe="BTS MUC 2C")])
    (folder / "2D.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")

    result = read_roster(folder)

    assert result.files == ["2A.xlsx", "2B.CSV"]
    assert [s.class_name for s in result.students] == ["BTS MUC 2A", "BTS MUC 2B"]
    assert [(p.file, p.code, p.severity) for p in result.problems] == [
        ("2D.xls", "ignored_file", "warning"),
        ("anciens", "ignored_file", "warning"),
    ]
    assert str(result.problems[0]) == (
        "2D.xls : fichier ignoré : seuls les fichiers .xlsx et .csv du dossier « stagiaires » "
        "sont lus ; enregistrez-le au format Excel (.xlsx) ou CSV pour qu'il soit lu."
    )
    assert "sous-dossier ignoré" in result.problems[1].message
    assert result.valid


def test_rosters__folder_without_a_list__roster_error(tmp_path: Path) -> None:
    folder = tmp_path / "vide"
    folder.mkdir()
    (folder / "~$liste.xlsx").write_bytes(b"verrou")

    with pytest.raises(RosterError, match="vide ne contient aucune liste"):
        read_roster(folder)


def test_rosters__same_student_in_two_files__duplicate_names_both_files_and_rows(
    tmp_path: Path, write_xlsx: Writer, write_csv: Writer
) -> None:
    first = write_xlsx(tmp_path / "2A.xlsx", [HEADER, line(prenom="Paul"), line()])
    second = write_csv(tmp_path / "2A-suite.csv", [HEADER, line(prenom="Zoé"), line(nom="DUPONT")])

    result = read_rosters([first, second])

    assert [(p.file, p.row, p.column, p.code) for p in result.problems] == [
        ("2A-suite.csv", 3, "Nom", "duplicate")
    ]
    assert str(result.problems[0]).startswith(
        "2A-suite.csv, ligne 3, colonne Nom : doublon de la ligne 3 de « 2A.xlsx » (même classe, "
        "même nom, même prénom)"
    )
    assert [s.first_name for s in result.students] == ["Paul", "Léa", "Zoé"]
    assert not result.valid


def test_rosters__identifier_reused_in_another_file__names_the_first_file_and_row(
    tmp_path: Path, write_csv: Writer
) -> None:
    first = write_csv(tmp_path / "a.csv", [[*HEADER, "Identifiant"], [*line(), "A1"]])
    second = write_csv(tmp_path / "b.csv", [[*HEADER, "Identifiant"], [*line(prenom="Zoé"), "a1"]])

    result = read_rosters([first, second])

    assert [(p.file, p.row, p.column, p.code) for p in result.problems] == [
        ("b.csv", 2, "Identifiant", "duplicate")
    ]
    assert result.problems[0].message.startswith(
        "identifiant « a1 » déjà utilisé à la ligne 2 de « a.csv » :"
    )


def test_rosters__same_file_given_twice__read_once(tmp_path: Path, write_csv: Writer) -> None:
    path = write_csv(tmp_path / "liste.csv", [HEADER, line()])

    result = read_rosters([path, tmp_path / "." / "liste.csv", tmp_path])

    assert (result.problems, result.files, len(result.students)) == ([], ["liste.csv"], 1)


def test_rosters__faults_in_each_file__each_named_by_file_row_and_column(
    tmp_path: Path, write_xlsx: Writer, write_csv: Writer
) -> None:
    first = write_xlsx(tmp_path / "a.xlsx", [HEADER, line(email="claire@")], sheet="Stagiaires")
    second = write_csv(
        tmp_path / "b.csv", [HEADER, line(prenom="Zoé"), line(prenom="Hugo", fin="")]
    )

    result = read_rosters([first, second])

    assert [str(p).split(" : ")[0] for p in result.problems] == [
        "a.xlsx, feuille « Stagiaires », ligne 2, colonne Email tuteur",
        "b.csv, ligne 3, colonne Fin",
    ]
    assert [s.first_name for s in result.students] == ["Zoé"]


def test_rosters__two_files_with_the_same_name__told_apart_by_their_folder(
    tmp_path: Path, write_csv: Writer
) -> None:
    (tmp_path / "2A").mkdir()
    (tmp_path / "2B").mkdir()
    first = write_csv(tmp_path / "2A" / "liste.csv", [HEADER, line()])
    second = write_csv(tmp_path / "2B" / "liste.csv", [HEADER, line()])

    result = read_rosters([first, second])

    assert result.files == [str(first), str(second)]
    assert [p.file for p in result.problems] == [str(second)]
    assert f"doublon de la ligne 2 de « {first} »" in result.problems[0].message


def test_rosters__unreadable_second_file__roster_error_names_it(
    tmp_path: Path, write_csv: Writer
) -> None:
    first = write_csv(tmp_path / "a.csv", [HEADER, line()])
    second = tmp_path / "b.xlsx"
    second.write_bytes(b"")

    with pytest.raises(RosterError, match=r"^b\.xlsx : le fichier est vide"):
        read_rosters([first, second])


def test_student_fingerprint__same_as_every_earlier_version__row_left_out() -> None:
    student = Student(
        "E1234abcd", "N'Diaye", "Awa", "BTS MUC 2A", "Agence Horizon", "Claire Morel",
        "claire@x.example", date(2027, 1, 4), date(2027, 2, 26), "awa@lycee.example",
        "0612345678", "Mme Lambert", row=7,
    )  # fmt: skip

    # the value campaigns already hold: a change would remake every workbook
    expected = "9cce1aff28b3a4d087a100fc8d6c0496d5438895eb7780dae674d9562bdcc272"
    assert student.fingerprint() == expected
    assert replace(student, row=8).fingerprint() == expected
    assert replace(student, tutor_phone="0612345679").fingerprint() != expected


def test_problem__location__row_and_column_in_french() -> None:
    problem = Problem("bad_date", "date invalide", file="liste.csv", row=3, column="Début")

    assert str(problem) == "liste.csv, ligne 3, colonne Début : date invalide"


# --------------------------------------------------------------------------- grille generate


def _campaign(tmp_path: Path) -> Path:
    root = tmp_path / "campagne"
    assert run(root, "init").exit_code == 0
    return root


def _workbooks(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "output" / "classeurs").rglob("*.xlsx"))


def test_generate__two_roster_files__one_roster_and_absent_only_from_the_whole(
    tmp_path: Path, write_xlsx: Writer, write_csv: Writer
) -> None:
    root = _campaign(tmp_path)
    folder = tmp_path / "listes"
    folder.mkdir()
    part_a = write_xlsx(folder / "2A.xlsx", [HEADER, line(), line(nom="Martin")])
    part_b = write_csv(folder / "2B.csv", [HEADER, line(nom="Bernard", classe="BTS MUC 2B")])

    both = run(root, "generate", "--roster", str(part_a), "--roster", str(part_b), "--jobs", "1")

    assert both.exit_code == 0, both.output
    assert "Liste des stagiaires : 3 stagiaire(s) dans 2 fichier(s)." in both.output
    assert both.output.splitlines()[-1] == (
        "3 classeur(s) créé(s), 0 régénéré(s), 0 inchangé(s), dans output/classeurs."
    )
    assert "n'est plus dans la liste" not in both.output

    only_a = run(root, "generate", "--roster", str(part_a))

    assert only_a.exit_code == 0, only_a.output
    absent = [line for line in only_a.output.splitlines() if "n'est plus dans la liste" in line]
    assert absent == [
        "  Attention — BERNARD Léa (BTS MUC 2B) n'est plus dans la liste : son classeur est "
        "conservé."
    ]
    assert "donnez-les tous : --roster FICHIER --roster FICHIER, ou --roster DOSSIER" in (
        only_a.output
    )
    assert len(_workbooks(root)) == 3

    whole_folder = run(root, "generate", "--roster", str(folder))

    assert whole_folder.exit_code == 0, whole_folder.output
    assert "n'est plus dans la liste" not in whole_folder.output
    assert whole_folder.output.splitlines()[-1] == (
        "0 classeur(s) créé(s), 0 régénéré(s), 3 inchangé(s), dans output/classeurs."
    )


def test_generate__same_student_in_two_files__both_named_exit_2_nothing_written(
    tmp_path: Path, write_xlsx: Writer, write_csv: Writer
) -> None:
    root = _campaign(tmp_path)
    part_a = write_xlsx(tmp_path / "2A.xlsx", [HEADER, line(nom="Martin"), line()])
    part_b = write_csv(tmp_path / "2A-bis.csv", [HEADER, line(nom="DUPONT", prenom="léa")])

    result = run(root, "generate", "--roster", str(part_a), "--roster", str(part_b))

    assert result.exit_code == 2, result.output
    assert (
        "Liste des stagiaires « 2A.xlsx », « 2A-bis.csv » : 1 problème(s) à corriger ; aucun "
        "classeur n'a été produit."
    ) in result.output
    assert (
        "  Erreur — 2A-bis.csv, ligne 2, colonne Nom : doublon de la ligne 3 de « 2A.xlsx »"
    ) in result.output
    assert not (root / "output" / "classeurs").exists()


def test_generate__without_roster_option__reads_input_templates_roster_xlsx(
    tmp_path: Path, write_xlsx: Writer
) -> None:
    root = _campaign(tmp_path)
    write_xlsx(root / "input_templates" / "roster.xlsx", [HEADER, line()], sheet="Stagiaires")

    result = run(root, "generate", "--jobs", "1")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("1 classeur(s) créé(s)")
    assert "Liste des stagiaires :" not in result.output  # one file: no summary line


def test_generate__folder_without_a_list__french_error_exit_2(tmp_path: Path) -> None:
    root = _campaign(tmp_path)
    (tmp_path / "vide").mkdir()

    result = run(root, "generate", "--roster", str(tmp_path / "vide"))

    assert result.exit_code == 2
    assert result.output.startswith(f"Erreur : le dossier {tmp_path / 'vide'} ne contient aucune")
    assert not (root / "output" / "classeurs").exists()


def test_generate__default_roster_left_as_the_template__no_student_exit_2(tmp_path: Path) -> None:
    root = _campaign(tmp_path)

    result = run(root, "generate")

    assert result.exit_code == 2, result.output
    assert "Attention — roster.xlsx, feuille « Stagiaires », ligne 2, colonne Nom" in result.output
    assert result.output.splitlines()[-1] == (
        "Erreur : la liste des stagiaires « roster.xlsx » ne contient aucun stagiaire."
    )
    assert not (root / "output" / "classeurs").exists()
