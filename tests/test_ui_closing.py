"""The pages that close the season in `grille ui`: « Bilans » (write the reports as a job,
open each Word and PDF file) and « Archive » (archive a class, download it, verify an
uploaded archive, purge a class after a typed confirmation). Real campaigns, real files,
the same library steps as `grille report`, `grille archive` and `grille purge`."""

from __future__ import annotations

import io
import shutil
import sqlite3
import time
import zipfile
from html import unescape
from pathlib import Path

import docx
import openpyxl
import pytest
from click.testing import CliRunner

from pipeline import report_files
from pipeline.cli import cli
from pipeline.ui.app import interface_of
from pipeline.ui.jobs import DONE, FAILED, Job
from pipeline.ui.uploads import UPLOADS as UPLOADS_DIR
from tests.conftest import write_csv
from tests.test_collect import ROWS, _answers_for
from tests.tutors import fill, make_campaign, run, workbook_of
from tests.ui_helpers import close_interfaces, csrf_of, logged_in, page_text  # noqa: F401

YEAR_GLOB = "output/archive/*/BTS_2A.zip"


@pytest.fixture(scope="module")
def returned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Once per module: a campaign whose tutors answered for Abadie (incomplete), Bernard,
    Chevallier (BTS 2A) and Da Silva (BTS 2B); no bilan written yet."""
    base = tmp_path_factory.mktemp("cloture")
    root = make_campaign(base / "campagne", ROWS, write_csv)
    inbox = base / "retours"
    fill(
        workbook_of(root, "Abadie"),
        inbox / "abadie.xlsx",
        _answers_for("Sophie Garnier", appreciation=None),
    )
    fill(workbook_of(root, "Bernard"), inbox / "bernard.xlsx", _answers_for("Marc Dubreuil"))
    fill(workbook_of(root, "Chevallier"), inbox / "chevallier.xlsx", _answers_for("S. Garnier"))
    fill(workbook_of(root, "Da Silva"), inbox / "dasilva.xlsx", _answers_for("J. Lemaître"))
    assert run(root, "collect", str(inbox)).exit_code == 0
    return base


@pytest.fixture
def campaign(returned: Path, tmp_path: Path) -> Path:
    """A fresh copy of the campaign (its database holds relative paths)."""
    shutil.copytree(returned, tmp_path / "copie")
    return tmp_path / "copie" / "campagne"


@pytest.fixture
def reported(campaign: Path) -> Path:
    """The campaign with its bilans written by the CLI."""
    result = run(campaign, "report")
    assert result.exit_code == 0, result.output
    return campaign


@pytest.fixture
def archived(reported: Path) -> Path:
    """The campaign with BTS 2A archived by the CLI (not verified): the zip."""
    result = run(reported, "archive", "--class", "BTS 2A")
    assert result.exit_code == 0, result.output
    (zip_path,) = reported.glob(YEAR_GLOB)
    return zip_path


def _job_of(client: object, response: object) -> Job:
    """The job a POST started (303 to its page), once it ended."""
    assert response.status_code == 303, response.text  # type: ignore[attr-defined]
    location = response.headers["location"]  # type: ignore[attr-defined]
    assert location.startswith("/travail/"), location
    job = interface_of(client.app).jobs.get(location.rsplit("/", 1)[-1])  # type: ignore[attr-defined]
    assert job is not None
    deadline = time.monotonic() + 120
    while job.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not job.running
    return job


def _said(client: object, job: Job) -> str:
    """The text of the job's page once it ended: what the teacher reads."""
    page = client.get(f"/travail/{job.job_id}")  # type: ignore[attr-defined]
    assert page.status_code == 200
    return unescape(page_text(page.text))


def _post(client: object, url: str, page: str, **fields: str) -> object:
    data = {"csrf": csrf_of(client.get(page).text), **fields}  # type: ignore[attr-defined]
    return client.post(url, data=data, follow_redirects=False)  # type: ignore[attr-defined]


