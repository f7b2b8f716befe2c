"""`grille ui`: the campaign in the browser, tested at the HTTP level (starlette's
TestClient over the real application, a real campaign, real SQLite) and as a real
process (`grille ui` started, asked, stopped with Ctrl+C).

The campaign: four students in two classes; Abadie returned a signed, complete workbook
and later an unsigned copy naming her (« à confirmer », waiting beside the signed one);
Bernard an incomplete one; Chevallier only an unsigned copy (it counts meanwhile);
Dupont nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator
from datetime import date
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from pipeline import state
from pipeline.ui import security
from pipeline.ui.app import interface_of
from tests.tutors import complete_answers, fill, make_campaign, run, workbook_of
from tests.ui_helpers import BASE, PORT, close_interfaces  # noqa: F401 (autouse fixture)
from tests.ui_helpers import app_client as _app_client
from tests.ui_helpers import csrf_of as _csrf
from tests.ui_helpers import flush as _flush
from tests.ui_helpers import logged_in as _logged_in
from tests.ui_helpers import page_text as _text

with warnings.catch_warnings():  # starlette now prefers httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROWS = [
    ["Abadie", "Chloé", "BTS 2A", "Agence Horizon", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Bernard", "Yanis", "BTS 2A", "Banque Solvéa", "Marc Dubreuil", "md@solvea.example", "05/01/2026", "27/02/2026"],
    ["Chevallier", "Inès", "BTS 2A", "Assurances B", "Sophie Garnier", "sg@horizon.example", "05/01/2026", "27/02/2026"],
    ["Dupont", "Léa", "BTS 2B", "Mutuelle <Hirondelles> & Cie", "Paul Roche", "pr@mutuelle.example", "05/01/2026", "27/02/2026"],
]  # fmt: skip
NO_SESSION = "Cette page ne s'ouvre qu'avec l'adresse affichée par « grille ui »"


def _answers(tutor: str, appreciation: str, **changes: Any) -> dict[str, Any]:
    answers = complete_answers()
    answers.update(signature=tutor, date=date(2026, 2, 20), appreciation=appreciation)
    answers.update(changes)
    return answers


def _stripped(source: Path, target: Path, shown_name: str, answers: dict[str, Any]) -> Path:
    """A filled copy of `source` without its hidden identity, naming `shown_name`: what
    copying the sheets into a new workbook and typing a name gives."""
    fill(source, target, answers)
    wb = openpyxl.load_workbook(target)
    del wb["_grille"]
    wb.custom_doc_props.props = []
    wb["Instructions"]["B5"].value = shown_name
    wb.save(target)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The campaign of this module, made once through the real CLI."""
    from tests.conftest import write_csv

    base = tmp_path_factory.mktemp("ui")
    root = make_campaign(base / "campagne", ROWS, write_csv)
    inbox = base / "retours"
    first_criterion = next(iter(complete_answers()))
    files = [
        fill(workbook_of(root, "Abadie"), inbox / "abadie.xlsx", _answers("Sophie Garnier", "Stagiaire remarquable.")),
        fill(workbook_of(root, "Bernard"), inbox / "bernard.xlsx", _answers("Marc Dubreuil", "Bien.", **{first_criterion: None})),
        _stripped(workbook_of(root, "Chevallier"), inbox / "chevallier-copie.xlsx", "CHEVALLIER Inès", _answers("Sophie Garnier", "Très bien.")),
    ]  # fmt: skip
    result = run(root, "collect", *map(str, files))
    assert result.exit_code == 0, result.output
    later = _stripped(
        workbook_of(root, "Bernard"),
        base / "plus-tard" / "copie-abadie.xlsx",
        "ABADIE Chloé",
        _answers("Marc Dubreuil", "Un autre texte."),
    )
    result = run(root, "collect", str(later))
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def campaign(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the module's campaign, for a test that writes."""
    return Path(shutil.copytree(built, tmp_path / "campagne"))


def _db(root: Path) -> sqlite3.Connection:
    db = sqlite3.connect(root / "output" / "grille.sqlite")
    db.row_factory = sqlite3.Row
    return db


def _ids(root: Path) -> dict[str, str]:
    with _db(root) as db:
        return {row[0]: row[1] for row in db.execute("SELECT last_name, student_id FROM students")}


def _returns(root: Path) -> dict[str, int]:
    with _db(root) as db:
        return dict(db.execute("SELECT file_name, id FROM returns").fetchall())


def _tracking_row(root: Path, last_name: str) -> dict[str, Any]:
    """The row of suivi.xlsx of the student called `last_name`, by header."""
    ws = openpyxl.load_workbook(root / "output" / "suivi.xlsx")["Suivi"]
    header = [c.value for c in ws[1]]
    row = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[1] == last_name.upper())
    return dict(zip(header, row, strict=True))


@pytest.fixture
def anonymous(built: Path) -> TestClient:
    """A client that never opened the start address."""
    return _app_client(built)[0]


@pytest.fixture
def reader(built: Path) -> TestClient:
    """A client that opened the start address, on the shared campaign (reads only)."""
    return _logged_in(built)


@pytest.fixture
def writer(campaign: Path) -> TestClient:
    """A client that opened the start address, on a copy of the campaign (writes)."""
    return _logged_in(campaign)


