"""Sending the workbooks to the tutors, through a real SMTP server on the loopback."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import sqlite3
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.grid import load_grid
from pipeline.mail import (
    SEND,
    MailError,
    TutorMessage,
    build_message,
    eml_path,
    load_template,
    pending_messages,
    record_sending,
    send_messages,
    write_eml,
)
from pipeline.settings import CampaignConfig, SmtpSettings, Workspace
from tests.conftest import write_xlsx

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
GARNIER = ("Sophie Garnier", "sg@horizon.example")
DUBREUIL = ("Marc Dubreuil", "md@solvea.example")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Mailbox:
    """aiosmtpd handler keeping what it receives; refuses `refuse` with a 550."""

    refuse: str = ""
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)  # answers to the next DATA commands
    drop_after_data: str = ""  # this recipient's message is kept, then the line is cut

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.casefold() == self.refuse.casefold():
            return "550 5.1.1 Boîte inconnue"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        if self.drop_after_data in envelope.rcpt_tos:
            self.drop_after_data = ""
            server.transport.close()  # delivered, but the client never hears the 250
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(content) for _, _, content in self.received]


@pytest.fixture
def start_server() -> Iterator[Callable[..., SmtpSettings]]:
    """Start an aiosmtpd server on 127.0.0.1 (free port); stopped after the test."""
    controllers: list[Controller] = []

    def start(handler: Mailbox, **smtp_options: Any) -> SmtpSettings:
        controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **smtp_options)
        controller.start()
        controllers.append(controller)
        return SmtpSettings(
            host="127.0.0.1", port=controller.port, security="aucune", pause_seconds=0
        )

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = state.connect(tmp_path / "grille.sqlite")
    yield connection
    connection.close()


def add_student(
    db: sqlite3.Connection,
    root: Path,
    student_id: str,
    name: tuple[str, str],
    tutor: tuple[str, str],
    class_name: str = "BTS MCO 2A",
    in_roster: int = 1,
) -> int:
    """Insert a student and a first workbook (a real .xlsx); return the workbook id."""
    db.execute(
        "INSERT INTO students (student_id, last_name, first_name, class_name, company, "
        "tutor_name, tutor_email, start_date, end_date, in_roster, updated_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (student_id, *name, class_name, f"Entreprise {name[0]}", *tutor,
         "2026-01-05", "2026-02-27", in_roster, state.now()),
    )  # fmt: skip
    return add_workbook(db, root, student_id, f"{name[0].upper()}_{name[1]}_{student_id}")


def add_workbook(db: sqlite3.Connection, root: Path, student_id: str, stem: str) -> int:
    """Write `output/classeurs/<stem>.xlsx` and record it as the student's latest workbook."""
    path = root / "output" / "classeurs" / f"{stem}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_xlsx(path, [["Étudiant", stem]])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cursor = db.execute(
        "INSERT INTO workbooks (student_id, file, sha256, signature, grid_id, grid_version, "
        "fingerprint, template_digest, generated_at) VALUES (?,?,?,'','g','1','','',?)",
        (student_id, path.relative_to(root).as_posix(), digest, state.now()),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


TEMPLATE = load_template(None, SEND)


def build(config: CampaignConfig, message: TutorMessage, **options: Any) -> EmailMessage:
    return build_message(config, message, TEMPLATE, **options)


def config(
    smtp: SmtpSettings | None = None, deadline: date | None = date(2027, 3, 15)
) -> CampaignConfig:
    return CampaignConfig(
        campaign_id="campagne-test", school="Lycée Jean Moulin", session="BTS MCO 2027",
        school_year="2026-2027", teacher_name="Claire Martin",
        teacher_email="claire.martin@lycee.example", deadline=deadline,
        smtp=smtp or SmtpSettings(),
    )  # fmt: skip


