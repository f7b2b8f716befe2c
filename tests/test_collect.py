"""`grille collect` and `grille status` on returns filled by simulated tutors."""

from __future__ import annotations

import json
import shutil
import sqlite3
import zipfile
from collections.abc import Callable
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pytest

from tests.tutors import (
    GRID,
    LAYOUT,
    fill,
    make_campaign,
    roster_rows,
    run,
    status_json,
    without_hidden_identity,
    workbook_of,
)
from tests.tutors import answers_for as _answers_for  # the name other test files import

ROWS = roster_rows("Abadie", "Bernard", "Chevallier", "Da Silva", "Étienne", "Faure", "Garcia")


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return make_campaign(tmp_path / "campagne", ROWS, write_csv)


def test_collect__typical_batch__gives_the_expected_statuses_and_problem_lists(
    campaign: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "retours"
    fill(workbook_of(campaign, "Abadie"), inbox / "abadie.xlsx", _answers_for("Sophie Garnier"))
    blanks = [
        "integration.ponctualite",
        "clientele.decouverte",
        "organisation.respect_reglementation",
    ]
    fill(
        workbook_of(campaign, "Bernard"),
        inbox / "bernard.xlsx",
        _answers_for("Marc Dubreuil", **{key: None for key in blanks}, appreciation=None),
    )
    fill(
        workbook_of(campaign, "Chevallier"),
        inbox / "chevallier.xlsx",
        _answers_for("Sophie Garnier", **{"clientele.decouverte": "Bien"}),
    )
    fill(
        workbook_of(campaign, "Da Silva"),
        inbox / "grille finale (2).xlsx",  # renamed by the tutor
        _answers_for("Julien Lemaître", autonomie="3", responsabilites=3.0),
    )
    result = run(campaign, "collect", str(inbox))
    assert result.exit_code == 0, result.output

    statuses = status_json(campaign)
    assert {name: s["status"] for name, s in statuses.items()} == {
        "Abadie": "complete",
        "Bernard": "incomplete",
        "Chevallier": "invalid",
        "Da Silva": "complete",
        "Étienne": "generated",
        "Faure": "generated",
        "Garcia": "generated",
    }
    assert statuses["Bernard"]["missing"] == [
        "Phase préparatoire du stage : intégration dans l’agence › Ponctualité (cellule D15) : "
        "non renseigné.",
        "Contacts avec la clientèle › Découverte (cellule D24) : non renseigné.",
        "Organisation du travail › Respect de la réglementation (cellule D13) : non renseigné.",
        "Appréciation du tuteur sur le travail et le comportement du stagiaire (cellule A4) : "
        "non renseignée.",
    ]
    assert statuses["Bernard"]["invalid"] == []
    assert statuses["Chevallier"]["invalid"] == [
        "Contacts avec la clientèle › Découverte (cellule D24) : « Bien » n'est pas une note "
        "de l'échelle (TI, I, S, TS)."
    ]
    assert statuses["Chevallier"]["missing"] == []
    assert statuses["Abadie"]["missing"] == statuses["Abadie"]["invalid"] == []
    assert statuses["Da Silva"]["file"].startswith("output/retours/")


def test_collect__level_pasted_as_text_is_normalised(campaign: Path, tmp_path: Path) -> None:
    fill(
        workbook_of(campaign, "Da Silva"),
        tmp_path / "r.xlsx",
        _answers_for("Julien Lemaître", autonomie="3", responsabilites=" 4 ", implication=3.0),
    )
    assert run(campaign, "collect", str(tmp_path / "r.xlsx")).exit_code == 0
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        evaluation = json.loads(db.execute("SELECT evaluation FROM returns").fetchone()[0])
    assert evaluation["levels"]["autonomie"] == 3
    assert evaluation["levels"]["responsabilites"] == 4
    assert evaluation["levels"]["implication"] == 3


def test_collect__workbook_attached_to_a_saved_email_is_recognised(
    campaign: Path, tmp_path: Path
) -> None:
    filled = fill(workbook_of(campaign, "Faure"), tmp_path / "x.xlsx", _answers_for("Bruno Caron"))
    message = EmailMessage()
    message["From"] = "Bruno Caron <bc@mutuelle.example>"
    message["To"] = "prof@lycee.example"
    message["Subject"] = "Re: évaluation de stage"
    message.set_content("Bonjour, voici la grille remplie.")
    message.add_attachment(
        filled.read_bytes(),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename="../../grille Faure.xlsx",
    )
    eml = tmp_path / "message.eml"
    eml.write_bytes(bytes(message))
    result = run(campaign, "collect", str(eml))
    assert result.exit_code == 0, result.output
    assert status_json(campaign)["Faure"]["status"] == "complete"
    assert "message.eml" in status_json(campaign)["Faure"]["origin"]


def test_collect__same_student_twice__later_return_supersedes_and_history_is_kept(
    campaign: Path, tmp_path: Path
) -> None:
    source = workbook_of(campaign, "Garcia")
    first = fill(source, tmp_path / "v1.xlsx", _answers_for("Bruno Caron", appreciation=None))
    assert run(campaign, "collect", str(first)).exit_code == 0
    assert status_json(campaign)["Garcia"]["status"] == "incomplete"
    second = fill(source, tmp_path / "v2.xlsx", _answers_for("Bruno Caron"))
    assert run(campaign, "collect", str(second)).exit_code == 0
    assert status_json(campaign)["Garcia"]["status"] == "complete"
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        history = db.execute("SELECT status FROM returns ORDER BY id").fetchall()
    assert history == [("incomplete",), ("complete",)]


def test_collect__same_file_twice_is_a_no_op(campaign: Path, tmp_path: Path) -> None:
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier")
    )
    assert run(campaign, "collect", str(filled)).exit_code == 0
    again = run(campaign, "collect", str(filled))
    assert again.exit_code == 0
    assert "Déjà collecté" in again.output
    stored = list((campaign / "output" / "retours").rglob("*.xlsx"))
    assert len(stored) == 1