# ------------------------------------------------------------------ the session


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/suivi"),
        ("GET", "/stagiaire/inconnu"),
        ("GET", "/fichier/output/suivi.xlsx"),
        ("GET", "/static/htmx.min.js"),
        ("POST", "/stagiaire/inconnu/notes"),
    ],
)
def test_request_without_session__refused_403_in_french(
    anonymous: TestClient, method: str, path: str
) -> None:
    response = anonymous.request(method, path)
    assert response.status_code == 403
    assert "<h1>Accès refusé</h1>" in response.text
    assert NO_SESSION in unescape(response.text)
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_start_address__token_exchanged_for_an_httponly_strict_cookie__then_clean_url(
    built: Path,
) -> None:
    client, secrets = _app_client(built)
    response = client.get(
        f"/suivi?classe=BTS+2A&token={secrets.token}&statut=complete", follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/suivi?classe=BTS+2A&statut=complete"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"grille_session_{PORT}=")
    assert secrets.token not in cookie  # the cookie is not the token of the address
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    followed = client.get(response.headers["location"])
    assert followed.status_code == 200
    assert "ABADIE Chloé" in followed.text and "DUPONT Léa" not in followed.text


@pytest.mark.parametrize("token", ["faux", "", "x" * 43])
def test_wrong_token__refused_without_cookie(built: Path, token: str) -> None:
    client, _ = _app_client(built)
    response = client.get(f"/?token={token}", follow_redirects=False)
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert "n'est pas celui de l'interface en cours" in unescape(response.text)
    assert client.get("/").status_code == 403


def test_wrong_cookie__refused(built: Path) -> None:
    client, secrets = _app_client(built)
    client.cookies.set(f"grille_session_{PORT}", secrets.token)  # the token is not the session
    assert client.get("/").status_code == 403
    client.cookies.set(f"grille_session_{PORT + 1}", secrets.session)  # another port's cookie
    client.cookies.delete(f"grille_session_{PORT}")
    assert client.get("/").status_code == 403
    client.cookies.set(f"grille_session_{PORT}", secrets.session)
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (f"127.0.0.1:{PORT}", 200),
        (f"localhost:{PORT}", 200),
        (f"[::1]:{PORT}", 200),
        (f"evil.example:{PORT}", 403),  # DNS rebinding: a hostile name bound to 127.0.0.1
        (f"127.0.0.1:{PORT + 1}", 403),
        ("127.0.0.1", 403),
        (f"127.0.0.1.evil.example:{PORT}", 403),
    ],
)
def test_host_header__only_loopback_with_the_port(
    reader: TestClient, host: str, expected: int
) -> None:
    response = reader.get("/suivi", headers={"host": host})
    assert response.status_code == expected
    if expected == 403:
        assert f"ne répond qu'à http://127.0.0.1:{PORT}/" in unescape(response.text)