@pytest.fixture
def three_students(db: sqlite3.Connection, tmp_path: Path) -> Path:
    """Abadie and Chevallier share a tutor (address spelled differently); Bernard has his own."""
    add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), GARNIER)
    add_student(db, tmp_path, "E2", ("Bernard", "Yanis"), DUBREUIL, class_name="BTS MCO 2B")
    add_student(
        db, tmp_path, "E3", ("Chevallier", "Inès"), ("Sophie Garnier", "SG@Horizon.example")
    )
    add_student(db, tmp_path, "E4", ("Durand", "Paul"), DUBREUIL, in_roster=0)
    return tmp_path


def opened(db: sqlite3.Connection, root: Path) -> Campaign:
    """The campaign of folder `root` on database `db`, as `Campaign.open` gives it."""
    return Campaign(Workspace(root), config(), b"k" * 32, load_grid(), db)


def names(messages: list[TutorMessage]) -> list[tuple[str, list[str]]]:
    return [(m.tutor_email.casefold(), [w.student_name for w in m.workbooks]) for m in messages]


def test_two_students_of_the_same_tutor__arrive_in_one_message_with_both_workbooks(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    mailbox = Mailbox()
    smtp = start_server(mailbox)
    pending = pending_messages(opened(db, three_students))
    assert names(pending) == [
        ("md@solvea.example", ["BERNARD Yanis"]),
        ("sg@horizon.example", ["ABADIE Chloé", "CHEVALLIER Inès"]),
    ]
    built = [(m, build(config(smtp), m)) for m in pending]

    report = send_messages(smtp, None, built, timeout=5)

    assert [m.tutor_email for m, _ in report.sent] == ["md@solvea.example", "sg@horizon.example"]
    assert report.failed == []
    assert [rcpt for _, rcpt, _ in mailbox.received] == [
        ["md@solvea.example"],
        ["sg@horizon.example"],
    ]
    garnier = mailbox.messages()[1]
    attachments = [
        (part.get_filename(), part.get_content_type(), part.get_content())
        for part in garnier.iter_attachments()
    ]
    assert attachments == [(w.path.name, XLSX, w.path.read_bytes()) for w in pending[1].workbooks]
    assert [name for name, _, _ in attachments] == [
        "ABADIE_Chloé_E1.xlsx",
        "CHEVALLIER_Inès_E3.xlsx",
    ]
    assert garnier["Message-ID"] == report.sent[1][1]


def test_message__french_subject_body_and_headers(
    db: sqlite3.Connection, three_students: Path
) -> None:
    bernard, garnier = pending_messages(opened(db, three_students))

    single = build(config(), bernard, message_id_domain="lycee.example")
    several = build(config(), garnier)

    assert single["Subject"] == "Évaluation de stage — BERNARD Yanis"
    assert several["Subject"] == "Évaluation de stage — ABADIE Chloé, CHEVALLIER Inès"
    assert single["From"] == "Claire Martin <claire.martin@lycee.example>"
    assert single["Reply-To"] == "Claire Martin <claire.martin@lycee.example>"
    assert single["To"] == "Marc Dubreuil <md@solvea.example>"
    assert single["Message-ID"].endswith("@lycee.example>")
    body = several.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert text.startswith(
        "Bonjour Sophie Garnier,\n\nVous accueillez en stage :\n  - ABADIE Chloé"
    )
    for expected in (
        "ABADIE Chloé (BTS MCO 2A, Entreprise Abadie)",
        "CHEVALLIER Inès (BTS MCO 2A, Entreprise Chevallier)",
        "Excel, LibreOffice Calc ou Google Sheets",
        "cellules jaunes",
        "format .xlsx",
        "en joignant les fichiers remplis, avant le 15/03/2027.",
        "Claire Martin : claire.martin@lycee.example",
        "Lycée Jean Moulin",
    ):
        assert expected in text


def test_message__sender_from_the_envoi_section__replies_still_go_to_the_teacher(
    db: sqlite3.Connection, three_students: Path
) -> None:
    message = pending_messages(opened(db, three_students))[0]
    smtp = SmtpSettings(sender="stages@lycee.example")

    built = build(config(smtp, deadline=None), message)

    assert built["From"] == "Claire Martin <stages@lycee.example>"
    assert built["Reply-To"] == "Claire Martin <claire.martin@lycee.example>"
    body = built.get_body(preferencelist=("plain",))
    assert body is not None
    assert "en joignant le fichier rempli, dès que possible.\n" in body.get_content()
    assert "Bonjour Marc Dubreuil,\n" in body.get_content()


def test_recorded_sending__nothing_pending__resend_gives_them_again(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    smtp = start_server(Mailbox())
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]

    report = send_messages(
        smtp, None, built, timeout=5,
        on_sent=lambda m, message_id: record_sending(db, m, message_id, "2027-02-01 10:00:00"),
    )  # fmt: skip

    rows = db.execute("SELECT student_id, recipient, message_id FROM sendings ORDER BY student_id")
    sent_ids = {m.tutor_email: message_id for m, message_id in report.sent}
    assert [tuple(row) for row in rows] == [
        ("E1", "sg@horizon.example", sent_ids["sg@horizon.example"]),
        ("E2", "md@solvea.example", sent_ids["md@solvea.example"]),
        ("E3", "sg@horizon.example", sent_ids["sg@horizon.example"]),
    ]
    assert pending_messages(opened(db, three_students)) == []
    assert names(pending_messages(opened(db, three_students), resend=True)) == names(
        [m for m, _ in built]
    )


def test_regenerated_workbook__makes_the_student_pending_again(
    db: sqlite3.Connection, three_students: Path
) -> None:
    for message in pending_messages(opened(db, three_students)):
        record_sending(db, message, "<x@grille.local>", state.now())
    new_id = add_workbook(db, three_students, "E3", "CHEVALLIER_Ines_E3_v2")

    (pending,) = pending_messages(opened(db, three_students))

    assert names([pending]) == [("sg@horizon.example", ["CHEVALLIER Inès"])]
    assert pending.workbooks[0].workbook_id == new_id
    assert (
        pending.workbooks[0].path == three_students / "output/classeurs/CHEVALLIER_Ines_E3_v2.xlsx"
    )


def test_pending__filtered_by_student_or_class(
    db: sqlite3.Connection, three_students: Path
) -> None:
    by_student = pending_messages(opened(db, three_students), student_ids={"E3", "E4"})
    by_class = pending_messages(opened(db, three_students), class_name="bts mco 2b")

    assert names(by_student) == [("sg@horizon.example", ["CHEVALLIER Inès"])]
    assert names(by_class) == [("md@solvea.example", ["BERNARD Yanis"])]


def test_refused_recipient__failed_in_french__other_tutors_still_receive(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    mailbox = Mailbox(refuse="md@solvea.example")
    smtp = start_server(mailbox)
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]
    recorded: list[str] = []

    report = send_messages(
        smtp, None, built, timeout=5, on_sent=lambda m, _: recorded.append(m.tutor_email)
    )

    assert [(m.tutor_email, reason) for m, reason in report.failed] == [
        (
            "md@solvea.example",
            "message refusé par le serveur : md@solvea.example refusé (550 5.1.1 Boîte inconnue)",
        )
    ]
    assert [m.tutor_email for m, _ in report.sent] == ["sg@horizon.example"]
    assert recorded == ["sg@horizon.example"]
    assert [rcpt for _, rcpt, _ in mailbox.received] == [["sg@horizon.example"]]


def test_server_down__mail_error_in_french(db: sqlite3.Connection, three_students: Path) -> None:
    port = free_port()  # nothing listens there
    smtp = SmtpSettings(host="127.0.0.1", port=port, security="aucune")
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]

    with pytest.raises(MailError) as error:
        send_messages(smtp, None, built, timeout=5)

    assert str(error.value) == (
        f"Connexion au serveur d'envoi 127.0.0.1:{port} impossible : connexion refusée (serveur "
        "arrêté, ou mauvais port). Vérifiez la section [envoi] de grille.toml."
    )