def test_collect__another_campaigns_file_is_refused(
    campaign: Path, tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    other = make_campaign(tmp_path / "autre", ROWS[:1], write_csv)
    foreign = fill(
        workbook_of(other, "Abadie"), tmp_path / "f.xlsx", _answers_for("Sophie Garnier")
    )
    result = run(campaign, "collect", str(foreign))
    assert result.exit_code == 1
    assert "autre campagne" in result.output
    assert status_json(campaign)["Abadie"]["status"] == "generated"


def test_collect__tampered_identity_is_refused(campaign: Path, tmp_path: Path) -> None:
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "t.xlsx", _answers_for("Sophie Garnier")
    )
    bernard_id = status_json(campaign)["Bernard"]["student_id"]
    wb = openpyxl.load_workbook(filled)
    wb["_grille"]["B3"].value = bernard_id  # claim to be another student
    for prop in wb.custom_doc_props:
        if prop.name == "grille_student_id":
            prop.value = bernard_id
    wb.save(filled)
    result = run(campaign, "collect", str(filled))
    assert result.exit_code == 1
    assert "signature invalide" in result.output
    assert status_json(campaign)["Bernard"]["status"] == "generated"


def test_collect__metadata_gone__falls_back_on_visible_identity_to_confirm(
    campaign: Path, tmp_path: Path
) -> None:
    filled = fill(
        workbook_of(campaign, "Étienne"), tmp_path / "e.xlsx", _answers_for("Julien Lemaître")
    )
    without_hidden_identity(filled)
    assert run(campaign, "collect", str(filled)).exit_code == 0
    etienne = status_json(campaign)["Étienne"]
    assert etienne["status"] == "complete"
    assert etienne["to_confirm"] is True
    assert etienne["status_label"] == "complet (à confirmer)"
    assert "à confirmer" in etienne["match_note"]


def test_collect__hidden_meta_sheet_that_came_back_hidden_is_still_trusted(
    campaign: Path, tmp_path: Path
) -> None:
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "h.xlsx", _answers_for("Sophie Garnier")
    )
    wb = openpyxl.load_workbook(filled)
    wb["_grille"].sheet_state = "hidden"  # what LibreOffice does to a veryHidden sheet
    wb.save(filled)
    assert run(campaign, "collect", str(filled)).exit_code == 0
    assert status_json(campaign)["Abadie"]["status"] == "complete"
    assert status_json(campaign)["Abadie"]["to_confirm"] is False