def test_token_address_with_a_foreign_host__refused_before_any_cookie(built: Path) -> None:
    client, secrets = _app_client(built)
    response = client.get(
        f"/?token={secrets.token}", headers={"host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("path", ["/", "/suivi", "/static/grille.css", "/nulle-part"])
def test_security_headers__on_pages_files_and_errors(reader: TestClient, path: str) -> None:
    for response in (reader.get(path), TestClient(reader.app, base_url=BASE).get(path)):
        headers = response.headers
        assert headers["content-security-policy"].startswith("default-src 'self';")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


def test_pages_load_no_inline_script_nor_style(reader: TestClient, built: Path) -> None:
    """What the CSP would block: every script and stylesheet comes from /static."""
    for path in ("/", "/suivi", f"/stagiaire/{_ids(built)['Bernard']}", "/nulle-part"):
        page = reader.get(path).text
        assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/htmx.min.js" defer>']
        assert "<style" not in page
        assert not re.search(r"<[^>]+\s(?:style|on[a-z]+)\s*=", page)
        assert '<link rel="stylesheet" href="/static/grille.css">' in page


def test_htmx__served_from_the_package_with_its_licence(reader: TestClient) -> None:
    response = reader.get("/static/htmx.min.js")
    assert response.status_code == 200
    assert response.text.startswith("/*! htmx.org 2.")
    assert "Zero-Clause BSD" in response.text
    assert "var htmx=function()" in response.text
    assert "javascript" in response.headers["content-type"]


# ------------------------------------------------------------------ forms: CSRF, origin, size


def _notes_form(client: TestClient, student_id: str) -> dict[str, str]:
    page = client.get(f"/stagiaire/{student_id}").text
    return {
        "csrf": _csrf(page),
        "shown_team_appreciation": "",
        "shown_notes": "",
        "team_appreciation": "Bon stage, équipe ravie.",
        "notes": "",
    }


@pytest.mark.parametrize("csrf", [None, "", "mauvais"])
def test_post_without_the_csrf_token__refused_403_nothing_stored(
    writer: TestClient, campaign: Path, csrf: str | None
) -> None:
    student = _ids(campaign)["Dupont"]
    form = _notes_form(writer, student)
    if csrf is None:
        del form["csrf"]
    else:
        form["csrf"] = csrf
    response = writer.post(f"/stagiaire/{student}/notes", data=form)
    assert response.status_code == 403
    assert "il lui manque le jeton de l'interface en cours" in unescape(response.text)
    assert "Rien n'a été enregistré." in unescape(response.text)
    with _db(campaign) as db:
        assert db.execute("SELECT COUNT(*) FROM teacher_notes").fetchone()[0] == 0


def test_csrf_token_of_another_run__refused(built: Path, campaign: Path) -> None:
    old = _logged_in(built)
    student = _ids(campaign)["Dupont"]
    form = _notes_form(old, student)  # a page of a previous run of « grille ui »
    client = _logged_in(campaign)
    assert client.post(f"/stagiaire/{student}/notes", data=form).status_code == 403


def test_post_from_another_origin__refused(writer: TestClient, campaign: Path) -> None:
    student = _ids(campaign)["Dupont"]
    form = _notes_form(writer, student)
    response = writer.post(
        f"/stagiaire/{student}/notes", data=form, headers={"origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert "ne vient pas d'une page de l'interface" in unescape(response.text)
    for origin in (BASE, "null"):  # "null": a browser's own POST under `no-referrer`
        ok = writer.post(f"/stagiaire/{student}/notes", data=form, headers={"origin": origin})
        assert ok.status_code == 200


def test_body_beyond_the_limit__413_in_french__declared_or_streamed(campaign: Path) -> None:
    client = _logged_in(campaign, max_body=4096)
    student = _ids(campaign)["Dupont"]
    form = _notes_form(client, student)
    form["team_appreciation"] = "x" * 5000
    declared = client.post(f"/stagiaire/{student}/notes", data=form)
    assert declared.status_code == 413
    assert "dépasse la taille permise (4 ko)" in declared.text

    body = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    streamed = client.post(
        f"/stagiaire/{student}/notes",
        content=(body[i : i + 1000] for i in range(0, len(body), 1000)),  # no Content-Length
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert "dépasse la taille permise (4 ko)" in streamed.text
    with _db(campaign) as db:
        assert db.execute("SELECT COUNT(*) FROM teacher_notes").fetchone()[0] == 0


# ------------------------------------------------------------------ downloads


def test_download__a_file_of_the_campaign_as_an_attachment(reader: TestClient, built: Path) -> None:
    workbook = workbook_of(built, "Dupont")
    relative = workbook.relative_to(built).as_posix()
    response = reader.get("/fichier/" + relative)
    assert response.status_code == 200
    assert response.content == workbook.read_bytes()
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "spreadsheetml" in response.headers["content-type"]


def test_download__a_return_under_the_name_the_tutor_gave_it(
    reader: TestClient, built: Path
) -> None:
    page = reader.get(f"/stagiaire/{_ids(built)['Bernard']}").text
    link = re.search(r'<a href="(/fichier/output/retours/[^"]+)" download>bernard.xlsx</a>', page)
    assert link, "no link to the return"
    url = unescape(link.group(1))
    assert url.endswith("?nom=bernard.xlsx")
    response = reader.get(url)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="bernard.xlsx"'
    stored = url.split("?")[0].rsplit("/", 1)[-1]
    for odd in ("../../x.xlsx", "bilan.exe", "", "a/b\\c.xlsx"):
        shown = reader.get(url.split("?")[0], params={"nom": odd}).headers["content-disposition"]
        expected = (
            "c.xlsx" if odd == "a/b\\c.xlsx" else "x.xlsx" if odd.startswith("..") else stored
        )
        assert shown == f'attachment; filename="{expected}"', odd


@pytest.mark.parametrize(
    "path",
    [
        "/fichier/.grille/cle_secrete",
        "/fichier/output/grille.sqlite",
        "/fichier/output/.grille.lock",
        "/fichier/output/../.grille/cle_secrete",
        "/fichier/output/%2e%2e/.grille/cle_secrete",
        "/fichier/output/%2E%2E/%2E%2E/etc/passwd",
        "/fichier//etc/passwd",
        "/fichier/%2Fetc%2Fpasswd",
        "/fichier/grille.toml",
        "/fichier/output/classeurs",
        "/fichier/output/nulle-part.xlsx",
        "/fichier/output/lien-dehors/passwd",
        "/fichier/output/lien-cle",
        "/fichier/output/.sauvegardes",
    ],
)
def test_download__outside_output_hidden_dotdot_or_escaping_link__404(
    campaign: Path, path: str
) -> None:
    (campaign / "output" / "lien-dehors").symlink_to("/etc")
    (campaign / "output" / "lien-cle").symlink_to(campaign / ".grille" / "cle_secrete")
    client = _logged_in(campaign)
    response = client.get(path)
    assert response.status_code == 404
    assert "Ce fichier n'est pas disponible." in unescape(response.text) or "Page introuvable" in (
        unescape(response.text)
    )
    key = (campaign / ".grille" / "cle_secrete").read_bytes()
    assert key not in response.content


def test_campaign_file__the_rules(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "output" / "rapports").mkdir(parents=True)
    (root / "input_templates").mkdir()
    (root / ".grille").mkdir()
    (root / ".grille" / "cle_secrete").write_text("cle")
    (root / "output" / "rapports" / "bilan.docx").write_bytes(b"docx")
    (root / "input_templates" / "roster.xlsx").write_bytes(b"xlsx")
    (root / "output" / "dedans").symlink_to(root / "output" / "rapports" / "bilan.docx")
    (root / "output" / "boucle").symlink_to(root / "output" / "boucle")
    assert (
        security.campaign_file(root, "output/rapports/bilan.docx")
        == (root / "output" / "rapports" / "bilan.docx").resolve()
    )
    assert security.campaign_file(root, "input_templates/roster.xlsx") is not None
    assert security.campaign_file(root, "output/dedans") is not None  # a link that stays inside
    for refused in (
        "", "output", "output/", "output/boucle", "output//rapports/bilan.docx", "/output/rapports/bilan.docx",
        "output\\rapports\\bilan.docx", "output/./rapports/bilan.docx", ".grille/cle_secrete",
        "output/rapports/../../.grille/cle_secrete", "output/rapports/bilan.docx\x00.txt",
    ):  # fmt: skip
        assert security.campaign_file(root, refused) is None, refused


# ------------------------------------------------------------------ pages


def test_home__campaign_identity_numbers_and_links(reader: TestClient, built: Path) -> None:
    page = reader.get("/").text
    text = _text(page)
    assert "<h1>Lycée Test — stages " in page
    assert "Établissement Lycée Test" in text
    assert "Grille d'évaluation" in unescape(page) and "(version " in text
    assert str(built.resolve()) in page
    assert "4 stagiaire(s), 2 classe(s)." in text
    assert "complet : 1" in text and "incomplet : 1" in text
    assert "2 retour(s) à confirmer" in text
    assert 'href="/suivi?classe=BTS%202A"' in page
    assert 'href="/fichier/output/suivi.xlsx"' in page


def test_suivi__every_student_with_status_and_counts(reader: TestClient) -> None:
    page = reader.get("/suivi").text
    text = _text(page)
    for name in ("ABADIE Chloé", "BERNARD Yanis", "CHEVALLIER Inès", "DUPONT Léa"):
        assert name in text
    assert "4 stagiaire(s) affiché(s) sur 4." in text
    assert "complet : 1" in text and "incomplet : 1" in text and "généré : 1" in text
    assert "retour à confirmer : 2" in text
    assert "Mutuelle &lt;Hirondelles&gt; &amp; Cie" in page  # escaped, not markup
    chevallier = re.search(r"CHEVALLIER Inès.*?</tr>", page, re.S)
    assert chevallier and "complet (à confirmer)" in chevallier.group(0)
    bernard = re.search(r"BERNARD Yanis.*?</tr>", page, re.S)
    assert bernard and "1 manquant(s)" in bernard.group(0)


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("classe=BTS+2B", {"DUPONT Léa"}),
        ("classe=BTS+2A", {"ABADIE Chloé", "BERNARD Yanis", "CHEVALLIER Inès"}),
        ("statut=incomplete", {"BERNARD Yanis"}),
        ("statut=a_confirmer", {"ABADIE Chloé", "CHEVALLIER Inès"}),
        ("statut=generated", {"DUPONT Léa"}),
        ("classe=BTS+2B&statut=complete", set()),
        ("q=berna", {"BERNARD Yanis"}),
        ("q=lea+dupont", {"DUPONT Léa"}),
        ("q=ines", {"CHEVALLIER Inès"}),
    ],
)
def test_suivi__filters_by_class_status_and_name(
    reader: TestClient, query: str, shown: set[str]
) -> None:
    page = reader.get(f"/suivi?{query}").text
    rows = set(re.findall(r'<th scope="row"><a href="/stagiaire/\w+">([^<]+)</a>', page))
    assert rows == shown
    assert f"{len(shown)} stagiaire(s) affiché(s) sur 4." in page


def test_suivi__counts_follow_the_class_and_keep_it_in_their_links(reader: TestClient) -> None:
    page = reader.get("/suivi?classe=BTS+2B").text
    counts = re.search(r'<ul class="compteurs".*?</ul>', page, re.S)
    assert counts and re.findall(r'">([^<]+)</a>', counts.group(0)) == ["généré : 1"]
    assert 'href="/suivi?classe=BTS+2B&amp;statut=generated"' in page
    assert '<option value="BTS 2B" selected>' in page


def test_suivi__htmx_request__the_same_table_for_live_filtering(reader: TestClient) -> None:
    page = reader.get("/suivi?statut=incomplete", headers={"HX-Request": "true"}).text
    assert '<div id="resultats">' in unescape(page) and "BERNARD Yanis" in unescape(page)
    form = re.search(r'<form class="filtres".*?>', page, re.S)
    assert form and 'hx-select="#resultats"' in form.group(0) and 'method="get"' in form.group(0)


def test_student__problems_with_their_sheet_and_cell(reader: TestClient, built: Path) -> None:
    student = _ids(built)["Bernard"]
    page = reader.get(f"/stagiaire/{student}").text
    with _db(built) as db:
        row = db.execute("SELECT problems FROM returns WHERE file_name = 'bernard.xlsx'").fetchone()
    problems = json.loads(row[0])
    errors = [p for p in problems if p["severity"] == "error"]
    assert errors
    for problem in errors:
        assert f"<td>{problem['sheet']}</td><td>{problem['cell']}</td><td>manquant</td>" in page, (
            problem
        )
    assert "BERNARD Yanis" in page and "Banque Solvéa" in page and "Marc Dubreuil" in page
    assert "du 05/01/2026 au 27/02/2026" in page
    assert '<span class="badge statut-incomplete">incomplet</span>' in unescape(page)


def test_student__history_of_returns__which_counts_and_standing(
    reader: TestClient, built: Path
) -> None:
    student = _ids(built)["Abadie"]
    numbers = _returns(built)
    page = reader.get(f"/stagiaire/{student}").text
    rows = re.findall(r"<tr( class=\"compte\")?>\s*<td>(\d+)</td>(.*?)</tr>", page, re.S)
    by_number = {int(number): (bool(counts), body) for counts, number, body in rows}
    signed, copy = numbers["abadie.xlsx"], numbers["copie-abadie.xlsx"]
    assert list(by_number) == [copy, signed]  # newest first
    assert by_number[signed][0] and "signé" in by_number[signed][1]
    assert "<strong>oui</strong>" in by_number[signed][1]
    assert not by_number[copy][0] and "à confirmer" in by_number[copy][1]
    assert f"Confirmer le n° {copy}" in by_number[copy][1]
    assert f"Rejeter le n° {copy}" in by_number[copy][1]
    assert "Confirmer le n°" not in by_number[signed][1]  # a signed return needs no decision
    assert 'href="/fichier/output/retours/' in by_number[signed][1]
    told = unescape(page)  # what to decide, with the buttons of this page, not a command
    assert f"« Confirmer le n° {copy} » ou « Rejeter le n° {copy} » (Retours reçus" in told
    assert "grille confirm" not in told


def test_student__downloads_of_workbook_return_and_reports(campaign: Path) -> None:
    assert run(campaign, "report").exit_code == 0
    client = _logged_in(campaign)
    student = _ids(campaign)["Bernard"]
    page = client.get(f"/stagiaire/{student}").text
    links = re.findall(r'<a href="(/fichier/[^"]+)" download>([^<]+)</a>', page)
    labels = [label for _, label in links]
    assert labels[:2] == ["Classeur envoyé au tuteur", "Classeur retourné (celui qui compte)"]
    assert "Bilan (Word)" in labels
    for url, _ in links:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.content[:2] == b"PK"  # xlsx and docx are zip packages


def test_unknown_student__404_in_french(reader: TestClient) -> None:
    response = reader.get("/stagiaire/E000000")
    assert response.status_code == 404
    assert "Aucun stagiaire d'identifiant « E000000 » dans la campagne." in unescape(response.text)


# ------------------------------------------------------------------ writes


def test_notes__stored_in_sqlite_from_the_ui__history_kept__written_to_suivi_xlsx(
    writer: TestClient, campaign: Path
) -> None:
    student = _ids(campaign)["Bernard"]
    form = _notes_form(writer, student)
    form["team_appreciation"] = "Stage sérieux ;\r\nà poursuivre « en BTS » & <plus>."
    form["notes"] = "Appeler le tuteur."
    response = writer.post(f"/stagiaire/{student}/notes", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/stagiaire/{student}?avis=")
    page = writer.get(response.headers["location"]).text
    assert "Appréciation et notes enregistrées." in page
    with _db(campaign) as db:
        db.row_factory = sqlite3.Row
        note = state.teacher_notes(db)[student]
    assert note.team_appreciation == "Stage sérieux ;\nà poursuivre « en BTS » & <plus>."
    assert note.notes == "Appeler le tuteur."
    assert note.source == "ui"
    assert "à poursuivre « en BTS » &amp; &lt;plus&gt;.</textarea>" in page

    assert _flush(writer)  # what the interface does a few seconds later, or when it stops
    row = _tracking_row(campaign, "Bernard")
    assert row["Appréciation de l'équipe pédagogique"] == note.team_appreciation
    assert row["Notes du professeur"] == "Appeler le tuteur."

    again = _notes_form(writer, student)
    again.update(
        shown_team_appreciation=note.team_appreciation,
        shown_notes=note.notes,
        team_appreciation="Très bon stage.",
        notes=note.notes,
    )
    page = writer.post(f"/stagiaire/{student}/notes", data=again).text
    with _db(campaign) as db:
        db.row_factory = sqlite3.Row
        history = state.teacher_note_history(db, student)
    assert [(h.field, h.old_value, h.new_value, h.source) for h in history] == [
        ("team_appreciation", note.team_appreciation, "Très bon stage.", "ui")
    ]
    assert "Historique des textes remplacés" in page
    assert "Stage sérieux ;\nà poursuivre « en BTS » &amp; &lt;plus&gt;.</td>" in page


def test_notes__unchanged_form__nothing_written(writer: TestClient, campaign: Path) -> None:
    student = _ids(campaign)["Dupont"]
    form = _notes_form(writer, student)
    form["team_appreciation"] = ""
    page = writer.post(f"/stagiaire/{student}/notes", data=form).text
    assert "Rien n'a changé" in unescape(page)
    with _db(campaign) as db:
        assert db.execute("SELECT COUNT(*) FROM teacher_notes").fetchone()[0] == 0


def test_notes__changed_elsewhere_meanwhile__hers_kept_the_other_in_history_and_an_untouched_field_left(
    writer: TestClient, campaign: Path
) -> None:
    student = _ids(campaign)["Abadie"]
    form = _notes_form(writer, student)  # the page shows both fields empty
    with _db(campaign) as db:  # meanwhile, typed in suivi.xlsx and read back by a command
        state.set_teacher_note(
            db, student, source="suivi.xlsx", team_appreciation="Texte de suivi.xlsx", notes="Note"
        )
    form["team_appreciation"] = "Texte de l'interface"
    form["notes"] = ""  # untouched in the form: the note typed elsewhere must stay
    page = writer.post(f"/stagiaire/{student}/notes", data=form).text
    assert "avait été modifié ailleurs depuis l'ouverture de la page" in unescape(page)
    with _db(campaign) as db:
        note = state.teacher_notes(db)[student]
        history = state.teacher_note_history(db, student)
    assert note.team_appreciation == "Texte de l'interface"
    assert note.notes == "Note"
    assert [(h.old_value, h.new_value, h.conflict) for h in history] == [
        ("Texte de suivi.xlsx", "Texte de l'interface", True)
    ]


def test_notes__unknown_student__404_nothing_stored(writer: TestClient, campaign: Path) -> None:
    form = _notes_form(writer, _ids(campaign)["Dupont"])
    response = writer.post("/stagiaire/E000000/notes", data=form)
    assert response.status_code == 404
    with _db(campaign) as db:
        assert db.execute("SELECT COUNT(*) FROM teacher_notes").fetchone()[0] == 0


@pytest.mark.parametrize("decision", ["confirmer", "rejeter"])
def test_decision__on_a_return_to_confirm__recorded_with_who_and_counted_return_follows(
    writer: TestClient, campaign: Path, decision: str
) -> None:
    student = _ids(campaign)["Abadie"]
    numbers = _returns(campaign)
    copy, signed = numbers["copie-abadie.xlsx"], numbers["abadie.xlsx"]
    page = writer.get(f"/stagiaire/{student}").text
    response = writer.post(
        f"/stagiaire/{student}/retours/{copy}",
        data={"csrf": _csrf(page), "decision": decision},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].endswith("#retours")
    page = _text(writer.get(response.headers["location"]).text)
    with _db(campaign) as db:
        standing = state.return_standing(db, copy)
        counted = state.counted_return(db, student)
    assert standing is not None and counted is not None
    expected = "confirmed" if decision == "confirmer" else "rejected"
    assert standing.standing == expected
    assert standing.decided_by and standing.decided_by in page
    label = "confirmé" if decision == "confirmer" else "rejeté"
    assert f"Retour n° {copy} (« copie-abadie.xlsx ») {label} par" in page
    assert counted.return_id == (copy if decision == "confirmer" else signed)
    assert f"Retour n° {copy}" in _tracking_row(campaign, "Abadie")["À faire / manquant"]
    assert _flush(writer)
    todo = _tracking_row(campaign, "Abadie")["À faire / manquant"] or ""
    assert f"Retour n° {copy}" not in todo  # no longer awaiting a decision


def test_decision__signed_return__409_with_the_library_message(
    writer: TestClient, campaign: Path
) -> None:
    student = _ids(campaign)["Abadie"]
    signed = _returns(campaign)["abadie.xlsx"]
    page = writer.get(f"/stagiaire/{student}").text
    response = writer.post(
        f"/stagiaire/{student}/retours/{signed}", data={"csrf": _csrf(page), "decision": "rejeter"}
    )
    assert response.status_code == 409
    assert "porte l'identité signée de son classeur" in unescape(response.text)
    with _db(campaign) as db:
        assert db.execute("SELECT COUNT(*) FROM return_decisions").fetchone()[0] == 0


def test_decision__return_of_another_student_or_unknown_decision__refused(
    writer: TestClient, campaign: Path
) -> None:
    ids, numbers = _ids(campaign), _returns(campaign)
    page = writer.get(f"/stagiaire/{ids['Bernard']}").text
    other = writer.post(
        f"/stagiaire/{ids['Bernard']}/retours/{numbers['copie-abadie.xlsx']}",
        data={"csrf": _csrf(page), "decision": "confirmer"},
    )
    assert other.status_code == 404
    odd = writer.post(
        f"/stagiaire/{ids['Abadie']}/retours/{numbers['copie-abadie.xlsx']}",
        data={"csrf": _csrf(page), "decision": "supprimer"},
    )
    assert odd.status_code == 400
    assert "Décision inconnue" in odd.text
    with _db(campaign) as db:
        assert db.execute("SELECT COUNT(*) FROM return_decisions").fetchone()[0] == 0


def test_write_while_a_cli_command_holds_the_lock__french_message_nothing_stored(
    writer: TestClient, campaign: Path
) -> None:
    student = _ids(campaign)["Bernard"]
    form = _notes_form(writer, student)
    copy = _returns(campaign)["copie-abadie.xlsx"]
    with state.run_lock(campaign / "output"):  # what a running « grille collect » holds
        notes = writer.post(f"/stagiaire/{student}/notes", data=form)
        decision = writer.post(
            f"/stagiaire/{_ids(campaign)['Abadie']}/retours/{copy}",
            data={"csrf": form["csrf"], "decision": "confirmer"},
        )
        reading = writer.get("/suivi")
    for response in (notes, decision):
        assert response.status_code == 409
        assert "Une autre commande grille travaille déjà sur cette campagne" in response.text
    assert reading.status_code == 200  # pages that only read stay available
    with _db(campaign) as db:
        assert db.execute("SELECT COUNT(*) FROM teacher_notes").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM return_decisions").fetchone()[0] == 0
    assert writer.post(f"/stagiaire/{student}/notes", data=form).status_code == 200


def test_suivi_xlsx__rewritten_in_the_background_after_a_pause__then_the_database_backed_up(
    campaign: Path,
) -> None:
    client = _logged_in(campaign, tracking_delay=0.3)
    backups = campaign / "output" / ".sauvegardes"
    before = set(state.backups(backups))
    student = _ids(campaign)["Dupont"]
    client.post(f"/stagiaire/{student}/notes", data=_notes_form(client, student))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # no flush: the interface's own thread does it
        try:
            row = _tracking_row(campaign, "Dupont")
        except (OSError, KeyError, zipfile.BadZipFile):
            row = {}
        if row.get("Appréciation de l'équipe pédagogique") == "Bon stage, équipe ravie.":
            break
        time.sleep(0.2)
    else:
        raise AssertionError("suivi.xlsx not rewritten in the background")
    assert not interface_of(client.app).access.refresher.pending  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while not set(state.backups(backups)) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    after = state.backups(backups)
    assert set(after) - before
    copy = sqlite3.connect(after[-1])
    try:
        texts = copy.execute("SELECT team_appreciation FROM teacher_notes").fetchall()
    finally:
        copy.close()
    assert texts == [("Bon stage, équipe ravie.",)]


def test_suivi_xlsx__a_command_holds_the_lock__the_page_says_so__done_once_free(
    writer: TestClient, campaign: Path
) -> None:
    student = _ids(campaign)["Dupont"]
    writer.post(f"/stagiaire/{student}/notes", data=_notes_form(writer, student))
    with state.run_lock(campaign / "output"):
        assert not _flush(writer)
        page = unescape(writer.get("/").text)
    assert "output/suivi.xlsx n'a pas pu être mis à jour : Une autre commande grille" in page
    assert _tracking_row(campaign, "Dupont")["Appréciation de l'équipe pédagogique"] is None
    assert _flush(writer)  # still due: done at the stop of the interface
    row = _tracking_row(campaign, "Dupont")
    assert row["Appréciation de l'équipe pédagogique"] == "Bon stage, équipe ravie."
    assert "n'a pas pu être mis à jour" not in unescape(writer.get("/").text)


def test_statuses__follow_a_command_run_meanwhile(writer: TestClient, campaign: Path) -> None:
    """The statuses kept between requests are read again once the database changed."""
    copy = _returns(campaign)["chevallier-copie.xlsx"]
    row = re.compile(r"CHEVALLIER Inès.*?</tr>", re.S)
    before = row.search(writer.get("/suivi").text)
    assert before and "complet (à confirmer)" in before.group(0)
    assert run(campaign, "confirm", str(copy)).exit_code == 0  # the CLI, meanwhile
    after = row.search(writer.get("/suivi").text)
    assert after and "complet" in after.group(0) and "(à confirmer)" not in after.group(0)


def test_statuses__kept_across_a_note_saved__read_again_after_a_decision(
    writer: TestClient, campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading every status costs a query over every student: a note changes none."""
    from pipeline.ui import access

    reads: list[int] = []
    real = access.tracking.student_statuses

    def counted(db: sqlite3.Connection, student_id: str | None = None, **kept: Any) -> list[Any]:
        if student_id is None:  # every student (a student's page reads only its own)
            reads.append(1)
        return real(db, student_id, **kept)

    monkeypatch.setattr(access.tracking, "student_statuses", counted)
    ids = _ids(campaign)
    writer.get("/suivi")  # read when the client opened the start address, kept since
    writer.get("/suivi")
    assert len(reads) == 0
    page = writer.post(f"/stagiaire/{ids['Dupont']}/notes", data=_notes_form(writer, ids["Dupont"]))
    assert "Appréciation et notes enregistrées." in page.text
    assert len(reads) == 0
    assert _flush(writer)
    assert len(reads) == 1  # by write_tracking, for suivi.xlsx
    writer.get("/suivi")
    assert len(reads) == 1  # the rewrite changed notes only: the statuses kept stay
    copy = _returns(campaign)["copie-abadie.xlsx"]
    page = writer.get(f"/stagiaire/{ids['Abadie']}").text
    writer.post(
        f"/stagiaire/{ids['Abadie']}/retours/{copy}",
        data={"csrf": _csrf(page), "decision": "rejeter"},
    )
    assert len(reads) == 1  # the student's page after it reads that student only
    writer.get("/suivi")
    assert len(reads) == 2  # a decision changes statuses: read again for the status page


def test_broken_campaign__the_library_error_as_a_french_page(campaign: Path) -> None:
    client = _logged_in(campaign)
    (campaign / "grille.toml").write_text("[campagne\n", encoding="utf-8")
    response = client.get("/suivi")
    assert response.status_code == 409
    assert "grille.toml : syntaxe invalide" in response.text


def test_a_bug__french_page_500_details_in_the_journal(
    writer: TestClient, campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(db: sqlite3.Connection, student_id: str) -> list[Any]:
        raise RuntimeError("un bogue simulé")

    monkeypatch.setattr(state, "student_returns", broken)
    response = writer.get(f"/stagiaire/{_ids(campaign)['Bernard']}")
    assert response.status_code == 500
    text = unescape(response.text)
    assert "Erreur inattendue de grille (ce n'est pas de votre fait)." in text
    logs = sorted((campaign / "output" / "journal").glob("erreur-*.log"))
    assert len(logs) == 1 and str(logs[0]) in text
    assert "RuntimeError: un bogue simulé" in logs[0].read_text(encoding="utf-8")
    assert "commande : grille ui GET /stagiaire/" in logs[0].read_text(encoding="utf-8")


# ------------------------------------------------------------------ the command


def test_ui_command__a_file_for_folder__french_message_exit_2(tmp_path: Path) -> None:
    # a folder without a campaign is accepted: the interface offers to create one
    # (tests/test_ui_start.py); a file is not a folder
    (tmp_path / "liste.csv").write_text("x", encoding="utf-8")
    result = run(tmp_path, "ui", "--dir", str(tmp_path / "liste.csv"), "--no-browser")
    assert result.exit_code == 2
    assert "liste.csv' est un fichier" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_until(stream: Any, pattern: str, timeout: float = 30) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"{pattern!r} not in {lines}")


def test_ui_command__port_in_use_next_one__loopback_only__token_url__ctrl_c_stops(
    campaign: Path,
) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--dir", str(campaign), "ui", "--no-browser",
         "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        lines = _read_until(process.stdout, r"http://127\.0\.0\.1:\d+/\?token=")
        busy_line = f"Le port {port} est déjà utilisé (par un autre programme) : essai du suivant."
        assert busy_line in lines[0]
        url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", lines[-1])
        assert url is not None
        chosen = int(url.group(1))
        assert chosen > port
        with httpx.Client(base_url=f"http://127.0.0.1:{chosen}") as client:
            assert client.get("/").status_code == 403
            page = client.get(f"/?token={url.group(2)}", follow_redirects=True)
            assert page.status_code == 200 and "Lycée Test" in page.text
            assert client.get("/suivi").status_code == 200  # the cookie works
            student = _ids(campaign)["Dupont"]
            form = {
                "csrf": _csrf(client.get(f"/stagiaire/{student}").text),
                "shown_team_appreciation": "",
                "shown_notes": "",
                "team_appreciation": "Tapé juste avant Ctrl+C.",
                "notes": "",
            }
            saved = client.post(f"/stagiaire/{student}/notes", data=form)
            assert saved.status_code == 303
        with socket.socket() as probe:  # nothing answers on the machine's other addresses
            outside = [
                a[4][0]
                for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
                if not a[4][0].startswith("127.")
            ]
            if outside:
                probe.settimeout(2)
                assert probe.connect_ex((outside[0], chosen)) != 0
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        busy.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.strip().endswith("Mise à jour de output/suivi.xlsx…\nInterface arrêtée.")
    row = _tracking_row(campaign, "Dupont")  # rewritten at the stop, not 10 s later
    assert row["Appréciation de l'équipe pédagogique"] == "Tapé juste avant Ctrl+C."
    assert "Traceback" not in err
    assert url.group(2) not in err  # the token is never logged


# ------------------------------------------------------------------ a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served(campaign: Path) -> Iterator[tuple[str, Path]]:
    """`grille ui` on a copy of the campaign, as a real process: (start address, folder)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--dir", str(campaign), "ui", "--no-browser",
         "--port", str(_free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        lines = _read_until(process.stdout, r"http://127\.0\.0\.1:\d+/\?token=")
        yield lines[-1].strip(), campaign
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium absent (apt-get install chromium)")
def test_browser__open_the_address_read_the_table_type_the_team_appreciation(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright absent")
    url, campaign = served
    errors: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            assert "token=" not in page.url  # exchanged for the cookie
            page.get_by_role("link", name="Ouvrir le suivi des stagiaires").click()
            page.wait_for_url("**/suivi")
            table = page.get_by_role("table")
            assert table.get_by_role("row").count() == 5  # header + 4 students
            # htmx: the table follows the choice, no button pressed
            page.get_by_label("Statut", exact=True).select_option("incomplete")
            page.wait_for_url("**/suivi?*statut=incomplete*")
            page.wait_for_function("document.querySelectorAll('tbody tr').length === 1")
            page.get_by_role("link", name="BERNARD Yanis").click()
            page.wait_for_url("**/stagiaire/**")
            assert page.get_by_role("heading", level=1).inner_text().startswith("BERNARD Yanis")
            assert page.get_by_role("cell", name="manquant").count() >= 1
            page.get_by_label("Appréciation de l'équipe pédagogique").fill(
                "Stage réussi, bonne progression."
            )
            page.get_by_role("button", name="Enregistrer").click()
            page.wait_for_url("**/stagiaire/*?avis=*")
            assert page.get_by_text("Appréciation et notes enregistrées.").is_visible()
        finally:
            browser.close()
    assert errors == []  # no script error, nothing the CSP blocked
    student = _ids(campaign)["Bernard"]
    with _db(campaign) as db:
        row = db.execute(
            "SELECT team_appreciation, source FROM teacher_notes WHERE student_id = ?", (student,)
        ).fetchone()
    assert tuple(row) == ("Stage réussi, bonne progression.", "ui")


def test_statuses__warmed__a_command_meanwhile__the_status_page_finds_them_read(
    campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`grille ui` reads the statuses ahead once the database changed (a CLI command
    here), so the status page does not pay that reading itself."""
    from pipeline.ui import access

    page_reads: list[str] = []
    real = access.tracking.student_statuses

    def counted(db: sqlite3.Connection, student_id: str | None = None, **kept: Any) -> list[Any]:
        if student_id is None:
            page_reads.append(threading.current_thread().name)
        return real(db, student_id, **kept)

    monkeypatch.setattr(access.tracking, "student_statuses", counted)
    client = _logged_in(campaign, warm_interval=0.05)
    client.get("/suivi")  # read now: nothing changes until the command below
    page_reads.clear()
    copy = _returns(campaign)["copie-abadie.xlsx"]
    assert run(campaign, "confirm", str(copy)).exit_code == 0  # a command, meanwhile
    statuses = interface_of(client.app).access.statuses  # type: ignore[arg-type]
    deadline = time.monotonic() + 20
    while not statuses.fresh() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert statuses.fresh()
    assert "grille-statuts" in page_reads  # read again by the warming thread
    done = len(page_reads)
    assert client.get("/suivi").status_code == 200
    assert len(page_reads) == done  # the page found them ready
