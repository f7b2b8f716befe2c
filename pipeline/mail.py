"""Build and send the tutors' messages: one email per tutor, with his or her students' workbooks.

`pending_messages` (state → batches) → `build_message` (French `EmailMessage`) →
`send_messages` (one SMTP connection) → `record_sending`; `write_preview` for a dry run.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import smtplib
import socket
import sqlite3
import ssl
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from pipeline import state
from pipeline.errors import GrilleError, french_os_error
from pipeline.files import atomic_write_bytes, safe_name
from pipeline.settings import CONFIG_NAME, CampaignConfig, SmtpSettings

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_FIX_CONFIG = f"Vérifiez la section [envoi] de {CONFIG_NAME}."


class MailError(GrilleError):
    """A message cannot be built, or the mail server cannot be used."""


@dataclass(frozen=True)
class WorkbookToSend:
    """One student's latest workbook, as attached to the tutor's message."""

    student_id: str
    student_name: str
    class_name: str
    company: str
    workbook_id: int
    path: Path


@dataclass(frozen=True)
class TutorMessage:
    """What one tutor receives: the workbooks of all his or her students."""

    tutor_name: str
    tutor_email: str
    workbooks: tuple[WorkbookToSend, ...]


@dataclass
class SendReport:
    """Outcome of a batch: (message, Message-ID) sent, (message, French reason) failed."""

    sent: list[tuple[TutorMessage, str]] = field(default_factory=list)
    failed: list[tuple[TutorMessage, str]] = field(default_factory=list)


_PENDING_SQL = """
    SELECT s.student_id, s.last_name, s.first_name, s.class_name, s.company,
           s.tutor_name, s.tutor_email, w.id AS workbook_id, w.file
    FROM students s
    JOIN workbooks w ON w.id = (SELECT MAX(id) FROM workbooks WHERE student_id = s.student_id)
    WHERE s.in_roster = 1
      AND (:resend OR NOT EXISTS (SELECT 1 FROM sendings d WHERE d.workbook_id = w.id))
    ORDER BY s.last_name, s.first_name, s.student_id
"""


def pending_messages(
    db: sqlite3.Connection,
    root: Path,
    *,
    resend: bool = False,
    student_ids: set[str] | None = None,
    class_name: str | None = None,
) -> list[TutorMessage]:
    """Latest workbooks not sent yet (all with `resend`), one message per tutor email."""
    wanted_class = class_name.strip().casefold() if class_name is not None else None
    groups: dict[str, tuple[str, str, list[WorkbookToSend]]] = {}
    for row in db.execute(_PENDING_SQL, {"resend": resend}):
        if student_ids is not None and row["student_id"] not in student_ids:
            continue
        if wanted_class is not None and row["class_name"].strip().casefold() != wanted_class:
            continue
        name = f"{row['last_name'].upper()} {row['first_name']}"
        book = WorkbookToSend(
            row["student_id"], name, row["class_name"], row["company"], row["workbook_id"],
            root / row["file"],
        )  # fmt: skip
        email = row["tutor_email"].strip()
        groups.setdefault(email.casefold(), (row["tutor_name"], email, []))[2].append(book)
    messages = [TutorMessage(name, email, tuple(books)) for name, email, books in groups.values()]
    return sorted(messages, key=lambda m: (m.tutor_name.casefold(), m.tutor_email.casefold()))


def _clean(text: str | bytes) -> str:
    """One line of text: control characters, line breaks and surrogates become spaces."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    kept = "".join(" " if unicodedata.category(c) in {"Cc", "Cs", "Zl", "Zp"} else c for c in text)
    return " ".join(kept.split())


def _address(name: str, email: str, fault: str) -> Address:
    """An `Address` for exactly one dot-atom email; otherwise `MailError(fault)`."""
    if not _EMAIL.fullmatch(email) or ".." in email:  # no CR/LF, comma, space, quotes
        raise MailError(fault)
    return Address(display_name=_clean(name), addr_spec=email)


def _tutor_address(message: TutorMessage) -> Address:
    email = message.tutor_email.strip()
    several = any(c in email for c in ",;") or len(email.split()) > 1
    shown = message.tutor_email.encode("unicode_escape").decode("ascii")  # \r, \n made visible
    students = ", ".join(f"{w.student_name} ({w.class_name})" for w in message.workbooks)
    fault = (
        f"Tuteur « {_clean(message.tutor_name)} » (stagiaires : {_clean(students)}) : l'adresse "
        f"e-mail « {shown} » {'contient plusieurs adresses' if several else 'est invalide'}. "
        "Mettez une seule adresse, sans virgule, point-virgule ni retour à la ligne, dans la "
        "colonne « Email tuteur » de la liste des stagiaires, puis relancez « grille generate »."
    )
    return _address(message.tutor_name, email, fault)


