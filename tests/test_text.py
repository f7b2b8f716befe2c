"""The one fold and the one e-mail check every module compares typed text with."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import openpyxl
import pytest

from pipeline.roster import derive_student_id
from pipeline.text import display_name, fold, is_email
from tests import tutors


@pytest.mark.parametrize(
    "typed", ["NʼDiaye", "N'Diaye", "N’Diaye", "N‘Diaye", "N´Diaye", "n'DIAYE"]
)
def test_fold__every_apostrophe_of_n_diaye__one_key(typed: str) -> None:
    assert fold(typed) == "n'diaye"


def test_fold__o_with_stroke__kept_lower_case__never_dropped() -> None:
    assert fold("ØSTERGAARD Øyvind") == "østergaard øyvind"
    assert fold("Øyvind") != fold("yvind")


def test_fold__accents_case_and_every_kind_of_space__ignored() -> None:
    assert fold("  Élodie\u00a0 MARTIN-Lefèvre\t\n") == "elodie martin-lefevre"
    assert fold("BTS\u202fMUC   2A") == fold("bts muc 2a") == "bts muc 2a"


def test_derive_student_id__keyed_on_fold__apostrophes_and_spaces_do_not_change_it() -> None:
    expected = "E" + hashlib.sha256(b"bts muc 2a|n'diaye|lea").hexdigest()[:8]

    assert derive_student_id("BTS  MUC 2A", "NʼDiaye", "Léa") == expected
    assert derive_student_id("bts muc 2a", "N’DIAYE", "LEA") == expected


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("claire.morel@agence-horizon.example", True),
        ("o'neil+stage@lycee.fr", True),
        ("claire..morel@agence.fr", False),
        ("claire morel@agence.fr", False),
        ("a@b.fr, c@d.fr", False),
        ("Claire <claire@agence.fr>", False),
        ("claire@agence", False),
        ("claire@agence.fr\r\nBcc: x@y.fr", False),
    ],
)
def test_is_email__exactly_one_plain_address(text: str, valid: bool) -> None:
    assert is_email(text) is valid


# ------------------------------------------------------------------ one fold, everywhere

_SAME_NAME = [
    ("NʼDIAYE Søren", "N'DIAYE Søren"),
    ("NʼDIAYE Søren", "n’diaye   SØREN"),
    ("ÉTIENNE Zoé", "etienne\u00a0ZOE"),
]


@pytest.mark.parametrize(("written", "typed"), _SAME_NAME)
def test_fold__validation_grid_sheet_and_matching__one_function(written: str, typed: str) -> None:
    from pipeline import grid_sheet, reading, tracking, validation

    assert validation.fold is fold and reading.fold is fold and tracking.fold is fold
    assert grid_sheet.fold(written) == grid_sheet.fold(typed) == fold(typed)
    assert fold(written) == fold(typed)
    assert fold("ØRSTED") != fold("ORSTED")  # « Ø » is a letter of its own, in every module


def test_collect__visible_name_typed_with_other_apostrophe_spacing__matched_and_valid(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    """A return without its hidden identity whose name was retyped « N'DIAYE  Søren » is
    matched to « NʼDiaye Søren » and validation does not call the name changed."""
    rows = [
        ["NʼDiaye", "Søren", "BTS 2A", "Agence Horizon", "Sophie Garnier",
         "sg@horizon.example", "05/01/2026", "27/02/2026"],
        ["Orsted", "Søren", "BTS 2A", "Agence Horizon", "Sophie Garnier",
         "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ]  # fmt: skip
    campaign = tutors.make_campaign(tmp_path / "campagne", rows, write_csv)
    answers = tutors.answers_for("Sophie Garnier")
    filled = tutors.fill(tutors.workbook_of(campaign, "NʼDiaye"), tmp_path / "r.xlsx", answers)
    wb = openpyxl.load_workbook(tutors.without_hidden_identity(filled))
    ref = tutors.LAYOUT.identity["student_name"]
    assert wb[ref.sheet][ref.cell].value == "NʼDIAYE Søren"
    wb[ref.sheet][ref.cell].value = "n’diaye   SØREN"
    wb.save(filled)

    result = tutors.run(campaign, "collect", str(filled))

    assert result.exit_code == 0, result.output
    statuses = tutors.status_json(campaign)
    found = {name: (s["status"], s["to_confirm"]) for name, s in statuses.items()}
    assert found == {"NʼDiaye": ("complete", True), "Orsted": ("generated", False)}
    assert "a été modifié" not in json.dumps(statuses["NʼDiaye"], ensure_ascii=False)


def test_display_name__one_way_to_write_a_student__in_messages_and_file_names() -> None:
    from pipeline.files import student_stem
    from pipeline.roster import Student

    student = Student(
        "E1234abcd", "NʼDiaye", "Léa", "BTS MUC 2A", "Agence", "Sophie Garnier",
        "sg@horizon.example", date(2026, 1, 5), date(2026, 2, 27),
    )  # fmt: skip

    assert display_name("NʼDiaye", "Léa") == student.display_name == "NʼDIAYE Léa"
    assert student.label == "NʼDIAYE Léa (BTS MUC 2A)"
    assert student_stem(student.last_name, student.first_name, student.student_id) == (
        "NDIAYE_Lea_E1234abcd"  # as workbooks and bilans were always named
    )
