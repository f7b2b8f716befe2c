"""A return without its signature never silently replaces a signed one (`grille confirm`).

A workbook whose hidden identity is gone (sheets copied into a new workbook) is matched on
the name typed in its visible identity cells, « à confirmer ». These tests build that case
from real generated workbooks and check that the signed return keeps counting until the
teacher confirms the unsigned one, everywhere a student's return is chosen.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from datetime import date
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pytest

from pipeline import state
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


def _ids(campaign: Path) -> dict[str, str]:
    return {name: s["student_id"] for name, s in status_json(campaign).items()}


def _signed_then_impostor(campaign: Path, tmp_path: Path) -> tuple[int, int]:
    """Abadie's signed return, then the stripped impostor; (signed id, unsigned id)."""
    assert run(campaign, "collect", str(_signed_abadie(campaign, tmp_path / "r1"))).exit_code == 0
    stripped = _impostor_for_abadie(campaign, tmp_path / "r2")
    result = run(campaign, "collect", str(stripped))
    assert result.exit_code == 0, result.output
    numbers = _returns(campaign)
    return numbers["abadie.xlsx"], numbers["stripped.xlsx"]


def _only_unsigned_chevallier(campaign: Path, tmp_path: Path) -> int:
    """Chevallier's own workbook, stripped of its identity: her only return."""
    stripped = _stripped(
        workbook_of(campaign, "Chevallier"),
        tmp_path / "seul" / "chevallier-copie.xlsx",
        "CHEVALLIER Inès",
        _answers("Sophie Garnier", GENUINE),
    )
    result = run(campaign, "collect", str(stripped))
    assert result.exit_code == 0, result.output
    assert "il compte pour ce stagiaire en attendant" in result.output
    return _returns(campaign)["chevallier-copie.xlsx"]


def test_unsigned_copy_with_a_typed_name__does_not_replace_the_signed_return(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    assert run(campaign, "collect", str(_signed_abadie(campaign, inbox))).exit_code == 0
    stripped = _impostor_for_abadie(campaign, tmp_path / "plus-tard")
    result = run(campaign, "collect", str(stripped))
    assert result.exit_code == 0, result.output
    signed, unsigned = _returns(campaign)["abadie.xlsx"], _returns(campaign)["stripped.xlsx"]
    assert f"À confirmer (retour n° {unsigned})" in result.output
    assert (
        f"En attente de confirmation : le retour signé n° {signed} (« abadie.xlsx », reçu le "
    ) in result.output
    assert (
        "celui-ci ne le remplacera que si vous le confirmez "
        f"(« grille confirm {unsigned} ») et qu'il est le plus récent des deux."
    ) in result.output

    abadie = status_json(campaign)["Abadie"]
    assert abadie["origin"].endswith("abadie.xlsx")  # the signed return still counts
    assert abadie["return_id"] == signed
    assert abadie["status"] == "complete"
    assert abadie["to_confirm"] is False
    assert abadie["status_label"] == "complet"
    assert abadie["pending_returns"] == [unsigned]
    assert f"Le retour signé n° {signed} compte ; confirmé, celui-ci" in abadie["match_note"]
    assert run(campaign, "report").exit_code == 0
    report = _report(campaign, "Abadie")
    text = _body_text(report)
    assert GENUINE in text and IMPOSTOR not in text
    assert not any(BANNER in header for header in _headers(report))


def test_status__lists_the_pending_return_in_table_csv_and_tracking_workbook(
    campaign: Path, tmp_path: Path
) -> None:
    signed, unsigned = _signed_then_impostor(campaign, tmp_path)
    table = run(campaign, "status")
    assert table.exit_code == 0
    abadie_line = next(line for line in table.output.splitlines() if "ABADIE" in line)
    assert abadie_line.endswith(
        f"retour(s) à confirmer : n° {unsigned} ; version retenue : n° {signed}, sur 2 reçues"
    )
    assert "complet" in abadie_line and "(à confirmer)" not in abadie_line
    assert "1 retour(s) à confirmer : « grille confirm » les liste et dit pourquoi." in (
        table.output
    )
    csv_lines = run(campaign, "status", "--format", "csv").output.splitlines()
    assert csv_lines[0].endswith(";Retours à confirmer")
    abadie_row = next(line for line in csv_lines if ";Abadie;" in line).split(";")
    assert abadie_row[4] == "complet"
    assert abadie_row[-1] == f"n° {unsigned}"
    ws = openpyxl.load_workbook(campaign / "output" / "suivi.xlsx")["Suivi"]
    header = [c.value for c in ws[1]]
    row = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[1] == "ABADIE")
    assert row[header.index("Statut")] == "complet"
    assert f"Retour n° {unsigned} (« stripped.xlsx »" in row[header.index("À faire / manquant")]


