"""The pages that start a season, at HTTP level on real folders: Campagne (create, open,
settings of grille.toml), Stagiaires (template, roster upload), Classeurs (generate as a
job, download a workbook or a class's .zip); and `grille ui` on a folder without campaign."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import date
from html import unescape
from pathlib import Path

import httpx
import openpyxl
import pytest

from pipeline.campaign_setup import read_settings
from pipeline.roster import read_rosters
from pipeline.settings import Workspace
from pipeline.ui.app import interface_of
from pipeline.ui.jobs import DONE
from pipeline.ui.views_start import ROSTER_UPLOAD
from tests.conftest import write_csv
from tests.tutors import ROSTER_HEADER, run
from tests.ui_helpers import close_interfaces, csrf_of, logged_in, page_text  # noqa: F401

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2027", "26/02/2027"],
    ["Bernard", "Hugo", "BTS 2A", "Garage Central", "Marc Petit", "mp@garage.example", "05/01/2027", "26/02/2027"],
    ["Dupont", "Léa", "BTS 2B", "Mutuelle", "Paul Roche", "pr@mutuelle.example", "05/01/2027", "26/02/2027"],
]  # fmt: skip
BAD_ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "pas-une-adresse", "05/01/2027", "26/02/2027"],
    ["Bernard", "Hugo", "BTS 2A", "Garage Central", "Marc Petit", "mp@garage.example", "31/02/2027", "26/02/2027"],
    ["Dupont", "Léa", "", "Mutuelle", "Paul Roche", "pr@mutuelle.example", "05/01/2027", "26/02/2027"],
]  # fmt: skip
CREATION = {
    "campagne.etablissement": "Lycée Jean Moulin",
    "campagne.session": "BTS MCO 2027",
    "campagne.annee_scolaire": "2027-2028",
    "professeur.nom": "Claire Martin",
    "professeur.email": "claire.martin@lycee.example",
    "campagne.date_limite_retour": "2027-03-19",
}


def _csv_bytes(tmp: Path, rows: list[list[str]], name: str = "liste.csv") -> bytes:
    return write_csv(tmp / name, [ROSTER_HEADER, *rows]).read_bytes()


def _campaign(root: Path) -> Path:
    assert run(root, "init", "--school", "Lycée Test", "--teacher", "Claire Martin").exit_code == 0
    return root


def _settings_form(client: httpx.Client | object, page: str, root: Path) -> dict[str, str]:
    """The settings form as the page shows it (every field, its value, the fingerprint)."""
    shown = read_settings(Workspace(root))
    fingerprint = re.search(r'name="empreinte" value="([^"]+)"', page)
    assert fingerprint is not None
    return {"csrf": csrf_of(page), "empreinte": fingerprint.group(1), **shown.values}


def _upload(client: object, name: str, data: bytes, csrf: str) -> httpx.Response:
    response: httpx.Response = client.post(  # type: ignore[attr-defined]
        ROSTER_UPLOAD,
        data={"csrf": csrf},
        files={"liste": (name, data, "text/csv")},
        follow_redirects=False,
    )
    return response


def _wait_job(client: object, location: str) -> None:
    job_id = location.rsplit("/", 1)[-1]
    job = interface_of(client.app).jobs.get(job_id)  # type: ignore[attr-defined]
    assert job is not None
    deadline = time.monotonic() + 60
    while job.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == DONE, job.outcome.lines


# ------------------------------------------------------------------ campagne


def test_no_campaign__every_page_leads_to_the_creation_form(tmp_path: Path) -> None:
    client = logged_in(tmp_path / "nouvelle")
    for path in ("/", "/suivi", "/stagiaires", "/classeurs", "/stagiaire/x", "/travail/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/campagne"
    page = client.get("/campagne")
    text = unescape(page_text(page.text))
    assert page.status_code == 200
    assert f"Aucune campagne dans le dossier {tmp_path / 'nouvelle'} (grille.toml absent)" in text
    assert "Réglages de la campagne" not in text  # nothing to edit yet
    assert f'value="{tmp_path / "nouvelle"}"' in page.text  # created here by default


def test_create_campaign_through_the_form__then_the_app_works_on_it(tmp_path: Path) -> None:
    root = tmp_path / "nouvelle"
    client = logged_in(root)
    form = {"csrf": csrf_of(client.get("/campagne").text), "dossier": str(root), **CREATION}
    response = client.post("/campagne/creer", data=form, follow_redirects=False)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    text = unescape(page_text(page.text))
    assert f"Campagne créée dans « {root} » : grille.toml" in text
    config = Workspace(root).load_config()
    assert (config.school, config.session, config.school_year) == (
        "Lycée Jean Moulin", "BTS MCO 2027", "2027-2028",
    )  # fmt: skip
    assert (config.teacher_name, config.teacher_email) == (
        "Claire Martin", "claire.martin@lycee.example",
    )  # fmt: skip
    assert config.deadline == date(2027, 3, 19)
    assert (root / ".grille" / "cle_secrete").is_file()
    assert (root / "input_templates" / "roster.xlsx").is_file()
    home = client.get("/", follow_redirects=False)  # no longer sent to /campagne
    assert home.status_code == 200 and "Lycée Jean Moulin" in unescape(home.text)
    again = client.post("/campagne/creer", data=form)
    assert again.status_code == 400
    assert "contient déjà une campagne (grille.toml) : ouvrez-le plutôt" in unescape(again.text)


def test_create_campaign__bad_email_and_date__refused_in_french_naming_the_fields(
    tmp_path: Path,
) -> None:
    root = tmp_path / "nouvelle"
    client = logged_in(root)
    form = {
        "csrf": csrf_of(client.get("/campagne").text),
        "dossier": str(root),
        **CREATION,
        "professeur.email": "claire.martin@",
        "campagne.date_limite_retour": "31/02/2027",
    }
    response = client.post("/campagne/creer", data=form)
    assert response.status_code == 400
    text = unescape(page_text(response.text))
    assert "Rien n'a été créé : 2 champ(s) à corriger." in text
    assert (
        "« E-mail du professeur » (grille.toml : professeur.email) : « claire.martin@ » n'est "
        "pas une adresse e-mail valide" in text
    )
    assert (
        "« Date limite de retour » (grille.toml : campagne.date_limite_retour) : « 31/02/2027 » "
        "n'est pas une date : écrivez-la JJ/MM/AAAA" in text
    )
    assert 'value="Lycée Jean Moulin"' in unescape(response.text)  # what she typed stays
    assert not root.exists()


def test_settings__written_to_grille_toml__its_comments_kept(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    before = (root / "grille.toml").read_text(encoding="utf-8")
    client = logged_in(root)
    page = client.get("/campagne").text
    form = _settings_form(client, page, root)
    form.update(
        {
            "campagne.etablissement": "Lycée Victor Hugo",
            "campagne.date_limite_retour": "02/04/2027",
            "envoi.serveur": "smtp.lycee.example",
            "envoi.port": "465",
            "envoi.securite": "ssl",
            "reception.depuis": "2027-03-01",
        }
    )
    response = client.post("/campagne/reglages", data=form, follow_redirects=False)
    assert response.status_code == 303
    shown = unescape(page_text(client.get(response.headers["location"]).text))
    assert "grille.toml enregistré (« Établissement », « Date limite de retour »" in shown
    assert "seront refaits à la prochaine génération" in shown
    after = (root / "grille.toml").read_text(encoding="utf-8")
    examples = ("# date_limite_retour = 2027-03-15", "# depuis = 2027-03-01")
    comments = [line for line in before.splitlines() if line.startswith("#")]
    kept = [line for line in comments if line not in examples]
    assert len(kept) > 20 and all(line in after.splitlines() for line in kept)
    # an example line left commented by grille init becomes the value, where it was
    for example, written in zip(
        examples, ("date_limite_retour = 2027-04-02", "depuis = 2027-03-01"), strict=True
    ):
        assert after.splitlines()[before.splitlines().index(example)] == written
    assert len(after.splitlines()) == len(before.splitlines())
    identity = next(line for line in before.splitlines() if line.startswith("identifiant"))
    assert identity in after.splitlines()
    config = Workspace(root).load_config()  # a command reads it as the form wrote it
    assert config.school == "Lycée Victor Hugo"
    assert config.teacher_name == "Claire Martin"
    assert config.deadline == date(2027, 4, 2)
    assert (config.smtp.host, config.smtp.port, config.smtp.security) == (
        "smtp.lycee.example", 465, "ssl",
    )  # fmt: skip
    assert config.imap.since == date(2027, 3, 1)
    assert 'serveur = "smtp.lycee.example"' in after
    unchanged = client.post(
        "/campagne/reglages", data=_settings_form(client, client.get("/campagne").text, root)
    )
    assert "Rien n'a changé : aucun réglage modifié." in unescape(unchanged.text)
    assert (root / "grille.toml").read_text(encoding="utf-8") == after


def test_settings__bad_email_and_date__refused_in_french__file_unchanged(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    before = (root / "grille.toml").read_bytes()
    client = logged_in(root)
    form = _settings_form(client, client.get("/campagne").text, root)
    form.update(
        {
            "professeur.email": "claire martin@lycee.example",
            "campagne.date_limite_retour": "2027-13-40",
            "envoi.port": "huit",
            "campagne.etablissement": "Changé",
        }
    )
    response = client.post("/campagne/reglages", data=form)
    assert response.status_code == 400
    text = unescape(page_text(response.text))
    assert "Rien n'a été enregistré : 3 réglage(s) à corriger." in text
    assert (
        "« E-mail du professeur » (grille.toml : professeur.email) : « claire martin@lycee."
        "example » n'est pas une adresse e-mail valide" in text
    )
    assert "« Date limite de retour » (grille.toml : campagne.date_limite_retour)" in text
    assert "« Port du serveur d'envoi » (grille.toml : envoi.port) : « huit »" in text
    assert 'aria-invalid="true"' in response.text
    assert (root / "grille.toml").read_bytes() == before


def test_settings__file_edited_meanwhile__nothing_overwritten(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    client = logged_in(root)
    form = _settings_form(client, client.get("/campagne").text, root)
    config = root / "grille.toml"
    edited = config.read_text(encoding="utf-8").replace('nom = "Claire Martin"', 'nom = "C. M."')
    config.write_text(edited, encoding="utf-8")  # in a text editor, meanwhile
    form["campagne.etablissement"] = "Lycée Victor Hugo"
    response = client.post("/campagne/reglages", data=form)
    text = unescape(page_text(response.text))
    assert "grille.toml a été modifié (dans un éditeur de texte ?) depuis l'ouverture" in text
    assert config.read_text(encoding="utf-8") == edited


def test_open_another_campaign__switches__old_forms_refused(tmp_path: Path) -> None:
    first = _campaign(tmp_path / "premiere")
    second = tmp_path / "seconde"
    assert run(second, "init", "--school", "Lycée Second").exit_code == 0
    client = logged_in(first)
    old_csrf = csrf_of(client.get("/campagne").text)
    missing = client.post("/campagne/ouvrir", data={"csrf": old_csrf, "dossier": "nulle-part"})
    assert missing.status_code == 400
    assert f"Le dossier « {tmp_path / 'nulle-part'} » n'existe pas." in unescape(missing.text)
    (tmp_path / "vide").mkdir()
    empty = client.post(
        "/campagne/ouvrir", data={"csrf": old_csrf, "dossier": str(tmp_path / "vide")}
    )
    assert "ne contient pas de campagne (grille.toml absent)" in unescape(empty.text)
    response = client.post("/campagne/ouvrir", data={"csrf": old_csrf, "dossier": "seconde"})
    assert response.status_code == 200  # redirected to the settings of the second
    assert "Lycée Second" in unescape(response.text)
    assert f"Campagne ouverte : « {second} »." in unescape(page_text(response.text))
    assert interface_of(client.app).root == second  # type: ignore[arg-type]
    stale = client.post("/campagne/reglages", data={"csrf": old_csrf})  # another tab's form
    assert stale.status_code == 403
    assert "Formulaire refusé" in unescape(stale.text)


# ------------------------------------------------------------------ stagiaires


def test_roster_template__downloaded_as_xlsx(tmp_path: Path) -> None:
    client = logged_in(_campaign(tmp_path / "c"))
    response = client.get("/stagiaires/modele")
    assert response.status_code == 200
    assert "modele_liste_stagiaires.xlsx" in response.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert "Stagiaires" in book.sheetnames
    header = [cell.value for cell in next(book["Stagiaires"].iter_rows(max_row=1))]
    assert header[:3] == ["Nom", "Prénom", "Classe"]


def test_roster_upload__good__students_table__put_where_generate_reads_it(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    client = logged_in(root)
    csrf = csrf_of(client.get("/stagiaires").text)
    response = _upload(client, "liste 2A.csv", _csv_bytes(tmp_path, ROWS), csrf)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    text = unescape(page_text(page.text))
    assert "Liste « liste 2A.csv » enregistrée : 3 stagiaire(s)." in text
    assert "Stagiaires de la liste actuelle (3)" in text
    for last, first, klass, company, *_ in ROWS:
        assert f"{last.upper()} {first} {klass} {company}" in text
    installed = root / "input_templates" / "roster.csv"
    assert installed.read_bytes() == (tmp_path / "liste.csv").read_bytes()
    assert not (root / "input_templates" / "roster.xlsx").exists()
    kept = list((root / "input_templates" / "anciennes_listes").glob("roster-*.xlsx"))
    assert len(kept) == 1  # the template grille init wrote, kept aside
    assert Workspace(root).roster_path == installed
    assert not list((root / "output" / ".depots").rglob("*.csv"))  # cleaned up
    cli = run(root, "generate", "--jobs", "1")  # the CLI, without --roster, reads it too
    assert cli.exit_code == 0, cli.output
    assert "3 classeur(s) créé(s)" in cli.output


def test_roster_upload__bad__every_problem_as_a_table__same_text_as_the_cli(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    client = logged_in(root)
    before = (root / "input_templates" / "roster.xlsx").read_bytes()
    data = _csv_bytes(tmp_path, BAD_ROWS, "mauvaise.csv")
    response = _upload(client, "mauvaise.csv", data, csrf_of(client.get("/stagiaires").text))
    assert response.status_code == 400
    text = unescape(page_text(response.text))
    cli = run(root, "generate", "--roster", str(tmp_path / "mauvaise.csv"))
    assert cli.exit_code == 2
    problems = read_rosters([tmp_path / "mauvaise.csv"]).problems
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) >= 3
    assert f"Liste des stagiaires « mauvaise.csv » : {len(errors)} problème(s) à corriger" in text
    checked = unescape(response.text).split('id="titre-verification"')[1].split("</section>")[0]
    rows = re.findall(r"<tr class=\"probleme-[a-z]+\">(.*?)</tr>", checked, re.S)
    cells = [[page_text(c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)] for row in rows]
    assert len(cells) == len(problems)
    for problem, row in zip(problems, cells, strict=True):
        assert f"Erreur — {problem}" in cli.output  # the CLI's line…
        assert row == [  # …split in the table's columns
            "Erreur", "mauvaise.csv", str(problem.row), problem.column, page_text(problem.message),
        ]  # fmt: skip
    assert {row[2] for row in cells} == {"2", "3", "4"}
    assert {row[3] for row in cells} >= {"Email tuteur", "Début", "Classe"}
    assert (root / "input_templates" / "roster.xlsx").read_bytes() == before  # not replaced
    assert not (root / "input_templates" / "roster.csv").exists()


def test_roster_upload__not_a_roster__french_message(tmp_path: Path) -> None:
    client = logged_in(_campaign(tmp_path / "c"))
    csrf = csrf_of(client.get("/stagiaires").text)
    response = _upload(client, "photo.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, csrf)
    assert response.status_code == 400
    text = unescape(page_text(response.text))
    assert "photo.csv" in text and "Vérification de « photo.csv »" in text
    empty = _upload(client, "", b"", csrf)
    assert empty.status_code == 400
    assert "Choisissez le fichier de la liste (.xlsx ou .csv)." in unescape(empty.text)


def test_roster_upload__hostile_file_name__stays_inside_the_campaign(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "deep" / "c")
    client = logged_in(root)
    csrf = csrf_of(client.get("/stagiaires").text)
    response = _upload(client, "../../x.csv", _csv_bytes(tmp_path, ROWS), csrf)
    assert response.status_code == 303
    text = unescape(page_text(client.get(response.headers["location"]).text))
    assert "Liste « x.csv » enregistrée : 3 stagiaire(s)." in text
    assert [p for p in (tmp_path / "deep").rglob("x.csv")] == []
    assert not (root.parent / "x.csv").exists() and not (root / "x.csv").exists()
    assert (root / "input_templates" / "roster.csv").is_file()
    windows = _upload(client, "..\\..\\..\\y.csv", _csv_bytes(tmp_path, ROWS), csrf)
    assert windows.status_code == 303
    assert not list(tmp_path.rglob("y.csv"))


def test_roster_upload__oversized__french_413__nothing_kept(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    client = logged_in(root)
    csrf = csrf_of(client.get("/stagiaires").text)
    client.app.upload_limits[ROSTER_UPLOAD] = 4096  # type: ignore[attr-defined]
    big = _csv_bytes(tmp_path, ROWS * 40)
    response = _upload(client, "grande.csv", big, csrf)
    assert response.status_code == 413
    assert "Envoi refusé : il dépasse la taille permise (4 ko). Rien n'a été enregistré." in (
        unescape(response.text)
    )
    # streamed without a declared length: stopped while it arrives, its start removed
    body, boundary = _multipart(csrf, "grande.csv", big)
    streamed = client.post(
        ROSTER_UPLOAD,
        content=iter([body[i : i + 1024] for i in range(0, len(body), 1024)]),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert streamed.status_code == 413
    assert "il dépasse la taille permise (4 ko)" in unescape(streamed.text)
    assert not list((root / "output").rglob("grande.csv"))
    assert not (root / "input_templates" / "roster.csv").exists()


def _multipart(csrf: str, name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "limite-grille-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="liste"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, boundary


def test_forms_without_csrf__refused__nothing_changed(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    client = logged_in(root)
    before = (root / "grille.toml").read_bytes()
    refused = [
        client.post("/campagne/reglages", data={"campagne.etablissement": "Pirate"}),
        client.post("/campagne/creer", data={"dossier": str(tmp_path / "autre"), **CREATION}),
        client.post("/campagne/ouvrir", data={"dossier": str(root)}),
        client.post(ROSTER_UPLOAD, files={"liste": ("l.csv", _csv_bytes(tmp_path, ROWS))}),
        client.post(
            ROSTER_UPLOAD,
            data={"csrf": "faux"},
            files={"liste": ("l.csv", _csv_bytes(tmp_path, ROWS))},
        ),
        client.post("/classeurs/generer", data={}),
    ]
    for response in refused:
        assert response.status_code == 403
        assert "Formulaire refusé : il lui manque le jeton" in unescape(response.text)
    assert (root / "grille.toml").read_bytes() == before
    assert not (tmp_path / "autre").exists()
    assert not (root / "input_templates" / "roster.csv").exists()
    assert not list((root / "output" / ".depots").rglob("l.csv"))
    assert not (root / "output" / "classeurs").exists()


# ------------------------------------------------------------------ classeurs


def _generate(client: object, force: bool = False) -> str:
    page = client.get("/classeurs").text  # type: ignore[attr-defined]
    form = {"csrf": csrf_of(page), **({"refaire": "oui"} if force else {})}
    response = client.post("/classeurs/generer", data=form, follow_redirects=False)  # type: ignore[attr-defined]
    assert response.status_code == 303
    location: str = response.headers["location"]
    assert location.startswith("/travail/")
    _wait_job(client, location)
    text: str = unescape(page_text(client.get(location).text))  # type: ignore[attr-defined]
    return text


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    root = _campaign(tmp_path / "c")
    client = logged_in(root)
    csrf = csrf_of(client.get("/stagiaires").text)
    assert _upload(client, "liste.csv", _csv_bytes(tmp_path, ROWS), csrf).status_code == 303
    text = _generate(client)
    assert "3 classeur(s) créé(s), 0 régénéré(s), 0 inchangé(s), dans output/classeurs." in text
    assert "créé : ABADIE Chloé (BTS 2A) → output/classeurs/BTS_2A/" in text
    yield client, root


def test_generate__as_a_job__workbooks_on_disk__what_the_cli_says(
    generated: tuple[object, Path], tmp_path: Path
) -> None:
    client, root = generated
    books = sorted((root / "output" / "classeurs").rglob("*.xlsx"))
    assert len(books) == 3
    for book in books:
        assert openpyxl.load_workbook(book).sheetnames  # a real workbook
    # a setting the workbooks show changed: made again, with the CLI's reason
    form = _settings_form(client, client.get("/campagne").text, root)  # type: ignore[attr-defined]
    form["campagne.etablissement"] = "Lycée Victor Hugo"
    client.post("/campagne/reglages", data=form)  # type: ignore[attr-defined]
    text = _generate(client)
    assert "régénéré (configuration de la campagne modifiée) : ABADIE Chloé (BTS 2A)" in text
    assert "0 classeur(s) créé(s), 3 régénéré(s), 0 inchangé(s)" in text
    # a student left the roster: named, workbook kept
    csrf = csrf_of(client.get("/stagiaires").text)  # type: ignore[attr-defined]
    assert _upload(client, "liste.csv", _csv_bytes(tmp_path, ROWS[:2]), csrf).status_code == 303
    text = _generate(client)
    assert "DUPONT Léa (BTS 2B) n'est plus dans la liste : son classeur est conservé." in text
    assert "0 classeur(s) créé(s), 0 régénéré(s), 2 inchangé(s)" in text
    assert len(list((root / "output" / "classeurs").rglob("*.xlsx"))) == 3


def test_generate__roster_with_errors__its_problems_in_the_outcome(tmp_path: Path) -> None:
    root = _campaign(tmp_path / "c")
    write_csv(root / "input_templates" / "roster.csv", [ROSTER_HEADER, *BAD_ROWS])
    (root / "input_templates" / "roster.xlsx").unlink()  # typed by hand in the folder
    client = logged_in(root)
    text = _generate(client)
    assert "Liste des stagiaires « roster.csv » : 3 problème(s) à corriger ; aucun classeur" in text
    problem = read_rosters([root / "input_templates" / "roster.csv"]).problems[0]
    assert f"Erreur — {page_text(str(problem))}" in text
    assert not (root / "output" / "classeurs").exists()


def test_workbooks_page__download_one__and_a_class_zip_of_its_workbooks_only(
    generated: tuple[object, Path],
) -> None:
    client, root = generated
    page = client.get("/classeurs").text  # type: ignore[attr-defined]
    text = unescape(page_text(page))
    assert "Classeurs par classe (3)" in text
    assert "Télécharger les 2 classeur(s) de BTS 2A (.zip)" in text
    links = re.findall(r'href="(/fichier/output/classeurs/[^"]+\.xlsx)"', page)
    assert len(links) == 3
    one = client.get(links[0])  # type: ignore[attr-defined]
    assert one.status_code == 200
    on_disk = root / links[0].removeprefix("/fichier/")
    assert one.content == on_disk.read_bytes()
    response = client.get("/classeurs/classe.zip", params={"classe": "BTS 2A"})  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert "classeurs-BTS_2A.zip" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        expected = sorted(p.name for p in (root / "output" / "classeurs" / "BTS_2A").glob("*.xlsx"))
        assert names == expected and len(names) == 2
        for name in names:
            assert (
                archive.read(name) == (root / "output" / "classeurs" / "BTS_2A" / name).read_bytes()
            )
    assert not list((root / "output" / ".televersements").glob("*.zip"))  # removed once sent
    unknown = client.get("/classeurs/classe.zip", params={"classe": "BTS 9Z"})  # type: ignore[attr-defined]
    assert unknown.status_code == 404
    assert "Aucun classeur pour la classe « BTS 9Z »." in unescape(unknown.text)


def test_start_pages__no_inline_script_nor_style(generated: tuple[object, Path]) -> None:
    client, _ = generated
    for path in ("/campagne", "/stagiaires", "/classeurs"):
        page = client.get(path).text  # type: ignore[attr-defined]
        assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/htmx.min.js" defer>']
        assert "<style" not in page
        assert not re.search(r"<[^>]+\s(?:style|on[a-z]+)\s*=", page)
        assert 'aria-current="page"' in page
        for field in re.findall(r'<input id="([^"]+)"', page):  # every field has its label
            assert f'<label for="{field}"' in page, (path, field)


# ------------------------------------------------------------------ the command


def test_ui_command__folder_without_campaign__starts_on_the_creation_page(tmp_path: Path) -> None:
    folder = tmp_path / "nouvelle"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ui", "--dir", str(folder), "--no-browser",
         "--port", "18765"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.stdout is not None:
            line = process.stdout.readline()
            lines.append(line)
            if "?token=" in line or not line:
                break
        assert f"Aucune campagne dans « {folder} » (grille.toml absent)" in "".join(lines)
        url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", lines[-1])
        assert url is not None
        with httpx.Client(base_url=f"http://127.0.0.1:{url.group(1)}") as client:
            page = client.get(f"/?token={url.group(2)}", follow_redirects=True)
            assert page.status_code == 200
            assert str(page.url).endswith("/campagne")
            assert "Créer la campagne" in unescape(page.text)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Interface arrêtée." in out and "Traceback" not in err
    assert not (folder / "grille.toml").exists()