def test_login__wrong_password__mail_error__right_password__sent(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535

    mailbox = Mailbox()
    smtp = start_server(mailbox, authenticator=authenticate, auth_require_tls=False)
    smtp = replace(smtp, user="claire")
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]

    with pytest.raises(MailError, match=r"^Connexion au serveur d'envoi 127\.0\.0\.1:\d+ refusée "):
        send_messages(smtp, "faux", built, timeout=5)
    report = send_messages(smtp, "s3cret", built, timeout=5)

    assert len(report.sent) == 2
    assert len(mailbox.received) == 2


@pytest.mark.parametrize(
    "address",
    ["a@horizon.example, b@horizon.example", "a@horizon.example;b@horizon.example",
     "a@horizon.example\r\nBcc: pirate@evil.example", "a@horizon.example\nb@x.example",
     "pas-une-adresse"],
)  # fmt: skip
def test_tutor_address_with_comma_or_line_break__mail_error_naming_the_tutor(
    db: sqlite3.Connection, tmp_path: Path, address: str
) -> None:
    add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), ("Sophie Garnier", address))
    (message,) = pending_messages(opened(db, tmp_path))

    with pytest.raises(MailError) as error:
        build(config(), message)

    assert str(error.value).startswith("Tuteur « Sophie Garnier » (stagiaires : ABADIE Chloé")
    assert "colonne « Email tuteur »" in str(error.value)
    assert "\n" not in str(error.value)