def test_confirm__without_argument__lists_each_pending_return_and_why(
    campaign: Path, tmp_path: Path
) -> None:
    nothing = run(campaign, "confirm")
    assert nothing.exit_code == 0
    assert nothing.output == "Aucun retour à confirmer.\n"
    signed, unsigned = _signed_then_impostor(campaign, tmp_path)
    alone = _only_unsigned_chevallier(campaign, tmp_path)
    listing = run(campaign, "confirm")
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0].startswith("2 retour(s) à confirmer")
    assert lines[1].startswith(f"  n° {unsigned} — « stripped.xlsx » — reçu le ")
    assert lines[1].endswith(" — ABADIE Chloé (BTS 2A) — complet")
    assert lines[2] == (
        "      Pourquoi : à confirmer : l'identité cachée du classeur a disparu (fichier recopié "
        "ou ré-enregistré ?) ; reconnu par le nom affiché « ABADIE Chloé »."
    )
    assert lines[3] == (
        f"      Le retour signé n° {signed} compte ; confirmé, celui-ci ne compterait à sa "
        "place que s'il est le plus récent des deux (date d'enregistrement du classeur)."
    )
    assert lines[4].startswith(f"  n° {alone} — « chevallier-copie.xlsx »")
    assert lines[6] == (
        "      Aucun retour signé ni confirmé : il compte pour ce stagiaire en attendant."
    )
    assert "grille confirm N --reject" in lines[-1]


def test_confirm__the_confirmed_return_counts_and_the_decision_is_recorded(
    campaign: Path, tmp_path: Path
) -> None:
    _, unsigned = _signed_then_impostor(campaign, tmp_path)
    result = run(campaign, "confirm", str(unsigned))
    assert result.exit_code == 0, result.output
    assert f"Retour n° {unsigned} (« stripped.xlsx ») confirmé pour ABADIE Chloé (BTS 2A)" in (
        result.output
    )
    assert "Il compte désormais pour ce stagiaire (complet)." in result.output
    assert "Relancez « grille report »" in result.output

    abadie = status_json(campaign)["Abadie"]
    assert abadie["return_id"] == unsigned
    assert abadie["origin"].endswith("stripped.xlsx")
    assert abadie["to_confirm"] is False and abadie["pending_returns"] == []
    assert abadie["match_note"] == ""
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        decisions = db.execute(
            "SELECT return_id, decision, decided_by, decided_at FROM return_decisions"
        ).fetchall()
    assert [(d[0], d[1]) for d in decisions] == [(unsigned, "confirmed")]
    assert decisions[0][2] and decisions[0][3][:4].isdigit()
    again = run(campaign, "confirm", str(unsigned))
    assert again.exit_code == 0
    assert "est déjà confirmé" in again.output and "rien à faire" in again.output
    assert run(campaign, "report").exit_code == 0
    report = _report(campaign, "Abadie")
    assert IMPOSTOR in _body_text(report)
    assert not any(BANNER in header for header in _headers(report))  # confirmed: no caveat


