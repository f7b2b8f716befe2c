"""The whole season through the CLI, as `grille demo` runs it: every artefact checked."""

from __future__ import annotations

import json
import zipfile
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import docx
import openpyxl
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.demo import SCENARIOS
from tests.tutors import run, status_json

# The demo's class lists, in order: what SCENARIOS makes each tutor do.
EXPECTED_STATUS = {
    "ABADIE Chloé": "complete", "BERNARD Yanis": "incomplete", "CHEVALLIER Inès": "complete",
    "DUBOIS Jean-Baptiste": "complete", "MARTIN Lucas (BTS MUC 2A)": "complete",
    "PETIT Noémie": "prepared", "AUBERT Maxime": "complete", "COLIN Enzo": "invalid",
    "ÉTIENNE Lou": "complete", "MARTIN Lucas (BTS MUC 2B)": "complete",
    "MOREL Baptiste": "complete", "POIRIER Jade": "prepared",
}  # fmt: skip


def demo(root: Path) -> Result:
    return CliRunner().invoke(cli, ["demo", str(root)], catch_exceptions=False)


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    root = tmp_path_factory.mktemp("demo") / "campagne"
    result = demo(root)
    assert result.exit_code == 0, result.output
    return root, result


def eml(path: Path) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def texts(path: Path) -> list[str]:
    """Every paragraph of a Word file, in tables too, stripped."""
    document = docx.Document(str(path))
    cells = [c.text for t in document.tables for r in t.rows for c in r.cells]
    return [line.strip() for line in [*(p.text for p in document.paragraphs), *cells]]


def statuses(root: Path) -> dict[str, dict[str, object]]:
    result = run(root, "status", "--format", "json")
    by_name = {}
    for s in json.loads(result.output)["stagiaires"]:
        name = f"{s['last_name'].upper()} {s['first_name']}"
        if s["last_name"] == "Martin":
            name += f" ({s['class']})"
        by_name[name] = s
    return by_name


def test_demo__scenarios_cover_what_the_issue_asks() -> None:
    assert len(SCENARIOS) == 12
    for scenario in ("incomplet", "saisie hors liste", "renommé", "dans un e-mail"):
        assert SCENARIOS.count(scenario) == 1
    assert SCENARIOS.count("complet") >= 5


def test_demo__every_student_has_the_status_of_what_the_tutor_did(
    season: tuple[Path, Result],
) -> None:
    root, result = season
    found = statuses(root)
    assert {name: s["status"] for name, s in found.items()} == EXPECTED_STATUS
    bernard = found["BERNARD Yanis"]
    assert len(bernard["missing"]) == 4  # type: ignore[arg-type]
    assert bernard["missing"][-1].startswith("Appréciation du tuteur")  # type: ignore[index]
    assert found["COLIN Enzo"]["invalid"] == [  # type: ignore[comparison-overlap]
        "Phase préparatoire du stage : intégration dans l’agence › Compréhension du "
        "fonctionnement et de l’organisation de l’agence (cellule D10) : « Bien » n'est pas "
        "une note de l'échelle (TI, I, S, TS)."
    ]
    assert str(found["CHEVALLIER Inès"]["origin"]).endswith("version finale (2).xlsx")
    assert "reponse_du_tuteur.eml › pièce jointe" in str(found["DUBOIS Jean-Baptiste"]["origin"])
    assert "Total : 8 complet, 1 incomplet, 2 message prêt, 1 invalide" in result.output