def test_line_break_in_a_tutor_or_student_name__never_becomes_a_header(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    add_student(
        db,
        tmp_path,
        "E1",
        ("Abadie\r\nBcc: x@evil.example", "Chloé"),
        ("Sophie\nGarnier", GARNIER[1]),
    )
    (message,) = pending_messages(opened(db, tmp_path))

    parsed = BytesParser(policy=policy.default).parsebytes(build(config(), message).as_bytes())

    assert parsed["To"] == "Sophie Garnier <sg@horizon.example>"
    assert parsed["Subject"] == "Évaluation de stage — ABADIE BCC: X@EVIL.EXAMPLE Chloé"
    assert parsed["Bcc"] is None


def test_missing_workbook_file__mail_error_naming_the_student(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), GARNIER)
    (message,) = pending_messages(opened(db, tmp_path))
    message.workbooks[0].path.unlink()

    with pytest.raises(MailError, match=r"^Classeur de ABADIE Chloé introuvable ou illisible"):
        build(config(), message)


def test_write_eml__a_parseable_draft_that_outlook_opens_ready_to_send(
    db: sqlite3.Connection, three_students: Path
) -> None:
    garnier = pending_messages(opened(db, three_students))[1]
    folder = three_students / "output" / "apercu"

    email = build(config(), garnier)
    path = write_eml(email, eml_path(email, folder, "envoi"))

    assert path.parent == folder
    assert path.name.startswith("envoi_sg_horizon_example-") and path.suffix == ".eml"
    assert sorted(p.name for p in folder.iterdir()) == [path.name]
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert parsed["Subject"] == "Évaluation de stage — ABADIE Chloé, CHEVALLIER Inès"
    assert parsed["X-Unsent"] == "1"
    assert parsed["To"] == "Sophie Garnier <sg@horizon.example>"
    assert [part.get_content() for part in parsed.iter_attachments()] == [
        w.path.read_bytes() for w in garnier.workbooks
    ]


def test_transient_refusal__retried_after_a_pause__delivered_once(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    mailbox = Mailbox(data_replies=["451 4.3.0 Réessayez plus tard", "421 4.3.2 Fermeture"])
    smtp = replace(start_server(mailbox), pause_seconds=1.0)
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]
    pauses: list[float] = []

    report = send_messages(smtp, None, built, timeout=5, sleep=pauses.append)

    assert [m.tutor_email for m, _ in report.sent] == ["md@solvea.example", "sg@horizon.example"]
    assert report.failed == []
    assert [rcpt for _, rcpt, _ in mailbox.received] == [
        ["md@solvea.example"],
        ["sg@horizon.example"],
    ]
    assert pauses == [2.0, 5.0, 1.0]  # two retries of the first message, then the pause