def test_collect__changed_locked_label_is_a_warning_not_an_error(
    campaign: Path, tmp_path: Path
) -> None:
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "l.xlsx", _answers_for("Sophie Garnier")
    )
    wb = openpyxl.load_workbook(filled)
    ref = LAYOUT.criterion_labels["integration.ponctualite"]
    wb[ref.sheet][ref.cell].value = "Ponctualité (souvent en retard)"
    wb.save(filled)
    assert run(campaign, "collect", str(filled)).exit_code == 0
    abadie = status_json(campaign)["Abadie"]
    assert abadie["status"] == "complete"
    assert abadie["warnings"] == [
        "libellé du critère modifié (cellule A15) : « Ponctualité (souvent en retard) » au lieu "
        "de « Ponctualité »."
    ]


def test_collect__future_date_and_date_before_internship_are_invalid(
    campaign: Path, tmp_path: Path
) -> None:
    fill(
        workbook_of(campaign, "Abadie"),
        tmp_path / "in" / "a.xlsx",
        _answers_for("Sophie Garnier", date="03/01/2026"),
    )
    fill(
        workbook_of(campaign, "Bernard"),
        tmp_path / "in" / "b.xlsx",
        _answers_for("Marc Dubreuil", date=date(2099, 1, 1)),
    )
    assert run(campaign, "collect", str(tmp_path / "in")).exit_code == 0
    statuses = status_json(campaign)
    assert statuses["Abadie"]["invalid"] == [
        "Date (cellule B25) : le 03/01/2026 est avant le début du stage (05/01/2026)."
    ]
    assert statuses["Bernard"]["invalid"] == [
        "Date (cellule B25) : le 01/01/2099 est dans le futur."
    ]


def test_collect__zip_archive_of_returns(campaign: Path, tmp_path: Path) -> None:
    a = fill(workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier"))
    b = fill(workbook_of(campaign, "Bernard"), tmp_path / "b.xlsx", _answers_for("Marc Dubreuil"))
    archive = tmp_path / "retours.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(a, "dossier/abadie.xlsx")
        zf.write(b, "dossier/bernard.xlsx")
    assert run(campaign, "collect", str(archive)).exit_code == 0
    statuses = status_json(campaign)
    assert (statuses["Abadie"]["status"], statuses["Bernard"]["status"]) == ("complete", "complete")


def test_collect__hostile_files__one_message_each__earlier_results_intact(
    campaign: Path, tmp_path: Path
) -> None:
    good = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "ok.xlsx", _answers_for("Sophie Garnier")
    )
    assert run(campaign, "collect", str(good)).exit_code == 0
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "vide.xlsx").write_bytes(b"")
    (hostile / "hasard.xlsx").write_bytes(bytes(range(256)) * 4)
    (hostile / "liste.xlsx").write_text("Nom;Prénom\nDupont;Jean\n", encoding="utf-8")
    (hostile / "tronque.xlsx").write_bytes(good.read_bytes()[:3000])
    bomb = hostile / "bombe.xlsx"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member,
    ):
        chunk = b"\0" * (1 << 20)
        for _ in range(100):
            member.write(chunk)
    entities = hostile / "entites.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(entities, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/workbook.xml":
                data = data.replace(
                    b"<workbook",
                    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><workbook',
                    1,
                )
            target.writestr(info, data)
    result = run(campaign, "collect", str(hostile))
    assert result.exit_code == 1
    for name in (
        "vide.xlsx",
        "hasard.xlsx",
        "liste.xlsx",
        "tronque.xlsx",
        "bombe.xlsx",
        "entites.xlsx",
    ):
        lines = [line for line in result.output.splitlines() if name in line]
        assert len(lines) == 1, (name, result.output)
    assert "Traceback" not in result.output
    assert status_json(campaign)["Abadie"]["status"] == "complete"