def _upload(client: object, name: str, data: bytes, csrf: bool = True) -> object:
    fields = {"csrf": csrf_of(client.get("/archive").text)} if csrf else {}  # type: ignore[attr-defined]
    return client.post(  # type: ignore[attr-defined]
        "/archive/verifier",
        data=fields,
        files={"archive": (name, data, "application/zip")},
        follow_redirects=False,
    )


def _uploads_left(root: Path) -> list[Path]:
    folder = root / "output" / UPLOADS_DIR
    return sorted(folder.rglob("*")) if folder.exists() else []


def _db(root: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(root / "output" / "grille.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


# ------------------------------------------------------------------ bilans


def test_bilans__job_writes_the_word_files__the_page_lists_them__downloads_work(
    campaign: Path,
) -> None:
    client = logged_in(campaign)
    assert "pas encore écrit" in page_text(client.get("/bilans").text)

    job = _job_of(client, _post(client, "/bilans/ecrire", "/bilans", classe=""))

    assert job.state == DONE
    said = _said(client, job)
    folder = campaign / "output" / "rapports"
    written = sorted(folder.rglob("*.docx"))
    assert len(written) == 6  # 4 students, 2 class bilans
    for path in written:
        relative = path.relative_to(campaign).as_posix()
        assert f"écrit : {relative}" in said
    assert "Pas de bilan pour ÉTIENNE Lou (BTS 2B) : aucun retour du tuteur." in said
    assert "6 bilan(s) écrit(s) dans output/rapports." in said
    assert 'href="/bilans"' in client.get(f"/travail/{job.job_id}").text

    page = client.get("/bilans")
    text = page_text(page.text)
    assert "BTS 2A — 3 bilan(s) sur 3 stagiaire(s)" in text
    assert "BTS 2B — 1 bilan(s) sur 4 stagiaire(s)" in text
    assert "pas de retour du tuteur" in text
    links = [p.relative_to(campaign).as_posix() for p in written]
    for relative in links:
        assert f'href="/fichier/{relative}"' in page.text
        got = client.get(f"/fichier/{relative}")
        assert got.status_code == 200
        assert got.content == (campaign / relative).read_bytes()
        opened = docx.Document(io.BytesIO(got.content))
        assert any(p.text.strip() for p in opened.paragraphs)
    abadie = docx.Document(str(next(p for p in written if "ABADIE" in p.name)))
    cells = [c.text for t in abadie.tables for r in t.rows for c in r.cells]
    assert any("Chloé" in text for text in [*(p.text for p in abadie.paragraphs), *cells])


def test_bilans__one_class__a_bilan_edited_by_hand_is_kept_and_the_outcome_says_so(
    reported: Path,
) -> None:
    (bernard,) = reported.glob("output/rapports/*/bilan_BERNARD_*.docx")
    edited = docx.Document(str(bernard))
    edited.add_paragraph("Ajout du professeur.")
    edited.save(str(bernard))
    client = logged_in(reported)

    job = _job_of(client, _post(client, "/bilans/ecrire", "/bilans", classe="BTS 2A"))

    said = _said(client, job)
    relative = bernard.relative_to(reported).as_posix()
    assert (
        f"Attention — {relative} a été modifié à la main : conservé ; nouvelle version dans "
        f"{bernard.stem}_nouveau.docx."
    ) in said
    assert "3 bilan(s) + " not in said and "4 bilan(s) écrit(s)" in said  # 3 students + class
    assert "Ajout du professeur." in [p.text for p in docx.Document(str(bernard)).paragraphs]
    page = client.get("/bilans?classe=BTS+2A").text
    assert f"{bernard.stem}_nouveau.docx" in page and bernard.name in page
    assert "BTS 2B" not in page_text(page).split("Afficher")[-1]  # only the class asked


def test_bilans__pdf_without_libreoffice__said_clearly__word_bilans_still_written(
    campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "sans_libreoffice"))
    client = logged_in(campaign)
    page = client.get("/bilans").text
    assert report_files.NO_LIBREOFFICE in unescape(page)
    assert 'id="bilans-pdf" type="checkbox" name="pdf" value="1" disabled' in page

    job = _job_of(client, _post(client, "/bilans/ecrire", "/bilans", classe="", pdf="1"))

    assert job.state == DONE
    assert f"Attention — {report_files.NO_LIBREOFFICE}" in _said(client, job)
    assert len(list(campaign.glob("output/rapports/*/*.docx"))) == 6
    assert list(campaign.glob("output/rapports/*/*.pdf")) == []


@pytest.mark.soffice
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) absent")
def test_bilans__with_pdf__each_pdf_listed_and_downloadable(campaign: Path) -> None:
    client = logged_in(campaign)

    job = _job_of(client, _post(client, "/bilans/ecrire", "/bilans", classe="BTS 2B", pdf="1"))

    said = _said(client, job)
    pdfs = sorted(campaign.glob("output/rapports/*/*.pdf"))
    assert len(pdfs) == 2  # Da Silva and the class bilan of BTS 2B
    page = client.get("/bilans").text
    for pdf in pdfs:
        relative = pdf.relative_to(campaign).as_posix()
        assert f"PDF : {relative}" in said
        assert f'href="/fichier/{relative}"' in page
        got = client.get(f"/fichier/{relative}")
        assert got.status_code == 200 and got.content.startswith(b"%PDF")
        assert got.headers["content-type"] == "application/pdf"