def test_confirm__rejected_return_never_counts(campaign: Path, tmp_path: Path) -> None:
    signed, unsigned = _signed_then_impostor(campaign, tmp_path)
    result = run(campaign, "confirm", str(unsigned), "--reject")
    assert result.exit_code == 0, result.output
    assert f"Retour n° {unsigned} (« stripped.xlsx ») rejeté pour ABADIE Chloé" in result.output
    assert (
        f"Le retour qui compte pour ce stagiaire : n° {signed} (« abadie.xlsx », signé, complet)."
    ) in result.output
    abadie = status_json(campaign)["Abadie"]
    assert abadie["return_id"] == signed and abadie["pending_returns"] == []
    assert run(campaign, "confirm").output == "Aucun retour à confirmer.\n"

    # The only return of a student, rejected: no return counts any more.
    alone = _only_unsigned_chevallier(campaign, tmp_path)
    assert status_json(campaign)["Chevallier"]["to_confirm"] is True
    rejected = run(campaign, "confirm", str(alone), "--reject")
    assert rejected.exit_code == 0, rejected.output
    assert "Aucun retour ne compte plus pour ce stagiaire." in rejected.output
    chevallier = status_json(campaign)["Chevallier"]
    assert chevallier["status"] == "generated" and chevallier["return_id"] is None
    report = run(campaign, "report")
    assert report.exit_code == 0
    assert not list((campaign / "output" / "rapports").glob("*/bilan_CHEVALLIER_*.docx"))

    # Changing one's mind is possible; both decisions stay recorded.
    back = run(campaign, "confirm", str(alone))
    assert back.exit_code == 0
    assert "Cette décision remplace la précédente (rejeté par " in back.output
    assert status_json(campaign)["Chevallier"]["return_id"] == alone
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        kept = db.execute(
            "SELECT decision FROM return_decisions WHERE return_id = ? ORDER BY id", (alone,)
        ).fetchall()
    assert kept == [("rejected",), ("confirmed",)]


def test_only_an_unsigned_return__counts_to_confirm_with_the_banner_on_every_page(
    campaign: Path, tmp_path: Path
) -> None:
    template = campaign / "input_templates" / "modele_rapport.docx"
    model = docx.Document(str(template))  # a teacher's template: own first and even pages
    model.sections[0].different_first_page_header_footer = True
    model.sections[0].first_page_header.paragraphs[0].text = "Première page"
    model.settings.odd_and_even_pages_header_footer = True
    model.sections[0].even_page_header.paragraphs[0].text = "Page paire"
    model.save(str(template))
    alone = _only_unsigned_chevallier(campaign, tmp_path)
    chevallier = status_json(campaign)["Chevallier"]
    assert chevallier["status"] == "complete" and chevallier["to_confirm"] is True
    assert chevallier["status_label"] == "complet (à confirmer)"
    assert chevallier["pending_returns"] == [alone]
    assert f"grille confirm {alone}" in chevallier["match_note"]

    assert run(campaign, "report").exit_code == 0
    report = _report(campaign, "Chevallier")
    headers = _headers(report)
    assert len(headers) == 3  # default, first page, even pages
    assert all(BANNER in header for header in headers), headers
    assert "Première page" in headers[1] and "Page paire" in headers[2]
    text = _body_text(report)
    assert f"{BANNER} : ce classeur est revenu sans son identité cachée" in text
    assert f"Retour n° {alone} : le professeur doit le confirmer (il compte alors) ou le" in text
    assert f"grille confirm {alone}" not in text  # what to decide; the banner says where
    class_report = docx.Document(
        str(next((campaign / "output" / "rapports").glob("*/bilan_classe_*.docx")))
    )
    assert "complet (à confirmer)" in _body_text(class_report)

    assert run(campaign, "confirm", "--student", _ids(campaign)["Chevallier"]).exit_code == 0
    assert run(campaign, "report").exit_code == 0
    confirmed = _report(campaign, "Chevallier")
    assert not any(BANNER in header for header in _headers(confirmed))
    assert BANNER not in _body_text(confirmed)