def test_collect__tracking_workbook_keeps_what_the_teacher_typed(
    campaign: Path, tmp_path: Path
) -> None:
    tracking = campaign / "output" / "suivi.xlsx"
    wb = openpyxl.load_workbook(tracking)
    ws = wb["Suivi"]
    header = [c.value for c in ws[1]]
    id_column = header.index("Identifiant")
    team_column = header.index("Appréciation de l'équipe pédagogique")
    notes_column = header.index("Notes du professeur")
    for row in ws.iter_rows(min_row=2):
        if row[1].value == "ABADIE":
            abadie_id = row[id_column].value
            row[team_column].value = "=Très bon travail, « félicitations »"
            row[notes_column].value = "Relancer le tuteur"
    wb.save(tracking)
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier")
    )
    assert run(campaign, "collect", str(filled)).exit_code == 0
    wb = openpyxl.load_workbook(tracking)
    ws = wb["Suivi"]
    rows = {row[id_column].value: row for row in ws.iter_rows(min_row=2)}
    assert rows[abadie_id][team_column].value == "=Très bon travail, « félicitations »"
    assert rows[abadie_id][team_column].data_type == "s"  # stays text, never a formula
    assert rows[abadie_id][notes_column].value == "Relancer le tuteur"
    assert rows[abadie_id][header.index("Statut")].value == "complet"
    assert ws.auto_filter.ref is not None and ws.freeze_panes == "D2"


def test_status__csv_and_table_formats(campaign: Path) -> None:
    csv_out = run(campaign, "status", "--format", "csv")
    assert csv_out.exit_code == 0
    lines = csv_out.output.splitlines()
    assert lines[0] == (
        "Identifiant;Nom;Prénom;Classe;Statut;Manquant;Invalide;Fichier;Retours à confirmer"
    )
    assert len(lines) == 1 + len(ROWS)
    table = run(campaign, "status")
    assert table.exit_code == 0
    assert table.output.splitlines()[-1] == f"Total : {len(ROWS)} généré"


def test_status__grid_expectations_hold() -> None:
    assert len(GRID.criteria) == 44


def test_collect__unreadable_tracking_workbook_is_not_overwritten_and_returns_still_recorded(
    campaign: Path, tmp_path: Path
) -> None:
    tracking = campaign / "output" / "suivi.xlsx"
    tracking.write_bytes(b"pas un classeur")
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier")
    )
    result = run(campaign, "collect", str(filled))
    assert result.exit_code == 0
    assert "Attention — suivi non mis à jour : suivi.xlsx est illisible" in result.output
    assert tracking.read_bytes() == b"pas un classeur"
    assert status_json(campaign)["Abadie"]["status"] == "complete"


def _soffice_convert(source: Path, out: Path, target: str, profile: Path) -> Path:
    import subprocess

    subprocess.run(
        [
            "soffice", "--headless", "--norestore", f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to", target, "--outdir", str(out), str(source),
        ],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    extension = target.split(":")[0]
    return out / f"{source.stem}.{extension}"


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent")
def test_collect__returns_resaved_by_libreoffice__recognised_and_validated_the_same(
    campaign: Path, tmp_path: Path
) -> None:
    filled = tmp_path / "filled"
    fill(workbook_of(campaign, "Abadie"), filled / "abadie.xlsx", _answers_for("Sophie Garnier"))
    fill(
        workbook_of(campaign, "Chevallier"),
        filled / "chevallier.xlsx",
        _answers_for(
            "Sophie Garnier", **{"clientele.decouverte": "Bien", "integration.ponctualite": None}
        ),
    )
    fill(workbook_of(campaign, "Faure"), filled / "faure.xlsx", _answers_for("Bruno Caron"))
    resaved = tmp_path / "resaved"
    profile = tmp_path / "profile"
    for name in ("abadie", "chevallier"):
        _soffice_convert(filled / f"{name}.xlsx", resaved, "xlsx:Calc MS Excel 2007 XML", profile)
    _soffice_convert(filled / "faure.xlsx", resaved, "ods", profile)  # a tutor saving as .ods
    result = run(campaign, "collect", str(resaved))
    assert result.exit_code == 0, result.output
    statuses = status_json(campaign)
    assert statuses["Abadie"]["status"] == "complete"
    assert statuses["Abadie"]["to_confirm"] is False
    assert statuses["Faure"]["status"] == "complete"
    assert statuses["Chevallier"]["status"] == "invalid"
    assert statuses["Chevallier"]["invalid"] == [
        "Contacts avec la clientèle › Découverte (cellule D24) : « Bien » n'est pas une note "
        "de l'échelle (TI, I, S, TS)."
    ]
    assert statuses["Chevallier"]["missing"] == [
        "Phase préparatoire du stage : intégration dans l’agence › Ponctualité (cellule D15) : "
        "non renseigné."
    ]


def test_collect__a_workbook_that_is_not_a_grille_workbook_is_refused(
    campaign: Path, tmp_path: Path, write_xlsx: Callable[..., Path]
) -> None:
    other = write_xlsx(tmp_path / "budget.xlsx", [["Poste", "Montant"], ["Loyer", 800]])
    result = run(campaign, "collect", str(other))
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"  Refusé — {other} : ce n'est pas un classeur grille "
        "(ni identité cachée, ni nom de stagiaire)."
    )