# ------------------------------------------------------------------ archive


def test_archive__job_creates_the_zip__the_page_offers_it_for_download(reported: Path) -> None:
    client = logged_in(reported)
    assert "Aucune archive pour l'instant." in page_text(client.get("/archive").text)

    job = _job_of(client, _post(client, "/archive/creer", "/archive", classe="BTS 2A"))

    assert job.state == DONE
    (zip_path,) = reported.glob(YEAR_GLOB)
    relative = zip_path.relative_to(reported).as_posix()
    said = _said(client, job)
    assert f"archive : {relative}" in said
    assert "Classe BTS 2A, année" in said
    assert "3 bilan(s), 1 bilan(s) de classe" in said
    assert ("Télécharger BTS_2A.zip (BTS 2A)", f"/fichier/{relative}") in job.outcome.links
    page = client.get("/archive")
    assert f'href="/fichier/{relative}"' in page.text
    assert "pas encore" in page_text(page.text)
    got = client.get(f"/fichier/{relative}")
    assert got.status_code == 200 and got.content == zip_path.read_bytes()
    assert "manifeste.json" in zipfile.ZipFile(io.BytesIO(got.content)).namelist()


def test_archive__without_any_bilan__the_job_says_what_to_do_first(campaign: Path) -> None:
    client = logged_in(campaign)

    job = _job_of(client, _post(client, "/archive/creer", "/archive", classe=""))

    assert job.state == FAILED
    assert (
        "Aucun bilan à archiver : lancez d'abord « grille report » (dans l'interface : page "
        "Bilans, « Écrire les bilans »)." in _said(client, job)
    )  # the command's sentence, and where the interface does the same
    assert list(campaign.glob("output/archive/*/*.zip")) == []


def test_archive_verify__an_uploaded_intact_copy__ok_lines_recorded_upload_deleted(
    archived: Path,
) -> None:
    root = archived.parents[3]
    client = logged_in(root)

    job = _job_of(client, _upload(client, "BTS_2A.zip", archived.read_bytes()))

    said = _said(client, job)
    assert job.state == DONE
    assert "BTS_2A.zip : empreinte SHA-256 de l'archive :" in said
    assert "signature de la campagne : valide" in said
    assert "BTS_2A.zip : archive intègre, chaque fichier correspond au manifeste." in said
    assert (
        "Vérification enregistrée pour BTS 2A : « grille purge » (dans l'interface : page "
        "Archive) est possible." in said
    )
    assert _db(root, "SELECT verified_at IS NOT NULL FROM archives") == [(1,)]
    assert _uploads_left(root) == []
    assert "Purger BTS 2A…" in page_text(client.get("/archive").text)