def test_demo__workbooks_messages_and_reminders(season: tuple[Path, Result]) -> None:
    root, _ = season
    output = root / "output"
    assert len(list((output / "classeurs").rglob("*.xlsx"))) == 12
    sent = [eml(p) for p in sorted((output / "envoi").glob("envoi_*.eml"))]
    reminders = {
        eml(p)["To"].addresses[0].display_name: eml(p)
        for p in sorted((output / "envoi").glob("relance_*.eml"))
    }
    attached = sum(len(list(m.iter_attachments())) for m in sent)
    assert attached == 12  # every workbook left once, grouped by tutor
    assert len(sent) == 8  # Garnier has three students, Dubreuil and Lemaître two
    assert sorted(reminders) == ["Aurélie Perrin", "Julien Lemaître", "Marc Dubreuil"]
    dubreuil = reminders["Marc Dubreuil"].get_body(preferencelist=("plain",))
    assert dubreuil is not None
    text = dubreuil.get_content()
    assert "  - PETIT Noémie (BTS MUC 2A) : aucun retour reçu pour l'instant." in text
    assert "feuille « Intégration », cellule D15 (Ponctualité) : non renseigné." in text


def test_demo__tracking_workbook_lists_every_student_with_status(
    season: tuple[Path, Result],
) -> None:
    root, _ = season
    ws = openpyxl.load_workbook(root / "output" / "suivi.xlsx")["Suivi"]
    header = [c.value for c in ws[1]]
    rows = [dict(zip(header, (c.value for c in row), strict=False)) for row in ws.iter_rows(2)]
    assert len(rows) == 12
    assert sorted(r["Statut"] for r in rows).count("complet") == 8
    relanced = {r["Nom"] for r in rows if r["Relancé le"]}
    assert relanced == {"BERNARD", "PETIT", "COLIN", "POIRIER"}


def test_demo__reports_for_returned_students_and_each_class(season: tuple[Path, Result]) -> None:
    root, _ = season
    reports = root / "output" / "rapports"
    students = sorted(reports.rglob("bilan_[!c]*.docx"))
    classes = sorted(reports.rglob("bilan_classe_*.docx"))
    assert len(students) == 10 and len(classes) == 2
    class_lines = texts(classes[0])
    assert "Bilan des stages — BTS MUC 2A" in class_lines
    assert {"ABADIE Chloé", "BERNARD Yanis", "PETIT Noémie"} <= set(class_lines)
    assert "sans retour" in class_lines  # Petit's row in the summary
    bernard_text = "\n".join(texts(next(p for p in students if "BERNARD" in p.name)))
    assert "INCOMPLET" in bernard_text
    assert "Ponctualité (cellule D15) : non renseigné." in bernard_text


def test_demo__archives_verify_and_hold_the_reports_and_returns(
    season: tuple[Path, Result],
) -> None:
    root, _ = season
    zips = sorted((root / "output" / "archive").rglob("*.zip"))
    assert [z.name for z in zips] == ["BTS_MUC_2A.zip", "BTS_MUC_2B.zip"]
    for path in zips:
        verified = run(root, "archive", "verify", str(path))
        assert verified.exit_code == 0, verified.output
        names = zipfile.ZipFile(path).namelist()
        assert sum(n.endswith(".docx") for n in names) == 6  # five students and the class
        assert "manifeste.json" in names


def test_demo__second_run__nothing_sent_or_collected_twice__archive_not_overwritten(
    tmp_path: Path,
) -> None:
    root = tmp_path / "campagne"
    assert demo(root).exit_code == 0
    first = {p: p.read_bytes() for p in (root / "output" / "archive").rglob("*.zip")}
    outbox = sorted(p.name for p in (root / "output" / "envoi").iterdir())

    again = demo(root)

    assert again.exit_code == 0, again.output
    assert "Rien à envoyer" in again.output
    assert "0 retour(s) enregistré(s), 0 fichier(s) refusé(s) ou illisible(s), 10 déjà" in (
        again.output
    )
    assert "Aucun tuteur à relancer." in again.output
    assert sorted(p.name for p in (root / "output" / "envoi").iterdir()) == outbox
    assert all(path.read_bytes() == data for path, data in first.items())
    assert len(list((root / "output" / "archive").rglob("*_v2.zip"))) == 2
    assert status_json(root)["Abadie"]["status"] == "complete"
