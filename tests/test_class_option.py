"""`--class`: one resolver for every command; case, accents and spaces do not count; an
unknown class is an error that lists the campaign's classes (exit code 2)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline import state
from pipeline.classes import resolve_class
from pipeline.errors import UnknownClassError
from tests.test_mail import add_student
from tests.tutors import make_campaign, run, status_json, with_teacher_email

ROWS = [
    ["Abadie", "Chloé", "BTS MUC 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Bernard", "Yanis", "BTS MUC 2A", "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
    ["Da Silva", "Mathéo", "Terminale Économie", "Immo Quartz", "Julien Lemaître", "jl@quartz.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip
UNKNOWN = (
    "Erreur : classe « BTS MUC 2C » inconnue de la campagne. Ses classes : « BTS MUC 2A », "
    "« Terminale Économie ».\n"
)


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return with_teacher_email(make_campaign(tmp_path / "campagne", ROWS, write_csv))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = state.connect(tmp_path / "grille.sqlite")
    yield connection
    connection.close()


# ------------------------------------------------------------------ the resolver


def test_resolve_class__case_accents_and_spaces_ignored(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), ("T", "t@x.example"), "BTS MUC 2A")
    add_student(db, tmp_path, "E2", ("Da Silva", "M"), ("T", "t@x.example"), "Terminale Économie")

    assert resolve_class(db, "BTS MUC 2A") == "BTS MUC 2A"
    assert resolve_class(db, "  bts  muc 2a ") == "BTS MUC 2A"
    assert resolve_class(db, "btsmuc2A") == "BTS MUC 2A"
    assert resolve_class(db, "TERMINALE ECONOMIE") == "Terminale Économie"


def test_resolve_class__two_classes_told_apart_only_by_case__exact_wins_else_ambiguous(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), ("T", "t@x.example"), "BTS A")
    add_student(db, tmp_path, "E2", ("Bernard", "Yanis"), ("T", "t@x.example"), "bts a")

    assert resolve_class(db, "bts a") == "bts a"
    with pytest.raises(UnknownClassError) as error:
        resolve_class(db, "Bts A")
    assert str(error.value) == (
        "« Bts A » désigne plusieurs classes de la campagne : « BTS A », « bts a ». Écrivez-la "
        "exactement comme dans la liste des stagiaires."
    )


def test_resolve_class__campaign_without_students__says_to_generate(
    db: sqlite3.Connection,
) -> None:
    with pytest.raises(UnknownClassError) as error:
        resolve_class(db, "BTS MUC 2A")

    assert error.value.exit_code == 2
    assert str(error.value) == (
        "classe « BTS MUC 2A » inconnue : la campagne n'a encore aucun stagiaire. Lancez "
        "d'abord « grille generate »."
    )


# ------------------------------------------------------------------ each command


def test_send__class_typed_loosely__only_its_tutors(campaign: Path) -> None:
    result = run(campaign, "send", "--class", "bts muc2a")

    assert result.exit_code == 0, result.output
    assert {n: s["status"] for n, s in status_json(campaign).items()} == {
        "Abadie": "prepared", "Bernard": "prepared", "Da Silva": "generated",
    }  # fmt: skip


def test_send__unknown_class__lists_the_classes__exit_2__nothing_sent(campaign: Path) -> None:
    result = run(campaign, "send", "--class", "BTS MUC 2C")

    assert result.exit_code == 2
    assert result.output == UNKNOWN
    assert not (campaign / "output" / "envoi").exists()


def test_send_mark_sent__class_typed_loosely__and_unknown_class_exit_2(campaign: Path) -> None:
    assert run(campaign, "send").exit_code == 0

    unknown = run(campaign, "send", "--mark-sent", "--class", "BTS MUC 2C")
    marked = run(campaign, "send", "--mark-sent", "--class", "terminale economie")

    assert (unknown.exit_code, unknown.output) == (2, UNKNOWN)
    assert marked.exit_code == 0, marked.output
    assert (
        marked.output.splitlines()[0] == "  envoyé par vous : DA SILVA Mathéo (Terminale Économie)"
    )
    assert status_json(campaign)["Da Silva"]["status"] == "sent"
    assert status_json(campaign)["Abadie"]["status"] == "prepared"


def test_remind__class_typed_loosely__and_unknown_class_exit_2(campaign: Path) -> None:
    assert run(campaign, "send").exit_code == 0

    unknown = run(campaign, "remind", "--class", "BTS MUC 2C")
    reminded = run(campaign, "remind", "--dry-run", "--class", "Terminale économie")

    assert (unknown.exit_code, unknown.output) == (2, UNKNOWN)
    assert reminded.exit_code == 0, reminded.output
    assert "Julien Lemaître <jl@quartz.example>" in reminded.output
    assert "Sophie Garnier" not in reminded.output
    assert "1 message(s) prêt(s)" in reminded.output.splitlines()[-1]


def test_status__class_typed_loosely__its_students__unknown_class_exit_2(campaign: Path) -> None:
    loose = run(campaign, "status", "--class", "bts  muc 2a")
    as_json = run(campaign, "status", "--format", "json", "--class", "terminale economie")
    unknown = run(campaign, "status", "--class", "BTS MUC 2C")

    assert loose.exit_code == 0, loose.output
    assert "ABADIE Chloé" in loose.output and "BERNARD Yanis" in loose.output
    assert "DA SILVA" not in loose.output
    assert "lancez « grille generate »" not in loose.output
    assert as_json.exit_code == 0, as_json.output
    assert [s["last_name"] for s in json.loads(as_json.output)["stagiaires"]] == ["Da Silva"]
    assert (unknown.exit_code, unknown.output) == (2, UNKNOWN)