def test_archive_verify__a_tampered_copy__refused_with_the_file_named(archived: Path) -> None:
    root = archived.parents[3]
    source = zipfile.ZipFile(archived)
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith(".docx") and "BERNARD" in item.filename:
                changed = item.filename
                data = data + b"\0"
            target.writestr(item, data)
    client = logged_in(root)

    job = _job_of(client, _upload(client, "copie_clé.zip", tampered.getvalue()))

    said = _said(client, job)
    assert f"Erreur — {changed} : contenu modifié depuis l'archivage" in said
    assert "copie_clé.zip : 1 problème(s) ; l'archive n'est pas intègre." in said
    assert "archive intègre" not in said
    assert _db(root, "SELECT verified_at FROM archives") == [(None,)]
    assert _uploads_left(root) == []


def test_archive_verify__a_zip_bomb_and_a_file_that_is_no_zip__refused(reported: Path) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifeste.json", "{}")
        package.writestr("bilans/zeros.docx", b"\0" * (64 * 1024 * 1024))
    assert len(bomb.getvalue()) < 200_000
    client = logged_in(reported)

    bombed = _said(client, _job_of(client, _upload(client, "bombe.zip", bomb.getvalue())))
    not_zip = _said(client, _job_of(client, _upload(client, "bilans.zip", b"%PDF-1.4 pas un zip")))

    assert (
        "Erreur — bombe.zip : archive illisible (« bilans/zeros.docx » est compressé de façon "
        "anormale (plus de 1000 fois) : fichier refusé par sécurité (bombe zip ?))."
    ) in bombed
    assert "bombe.zip : 1 problème(s) ; l'archive n'est pas intègre." in bombed
    assert "Erreur — bilans.zip : archive illisible (zip endommagé ou incomplet)." in not_zip
    assert "l'archive n'est pas intègre" in not_zip
    assert _uploads_left(reported) == []


def test_archive_verify__beyond_the_upload_limit__refused_in_french_nothing_kept(
    reported: Path,
) -> None:
    client = logged_in(reported, upload_max=64 * 1024)
    assert "Taille maximale : 64 ko." in page_text(client.get("/archive").text)

    response = _upload(client, "gros.zip", b"x" * (200 * 1024))

    assert response.status_code == 413  # type: ignore[attr-defined]
    assert (
        "Envoi refusé : il dépasse la taille permise (64 ko). Rien n'a été enregistré."
        in unescape(response.text)  # type: ignore[attr-defined]
    )
    assert _uploads_left(reported) == []
    small = client.post("/bilans/ecrire", data={"csrf": "x" * (2 * 1024 * 1024)})
    assert small.status_code == 413  # the forms keep their own (smaller) limit
    assert "(1 Mo)" in unescape(small.text)


def test_archive_verify__the_browser_file_name_never_chooses_where_it_is_written(
    reported: Path,
) -> None:
    before = (reported / "grille.toml").read_bytes()
    client = logged_in(reported)

    job = _job_of(client, _upload(client, "../../grille.toml", b"PK\x03\x04 faux"))

    assert "grille.toml : archive illisible" in _said(client, job)
    assert (reported / "grille.toml").read_bytes() == before
    assert _uploads_left(reported) == []


def test_archive_verify__no_file_chosen__french_refusal(reported: Path) -> None:
    client = logged_in(reported)
    response = client.post(
        "/archive/verifier",
        data={"csrf": csrf_of(client.get("/archive").text)},
        files={"archive": ("", b"", "application/octet-stream")},
    )
    assert response.status_code == 400
    assert "Aucun fichier reçu : choisissez l'archive (.zip) à vérifier" in unescape(response.text)
    assert _uploads_left(reported) == []


# ------------------------------------------------------------------ purge


def _verified(root: Path, zip_path: Path) -> None:
    result = run(root, "archive", "verify", str(zip_path))
    assert result.exit_code == 0, result.output