def test_permanent_refusal__not_retried__the_next_tutor_still_receives(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    mailbox = Mailbox(data_replies=["554 5.7.1 Message refusé"])
    smtp = replace(start_server(mailbox), pause_seconds=1.0)
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]
    pauses: list[float] = []

    report = send_messages(smtp, None, built, timeout=5, sleep=pauses.append)

    assert [(m.tutor_email, r) for m, r in report.failed] == [
        ("md@solvea.example", "message refusé par le serveur : 554 5.7.1 Message refusé")
    ]
    assert [m.tutor_email for m, _ in report.sent] == ["sg@horizon.example"]
    assert pauses == [1.0]


def test_transient_refusal_every_time__failed_after_the_retries(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    mailbox = Mailbox(data_replies=["452 4.3.1 Espace insuffisant"] * 4)
    smtp = start_server(mailbox)
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]

    report = send_messages(
        smtp, None, built, timeout=5, retry_delays=(0, 0, 0), sleep=lambda s: None
    )

    assert [(m.tutor_email, r) for m, r in report.failed] == [
        ("md@solvea.example", "échec temporaire, 4 essais : 452 4.3.1 Espace insuffisant")
    ]
    assert [m.tutor_email for m, _ in report.sent] == ["sg@horizon.example"]


def test_connection_cut_after_the_data__uncertain__recorded__never_sent_again(
    db: sqlite3.Connection, three_students: Path, start_server: Callable[..., SmtpSettings]
) -> None:
    mailbox = Mailbox(drop_after_data="md@solvea.example")
    smtp = start_server(mailbox)
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]

    report = send_messages(
        smtp, None, built, timeout=5, sleep=lambda s: None,
        on_sent=lambda m, mid: record_sending(db, m, mid, state.now()),
        on_uncertain=lambda m, mid: record_sending(db, m, mid, state.now(), uncertain=True),
    )  # fmt: skip

    assert [(m.tutor_email, r) for m, r in report.uncertain] == [
        ("md@solvea.example", "le serveur a coupé la connexion")
    ]
    assert [m.tutor_email for m, _ in report.sent] == ["sg@horizon.example"]  # reconnected
    assert len(mailbox.received) == 2
    rows = db.execute("SELECT student_id, uncertain FROM sendings ORDER BY student_id")
    assert [tuple(r) for r in rows] == [("E1", 0), ("E2", 1), ("E3", 0)]
    assert pending_messages(opened(db, three_students)) == []


def test_workbook_replaced_on_disk__not_attached__mail_error_naming_the_student(
    db: sqlite3.Connection, tmp_path: Path
) -> None:
    add_student(db, tmp_path, "E1", ("Abadie", "Chloé"), GARNIER)
    add_student(db, tmp_path, "E2", ("Bernard", "Yanis"), GARNIER)
    abadie, bernard = pending_messages(opened(db, tmp_path))[0].workbooks
    abadie.path.write_bytes(bernard.path.read_bytes())  # another student's file in its place
    (message,) = pending_messages(opened(db, tmp_path))

    with pytest.raises(MailError) as error:
        build(config(), message)

    assert str(error.value) == (
        f"Le fichier {abadie.path} n'est plus celui que grille a préparé pour ABADIE Chloé "
        "(contenu modifié ou remplacé) : il n'est pas envoyé. Relancez « grille generate "
        "--force » pour le refaire."
    )


