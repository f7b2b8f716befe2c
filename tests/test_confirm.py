"""A return without its signature never silently replaces a signed one (`grille confirm`).

A workbook whose hidden identity is gone (sheets copied into a new workbook) is matched on
the name typed in its visible identity cells, « à confirmer ». These tests build that case
from real generated workbooks and check that the signed return keeps counting until the
teacher confirms the unsigned one, everywhere a student's return is chosen.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pytest

from tests.tutors import complete_answers, fill, make_campaign, run, status_json, workbook_of

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Bernard", "Yanis", "BTS 2A", "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
    ["Chevallier", "Inès", "BTS 2A", "Assurances B", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip

GENUINE = "Chloé a été une stagiaire remarquable, autonome et appréciée de la clientèle."
IMPOSTOR = "Appréciation d'un autre tuteur, pour un autre stagiaire."
BANNER = "RETOUR À CONFIRMER — identité du classeur non vérifiée"


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def _answers(tutor: str, appreciation: str, **changes: object) -> dict[str, Any]:
    answers = complete_answers()
    answers.update(signature=tutor, date=date(2026, 2, 20), appreciation=appreciation)
    answers.update(changes)
    return answers


def _signed_abadie(campaign: Path, inbox: Path) -> Path:
    """Abadie's genuine return: signed, complete."""
    return fill(
        workbook_of(campaign, "Abadie"), inbox / "abadie.xlsx", _answers("Sophie Garnier", GENUINE)
    )


def _stripped(source: Path, target: Path, shown_name: str, answers: dict[str, Any]) -> Path:
    """A filled copy of `source` whose hidden identity is gone and whose visible identity
    names `shown_name`: what copying the sheets into a new workbook and typing gives."""
    fill(source, target, answers)
    wb = openpyxl.load_workbook(target)
    del wb["_grille"]
    wb.custom_doc_props.props = []
    wb["Instructions"]["B5"].value = shown_name
    wb.save(target)
    return target


def _impostor_for_abadie(campaign: Path, inbox: Path, name: str = "stripped.xlsx") -> Path:
    """Bernard's workbook, stripped, other ratings and appreciation, Abadie's name typed in."""
    return _stripped(
        workbook_of(campaign, "Bernard"),
        inbox / name,
        "ABADIE Chloé",
        _answers("Marc Dubreuil", IMPOSTOR, autonomie=1, **{"integration.ponctualite": "TI"}),
    )


def _returns(campaign: Path) -> dict[str, int]:
    """Return id by original file name."""
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        return dict(db.execute("SELECT file_name, id FROM returns"))


def _report(campaign: Path, last_name: str) -> docx.document.Document:
    found = sorted((campaign / "output" / "rapports").glob(f"*/bilan_{last_name.upper()}_*.docx"))
    assert len(found) == 1, found
    return docx.Document(str(found[0]))


def _body_text(document: docx.document.Document) -> str:
    return "\n".join(t.text or "" for t in document.element.body.iter(docx.oxml.ns.qn("w:t")))


def _headers(document: docx.document.Document) -> list[str]:
    """The text of every header a page of `document` can show."""
    texts = []
    for section in document.sections:
        headers = [section.header]
        if section.different_first_page_header_footer:
            headers.append(section.first_page_header)
        if document.settings.odd_and_even_pages_header_footer:
            headers.append(section.even_page_header)
        texts += ["\n".join(p.text for p in h.paragraphs) for h in headers]
    return texts


def test_unsigned_copy_with_a_typed_name__does_not_replace_the_signed_return(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    assert run(campaign, "collect", str(_signed_abadie(campaign, inbox))).exit_code == 0
    stripped = _impostor_for_abadie(campaign, tmp_path / "plus-tard")
    result = run(campaign, "collect", str(stripped))
    assert result.exit_code == 0, result.output

    abadie = status_json(campaign)["Abadie"]
    assert abadie["origin"].endswith("abadie.xlsx")  # the signed return still counts
    assert abadie["status"] == "complete"
    assert abadie["to_confirm"] is False
    assert abadie["pending_returns"] == [_returns(campaign)["stripped.xlsx"]]
    assert run(campaign, "report").exit_code == 0
    text = _body_text(_report(campaign, "Abadie"))
    assert GENUINE in text and IMPOSTOR not in text
    assert not any(BANNER in header for header in _headers(_report(campaign, "Abadie")))