def test_unsigned_return_first_then_a_signed_one__the_signed_one_counts(
    campaign: Path, tmp_path: Path
) -> None:
    alone = _only_unsigned_chevallier(campaign, tmp_path)
    signed = fill(
        workbook_of(campaign, "Chevallier"),
        tmp_path / "signe" / "chevallier.xlsx",
        _answers("Sophie Garnier", "Version signée."),
    )
    assert run(campaign, "collect", str(signed)).exit_code == 0
    signed_id = _returns(campaign)["chevallier.xlsx"]
    chevallier = status_json(campaign)["Chevallier"]
    assert chevallier["return_id"] == signed_id and chevallier["to_confirm"] is False
    assert chevallier["pending_returns"] == [alone]
    assert (
        f"Le retour signé n° {signed_id} compte ; confirmé, celui-ci ne compterait à sa place "
        "que s'il est le plus récent des deux" in (chevallier["match_note"])
    )
    # Confirming the older unsigned return does not put it before the newer signed one.
    assert run(campaign, "confirm", str(alone)).exit_code == 0
    assert status_json(campaign)["Chevallier"]["return_id"] == signed_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["99"], "aucun retour n° 99 dans cette campagne."),
        (["--return", "1"], "--return s'emploie avec --student."),
        (["1", "--student", "X", "--return", "1"], "pas les deux"),
        (["--student", "inconnu"], "aucun stagiaire d'identifiant « inconnu »"),
        (["--reject"], "--reject demande le n° du retour"),
        (["abc"], "n'est pas un nombre valide"),
    ],
)
def test_confirm__bad_arguments__french_message_and_exit_code_2(
    campaign: Path, args: list[str], message: str
) -> None:
    result = run(campaign, "confirm", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_confirm__refuses_signed_and_refused_returns_and_asks_which_when_several(
    campaign: Path, tmp_path: Path
) -> None:
    signed, unsigned = _signed_then_impostor(campaign, tmp_path)
    result = run(campaign, "confirm", str(signed))
    assert result.exit_code == 2
    assert "porte l'identité signée de son classeur : il n'a pas besoin de confirmation" in (
        result.output
    )
    stranger = _stripped(
        workbook_of(campaign, "Bernard"), tmp_path / "x" / "inconnu.xlsx", "PERSONNE Untel",
        _answers("Marc Dubreuil", IMPOSTOR),
    )  # fmt: skip
    assert run(campaign, "collect", str(stranger)).exit_code == 1
    refused = _returns(campaign)["inconnu.xlsx"]
    result = run(campaign, "confirm", str(refused))
    assert result.exit_code == 2
    assert "a été refusé à la collecte" in result.output
    abadie_id = _ids(campaign)["Abadie"]
    assert (
        run(campaign, "confirm", str(unsigned), "--student", _ids(campaign)["Bernard"]).exit_code
        == 2
    )
    second = _impostor_for_abadie(campaign, tmp_path / "r3", "encore.xlsx")
    assert run(campaign, "collect", str(second)).exit_code == 0
    several = run(campaign, "confirm", "--student", abadie_id)
    assert several.exit_code == 2
    assert "2 retours à confirmer pour ce stagiaire : choisissez-en un avec --return N." in (
        several.output
    )
    chosen = _returns(campaign)["encore.xlsx"]
    picked = run(campaign, "confirm", "--student", abadie_id, "--return", str(chosen))
    assert picked.exit_code == 0, picked.output
    assert status_json(campaign)["Abadie"]["return_id"] == chosen
    assert status_json(campaign)["Abadie"]["pending_returns"] == [unsigned]
    none_left = run(campaign, "confirm", "--student", _ids(campaign)["Bernard"])
    assert none_left.exit_code == 2
    assert "aucun retour à confirmer pour le stagiaire" in none_left.output


def test_reminder__the_signed_incomplete_return_counts__not_the_complete_unsigned_copy(
    campaign: Path, tmp_path: Path
) -> None:
    config = campaign / "grille.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('email = ""', 'email = "prof@lycee.example"'), "utf-8")
    abadie_id = _ids(campaign)["Abadie"]
    assert run(campaign, "send", "--student", abadie_id).exit_code == 0
    for sent in (campaign / "output" / "envoi").iterdir():
        sent.unlink()  # the teacher sent it herself
    incomplete = fill(
        workbook_of(campaign, "Abadie"),
        tmp_path / "r1" / "abadie.xlsx",
        _answers("Sophie Garnier", GENUINE, autonomie=None),
    )
    assert run(campaign, "collect", str(incomplete)).exit_code == 0
    stripped = _impostor_for_abadie(campaign, tmp_path / "r2")  # complete, but unsigned
    assert run(campaign, "collect", str(stripped)).exit_code == 0
    assert status_json(campaign)["Abadie"]["status"] == "incomplete"

    result = run(campaign, "remind", "--student", abadie_id)
    assert result.exit_code == 0, result.output
    (message,) = (campaign / "output" / "envoi").glob("*.eml")
    parsed = BytesParser(policy=policy.default).parsebytes(message.read_bytes())
    assert isinstance(parsed, EmailMessage)
    (attached,) = parsed.iter_attachments()
    assert attached.get_content() == incomplete.read_bytes()  # the signed return, to complete


def test_purging_returns__takes_their_decisions_and_choices_with_them(
    campaign: Path, tmp_path: Path
) -> None:
    signed, unsigned = _signed_then_impostor(campaign, tmp_path)
    assert run(campaign, "confirm", str(unsigned), "--reject").exit_code == 0
    assert run(campaign, "collect", "--use", str(signed)).exit_code == 0
    refused = run(campaign, "collect", "--use", str(unsigned))
    assert refused.exit_code == 2
    assert "a été rejeté" in refused.output
    db = sqlite3.connect(campaign / "output" / "grille.sqlite", isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("DELETE FROM answers")
    db.execute("DELETE FROM returns")  # what « grille purge » does for a class
    assert db.execute("SELECT COUNT(*) FROM return_decisions").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM return_choices").fetchone() == (0,)
    db.close()


@pytest.mark.soffice
@pytest.mark.skipif(
    shutil.which("soffice") is None or shutil.which("pdftotext") is None,
    reason="LibreOffice (soffice) ou pdftotext absent",
)
def test_banner_is_printed_on_every_page_of_the_pdf(campaign: Path, tmp_path: Path) -> None:
    _only_unsigned_chevallier(campaign, tmp_path)
    assert (
        run(campaign, "report", "--pdf", "--student", _ids(campaign)["Chevallier"]).exit_code == 0
    )
    pdf = next((campaign / "output" / "rapports").glob("*/bilan_CHEVALLIER_*.pdf"))
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = [page for page in text.split("\f") if page.strip()]
    assert len(pages) >= 2
    assert all(BANNER in " ".join(page.split()) for page in pages)


def test_confirm__help_is_french_with_an_example(campaign: Path) -> None:
    help_text = run(campaign, "confirm", "--help").output
    assert "Confirme (ou rejette) un retour « à confirmer » ; sans argument, les liste." in (
        help_text
    )
    assert "Exemple : grille confirm   (la liste ; puis : grille confirm 12" in help_text
    assert "--reject" in help_text and "Utilisation :" in help_text


def test_migration__returns_collected_before_it__unsigned_ones_become_pending(
    tmp_path: Path,
) -> None:
    path = tmp_path / "grille.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for name, migration in state.MIGRATIONS:  # the database as it was before 009
        if name == "009_return_confirmation":
            break
        migration(db)
        db.execute("INSERT INTO schema_migrations VALUES (?, 'avant')", (name,))
    db.execute(
        "INSERT INTO students (student_id, last_name, first_name, class_name, company, "
        "tutor_name, tutor_email, start_date, end_date, updated_at) "
        "VALUES ('S1', 'Abadie', 'Chloé', 'BTS 2A', 'A', 'T', 't@x.example', '2026-01-05', "
        "'2026-02-27', 'avant')"
    )
    for sha, match in (("a", "signed"), ("b", "visible"), ("c", "rejected")):
        student = None if match == "rejected" else "S1"
        db.execute(
            "INSERT INTO returns (sha256, stored_file, origin, file_name, collected_at, "
            "student_id, match, status) VALUES (?, ?, ?, ?, 'avant', ?, ?, 'complete')",
            (sha, sha, sha, f"{sha}.xlsx", student, match),
        )
    db.close()

    opened = state.connect(path)
    try:
        assert [p.file_name for p in state.pending_returns(opened)] == ["b.xlsx"]
        counted = state.counted_return(opened, "S1")
        assert counted is not None and counted.file_name == "a.xlsx"
        assert counted.standing == state.STANDING_SIGNED
    finally:
        opened.close()