def test_campaign_template__used_for_subject_and_body(
    db: sqlite3.Connection, three_students: Path
) -> None:
    from pipeline.settings import Workspace

    workspace = Workspace(three_students)
    workspace.templates_dir.mkdir(parents=True, exist_ok=True)
    (workspace.templates_dir / "email_envoi.txt").write_text(
        "# mon modèle\nObjet : Stage de {noms} ({classes})\n\nBonjour {tuteur},\n"
        "merci de renvoyer {nombre} grille(s) {delai}.\n{stagiaires}\n",
        encoding="utf-8",
    )
    garnier = pending_messages(opened(db, three_students))[1]

    email = build_message(config(), garnier, load_template(workspace, SEND))

    assert email["Subject"] == "Stage de ABADIE Chloé, CHEVALLIER Inès (BTS MCO 2A)"
    body = email.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content() == (
        "Bonjour Sophie Garnier,\nmerci de renvoyer 2 grille(s) avant le 15/03/2027.\n"
        "  - ABADIE Chloé (BTS MCO 2A, Entreprise Abadie)\n"
        "  - CHEVALLIER Inès (BTS MCO 2A, Entreprise Chevallier)\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Objet : Stage\n\nBonjour {tuteur},\n{prenom}\n",
         "ligne 5 : champ {prenom} inconnu. Champs possibles : {tuteur}, {stagiaires}"),
        ("Bonjour {tuteur},\n",
         "la première ligne (hors commentaires #) doit être l'objet, sous la forme « Objet : … »"),
        ("Objet : Stage\n\nVoici {sa/leurs/vos} grilles.\n",
         "ligne 4 : choix {sa/leurs/vos} : une seule barre oblique, entre le texte pour un "
         "stagiaire et celui pour plusieurs, par exemple {sa/leurs}."),
    ],
)  # fmt: skip
def test_campaign_template__mistake__mail_error_naming_the_file_and_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    from pipeline.settings import Workspace

    workspace = Workspace(tmp_path)
    workspace.templates_dir.mkdir()
    (workspace.templates_dir / "email_envoi.txt").write_text("# c\n" + text, encoding="utf-8")

    with pytest.raises(MailError) as error:
        load_template(workspace, SEND)

    assert str(error.value).startswith(
        f"Modèle de message {workspace.templates_dir / 'email_envoi.txt'}"
    )
    assert expected in str(error.value)


def reparsed(email: EmailMessage) -> tuple[EmailMessage, str]:
    """The message as a mail client reads it from the bytes sent, and its plain text."""
    message = BytesParser(policy=policy.default).parsebytes(email.as_bytes())
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text: str = body.get_content()
    return message, text


def test_message__one_student__singular_throughout__tutor_greeted_by_name(
    db: sqlite3.Connection, three_students: Path
) -> None:
    bernard = pending_messages(opened(db, three_students))[0]

    _, text = reparsed(build(config(), bernard))

    assert text == (
        "Bonjour Marc Dubreuil,\n"
        "\n"
        "Vous accueillez en stage :\n"
        "  - BERNARD Yanis (BTS MCO 2B, Entreprise Bernard)\n"
        "\n"
        "Pour évaluer ce stage, merci de remplir la grille d'évaluation jointe à ce message.\n"
        "\n"
        "Comment faire :\n"
        "  1. Ouvrez le classeur joint avec Excel, LibreOffice Calc ou Google Sheets.\n"
        "  2. Remplissez les cellules jaunes (les autres cellules sont protégées) ; une cellule "
        "remplie devient verte.\n"
        "  3. Enregistrez-le au format .xlsx, si possible sans changer son nom (Google Sheets : "
        "Fichier > Télécharger > Microsoft Excel).\n"
        "  4. Répondez à ce message en joignant le fichier rempli, avant le 15/03/2027.\n"
        "\n"
        "Pour toute question, vous pouvez contacter Claire Martin : "
        "claire.martin@lycee.example.\n"
        "\n"
        "Nous vous remercions de votre collaboration.\n"
        "\n"
        "Bien cordialement,\n"
        "\n"
        "Claire Martin\n"
        "Lycée Jean Moulin\n"
    )


def test_message__several_students__plural_throughout(
    db: sqlite3.Connection, three_students: Path
) -> None:
    garnier = pending_messages(opened(db, three_students))[1]

    _, text = reparsed(build(config(), garnier))

    lines = text.splitlines()
    for line in (
        "Pour évaluer ces stages, merci de remplir les grilles d'évaluation jointes à ce message "
        "(un classeur par stagiaire).",
        "  1. Ouvrez chaque classeur joint avec Excel, LibreOffice Calc ou Google Sheets.",
        "  3. Enregistrez-les au format .xlsx, si possible sans changer leur nom (Google Sheets : "
        "Fichier > Télécharger > Microsoft Excel).",
        "  4. Répondez à ce message en joignant les fichiers remplis, avant le 15/03/2027.",
    ):
        assert line in lines
    assert "la grille d'évaluation jointe" not in text
    assert "le fichier rempli" not in text


