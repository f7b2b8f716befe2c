"""`grille send` and `grille remind` from the CLI: outbox files, a real SMTP server, resumes."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from pipeline.workbook import read_identity
from pipeline.xlsx import XlsxPackage
from tests.test_collect import ROWS, _answers_for
from tests.tutors import (
    ROSTER_HEADER,
    Server,
    fill,
    make_campaign,
    parse,
    run,
    smtp_server,
    status_json,
    with_teacher_email,
    workbook_of,
)

TUTORS = {
    "sg@horizon.example": ["Abadie", "Chevallier"],
    "md@solvea.example": ["Bernard"],
    "jl@quartz.example": ["Da Silva", "Étienne"],
    "bc@mutuelle.example": ["Faure", "Garcia"],
}


@pytest.fixture
def campaign(tmp_path: Path, write_csv: Callable[..., Path]) -> Path:
    return with_teacher_email(make_campaign(tmp_path / "campagne", ROWS, write_csv))


def outbox(root: Path) -> dict[str, EmailMessage]:
    """The .eml files of output/envoi/, by recipient."""
    messages = [parse(p.read_bytes()) for p in sorted((root / "output" / "envoi").glob("*.eml"))]
    return {m["To"].addresses[0].addr_spec: m for m in messages}


def attached_students(message: EmailMessage) -> list[str]:
    """The student id signed inside each attached workbook."""
    ids = []
    for part in message.iter_attachments():
        meta, _, _ = read_identity(XlsxPackage(part.get_content(), part.get_filename() or "?"))
        ids.append(meta["student_id"])
    return ids


def body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    text: str = part.get_content()
    return text


def students_by_tutor(root: Path) -> dict[str, set[str]]:
    tutors: dict[str, set[str]] = {}
    for status in status_json(root).values():
        tutors.setdefault(status["tutor_email"], set()).add(status["student_id"])
    return tutors


# ------------------------------------------------------------------ outbox (no server)


def test_send__no_server_configured__ready_to_send_eml_files__each_tutor_only_his_students(
    campaign: Path,
) -> None:
    result = run(campaign, "send")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "4 message(s) prêt(s) à partir dans output/envoi/ (aucun serveur d'envoi dans "
        "grille.toml [envoi]) : ouvrez chaque fichier .eml avec Thunderbird ou Outlook et "
        "envoyez-le."
    )
    messages = outbox(campaign)
    assert sorted(messages) == sorted(TUTORS)
    expected = students_by_tutor(campaign)
    for address, message in messages.items():
        assert message["X-Unsent"] == "1"
        assert message["Reply-To"] is not None
        assert set(attached_students(message)) == expected[address]
        for part in message.iter_attachments():
            generated = workbook_of(campaign, part.get_filename().split("_")[0])
            assert part.get_content() == generated.read_bytes()
    assert {s["status"] for s in status_json(campaign).values()} == {"prepared"}
    again = run(campaign, "send")
    assert again.output == "Rien à envoyer : chaque classeur a déjà été envoyé (voir --resend).\n"


def test_send__outbox_messages_sent_by_hand__mark_sent__statuses_become_sent(
    campaign: Path,
) -> None:
    assert run(campaign, "send").exit_code == 0

    marked = run(campaign, "send", "--mark-sent", "--class", "BTS 2A")

    assert marked.exit_code == 0, marked.output
    assert marked.output.splitlines() == [
        "  envoyé par vous : ABADIE Chloé (BTS 2A)",
        "  envoyé par vous : BERNARD Yanis (BTS 2A)",
        "  envoyé par vous : CHEVALLIER Inès (BTS 2A)",
        "3 classeur(s) notés comme envoyés.",
    ]
    statuses = status_json(campaign)
    assert {n: s["status"] for n, s in statuses.items()} == {
        "Abadie": "sent", "Bernard": "sent", "Chevallier": "sent", "Da Silva": "prepared",
        "Étienne": "prepared", "Faure": "prepared", "Garcia": "prepared",
    }  # fmt: skip
    again = run(campaign, "send", "--mark-sent", "--class", "BTS 2A")
    assert again.output == "Aucun message préparé en attente : rien à noter.\n"
    assert run(campaign, "send").output.startswith("Rien à envoyer")
    misuse = run(campaign, "send", "--mark-sent", "--dry-run")
    assert misuse.exit_code == 2
    assert "--mark-sent ne s'emploie ni avec --dry-run ni avec --resend." in misuse.output


def test_send__roster_name_with_line_break__refused_at_the_roster__no_header_can_be_added(
    tmp_path: Path, write_csv: Callable[..., Path]
) -> None:
    """The roster is the first guard; `build_message` is the second (see test_mail.py)."""
    root = tmp_path / "c"
    assert run(root, "init").exit_code == 0
    rows = [[*ROWS[0][:4], "Sophie\r\nBcc: pirate@evil.example", *ROWS[0][5:]]]
    roster = write_csv(root / "liste.csv", [ROSTER_HEADER, *rows])

    result = run(root, "generate", "--roster", str(roster))

    assert result.exit_code == 2
    assert "liste.csv, ligne 2, colonne Tuteur : retour à la ligne" in result.output
    assert run(root, "send").output.startswith("Rien à envoyer")


# ------------------------------------------------------------------ real SMTP server


@pytest.fixture
def server() -> Iterator[tuple[Server, int]]:
    with smtp_server() as running:
        yield running


def use_smtp(root: Path, port: int) -> None:
    config = root / "grille.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('serveur = ""', 'serveur = "127.0.0.1"', 1)  # [envoi] comes first
    text = text.replace("port = 587", f"port = {port}").replace('"starttls"', '"aucune"')
    text = text.replace("pause_secondes = 1", "pause_secondes = 0")
    text = text.replace('email = ""', 'email = "prof@lycee.example"')
    config.write_text(text, encoding="utf-8")


def test_send__over_smtp__one_message_per_tutor__byte_identical_workbooks__statuses_sent(
    campaign: Path, server: tuple[Server, int]
) -> None:
    handler, port = server
    use_smtp(campaign, port)
    dry = run(campaign, "send", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines()[-1] == (
        f"4 message(s) prêt(s) pour le serveur 127.0.0.1:{port} ; rien n'a été fait (--dry-run)."
    )
    assert not (campaign / "output" / "envoi").exists()
    assert handler.accepted == []
    assert {s["status"] for s in status_json(campaign).values()} == {"generated"}

    result = run(campaign, "send")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "4 message(s) envoyé(s), 0 en échec."
    assert handler.count() == dict.fromkeys(TUTORS, 1)
    expected = students_by_tutor(campaign)
    for message in handler.accepted:
        address = message["To"].addresses[0].addr_spec
        assert set(attached_students(message)) == expected[address]
        for part in message.iter_attachments():
            generated = workbook_of(campaign, part.get_filename().split("_")[0])
            assert part.get_filename() == generated.name
            assert part.get_content() == generated.read_bytes()
    assert {s["status"] for s in status_json(campaign).values()} == {"sent"}
    assert run(campaign, "send").output.startswith("Rien à envoyer")
    assert len(handler.accepted) == 4
    copies = [parse(p.read_bytes()) for p in (campaign / "output/envoi/envoyes").iterdir()]
    assert sorted(c["Message-ID"] for c in copies) == sorted(
        m["Message-ID"] for m in handler.accepted
    )  # a copy of what left, for the teacher's records
    assert all(c["X-Unsent"] is None for c in copies)  # not drafts: nobody sends them again


def test_send__server_down__french_error_exit_1(campaign: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    use_smtp(campaign, port)

    result = run(campaign, "send")

    assert result.exit_code == 1
    assert result.output == (
        f"Erreur : Connexion au serveur d'envoi 127.0.0.1:{port} impossible : connexion refusée "
        "(serveur arrêté, ou mauvais port). Vérifiez la section [envoi] de grille.toml.\n"
    )


def test_send__failures_in_the_middle__rerun_sends_each_remaining_message_exactly_once(
    campaign: Path, server: tuple[Server, int]
) -> None:
    handler, port = server
    use_smtp(campaign, port)
    handler.refuse = {"jl@quartz.example", "md@solvea.example"}

    first = run(campaign, "send")

    assert first.exit_code == 1
    assert "  Erreur — Julien Lemaître <jl@quartz.example> : message refusé par le serveur : " in (
        first.output
    )
    assert first.output.splitlines()[-1] == "2 message(s) envoyé(s), 2 en échec."
    assert handler.count() == {"bc@mutuelle.example": 1, "sg@horizon.example": 1}
    statuses = status_json(campaign)
    assert {n: s["status"] for n, s in statuses.items()} == {
        "Abadie": "sent", "Chevallier": "sent", "Faure": "sent", "Garcia": "sent",
        "Bernard": "generated", "Da Silva": "generated", "Étienne": "generated",
    }  # fmt: skip
    handler.refuse = set()

    second = run(campaign, "send")

    assert second.exit_code == 0, second.output
    assert second.output.splitlines()[-1] == "2 message(s) envoyé(s), 0 en échec."
    assert handler.count() == dict.fromkeys(TUTORS, 1)
    assert run(campaign, "send").output.startswith("Rien à envoyer")


def test_send__killed_while_sending__rerun_sends_each_remaining_message_exactly_once(
    campaign: Path, server: tuple[Server, int]
) -> None:
    handler, port = server
    use_smtp(campaign, port)
    handler.hang_on = "md@solvea.example"  # the third message: Caron, Lemaître, Dubreuil…
    env = {**os.environ, "GRILLE_DIR": str(campaign)}
    sender = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "send"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not handler.hanging and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.kill()  # while the server holds Dubreuil's message
    sender.communicate()
    assert handler.count() == {"bc@mutuelle.example": 1, "jl@quartz.example": 1}
    handler.hang_on = ""

    rerun = run(campaign, "send")

    assert rerun.exit_code == 0, rerun.output
    assert handler.count() == dict.fromkeys(TUTORS, 1)
    assert rerun.output.splitlines()[-1] == "2 message(s) envoyé(s), 0 en échec."


# ------------------------------------------------------------------ reminders


def _returns(campaign: Path, tmp_path: Path) -> dict[str, Path]:
    inbox = tmp_path / "retours"
    files = {
        "Abadie": fill(workbook_of(campaign, "Abadie"), inbox / "a.xlsx",
                       _answers_for("Sophie Garnier")),
        "Bernard": fill(workbook_of(campaign, "Bernard"), inbox / "b.xlsx",
                        _answers_for("Marc Dubreuil", **{"integration.ponctualite": None},
                                     appreciation=None)),
        "Chevallier": fill(workbook_of(campaign, "Chevallier"), inbox / "c.xlsx",
                           _answers_for("Sophie Garnier", **{"clientele.decouverte": "Bien"})),
    }  # fmt: skip
    assert run(campaign, "collect", str(inbox)).exit_code == 0
    return files


def test_remind__before_any_sending__nobody_reminded__says_to_send_first(campaign: Path) -> None:
    result = run(campaign, "remind", "--class", "BTS 2A")

    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "  pas de relance : ABADIE Chloé (BTS 2A) : classeur jamais envoyé au tuteur ; lancez "
        "« grille send ».",
        "  pas de relance : BERNARD Yanis (BTS 2A) : classeur jamais envoyé au tuteur ; lancez "
        "« grille send ».",
        "  pas de relance : CHEVALLIER Inès (BTS 2A) : classeur jamais envoyé au tuteur ; lancez "
        "« grille send ».",
        "Aucun tuteur à relancer.",
    ]


def test_remind__one_message_per_tutor__exact_missing_items__the_workbook_to_complete(
    campaign: Path, tmp_path: Path
) -> None:
    assert run(campaign, "send").exit_code == 0
    for sent in (campaign / "output" / "envoi").iterdir():
        sent.unlink()  # the teacher sent them from Thunderbird
    returned = _returns(campaign, tmp_path)
    statuses = status_json(campaign)

    dry = run(campaign, "remind", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert not list((campaign / "output" / "envoi").iterdir())
    result = run(campaign, "remind")

    assert result.exit_code == 0, result.output
    messages = outbox(campaign)
    assert sorted(messages) == sorted(TUTORS)  # Garnier for Chevallier only: Abadie is complete
    garnier = messages["sg@horizon.example"]
    assert attached_students(garnier) == [statuses["Chevallier"]["student_id"]]  # not Abadie
    (chevallier_file,) = garnier.iter_attachments()
    assert chevallier_file.get_content() == returned["Chevallier"].read_bytes()
    assert chevallier_file.get_filename() == workbook_of(campaign, "Chevallier").name
    dubreuil = messages["md@solvea.example"]
    text = body(dubreuil)
    assert text.startswith(
        "Bonjour Marc Dubreuil,\n\nSauf erreur de notre part, l'évaluation de BERNARD Yanis "
        "n'est pas encore complète :\n\n  - BERNARD Yanis (BTS 2A) : le classeur reçu le "
    )
    bernard_items = [
        "feuille « Intégration », cellule D15 (Ponctualité) : non renseigné.",
        "feuille « Appréciations », cellule A4 (Appréciation du tuteur sur le travail et le "
        "comportement du stagiaire) : non renseignée.",
    ]
    assert len(statuses["Bernard"]["missing"]) == 2
    assert " est à compléter :\n" + "".join(f"      • {i}\n" for i in bernard_items) in text
    for item in bernard_items:
        assert f"      • BERNARD Yanis : {item}" in dry.output
    assert (
        "Vous trouverez ci-joint le classeur à compléter (celui que vous nous avez renvoyé, s'il nous est parvenu)."
        in text
    )
    garnier_text = body(garnier)
    assert garnier_text.startswith(
        "Bonjour Sophie Garnier,\n\nSauf erreur de notre part, l'évaluation de CHEVALLIER Inès "
        "n'est pas encore complète :\n"
    )
    assert (
        " est à corriger :\n      • feuille « Clientèle », cellule D24 (Découverte) : « Bien » "
        in garnier_text
    )
    assert "à compléter :" not in garnier_text
    assert "ABADIE" not in garnier_text
    lemaitre = messages["jl@quartz.example"]
    lemaitre_text = body(lemaitre)
    assert lemaitre_text.startswith(
        "Bonjour Julien Lemaître,\n\nSauf erreur de notre part, les évaluations de vos 2 "
        "stagiaires ne sont pas encore complètes :\n"
    )
    assert "  - DA SILVA Mathéo (BTS 2B) : aucun retour reçu pour l'instant." in lemaitre_text
    assert (
        "Vous trouverez ci-joint les classeurs à compléter (ceux que vous nous avez renvoyés, s'ils nous sont parvenus)."
        in lemaitre_text
    )
    assert [p.get_content() for p in lemaitre.iter_attachments()] == [
        workbook_of(campaign, n).read_bytes() for n in ("Da Silva", "Étienne")
    ]
    assert garnier["Subject"] == "Relance — évaluation de stage de CHEVALLIER Inès"
    after = status_json(campaign)
    assert after["Bernard"]["reminded_at"] and not after["Abadie"]["reminded_at"]
    assert after["Bernard"]["status"] == "incomplete"

    again = run(campaign, "remind")
    assert again.output.splitlines()[-1] == "Aucun tuteur à relancer."
    assert "BERNARD Yanis (BTS 2A) : tuteur déjà relancé le " in again.output
    forced = run(campaign, "remind", "--again", "--student", statuses["Bernard"]["student_id"])
    assert forced.exit_code == 0, forced.output
    assert forced.output.splitlines()[-1].startswith("1 message(s) prêt(s) à partir")


def test_remind__over_smtp__recorded_like_a_sending(
    campaign: Path, tmp_path: Path, server: tuple[Server, int]
) -> None:
    handler, port = server
    use_smtp(campaign, port)
    assert run(campaign, "send").exit_code == 0
    _returns(campaign, tmp_path)
    handler.accepted.clear()

    result = run(campaign, "remind", "--class", "BTS 2A")

    assert result.exit_code == 0, result.output
    assert handler.count() == {"md@solvea.example": 1, "sg@horizon.example": 1}
    assert result.output.splitlines()[-1] == "2 message(s) envoyé(s), 0 en échec."
    digests = {
        hashlib.sha256(p.get_content()).hexdigest()
        for m in handler.accepted
        for p in m.iter_attachments()
    }
    assert len(digests) == 2