def test_purge__not_archived__refused_in_french_nothing_deleted(archived: Path) -> None:
    root = archived.parents[3]
    client = logged_in(root)
    page = client.get("/archive/purge?classe=BTS+2B")
    assert "BTS 2B : aucune archive." in unescape(page_text(page.text))
    assert 'action="/archive/purger"' not in page.text
    workbooks = sorted(root.glob("output/classeurs/**/*.xlsx"))

    job = _job_of(
        client, _post(client, "/archive/purger", "/archive", classe="BTS 2B", confirmation="BTS 2B")
    )

    assert job.state == FAILED
    said = _said(client, job)
    assert "Purge refusée — BTS 2B : aucune archive." in said
    assert "Rien n'a été supprimé." in said
    assert sorted(root.glob("output/classeurs/**/*.xlsx")) == workbooks


def test_purge__archived_but_not_verified__refused(archived: Path) -> None:
    root = archived.parents[3]
    client = logged_in(root)
    job = _job_of(
        client, _post(client, "/archive/purger", "/archive", classe="BTS 2A", confirmation="BTS 2A")
    )
    assert job.state == FAILED
    assert "BTS 2A : sa dernière archive n'a pas été vérifiée." in _said(client, job)
    assert _db(root, "SELECT COUNT(*) FROM students WHERE class_name = 'BTS 2A'") == [(3,)]


@pytest.mark.parametrize("typed", ["", "BTS 2B", "bts", "BTS 2A et plus"])
def test_purge__without_the_class_name_typed__refused(archived: Path, typed: str) -> None:
    root = archived.parents[3]
    _verified(root, archived)
    client = logged_in(root)
    page = client.get("/archive/purge?classe=BTS+2A")
    assert "Pour confirmer, tapez le nom de la classe : BTS 2A" in page_text(page.text)

    response = _post(client, "/archive/purger", "/archive", classe="BTS 2A", confirmation=typed)

    assert response.status_code == 400  # type: ignore[attr-defined]
    assert (
        "Purge refusée : pour confirmer, tapez exactement le nom de la classe « BTS 2A » dans "
        "le champ prévu. Rien n'a été supprimé."
    ) in unescape(response.text)  # type: ignore[attr-defined]
    assert _db(root, "SELECT COUNT(*) FROM students WHERE class_name = 'BTS 2A'") == [(3,)]


def test_purge__archived_verified_and_confirmed__done_archive_kept(archived: Path) -> None:
    root = archived.parents[3]
    _verified(root, archived)
    client = logged_in(root)
    page = page_text(client.get("/archive/purge?classe=BTS+2A").text)
    assert "3 stagiaire(s) de la base, avec leurs envois, retours et réponses" in page
    assert "3 classeur(s) dans output/classeurs" in page

    job = _job_of(
        client,
        _post(client, "/archive/purger", "/archive", classe="BTS 2A", confirmation=" BTS 2A "),
    )

    assert job.state == DONE, job.outcome.lines
    said = _said(client, job)
    assert "Données personnelles supprimées : BTS 2A." in said
    assert "3 classeur(s) dans output/classeurs" in said
    assert archived.is_file()
    assert _db(root, "SELECT COUNT(*) FROM students WHERE class_name = 'BTS 2A'") == [(0,)]
    assert _db(root, "SELECT COUNT(*) FROM students WHERE class_name = 'BTS 2B'") == [(4,)]
    assert list(root.glob("output/classeurs/*2A*/*.xlsx")) == []
    assert list(root.glob("output/rapports/*2A*/*.docx")) == []
    tracking = openpyxl.load_workbook(root / "output" / "suivi.xlsx")
    names = [row[1] for row in tracking["Suivi"].iter_rows(min_row=2, values_only=True)]
    assert "ABADIE" not in names and "DA SILVA" in names
    assert "BTS 2A" not in page_text(client.get("/bilans").text).split("Afficher")[-1]


# ------------------------------------------------------------------ refusals, pages


def test_closing_forms__without_the_csrf_token__refused_nothing_done(archived: Path) -> None:
    root = archived.parents[3]
    _verified(root, archived)
    client = logged_in(root)
    for url, data in (
        ("/bilans/ecrire", {"classe": ""}),
        ("/archive/creer", {"classe": "BTS 2A"}),
        ("/archive/purger", {"classe": "BTS 2A", "confirmation": "BTS 2A"}),
    ):
        response = client.post(url, data=data, follow_redirects=False)
        assert response.status_code == 403, url
        assert "Formulaire refusé : il lui manque le jeton" in unescape(response.text)
    response = _upload(client, "BTS_2A.zip", archived.read_bytes(), csrf=False)
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert interface_of(client.app).jobs.current() is None  # type: ignore[arg-type]
    assert len(list(root.glob("output/archive/*/*.zip"))) == 1
    assert _db(root, "SELECT COUNT(*) FROM students WHERE class_name = 'BTS 2A'") == [(3,)]
    assert _uploads_left(root) == []