def test_message__paragraphs_are_single_lines__not_rewrapped_on_the_way(
    db: sqlite3.Connection, three_students: Path
) -> None:
    garnier = pending_messages(opened(db, three_students))[1]
    email = build(config(), garnier)

    _, text = reparsed(email)

    long_lines = [line for line in text.splitlines() if len(line) > 78]
    assert len(long_lines) >= 4  # a paragraph is one line; the mail client wraps it
    for line in text.splitlines():
        if line and not line.startswith(("  ", "Vous accueillez", "Comment faire")):
            assert line.endswith((".", ",", ":")) or line in {"Claire Martin", "Lycée Jean Moulin"}
    raw = email.as_bytes()
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert b"format=flowed" not in raw


def test_message__tutor_name_unknown__madame_monsieur(
    db: sqlite3.Connection, three_students: Path
) -> None:
    bernard = pending_messages(opened(db, three_students))[0]
    anonymous = replace(bernard, tutor_name="  ")

    _, text = reparsed(build(config(), anonymous))

    assert text.startswith("Madame, Monsieur,\n\nVous accueillez en stage :")


def test_message__date_header_in_the_teachers_time_zone(
    db: sqlite3.Connection, three_students: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    bernard = pending_messages(opened(db, three_students))[0]
    monkeypatch.setenv("TZ", "America/Cayenne")  # UTC-3 all year: no daylight saving
    time.tzset()
    try:
        message, _ = reparsed(build(config(), bernard))
    finally:
        monkeypatch.undo()
        time.tzset()

    sent = message["Date"].datetime
    assert sent.utcoffset() == timedelta(hours=-3)
    assert message["Date"].endswith("-0300")
    assert abs(datetime.now(UTC) - sent) < timedelta(minutes=5)


def test_campaign_template__from_an_earlier_season__old_fields_still_work(
    db: sqlite3.Connection, three_students: Path
) -> None:
    from pipeline.mail import REMIND
    from pipeline.settings import Workspace

    workspace = Workspace(three_students)
    workspace.templates_dir.mkdir(parents=True, exist_ok=True)
    data = Path(__file__).parent / "data"
    for kind in ("envoi", "relance"):
        source = data / f"email_{kind}_saison_2026.txt"
        (workspace.templates_dir / f"email_{kind}.txt").write_bytes(source.read_bytes())
    garnier = pending_messages(opened(db, three_students))[1]

    _, sent = reparsed(build_message(config(), garnier, load_template(workspace, SEND)))
    reminder = replace(garnier, kind=REMIND)
    _, reminded = reparsed(build_message(config(), reminder, load_template(workspace, REMIND)))

    assert sent.startswith("Madame, Monsieur,\n\nVous accueillez en stage :\n  - ABADIE Chloé")
    assert "en joignant le fichier rempli, avant le 15/03/2027." in sent
    assert reminded.startswith("Madame, Monsieur,\n\nSauf erreur de notre part,")
    assert "  - ABADIE Chloé (BTS MCO 2A) : aucun retour reçu pour l'instant." in reminded


def test_campaign_template__singular_plural_choice__follows_the_number_of_students(
    db: sqlite3.Connection, three_students: Path
) -> None:
    from pipeline.settings import Workspace

    workspace = Workspace(three_students)
    workspace.templates_dir.mkdir(parents=True, exist_ok=True)
    (workspace.templates_dir / "email_envoi.txt").write_text(
        "Objet : {Votre stagiaire/Vos stagiaires} — {les_evaluations}\n\n"
        "{salutation}\nVoici {sa/leurs} grille{/s} ({nombre}).\n",
        encoding="utf-8",
    )
    template = load_template(workspace, SEND)
    bernard, garnier = pending_messages(opened(db, three_students))

    one, one_text = reparsed(build_message(config(), bernard, template))
    two, two_text = reparsed(build_message(config(), garnier, template))

    assert one["Subject"] == "Votre stagiaire — l'évaluation de BERNARD Yanis"
    assert one_text == "Bonjour Marc Dubreuil,\nVoici sa grille (1).\n"
    assert two["Subject"] == "Vos stagiaires — les évaluations de vos 2 stagiaires"
    assert two_text == "Bonjour Sophie Garnier,\nVoici leurs grilles (2).\n"


def test_template_values__de_elided_before_a_vowel(
    db: sqlite3.Connection, three_students: Path
) -> None:
    from pipeline.mail import template_values

    garnier = pending_messages(opened(db, three_students))[1]
    abadie = replace(garnier, workbooks=garnier.workbooks[:1])

    assert template_values(config(), abadie)["les_evaluations"] == ("l'évaluation d'ABADIE Chloé")


def test_bundled_templates__the_repository_copies_are_the_same() -> None:
    from pipeline.mail import REMIND
    from pipeline.settings import BUNDLED_TEMPLATES, TEMPLATE_NAMES

    repository = Path(__file__).parent.parent / "input_templates"
    for name in TEMPLATE_NAMES.values():
        assert (repository / name).read_bytes() == (BUNDLED_TEMPLATES / name).read_bytes()
    assert load_template(None, REMIND).subject == "Relance — évaluation de stage de {noms}"


# ------------------------------------------------------------------ TLS, with a test authority


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 signed by a throwaway authority, and that authority."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def certificate(name: str, key: Any, issuer: Any, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Autorité de test")])
    ca = certificate("Autorité de test", ca_key, ca_name, ca_key, True)
    server = certificate("127.0.0.1", server_key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    authority = tmp_path / "autorite.pem"
    authority.write_bytes(ca.public_bytes(pem))
    (tmp_path / "serveur.pem").write_bytes(server.public_bytes(pem))
    (tmp_path / "serveur.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "serveur.pem", tmp_path / "serveur.key")
    return context, authority


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls__starttls_or_implicit__certificate_checked__delivered(
    db: sqlite3.Connection,
    three_students: Path,
    start_server: Callable[..., SmtpSettings],
    tls: tuple[ssl.SSLContext, Path],
    monkeypatch: pytest.MonkeyPatch,
    security: str,
) -> None:
    context, authority = tls
    monkeypatch.setenv("SSL_CERT_FILE", str(authority))  # trusted like a real authority
    mailbox = Mailbox()
    options = (
        {"tls_context": context, "require_starttls": True}
        if security == "starttls"
        else {"ssl_context": context}
    )
    smtp = replace(start_server(mailbox, **options), security=security)
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]

    report = send_messages(smtp, None, built, timeout=5)

    assert [m.tutor_email for m, _ in report.sent] == ["md@solvea.example", "sg@horizon.example"]
    assert len(mailbox.received) == 2


def test_tls__certificate_not_trusted__refused_before_anything_is_sent(
    db: sqlite3.Connection,
    three_students: Path,
    start_server: Callable[..., SmtpSettings],
    tls: tuple[ssl.SSLContext, Path],
) -> None:
    context, _ = tls
    mailbox = Mailbox()
    smtp = replace(
        start_server(mailbox, tls_context=context, require_starttls=True), security="starttls"
    )
    built = [(m, build(config(), m)) for m in pending_messages(opened(db, three_students))]

    with pytest.raises(MailError) as error:
        send_messages(smtp, None, built, timeout=5)

    assert str(error.value) == (
        f"Connexion au serveur d'envoi 127.0.0.1:{smtp.port} impossible : certificat du "
        "serveur refusé (unable to get local issuer certificate) : vérifiez le nom du serveur, "
        "celui que donne votre service informatique. Vérifiez la section [envoi] de grille.toml."
    )
    assert mailbox.received == []