def _sender_addresses(config: CampaignConfig) -> tuple[Address, Address]:
    """(From, Reply-To): the sender of [envoi] (or the teacher), and the teacher."""
    fault = f"{CONFIG_NAME} : « {{}} » n'est pas une adresse e-mail valide ; corrigez-la."
    name, sender = config.teacher_name, config.smtp.sender.strip()
    reply_to = _address(name, config.teacher_email.strip(), fault.format("professeur.email"))
    if not sender:
        return reply_to, reply_to
    return _address(name, sender, fault.format("envoi.expediteur")), reply_to


def _subject(config: CampaignConfig, message: TutorMessage) -> str:
    books = message.workbooks
    if len(books) == 1:
        return f"Évaluation du stage de {books[0].student_name} — {books[0].class_name}"
    where = config.school or ", ".join(sorted({w.class_name for w in books}))
    return f"Évaluation des stages de {len(books)} stagiaires — {where}"


_BODY = """\
Madame, Monsieur,

{intro}

Comment faire :
  1. Ouvrez le classeur joint avec Excel, LibreOffice Calc ou Google Sheets.
  2. Remplissez les cellules jaunes (les autres cellules sont protégées).
  3. Enregistrez-le au format .xlsx, si possible sans changer son nom
     (Google Sheets : Fichier > Télécharger > Microsoft Excel).
  4. Répondez à ce message en joignant le fichier rempli{deadline}.

Pour toute question, vous pouvez contacter {teacher} : {email}.

Nous vous remercions de votre collaboration et vous prions d'agréer, Madame, Monsieur,
l'expression de nos salutations distinguées.

{signature}
"""


def _body(config: CampaignConfig, message: TutorMessage) -> str:
    books = message.workbooks
    if len(books) == 1:
        book = books[0]
        intro = _clean(
            f"Vous accueillez en stage {book.student_name} ({book.class_name}) dans l'entreprise "
            f"{book.company}. Pour évaluer ce stage, merci de remplir la grille d'évaluation "
            "jointe à ce message."
        )
    else:
        listed = (_clean(f"{w.student_name} ({w.class_name}, {w.company})") for w in books)
        intro = "Vous accueillez en stage les étudiants suivants ; merci de remplir la grille "
        intro += "d'évaluation jointe de chacun d'eux :\n" + "\n".join(f"  - {n}" for n in listed)
    return _BODY.format(
        intro=intro,
        deadline=config.deadline.strftime(", avant le %d/%m/%Y") if config.deadline else "",
        teacher=_clean(config.teacher_name) or "le professeur coordinateur",
        email=_clean(config.teacher_email),
        signature="\n".join(_clean(t) for t in (config.teacher_name, config.school) if t.strip()),
    )


def build_message(
    config: CampaignConfig, message: TutorMessage, *, message_id_domain: str = "grille.local"
) -> EmailMessage:
    """The French email for one tutor, with each student's workbook attached."""
    if not message.workbooks:
        raise MailError(f"Aucun classeur à envoyer à « {_clean(message.tutor_name)} ».")
    to, (sender, reply_to) = _tutor_address(message), _sender_addresses(config)
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Reply-To"] = reply_to
    email["Subject"] = _clean(_subject(config, message))
    email["Date"] = formatdate(localtime=True)
    email["Message-ID"] = make_msgid(domain=message_id_domain)
    email.set_content(_body(config, message), cte="quoted-printable")
    for book in message.workbooks:
        try:
            data = book.path.read_bytes()
        except OSError as exc:
            raise MailError(
                f"Classeur de {book.student_name} introuvable ou illisible ({book.path} : "
                f"{french_os_error(exc)}). Relancez « grille generate »."
            ) from exc
        email.add_attachment(data, *XLSX_TYPE, filename=book.path.name)
    return email


_NETWORK_FAULTS: tuple[tuple[type[OSError], str], ...] = (
    (TimeoutError, "le serveur ne répond pas (délai dépassé)"),
    (socket.gaierror, "nom de serveur inconnu"),
    (ConnectionRefusedError, "connexion refusée (serveur arrêté, ou mauvais port)"),
    (ssl.SSLError, "échec de la négociation TLS (« securite » et port cohérents ?)"),
)


