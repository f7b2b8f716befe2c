"""Every file `collect` refuses or cannot read leaves a trace the teacher finds later.

Before, a refused file was named on the console only: once the terminal scrolled, nothing
in `status`, `suivi.xlsx` or the database said it came. Each one is now recorded (name,
where it came from, reason, date, SHA-256 of the bytes received) and shown: counted on
the last line of `status`, in the « fichiers_refuses » key of `status --format json`, all
of them with `status --refused` (in CSV or JSON too), and in the sheet « Fichiers
refusés » of suivi.xlsx.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pytest

from tests.tutors import complete_answers, fill, make_campaign, run, workbook_of

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _batch(
    campaign: Path, folder: Path, write_xlsx: Callable[..., Path], write_csv: Callable[..., Path]
) -> dict[str, Path]:
    """A folder of returns: one good, four refused for different reasons."""
    answers = complete_answers()
    answers.update(signature="Sophie Garnier", date=date(2026, 2, 20))
    good = fill(workbook_of(campaign, "Abadie"), folder / "abadie.xlsx", answers)
    other = make_campaign(folder.parent / "autre", ROWS, write_csv)
    foreign = fill(workbook_of(other, "Abadie"), folder / "autre_campagne.xlsx", answers)
    budget = write_xlsx(folder / "budget.xlsx", [["Poste", "Montant"], ["Loyer", 800]])
    noise = folder / "hasard.xlsx"
    noise.write_bytes(bytes(range(256)) * 8)
    empty = folder / "vide.xlsx"
    empty.write_bytes(b"")
    return {"good": good, "foreign": foreign, "budget": budget, "noise": noise, "empty": empty}


def test_refused_files__recorded_and_shown_in_status_json_and_suivi(
    campaign: Path,
    tmp_path: Path,
    write_xlsx: Callable[..., Path],
    write_csv: Callable[..., Path],
) -> None:
    files = _batch(campaign, tmp_path / "retours", write_xlsx, write_csv)
    result = run(campaign, "collect", str(tmp_path / "retours"))
    assert result.exit_code == 1
    assert "1 retour(s) enregistré(s), 4 fichier(s) refusé(s) ou illisible(s)" in result.output

    listed = json.loads(run(campaign, "status", "--refused", "--format", "json").output)
    by_name = {item["file_name"]: item for item in listed}
    assert set(by_name) == {"autre_campagne.xlsx", "budget.xlsx", "hasard.xlsx", "vide.xlsx"}
    for key in ("foreign", "budget", "noise", "empty"):
        item = by_name[files[key].name]
        assert item["origin"] == str(files[key])
        assert item["sha256"] == _sha(files[key])
        assert item["first_seen_at"][:4] == str(date.today().year)
    assert by_name["budget.xlsx"]["reason"] == (
        "ce n'est pas un classeur grille (ni identité cachée, ni nom de stagiaire)."
    )
    assert by_name["autre_campagne.xlsx"]["reason"].startswith("classeur d'une autre campagne")
    assert by_name["vide.xlsx"]["reason"] == (
        "fichier vide (0 octet) : demandez au tuteur de renvoyer le classeur."
    )

    table = run(campaign, "status").output.splitlines()
    assert table[-1] == (
        "4 fichier(s) refusé(s) ou illisible(s) à la collecte : « grille status --refused » "
        "les liste (aussi dans output/suivi.xlsx, feuille « Fichiers refusés »)."
    )
    assert not any(str(files["noise"]) in line for line in table)  # the count only
    listing = run(campaign, "status", "--refused").output.splitlines()
    start = listing.index("Fichiers refusés ou illisibles (4) :")
    section = listing[start + 1 : start + 5]
    assert any(
        line.endswith(f"{files['noise']} (SHA-256 {_sha(files['noise'])[:12]}…) : ce n'est pas "
                      "un classeur Excel : il contient des données d'un type inconnu. Si c'est "
                      "un retour de tuteur, demandez au tuteur de renvoyer le classeur au format "
                      ".xlsx.")
        for line in section
    )  # fmt: skip
    csv_lines = run(campaign, "status", "--refused", "--format", "csv").output.splitlines()
    assert csv_lines[0] == "Reçu le;Fichier;Provenance;Raison;SHA-256;Revu le"
    assert len(csv_lines) == 5

    wb = openpyxl.load_workbook(campaign / "output" / "suivi.xlsx")
    assert wb.sheetnames == ["Suivi", "Synthèse", "Fichiers refusés"]
    rows = list(wb["Fichiers refusés"].iter_rows(values_only=True))
    assert rows[0] == ("Reçu le", "Fichier", "Provenance", "Raison", "Empreinte SHA-256", "Revu le")
    assert {row[1] for row in rows[1:]} == set(by_name)
    assert {row[4] for row in rows[1:]} == {
        _sha(files[k]) for k in ("foreign", "budget", "noise", "empty")
    }


def test_refused_files__seen_again__one_line_each_and_suivi_not_kept_aside(
    campaign: Path,
    tmp_path: Path,
    write_xlsx: Callable[..., Path],
    write_csv: Callable[..., Path],
) -> None:
    _batch(campaign, tmp_path / "retours", write_xlsx, write_csv)
    assert run(campaign, "collect", str(tmp_path / "retours")).exit_code == 1
    again = run(campaign, "collect", str(tmp_path / "retours"))
    assert "conservé tel quel" not in again.output  # grille's own sheet is not her text
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        count = db.execute("SELECT COUNT(*) FROM refused_files").fetchone()[0]
    assert count == 4
    assert not list((campaign / "output").glob("suivi_*.xlsx"))


def test_a_damaged_attachment__recorded_under_its_own_name_with_its_message(
    campaign: Path, tmp_path: Path
) -> None:
    message = EmailMessage()
    message["From"] = "Sophie Garnier <sg@horizon.example>"
    message["Subject"] = "grille"
    message.set_content("Voici.")
    message.add_attachment(
        b"PK\x03\x04" + bytes(3000), maintype="application", subtype="octet-stream",
        filename="grille Abadie.xlsx",
    )  # fmt: skip
    eml = tmp_path / "message.eml"
    eml.write_bytes(bytes(message))
    assert run(campaign, "collect", str(eml)).exit_code == 1
    [item] = json.loads(run(campaign, "status", "--refused", "--format", "json").output)
    assert item["file_name"] == "grille Abadie.xlsx"
    assert item["origin"] == f"{eml} › pièce jointe « grille Abadie.xlsx »"
    assert len(item["sha256"]) == 64


def test_status_json__refused_files_in_a_key_of_their_own_without_the_refused_option(
    campaign: Path,
    tmp_path: Path,
    write_xlsx: Callable[..., Path],
    write_csv: Callable[..., Path],
) -> None:
    files = _batch(campaign, tmp_path / "retours", write_xlsx, write_csv)
    assert run(campaign, "collect", str(tmp_path / "retours")).exit_code == 1

    result = run(campaign, "status", "--format", "json")

    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [s["last_name"] for s in listed["stagiaires"]] == ["Abadie"]
    assert listed["stagiaires"][0]["status"] == "complete"
    by_name = {item["file_name"]: item for item in listed["fichiers_refuses"]}
    assert set(by_name) == {"autre_campagne.xlsx", "budget.xlsx", "hasard.xlsx", "vide.xlsx"}
    budget = by_name["budget.xlsx"]
    assert budget["origin"] == str(files["budget"]) and budget["sha256"] == _sha(files["budget"])
    assert budget["reason"].startswith("ce n'est pas un classeur grille")
    assert budget["first_seen_at"][:10] == date.today().isoformat()


def test_status__no_refused_file__no_section_and_refused_says_so(campaign: Path) -> None:
    table = run(campaign, "status").output
    assert "Fichiers refusés" not in table and "refusé" not in table
    assert json.loads(run(campaign, "status", "--format", "json").output)["fichiers_refuses"] == []
    assert run(campaign, "status", "--refused").output == "Aucun fichier refusé.\n"
    assert run(campaign, "status", "--refused", "--format", "json").output == "[]\n"
