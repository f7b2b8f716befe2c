"""Pages Envoi, Retours and Relances of `grille ui`, at HTTP level: real campaigns, a real
SMTP server (aiosmtpd) and a real IMAP server (pymap) on loopback, real files dropped."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipeline.ui.app import interface_of
from pipeline.ui.jobs import Job
from pipeline.ui.views_returns import DROP, DROP_LIMIT
from pipeline.workbook import read_identity
from pipeline.xlsx import XlsxPackage
from tests import clients
from tests.conftest import write_csv
from tests.hostile import bomb, mail, zip_bytes
from tests.test_collect import ROWS, _answers_for
from tests.test_confirm import _stripped
from tests.test_inbox import PASSWORD as IMAP_PASSWORD
from tests.test_inbox import ImapServer, filled, reply, use_imap
from tests.test_inbox import imap_server as imap_server  # the fixture, re-exported
from tests.tutors import fill, make_campaign, status_json, workbook_of
from tests.ui_helpers import close_interfaces, csrf_of, logged_in, page_text  # noqa: F401

SMTP_USER = "claire"
SMTP_PASSWORD = "Mot-de-passe-tres-secret-4821"
TUTORS = {
    "sg@horizon.example": {"Abadie", "Chevallier"},
    "md@solvea.example": {"Bernard"},
    "jl@quartz.example": {"Da Silva", "Étienne"},
    "bc@mutuelle.example": {"Faure", "Garcia"},
}


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    root = make_campaign(tmp_path / "campagne", ROWS, write_csv)
    config = root / "grille.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('email = ""', 'email = "prof@lycee.example"', 1), "utf-8")
    return root


class Server:
    """aiosmtpd handler keeping the messages it accepts, logged in with SMTP_PASSWORD."""

    def __init__(self) -> None:
        self.accepted: list[EmailMessage] = []
        self.refuse: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if set(envelope.rcpt_tos) & self.refuse:
            return "550 5.7.1 Refusé pour le test"
        parsed = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(parsed, EmailMessage)
        self.accepted.append(parsed)
        return "250 OK"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Server, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Server()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def use_smtp(root: Path, port: int) -> None:
    config = root / "grille.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('serveur = ""', 'serveur = "127.0.0.1"', 1)  # [envoi] comes first
    text = text.replace("port = 587", f"port = {port}").replace('"starttls"', '"aucune"')
    text = text.replace('utilisateur = ""', f'utilisateur = "{SMTP_USER}"', 1)
    text = text.replace("pause_secondes = 1", "pause_secondes = 0")
    config.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ helpers


def _job_of(client: Any, response: Any) -> Job:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/travail/"), location
    job = interface_of(client.app).jobs.get(location.rsplit("/", 1)[1])
    assert job is not None
    deadline = time.monotonic() + 60
    while job.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not job.running
    return job


def _outcome(client: Any, job: Job) -> str:
    page = client.get(f"/travail/{job.job_id}")
    assert page.status_code == 200
    return unescape(page_text(page.text))


def _parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _attached_students(message: EmailMessage) -> set[str]:
    ids = set()
    for part in message.iter_attachments():
        meta, _, _ = read_identity(XlsxPackage(part.get_content(), part.get_filename() or "?"))
        ids.add(meta["student_id"])
    return ids


def _students_by_tutor(root: Path) -> dict[str, set[str]]:
    tutors: dict[str, set[str]] = {}
    for status in status_json(root).values():
        tutors.setdefault(status["tutor_email"], set()).add(status["student_id"])
    return tutors


def _statuses(root: Path) -> dict[str, str]:
    return {name: s["status"] for name, s in status_json(root).items()}


def _nowhere(root: Path, secret: str, *texts: str) -> None:
    """`secret` in no text given and in no file of the campaign (database, logs, copies)."""
    for text in texts:
        assert secret not in text
    needle = secret.encode()
    for path in root.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    for path in root.rglob("*.zip"):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                assert needle not in archive.read(name), (path, name)


# ------------------------------------------------------------------ Envoi


def test_envoi__one_card_per_tutor__recipient_subject_body_and_attached_workbooks(
    campaign: Path,
) -> None:
    client = logged_in(campaign)

    page = client.get("/envoi")

    assert page.status_code == 200
    text = unescape(page_text(page.text))
    assert "4 message(s) à envoyer" in text
    cards = page.text.split('<li class="carte-message">')[1:]
    assert len(cards) == 4
    for card in cards:
        address = re.search(r"&lt;([^&]+)&gt;", card)
        assert address, card
        expected = TUTORS[address.group(1)]
        for name in expected:
            assert workbook_of(campaign, name).name in card
        assert "Évaluation de stage" in unescape(card)
        assert "Bonjour" in unescape(card)
    assert "Aucun serveur d'envoi dans la section [envoi]" in text
    assert 'type="password"' not in page.text  # no server: nothing to log in to
    assert 'name="classe"' in page.text and 'name="renvoyer"' in page.text


def test_envoi__sent_over_smtp__messages_arrive_with_their_workbooks__password_nowhere(
    campaign: Path, smtp_server: tuple[Server, int]
) -> None:
    handler, port = smtp_server
    use_smtp(campaign, port)
    client = logged_in(campaign)
    page = client.get("/envoi")
    assert 'type="password"' in page.text and 'autocomplete="off"' in page.text
    assert f"Serveur d'envoi : 127.0.0.1:{port}, compte {SMTP_USER}" in unescape(page.text)

    response = client.post(
        "/envoi/envoyer",
        data={"csrf": csrf_of(page.text), "mot_de_passe": SMTP_PASSWORD, "classe": ""},
        follow_redirects=False,
    )
    job = _job_of(client, response)

    outcome = _outcome(client, job)
    assert "envoyé : Sophie Garnier <sg@horizon.example>, 2 classeur(s)" in outcome
    assert "envoyé : Marc Dubreuil <md@solvea.example>, 1 classeur(s)" in outcome
    assert "4 message(s) envoyé(s), 0 en échec." in outcome
    assert len(handler.accepted) == 4
    expected = _students_by_tutor(campaign)
    for message in handler.accepted:
        address = message["To"].addresses[0].addr_spec
        assert _attached_students(message) == expected[address]
        for part in message.iter_attachments():
            generated = workbook_of(campaign, part.get_filename().split("_")[0])
            assert part.get_content() == generated.read_bytes()
    assert set(_statuses(campaign).values()) == {"sent"}
    assert "0 message(s) à envoyer" in unescape(page_text(client.get("/envoi").text))
    interface_of(client.app).access.close()  # suivi.xlsx written: searched too
    _nowhere(
        campaign,
        SMTP_PASSWORD,
        outcome,
        repr(job.outcome),
        client.get("/envoi").text,
        client.get(f"/travail/{job.job_id}/etat").text,
    )


def test_envoi__wrong_password__french_refusal_per_the_server__nothing_sent__password_nowhere(
    campaign: Path, smtp_server: tuple[Server, int]
) -> None:
    handler, port = smtp_server
    use_smtp(campaign, port)
    client = logged_in(campaign)
    page = client.get("/envoi")
    wrong = "Faux-mot-de-passe-9917"

    job = _job_of(
        client,
        client.post(
            "/envoi/envoyer",
            data={"csrf": csrf_of(page.text), "mot_de_passe": wrong},
            follow_redirects=False,
        ),
    )

    outcome = _outcome(client, job)
    assert f"Connexion au serveur d'envoi 127.0.0.1:{port} refusée" in outcome
    assert handler.accepted == []
    assert set(_statuses(campaign).values()) == {"generated"}
    interface_of(client.app).access.close()
    _nowhere(campaign, wrong, outcome, repr(job.outcome))


def test_envoi__one_tutor_refused_by_the_server__his_line_says_why__the_others_sent(
    campaign: Path, smtp_server: tuple[Server, int]
) -> None:
    handler, port = smtp_server
    handler.refuse = {"md@solvea.example"}
    use_smtp(campaign, port)
    client = logged_in(campaign)
    page = client.get("/envoi")

    job = _job_of(
        client,
        client.post(
            "/envoi/envoyer",
            data={"csrf": csrf_of(page.text), "mot_de_passe": SMTP_PASSWORD},
            follow_redirects=False,
        ),
    )

    assert ("erreur", "Erreur — Marc Dubreuil <md@solvea.example> : message refusé par le "
            "serveur : 550 5.7.1 Refusé pour le test") in job.outcome.lines  # fmt: skip
    assert ("erreur", "3 message(s) envoyé(s), 1 en échec.") in job.outcome.lines
    assert len(handler.accepted) == 3
    assert _statuses(campaign)["Bernard"] == "generated"
    again = unescape(page_text(client.get("/envoi").text))
    assert "1 message(s) à envoyer" in again and "md@solvea.example" in again


def test_envoi__eml_zip_downloaded_and_parseable__then_one_tutor_marked_sent_by_hand(
    campaign: Path,
) -> None:
    client = logged_in(campaign)
    page = client.get("/envoi")

    job = _job_of(
        client,
        client.post("/envoi/preparer", data={"csrf": csrf_of(page.text)}, follow_redirects=False),
    )

    outcome = _outcome(client, job)
    assert "prêt : Sophie Garnier <sg@horizon.example>, 2 classeur(s) → output/envoi/" in outcome
    (label, url) = next(link for link in job.outcome.links if link[0].startswith("Télécharger"))
    assert label == "Télécharger les 4 message(s) (.zip)"
    download = client.get(url)
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        messages = [_parse(archive.read(name)) for name in archive.namelist()]
    expected = _students_by_tutor(campaign)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(TUTORS)
    for message in messages:
        assert message["X-Unsent"] == "1"  # a draft, as the CLI writes it
        assert _attached_students(message) == expected[message["To"].addresses[0].addr_spec]
    assert set(_statuses(campaign).values()) == {"prepared"}
    assert not list(campaign.rglob("*.zip"))  # made when downloaded: nothing a purge misses
    on_disk = sorted(p.name for p in (campaign / "output" / "envoi").glob("*.eml"))
    whole = client.get("/envoi/messages.zip")
    assert whole.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(whole.content)) as archive:
        assert sorted(archive.namelist()) == on_disk

    page = client.get("/envoi")
    assert "Messages préparés, à envoyer vous-même" in page.text
    ids = {s["last_name"]: s["student_id"] for s in status_json(campaign).values()}
    marked = client.post(
        "/envoi/envoye",
        data={"csrf": csrf_of(page.text), "eleve": [ids["Abadie"], ids["Chevallier"]]},
    )

    assert marked.status_code == 200
    text = unescape(page_text(marked.text))
    assert "2 classeur(s) notés comme envoyés." in text
    assert "envoyé par vous : ABADIE Chloé (BTS 2A)" in text
    statuses = _statuses(campaign)
    assert statuses["Abadie"] == statuses["Chevallier"] == "sent"
    assert {statuses[n] for n in ("Bernard", "Da Silva", "Étienne", "Faure", "Garcia")} == {
        "prepared"
    }
    everyone = client.post("/envoi/envoye", data={"csrf": csrf_of(marked.text)})
    assert "5 classeur(s) notés comme envoyés." in unescape(page_text(everyone.text))
    assert set(_statuses(campaign).values()) == {"sent"}


def test_envoi__post_without_csrf__refused_and_nothing_sent(campaign: Path) -> None:
    client = logged_in(campaign)

    for address in ("/envoi/envoyer", "/envoi/preparer", "/envoi/envoye", "/relances/envoyer"):
        refused = client.post(address, data={"mot_de_passe": "x"})
        assert refused.status_code == 403, address
        assert "Formulaire refusé" in unescape(refused.text)
    assert not (campaign / "output" / "envoi").exists()
    assert set(_statuses(campaign).values()) == {"generated"}


# ------------------------------------------------------------------ Retours


def _returns(campaign: Path, tmp_path: Path) -> list[tuple[str, bytes]]:
    """Complete (Abadie), incomplete (Bernard), invalid (Chevallier), one inside an .eml
    (Da Silva) and one inside a .zip (Étienne), as a tutor sends them."""
    folder = tmp_path / "tuteurs"
    complete = fill(
        workbook_of(campaign, "Abadie"), folder / "abadie.xlsx", _answers_for("Sophie Garnier")
    )
    incomplete = fill(
        workbook_of(campaign, "Bernard"),
        folder / "bernard.xlsx",
        _answers_for("Marc Dubreuil", **{"integration.ponctualite": None}),
    )
    invalid = fill(
        workbook_of(campaign, "Chevallier"),
        folder / "chevallier.xlsx",
        _answers_for("Sophie Garnier", **{"clientele.decouverte": "Bien"}),
    )
    in_mail = fill(
        workbook_of(campaign, "Da Silva"), folder / "dasilva.xlsx", _answers_for("Julien Lemaître")
    )
    in_zip = fill(
        workbook_of(campaign, "Étienne"), folder / "etienne.xlsx", _answers_for("Julien Lemaître")
    )
    return [
        ("abadie.xlsx", complete.read_bytes()),
        ("bernard.xlsx", incomplete.read_bytes()),
        ("chevallier.xlsx", invalid.read_bytes()),
        ("réponse.eml", bytes(mail([("grille Da Silva.xlsx", in_mail.read_bytes())]))),
        ("retours.zip", zip_bytes({"etienne.xlsx": in_zip.read_bytes()})),
    ]


def _upload_limit(client: Any, limit: int) -> None:
    """The body limit of the drop, smaller for the test (the guard's own setting)."""
    assert client.app.upload_limits[DROP] == DROP_LIMIT == 200 * 1024 * 1024
    client.app.upload_limits[DROP] = limit


def _drop(client: Any, files: list[tuple[str, bytes]], csrf: str | None) -> Any:
    data = {"csrf": csrf} if csrf is not None else {}
    return client.post(
        "/retours/deposer",
        data=data,
        files=[
            ("fichiers", (name, content, "application/octet-stream")) for name, content in files
        ],
        follow_redirects=False,
    )


def test_retours__complete_incomplete_invalid_in_an_eml_in_a_zip__one_line_each__statuses(
    campaign: Path, tmp_path: Path
) -> None:
    client = logged_in(campaign)
    page = client.get("/retours")
    assert page.status_code == 200
    assert re.search(r'<input type="file" id="fichiers" name="fichiers" multiple', page.text)
    assert 'enctype="multipart/form-data"' in page.text
    assert '<script src="/static/depot.js" defer></script>' in page.text
    assert client.get("/static/depot.js").status_code == 200

    job = _job_of(client, _drop(client, _returns(campaign, tmp_path), csrf_of(page.text)))

    lines = [text for _, text in job.outcome.lines]
    assert "ABADIE Chloé (BTS 2A) — complet — abadie.xlsx" in lines
    assert any(
        line.startswith("BERNARD Yanis (BTS 2A) — incomplet — bernard.xlsx\n•") for line in lines
    )
    assert any(
        line.startswith("CHEVALLIER Inès (BTS 2A) — invalide — chevallier.xlsx") for line in lines
    )
    assert any(
        line.startswith("DA SILVA Mathéo (BTS 2B) — complet — réponse.eml › pièce jointe")
        for line in lines
    )
    assert "ÉTIENNE Lou (BTS 2B) — complet — retours.zip › etienne.xlsx" in lines
    assert lines[-1].startswith(
        "5 retour(s) enregistré(s), 0 fichier(s) refusé(s) ou illisible(s), 0 déjà collecté(s)."
    )
    assert str(campaign) not in repr(job.outcome)  # the dropped files named as given
    assert _statuses(campaign) == {
        "Abadie": "complete", "Bernard": "incomplete", "Chevallier": "invalid",
        "Da Silva": "complete", "Étienne": "complete", "Faure": "generated",
        "Garcia": "generated",
    }  # fmt: skip
    assert not any((campaign / "output" / ".depots").iterdir())  # the dropped copies gone
    # as `grille collect`: suivi.xlsx rewritten by the job itself, nothing left to do later
    assert not interface_of(client.app).access.refresher.pending
    tracking = openpyxl.load_workbook(campaign / "output" / "suivi.xlsx", read_only=True)
    rows = list(tracking["Suivi"].iter_rows(values_only=True))
    tracking.close()
    shown = {row[rows[0].index("Nom")]: row[rows[0].index("Statut")] for row in rows[1:]}
    assert (shown["ABADIE"], shown["BERNARD"], shown["FAURE"]) == ("complet", "incomplet", "généré")
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        origins = sorted(row[0] for row in db.execute("SELECT origin FROM returns"))
    assert origins == sorted(
        ["abadie.xlsx", "bernard.xlsx", "chevallier.xlsx", "retours.zip › etienne.xlsx",
         "réponse.eml › pièce jointe « grille Da Silva.xlsx »"]
    )  # fmt: skip
    student = status_json(campaign)["Da Silva"]["student_id"]
    assert "réponse.eml › pièce jointe" in unescape(client.get(f"/stagiaire/{student}").text)
    assert ".depots" not in client.get(f"/stagiaire/{student}").text
    assert len(list((campaign / "output" / "retours").rglob("*.*"))) >= 5  # originals kept

    again = _job_of(
        client,
        _drop(client, _returns(campaign, tmp_path)[:1], csrf_of(client.get("/retours").text)),
    )
    newer = next(text for _, text in again.outcome.lines)
    assert newer.startswith(
        "ABADIE Chloé (BTS 2A) — complet — abadie.xlsx — remplace le retour n° 1"
    )


def test_retours__hidden_identity_gone__recorded_a_confirmer__with_the_cli_sentence(
    campaign: Path, tmp_path: Path
) -> None:
    stripped = _stripped(
        workbook_of(campaign, "Garcia"),
        tmp_path / "copie.xlsx",
        "GARCIA Léa",
        _answers_for("Bruno Caron"),
    )
    client = logged_in(campaign)

    job = _job_of(
        client,
        _drop(
            client, [("copie.xlsx", stripped.read_bytes())], csrf_of(client.get("/retours").text)
        ),
    )

    kind, line = job.outcome.lines[0]
    assert kind == "attention"
    assert line.startswith("GARCIA Léa (BTS 2B) — complet — copie.xlsx — à confirmer (retour n° 1)")
    assert "En attente de confirmation : il compte pour ce stagiaire en attendant" in line
    assert ("Retours à confirmer", "/suivi?statut=a_confirmer") in job.outcome.links


def test_retours__an_older_version_dropped_later__ignored_kept__the_cli_sentence(
    campaign: Path, tmp_path: Path
) -> None:
    newer = fill(workbook_of(campaign, "Garcia"), tmp_path / "v2.xlsx", _answers_for("Bruno Caron"))
    older = fill(
        workbook_of(campaign, "Garcia"),
        tmp_path / "v1.xlsx",
        _answers_for("Bruno Caron", **{"integration.ponctualite": None}),
    )
    client = logged_in(campaign)
    saved = datetime(2026, 11, 12, 13, 5, tzinfo=UTC)
    first = [("v2.xlsx", clients.saved_at(newer.read_bytes(), saved))]
    _job_of(client, _drop(client, first, csrf_of(client.get("/retours").text)))

    later = [("v1.xlsx", clients.saved_at(older.read_bytes(), saved - timedelta(days=2)))]
    job = _job_of(client, _drop(client, later, csrf_of(client.get("/retours").text)))

    kind, line = job.outcome.lines[0]
    assert kind == "attention"
    assert line.startswith("GARCIA Léa (BTS 2B) — incomplet — v1.xlsx — plus ancien que le ")
    assert "retour n° 1 déjà reçu (enregistré le 12/11/2026 à" in line
    assert line.endswith(": ignoré, gardé dans l'historique.")
    assert _statuses(campaign)["Garcia"] == "complete"


def test_retours__hostile_files__each_refused_with_its_line__names_never_trusted(
    campaign: Path, tmp_path: Path
) -> None:
    client = logged_in(campaign)
    csrf = csrf_of(client.get("/retours").text)
    complete = fill(
        workbook_of(campaign, "Faure"), tmp_path / "f.xlsx", _answers_for("Bruno Caron")
    )
    bombed = bomb(600 * 1024 * 1024)
    garcia = fill(workbook_of(campaign, "Garcia"), tmp_path / "g.xlsx", _answers_for("Bruno Caron"))

    job = _job_of(
        client,
        _drop(
            client,
            [
                ("bombe.xlsx", bombed),
                ("piege.zip", zip_bytes({"../../evil2.xlsx": garcia.read_bytes()})),
                ("../../../../evil.xlsx", complete.read_bytes()),
            ],
            csrf,
        ),
    )

    texts = [text for _, text in job.outcome.lines]
    kinds = {text: kind for kind, text in job.outcome.lines}
    bomb_line = next(t for t in texts if "bombe.xlsx" in t)
    assert bomb_line.startswith("Erreur — bombe.xlsx") and "bombe zip" in bomb_line
    assert kinds[bomb_line] == "erreur"
    assert "GARCIA Léa (BTS 2B) — complet — piege.zip › evil2.xlsx" in texts
    assert "FAURE Gaëtan (BTS 2B) — complet — evil.xlsx" in texts  # the name's last part
    assert not (campaign / "evil.xlsx").exists() and not (tmp_path / "evil.xlsx").exists()
    assert not list(campaign.parent.rglob("evil*.xlsx"))
    again = _job_of(
        client,
        _drop(client, [("bombe.xlsx", bombed)], csrf_of(client.get("/retours").text)),
    )
    assert next(t for _, t in again.outcome.lines).startswith("Erreur — bombe.xlsx")
    with sqlite3.connect(campaign / "output" / "grille.sqlite") as db:
        refused = [row[0] for row in db.execute("SELECT origin FROM refused_files")]
    assert refused == ["bombe.xlsx"]  # named as given, seen twice, kept once
    assert _statuses(campaign)["Faure"] == _statuses(campaign)["Garcia"] == "complete"


def test_retours__upload_over_the_limit__413_in_french__nothing_kept(
    campaign: Path, tmp_path: Path
) -> None:
    client = logged_in(campaign)
    _upload_limit(client, 200_000)
    csrf = csrf_of(client.get("/retours").text)

    refused = _drop(client, [("gros.xlsx", bytes(300_000))], csrf)

    assert refused.status_code == 413
    assert "Envoi refusé : il dépasse la taille permise (195 ko). Rien n'a été enregistré." in (
        unescape(refused.text)
    )
    depots = campaign / "output" / ".depots"
    assert not depots.exists() or not any(depots.iterdir())
    assert set(_statuses(campaign).values()) == {"generated"}


def test_retours__streamed_body_over_the_limit_without_length__413_in_french(
    campaign: Path,
) -> None:
    client = logged_in(campaign)
    _upload_limit(client, 100_000)
    csrf = csrf_of(client.get("/retours").text)
    boundary = "limite"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="fichiers"; '
        'filename="gros.xlsx"\r\n\r\n'
    ).encode()

    def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse early
        yield head
        for _ in range(30):
            yield bytes(10_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    refused = client.post(
        "/retours/deposer",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )

    assert refused.status_code == 413
    assert "il dépasse la taille permise (97 ko)" in unescape(refused.text)
    depots = campaign / "output" / ".depots"
    assert not depots.exists() or not any(depots.iterdir())


def test_retours__files_dropped_under_one_name__each_kept_and_read(
    campaign: Path, tmp_path: Path
) -> None:
    """Tutors name their files alike (« grille.xlsx », « GRILLE.xlsx »): each dropped file
    is kept apart and read, and named as given."""
    folder = tmp_path / "memes_noms"
    same = [
        ("grille.xlsx", fill(workbook_of(campaign, name), folder / f"{name}.xlsx",
                             _answers_for(tutor)).read_bytes())
        for name, tutor in (("Abadie", "Sophie Garnier"), ("Bernard", "Marc Dubreuil"))
    ]  # fmt: skip
    other_case = fill(
        workbook_of(campaign, "Faure"), folder / "faure.xlsx", _answers_for("Bruno Caron")
    )
    client = logged_in(campaign)

    job = _job_of(
        client,
        _drop(
            client,
            [*same, ("GRILLE.xlsx", other_case.read_bytes())],
            csrf_of(client.get("/retours").text),
        ),
    )

    lines = [text for _, text in job.outcome.lines]
    assert "ABADIE Chloé (BTS 2A) — complet — grille.xlsx" in lines
    assert "BERNARD Yanis (BTS 2A) — complet — grille.xlsx" in lines
    assert "FAURE Gaëtan (BTS 2B) — complet — GRILLE.xlsx" in lines
    statuses = _statuses(campaign)
    assert statuses["Abadie"] == statuses["Bernard"] == statuses["Faure"] == "complete"
    assert not any((campaign / "output" / ".depots").iterdir())  # the dropped copies gone


def test_retours__suivi_xlsx_cannot_be_written__the_returns_kept_said_and_tried_again(
    campaign: Path, tmp_path: Path
) -> None:
    """The job's rewrite of suivi.xlsx fails (here a folder where the file should be):
    every file's line is still there, the failure is one more line, and the interface's
    own rewrite is due to try again."""
    tracking = campaign / "output" / "suivi.xlsx"
    tracking.unlink()
    tracking.mkdir()
    client = logged_in(campaign)
    filled = fill(
        workbook_of(campaign, "Abadie"), tmp_path / "a.xlsx", _answers_for("Sophie Garnier")
    )

    job = _job_of(
        client,
        _drop(client, [("abadie.xlsx", filled.read_bytes())], csrf_of(client.get("/retours").text)),
    )

    lines = [text for _, text in job.outcome.lines]
    assert "ABADIE Chloé (BTS 2A) — complet — abadie.xlsx" in lines
    failed = next(t for k, t in job.outcome.lines if k == "attention" and "suivi non mis" in t)
    assert "l'interface essaiera de nouveau de réécrire output/suivi.xlsx" in failed
    assert _statuses(campaign)["Abadie"] == "complete"
    assert interface_of(client.app).access.refresher.pending


def test_retours__without_csrf__refused__the_dropped_copy_removed(
    campaign: Path, tmp_path: Path
) -> None:
    client = logged_in(campaign)

    refused = _drop(client, _returns(campaign, tmp_path)[:1], None)

    assert refused.status_code == 403
    assert "Formulaire refusé" in unescape(refused.text)
    assert not any((campaign / "output" / ".depots").iterdir())
    assert set(_statuses(campaign).values()) == {"generated"}
    wrong = _drop(client, _returns(campaign, tmp_path)[:1], "pas-le-bon-jeton")
    assert wrong.status_code == 403


def test_retours__no_file_chosen__says_so_in_french(campaign: Path) -> None:
    client = logged_in(campaign)
    csrf = csrf_of(client.get("/retours").text)

    response = client.post(
        "/retours/deposer",
        data={"csrf": csrf},
        files=[("fichiers", ("", b"", "application/octet-stream"))],
    )

    assert response.status_code == 200
    assert "Aucun fichier choisi" in unescape(response.text)


def test_retours__read_the_mailbox__returns_collected__password_nowhere(
    campaign: Path, tmp_path: Path, imap_server: ImapServer
) -> None:
    use_imap(campaign, imap_server.port)
    imap_server.append(
        reply(
            "sg@horizon.example",
            "Grille Abadie",
            filled(campaign, tmp_path, "Abadie", "Sophie Garnier"),
        )
    )
    imap_server.append(reply("x@ailleurs.example", "Bonjour", {}))
    client = logged_in(campaign)
    page = client.get("/retours")
    assert "Relever la boîte" in page.text
    assert re.search(
        r'<input type="password" id="mot-de-passe-imap"[^>]*autocomplete="off"', page.text
    )

    job = _job_of(
        client,
        client.post(
            "/retours/boite",
            data={"csrf": csrf_of(page.text), "mot_de_passe": IMAP_PASSWORD, "depuis": ""},
            follow_redirects=False,
        ),
    )

    texts = [text for _, text in job.outcome.lines]
    assert any(t.startswith("ABADIE Chloé (BTS 2A) — complet — ") for t in texts), texts
    assert any(t.startswith("Sans classeur — message de x@ailleurs.example") for t in texts)
    assert any(
        t.startswith("Boîte aux lettres 127.0.0.1, dossier « INBOX » : 2 message(s) relevé(s)")
        for t in texts
    )
    assert _statuses(campaign)["Abadie"] == "complete"
    interface_of(client.app).access.close()
    _nowhere(campaign, IMAP_PASSWORD, _outcome(client, job), repr(job.outcome))


def test_retours__mailbox_date_not_a_date__french_message(campaign: Path) -> None:
    client = logged_in(campaign)
    csrf = csrf_of(client.get("/retours").text)

    response = client.post(
        "/retours/boite", data={"csrf": csrf, "mot_de_passe": "x", "depuis": "hier"}
    )

    assert "Date « hier » invalide : écrivez-la jj/mm/aaaa." in unescape(response.text)


# ------------------------------------------------------------------ Relances


def test_relances__preview_names_what_is_missing__sent_over_smtp__again_as_a_checkbox(
    campaign: Path, tmp_path: Path, smtp_server: tuple[Server, int]
) -> None:
    handler, port = smtp_server
    use_smtp(campaign, port)
    client = logged_in(campaign)
    sent = client.post(
        "/envoi/envoyer",
        data={"csrf": csrf_of(client.get("/envoi").text), "mot_de_passe": SMTP_PASSWORD},
        follow_redirects=False,
    )
    _job_of(client, sent)
    handler.accepted.clear()
    returns = _returns(campaign, tmp_path)
    _job_of(client, _drop(client, returns[:2], csrf_of(client.get("/retours").text)))

    page = client.get("/relances")

    text = unescape(page_text(page.text))
    assert "4 relance(s) à envoyer" in text  # Abadie's return complete: Chevallier only
    assert "BERNARD Yanis (BTS 2A)" in text
    assert "feuille « Intégration », cellule" in text  # what the tutor must complete
    assert 'name="encore"' in page.text and 'type="password"' in page.text

    job = _job_of(
        client,
        client.post(
            "/relances/envoyer",
            data={"csrf": csrf_of(page.text), "mot_de_passe": SMTP_PASSWORD},
            follow_redirects=False,
        ),
    )

    outcome = _outcome(client, job)
    assert "envoyé : Marc Dubreuil <md@solvea.example>, 1 classeur(s)" in outcome
    assert "envoyé : Sophie Garnier <sg@horizon.example>, 1 classeur(s)" in outcome
    assert "4 message(s) envoyé(s), 0 en échec." in outcome
    assert sorted(m["To"].addresses[0].addr_spec for m in handler.accepted) == sorted(TUTORS)
    bernard = next(m for m in handler.accepted if "md@solvea" in str(m["To"]))
    (attached,) = list(bernard.iter_attachments())
    assert attached.get_content() == returns[1][1]  # the workbook the tutor sent back
    later = unescape(page_text(client.get("/relances").text))
    assert "0 relance(s) à envoyer" in later
    assert "tuteur déjà relancé le" in later
    assert "(voir « Pas de relance depuis », ou « Relancer même les tuteurs" in later
    again = unescape(page_text(client.get("/relances?encore=oui").text))
    assert "4 relance(s) à envoyer" in again
    interface_of(client.app).access.close()
    _nowhere(campaign, SMTP_PASSWORD, outcome, page.text)


def test_relances__without_server__prepared_as_eml_zip(campaign: Path, tmp_path: Path) -> None:
    client = logged_in(campaign)
    prepared = client.post(
        "/envoi/preparer", data={"csrf": csrf_of(client.get("/envoi").text)}, follow_redirects=False
    )
    _job_of(client, prepared)
    page = client.get("/relances")
    assert "4 relance(s) à envoyer" in unescape(page_text(page.text))

    job = _job_of(
        client,
        client.post(
            "/relances/preparer", data={"csrf": csrf_of(page.text)}, follow_redirects=False
        ),
    )

    (_, url) = next(link for link in job.outcome.links if link[0].startswith("Télécharger"))
    with zipfile.ZipFile(io.BytesIO(client.get(url).content)) as archive:
        names = archive.namelist()
        assert len(names) == 4 and all(name.startswith("relance_") for name in names)
        first = _parse(archive.read(names[0]))
    assert first["Subject"] is not None and list(first.iter_attachments())


def test_pages__no_inline_script_nor_style__every_field_labelled(
    campaign: Path, smtp_server: tuple[Server, int]
) -> None:
    use_smtp(campaign, smtp_server[1])
    client = logged_in(campaign)
    for path in ("/envoi", "/retours", "/relances"):
        page = client.get(path).text
        scripts = re.findall(r"<script[^>]*>", page)
        assert all(re.fullmatch(r'<script src="/static/[a-z.]+\.js" defer>', s) for s in scripts)
        assert "<style" not in page
        assert not re.search(r"<[^>]+\s(?:style|on[a-z]+)\s*=", page)
        for field in re.findall(r"<(?:input|select|textarea)\b[^>]*>", page):
            if 'type="hidden"' in field:
                continue
            found = re.search(r'id="([^"]+)"', field)
            assert found, field
            assert f'for="{found.group(1)}"' in page, field


def test_real_server__password_sent_over_smtp__never_in_its_terminal_output(
    campaign: Path, smtp_server: tuple[Server, int]
) -> None:
    """`grille ui` as the teacher starts it: what it prints holds no password."""
    handler, port = smtp_server
    use_smtp(campaign, port)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        ui_port = probe.getsockname()[1]
    command = [sys.executable, "-m", "pipeline", "--dir", str(campaign), "ui", "--no-browser"]
    process = subprocess.Popen(
        [*command, "--port", str(ui_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first: list[str] = []
        while not any("token=" in line for line in first):
            line = process.stdout.readline()
            assert line, first
            first.append(line)
        url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", "".join(first))
        assert url is not None
        with httpx.Client(base_url=f"http://127.0.0.1:{url.group(1)}") as client:
            page = client.get(f"/envoi?token={url.group(2)}", follow_redirects=True)
            sent = client.post(
                "/envoi/envoyer",
                data={"csrf": csrf_of(page.text), "mot_de_passe": SMTP_PASSWORD},
                follow_redirects=True,
            )
            assert sent.status_code == 200  # the job's page, once redirected
            state_url = sent.url.path + "/etat"
            deadline = time.monotonic() + 60
            while "hx-get" in (fragment := client.get(state_url).text):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert "4 message(s) envoyé(s), 0 en échec." in unescape(fragment)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(handler.accepted) == 4
    assert "Traceback" not in err
    _nowhere(campaign, SMTP_PASSWORD, "".join(first), out, err)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium absent (apt-get install chromium)")
def test_browser__files_dropped_on_the_zone__sent_and_read__no_script_error(
    campaign: Path, tmp_path: Path
) -> None:
    """A real drag and drop in Chromium: depot.js hands the files to the form and sends it."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright absent")
    returns = _returns(campaign, tmp_path)[:2]
    command = [sys.executable, "-m", "pipeline", "--dir", str(campaign), "ui", "--no-browser"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        ui_port = probe.getsockname()[1]
    process = subprocess.Popen(
        [*command, "--port", str(ui_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    errors: list[str] = []
    try:
        assert process.stdout is not None
        line = ""
        while "token=" not in line:
            line = process.stdout.readline()
            assert line
        url = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
        assert url is not None
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url.group(0))
                page.get_by_role("link", name="Retours").click()
                page.wait_for_url("**/retours")
                page.evaluate(
                    """(files) => {
                        const dropped = new DataTransfer();
                        for (const [name, data] of files) {
                            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                            dropped.items.add(new File([bytes], name));
                        }
                        const zone = document.querySelector("[data-depot]");
                        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dropped}));
                        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dropped}));
                    }""",
                    [[name, base64.b64encode(data).decode()] for name, data in returns],
                )
                page.wait_for_url("**/travail/*")
                page.get_by_text("2 retour(s) enregistré(s)").wait_for(timeout=60_000)
                assert page.get_by_text("ABADIE Chloé (BTS 2A) — complet — abadie.xlsx").count()
            finally:
                browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert errors == []  # no script error, nothing the CSP blocked
    assert _statuses(campaign)["Bernard"] == "incomplete"