def _reason(exc: BaseException) -> str:
    """A short French description of an SMTP or network failure."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{to} refusé ({code} {_clean(msg)})" for to, (code, msg) in exc.recipients.items()
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_clean(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return 'STARTTLS ou authentification non proposés (essayez securite = "ssl", port 465)'
    for kind, text in _NETWORK_FAULTS:
        if isinstance(exc, kind):
            return text
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _clean(str(exc)) or type(exc).__name__


def _connect(smtp: SmtpSettings, password: str | None, timeout: float) -> smtplib.SMTP:
    """An open, logged-in connection; a French `MailError` otherwise."""
    where = f"{smtp.host}:{smtp.port}"
    if smtp.user and password is None:
        raise MailError(f"Mot de passe du compte « {smtp.user} » sur {where} manquant.")
    client: smtplib.SMTP | None = None
    context = ssl.create_default_context()
    try:
        if smtp.security == "ssl":
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
            if smtp.security != "aucune":  # anything unknown gets STARTTLS, never plain text
                client.starttls(context=context)
        if smtp.user:
            client.login(smtp.user, password or "")
    except (OSError, smtplib.SMTPException) as exc:
        _close(client)
        auth = isinstance(exc, smtplib.SMTPAuthenticationError)
        fault = f"refusée (utilisateur « {smtp.user} » ou mot de passe)" if auth else "impossible"
        raise MailError(
            f"Connexion au serveur d'envoi {where} {fault} : {_reason(exc)}. {_FIX_CONFIG}"
        ) from exc
    return client


def _close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()  # polite QUIT; a dead connection is just closed below
        client.close()


def send_messages(
    smtp: SmtpSettings,
    password: str | None,
    messages: Sequence[tuple[TutorMessage, EmailMessage]],
    *,
    on_sent: Callable[[TutorMessage, str], None] | None = None,
    timeout: float = 30,
) -> SendReport:
    """Send a batch over one connection; a refused message is reported, the batch goes on.

    `on_sent(message, message_id)` runs right after each accepted message, so the caller
    records it before the next one. Connection or login failures raise `MailError`; a
    connection lost mid-batch fails the rest (a later run sends them).
    """
    report = SendReport()
    if not messages:
        return report
    client = _connect(smtp, password, timeout)
    try:
        for index, (tutor, email) in enumerate(messages):
            if email["Message-ID"] is None:
                email["Message-ID"] = make_msgid(domain="grille.local")
            message_id = str(email["Message-ID"])
            try:
                refused = client.send_message(email)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
                report.failed.append((tutor, f"message refusé par le serveur : {_reason(exc)}"))
                continue
            except (OSError, smtplib.SMTPException) as exc:
                lost = f"connexion au serveur perdue ({_reason(exc)})"
                report.failed.append((tutor, f"{lost} ; message peut-être parti, vérifiez."))
                report.failed += [(t, f"non envoyé : {lost}.") for t, _ in messages[index + 1 :]]
                break
            if refused:  # some recipients accepted, others not
                report.failed.append((tutor, f"destinataire refusé : {', '.join(refused)}"))
                continue
            report.sent.append((tutor, message_id))
            if on_sent is not None:
                on_sent(tutor, message_id)
    finally:
        _close(client)
    return report


def record_sending(
    db: sqlite3.Connection, message: TutorMessage, message_id: str, sent_at: str
) -> None:
    """Store one `sendings` row per workbook of the message, in one transaction."""
    with state.transaction(db):
        db.executemany(
            "INSERT INTO sendings (student_id, workbook_id, recipient, message_id, sent_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(b.student_id, b.workbook_id, message.tutor_email, message_id, sent_at)
             for b in message.workbooks],
        )  # fmt: skip


def write_preview(message: EmailMessage, folder: Path) -> Path:
    """Save `message` as `<recipient>-<hash>.eml` in `folder` (atomic); return its path."""
    addresses = getattr(message["To"], "addresses", ())
    recipient = addresses[0].addr_spec.casefold() if addresses else "sans_destinataire"
    digest = hashlib.sha256(recipient.encode("utf-8", "replace")).hexdigest()[:8]
    path = folder / f"{safe_name(recipient, 60)}-{digest}.eml"
    atomic_write_bytes(path, message.as_bytes(), durable=False)
    return path


def build_messages(
    config: CampaignConfig, pending: Sequence[TutorMessage]
) -> tuple[list[tuple[TutorMessage, EmailMessage]], list[str]]:
    """Build every tutor's message; a bad roster line is reported, the others go on."""
    sender = config.smtp.sender or config.teacher_email
    domain = sender.rpartition("@")[2] or "grille.local"
    built: list[tuple[TutorMessage, EmailMessage]] = []
    errors: list[str] = []
    for message in pending:
        try:
            built.append((message, build_message(config, message, message_id_domain=domain)))
        except MailError as exc:
            errors.append(str(exc))
    return built, errors