def test_collect__the_generated_blank_workbooks_are_ignored_not_recorded(campaign: Path) -> None:
    result = run(campaign, "collect", str(campaign / "output" / "classeurs"))
    assert result.exit_code == 0, result.output
    assert result.output.count("classeur vierge, tel que grille l'a produit : ignoré") == len(ROWS)
    assert {s["status"] for s in status_json(campaign).values()} == {"generated"}
    assert not (campaign / "output" / "retours").exists()


def test_collect__the_line_of_each_return_says_what_matters(
    campaign: Path, tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    """On the line of the return: a student no longer in the roster, a return matched
    « à confirmer », a return that replaces another."""
    garcia = fill(
        workbook_of(campaign, "Garcia"), tmp_path / "garcia.xlsx", _answers_for("Bruno Caron")
    )
    from tests.tutors import ROSTER_HEADER

    roster = write_csv(tmp_path / "liste_sans_garcia.csv", [ROSTER_HEADER, *ROWS[:-1]])
    assert run(campaign, "generate", "--roster", str(roster), "--jobs", "1").exit_code == 0
    copy = fill(
        workbook_of(campaign, "Étienne"), tmp_path / "etienne.xlsx", _answers_for("Julien Lemaître")
    )
    without_hidden_identity(copy)
    result = run(campaign, "collect", str(garcia), str(copy))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"  GARCIA Léa (BTS 2B) — complet — {garcia} — stagiaire retiré de la liste"
    assert lines[1].startswith("      Ce stagiaire n'est plus dans la liste des stagiaires")
    etienne = next(line for line in lines if line.startswith("  ÉTIENNE Lou"))
    assert etienne == f"  ÉTIENNE Lou (BTS 2B) — complet — {copy} — à confirmer (retour n° 2)"

    second = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "abadie.xlsx", _answers_for("Sophie Garnier")
    )
    assert run(campaign, "collect", str(second)).exit_code == 0
    newer = fill(
        workbook_of(campaign, "Abadie"),
        tmp_path / "abadie_corrige.xlsx",
        _answers_for("Sophie Garnier", appreciation="Corrigée."),
    )
    later = run(campaign, "collect", str(newer)).output.splitlines()[0]
    assert later.startswith(
        f"  ABADIE Chloé (BTS 2A) — complet — {newer} — remplace le retour n° 3 ("
    )


def test_collect_step__files_or_mailbox_chosen_by_the_library_with_its_exit_code(
    campaign: Path, tmp_path: Path
) -> None:
    """The step both front ends call: it reads what it is given and knows its failures."""
    from pipeline import collect as collect_ops
    from pipeline.campaign import Campaign
    from pipeline.errors import GrilleError
    from pipeline.settings import Workspace

    good = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier")
    )
    bad = tmp_path / "vide.xlsx"
    bad.write_bytes(b"")
    opened = Campaign.open(Workspace(campaign))
    try:
        result = collect_ops.collect_step(opened, [good, bad])
        assert (result.recorded_count, result.failed_count, result.exit_code) == (1, 1, 1)
        assert result.mailbox is None
        with pytest.raises(GrilleError, match="indiquez les fichiers ou dossiers à lire"):
            collect_ops.collect_step(opened, [])
        with pytest.raises(GrilleError, match="Boîte aux lettres non configurée"):
            collect_ops.collect_step(
                opened, [], mailbox=collect_ops.MailboxRequest(), password=lambda _: "x"
            )
    finally:
        opened.close()