def test_closing_pages__no_inline_script_nor_style__every_field_labelled(archived: Path) -> None:
    import re

    root = archived.parents[3]
    _verified(root, archived)
    client = logged_in(root)
    for path in ("/bilans", "/archive", "/archive/purge?classe=BTS+2A"):
        page = client.get(path).text
        assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/htmx.min.js" defer>']
        assert "<style" not in page
        assert not re.search(r"<[^>]+\s(?:style|on[a-z]+)\s*=", page)
        for field_id in re.findall(r'<(?:input|select)[^>]*\sid="([^"]+)"', page):
            assert f'for="{field_id}"' in page, (path, field_id)
        hidden = re.findall(r'<input type="hidden"[^>]*>', page)
        fields = re.findall(r"<(?:input|select)\b[^>]*>", page)
        assert all(' id="' in f for f in fields if f not in hidden), (path, fields)


def test_demo__ends_by_saying_how_to_open_it_in_the_interface__pages_show_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (
        result.output.splitlines()[-1] == f"Pour l'ouvrir dans l'interface : grille ui --dir {root}"
    )
    client = logged_in(root)
    bilans = page_text(client.get("/bilans").text)
    assert "BTS MUC 2A — 5 bilan(s) sur 6 stagiaire(s)" in bilans
    archive = page_text(client.get("/archive").text)
    assert "Télécharger BTS_MUC_2A.zip" in archive and "Télécharger BTS_MUC_2B.zip" in archive


def test_archive_verify__two_files_at_once__refused_nothing_kept(archived: Path) -> None:
    root = archived.parents[3]
    client = logged_in(root)
    response = client.post(
        "/archive/verifier",
        data={"csrf": csrf_of(client.get("/archive").text)},
        files=[
            ("archive", ("BTS_2A.zip", archived.read_bytes(), "application/zip")),
            ("archive", ("BTS_2A.zip", archived.read_bytes(), "application/zip")),
        ],
    )
    assert response.status_code == 400
    assert "Une archive à la fois : choisissez un seul fichier .zip" in unescape(response.text)
    assert _uploads_left(root) == []
    assert _db(root, "SELECT verified_at FROM archives") == [(None,)]


def test_student_statuses__of_one_student__the_same_as_in_the_whole_list(campaign: Path) -> None:
    """The student page reads only its student (`student_statuses(db, id)`): the same
    status, problems and return as when every student is read."""
    from pipeline import tracking

    db = sqlite3.connect(campaign / "output" / "grille.sqlite")
    db.row_factory = sqlite3.Row
    try:
        everyone = tracking.student_statuses(db)
        assert len(everyone) == len(ROWS)
        for status in everyone:
            assert tracking.student_statuses(db, status.student_id) == [status]
        assert tracking.student_statuses(db, "inconnu") == []
    finally:
        db.close()
    abadie = next(s for s in everyone if s.last_name == "Abadie")
    assert abadie.status == "incomplete" and abadie.missing and abadie.workbook_file


def test_archive_verify__an_upload_folder_left_by_a_stopped_interface__removed_a_day_later(
    archived: Path,
) -> None:
    import os

    root = archived.parents[3]
    uploads = root / "output" / UPLOADS_DIR
    old, recent = uploads / "ancien", uploads / "recent"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "BTS_2A.zip").write_bytes(b"moitie")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    client = logged_in(root)

    job = _job_of(client, _upload(client, "BTS_2A.zip", archived.read_bytes()))

    assert job.state == DONE
    assert not old.exists()
    assert (recent / "BTS_2A.zip").read_bytes() == b"moitie"  # maybe still being sent
