"""The one fold and the one e-mail check every module compares typed text with."""

from __future__ import annotations

import hashlib

import pytest

from pipeline.roster import derive_student_id
from pipeline.text import fold, is_email


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
