"""Build and deliver the tutors' messages: one email per tutor, with his or her workbooks.

`pending_messages` (state → one `TutorMessage` per tutor) → `build_messages` (French
`EmailMessage`s from the campaign's editable text templates) → `deliver`: over SMTP
when `[envoi] serveur` is set (`send_messages`: one connection, a pause between messages,
retries of transient failures), otherwise as ready-to-send .eml files in `output/envoi/`.
Every delivery is recorded in the `sendings` table as soon as it happens, so an
interrupted run resumes without sending anything twice. `deliver_messages` is the step
`grille send` and `grille remind` deliver with: build, then (unless a dry run) deliver,
with a `DeliveryResult` to show. `send_step` is the « send » step both front ends call
(what is pending, the password only when needed, the delivery: a `SendResult`);
`mark_sent_by_hand` is `grille send --mark-sent`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import smtplib
import sqlite3
import ssl
import time
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.classes import resolve_class
from pipeline.errors import GrilleError, french_os_error
from pipeline.files import atomic_write_bytes, safe_name
from pipeline.kinds import Channel, SendingKind
from pipeline.network import network_fault
from pipeline.roster import Student
from pipeline.settings import (
    BUNDLED_TEMPLATES,
    CONFIG_NAME,
    TEMPLATE_NAMES,
    CampaignConfig,
    SmtpSettings,
    Workspace,
)
from pipeline.text import is_email

if TYPE_CHECKING:
    from typing_extensions import Buffer  # only for the type checker; no runtime dependency

XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
ODS_TYPE = ("application", "vnd.oasis.opendocument.spreadsheet")
XLS_TYPE = ("application", "vnd.ms-excel")
_FIX_CONFIG = f"Vérifiez la section [envoi] de {CONFIG_NAME}."
SEND, REMIND = SendingKind.SEND, SendingKind.REMIND  # the two kinds of message
OUTBOX = "envoi"  # folder of output/ where messages go when no SMTP server is set
SENT_COPIES = "envoyes"  # under OUTBOX: a copy of each message sent over SMTP


class MailError(GrilleError):
    """A message cannot be built, or the mail server cannot be used."""


@dataclass(frozen=True)
class WorkbookToSend:
    """One student's workbook, as attached to the tutor's message.

    For a reminder, `todo` lists what is missing or wrong (French, each item naming its
    sheet and cell), `to_complete` / `to_correct` say whether answers are missing / wrong,
    and `path` may be the workbook the tutor returned; `sha256` is what the file must hold,
    checked before sending so that no other file can leave under this student's name.
    """

    student_id: str
    student_name: str
    class_name: str
    company: str
    workbook_id: int
    path: Path
    sha256: str
    attachment_name: str = ""
    todo: tuple[str, ...] = ()
    returned_on: str = ""
    to_complete: bool = False
    to_correct: bool = False


@dataclass(frozen=True)
class TutorMessage:
    """What one tutor receives: the workbooks of all his or her students."""

    tutor_name: str
    tutor_email: str
    workbooks: tuple[WorkbookToSend, ...]
    kind: SendingKind = SEND


@dataclass
class SendReport:
    """Outcome of a batch, per tutor message."""

    sent: list[tuple[TutorMessage, str]] = field(default_factory=list)  # (message, Message-ID)
    written: list[tuple[TutorMessage, Path]] = field(default_factory=list)  # .eml in the outbox
    failed: list[tuple[TutorMessage, str]] = field(default_factory=list)  # (message, reason)
    uncertain: list[tuple[TutorMessage, str]] = field(default_factory=list)


# ------------------------------------------------------------------ what to send


def group_by_tutor(
    items: Sequence[tuple[str, str, WorkbookToSend]], kind: SendingKind = SEND
) -> list[TutorMessage]:
    """(tutor name, tutor email, workbook) → one message per tutor email, by tutor name."""
    groups: dict[str, tuple[str, str, list[WorkbookToSend]]] = {}
    for name, email, book in items:
        email = email.strip()
        groups.setdefault(email.casefold(), (name, email, []))[2].append(book)
    messages = [TutorMessage(n, e, tuple(books), kind) for n, e, books in groups.values()]
    return sorted(messages, key=lambda m: (m.tutor_name.casefold(), m.tutor_email.casefold()))


def pending_messages(
    campaign: Campaign,
    *,
    resend: bool = False,
    student_ids: set[str] | None = None,
    class_name: str | None = None,
) -> list[TutorMessage]:
    """Latest workbooks not delivered yet (all with `resend`), one message per tutor; only
    the students of `student_ids` and of the class `class_name` (`resolve_class`) if given.

    Written to the outbox counts as delivered: the teacher may have sent it already.
    """
    db, root = campaign.db, campaign.workspace.root
    wanted_class = resolve_class(db, class_name) if class_name is not None else None
    items: list[tuple[str, str, WorkbookToSend]] = []
    for row in state.workbooks_to_send(db, resend=resend):
        student = state.student_from_row(row)
        if student_ids is not None and student.student_id not in student_ids:
            continue
        if wanted_class is not None and student.class_name != wanted_class:
            continue
        book = WorkbookToSend(
            student.student_id, student.display_name, student.class_name, student.company,
            row["workbook_id"], root / row["workbook_file"], row["workbook_sha256"],
        )  # fmt: skip
        items.append((student.tutor_name, student.tutor_email, book))
    return group_by_tutor(items)


# ------------------------------------------------------------------ templates


def _clean(text: str | bytes) -> str:
    """One line of text: control characters, line breaks and surrogates become spaces."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    kept = "".join(" " if unicodedata.category(c) in {"Cc", "Cs", "Zl", "Zp"} else c for c in text)
    return " ".join(kept.split())


_FIELD = re.compile(r"\{([^{}\n]*)\}")
_SUBJECT = re.compile(r"\s*objet\s*:\s*(.*)", re.IGNORECASE)
COMMON_FIELDS = (
    "tuteur", "stagiaires", "noms", "classes", "entreprise", "nombre", "date_limite", "delai",
    "professeur", "email_professeur", "etablissement", "session", "salutation",
    "les_evaluations",
)  # fmt: skip
FIELDS = {SEND: COMMON_FIELDS, REMIND: (*COMMON_FIELDS, "a_completer")}


@dataclass(frozen=True)
class MessageTemplate:
    """An editable message text: subject line, body, and the file it came from."""

    source: Path
    subject: str
    body: str
    subject_line: int
    body_start: int

    def render(self, values: Mapping[str, str], *, plural: bool = False) -> tuple[str, str]:
        """(subject, body) with every {field} replaced, and every {singular/plural} choice
        made for one student or several (`plural`)."""

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if "/" in name:
                return name.split("/")[1 if plural else 0]
            return values[name]

        subject = _FIELD.sub(lambda m: _clean(value(m)), self.subject)
        body = _FIELD.sub(value, self.body)
        return _clean(subject), body.rstrip() + "\n"


def load_template(workspace: Workspace | None, kind: SendingKind) -> MessageTemplate:
    """The campaign's `input_templates/email_*.txt`, or grille's own; French errors."""
    name = TEMPLATE_NAMES[kind]
    source = BUNDLED_TEMPLATES / name
    if workspace is not None and (workspace.templates_dir / name).is_file():
        source = workspace.templates_dir / name
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = french_os_error(exc) if isinstance(exc, OSError) else "pas en UTF-8"
        raise MailError(
            f"Modèle de message {source} illisible ({reason}). Enregistrez-le en texte UTF-8, "
            f"ou supprimez-le pour reprendre le modèle de grille."
        ) from exc
    lines = text.splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if not line.startswith("#")]
    while numbered and not numbered[0][1].strip():
        numbered.pop(0)
    match = _SUBJECT.fullmatch(numbered[0][1]) if numbered else None
    if match is None:
        raise MailError(
            f"Modèle de message {source} : la première ligne (hors commentaires #) doit être "
            "l'objet, sous la forme « Objet : … ». Corrigez-le."
        )
    subject_line = numbered[0][0]
    body_lines = numbered[1:]
    while body_lines and not body_lines[0][1].strip():
        body_lines.pop(0)
    allowed = FIELDS[kind]
    for number, line in numbered:
        for found in _FIELD.finditer(line):
            if found.group(1).count("/") > 1:
                raise MailError(
                    f"Modèle de message {source}, ligne {number} : choix {{{found.group(1)}}} : "
                    "une seule barre oblique, entre le texte pour un stagiaire et celui pour "
                    "plusieurs, par exemple {sa/leurs}."
                )
            if "/" not in found.group(1) and found.group(1) not in allowed:
                raise MailError(
                    f"Modèle de message {source}, ligne {number} : champ {{{found.group(1)}}} "
                    f"inconnu. Champs possibles : {', '.join('{' + f + '}' for f in allowed)}."
                )
    return MessageTemplate(
        source=source,
        subject=match.group(1),
        body="\n".join(line for _, line in body_lines),
        subject_line=subject_line,
        body_start=body_lines[0][0] if body_lines else subject_line + 1,
    )


def _joined(values: Sequence[str]) -> str:
    unique = list(dict.fromkeys(_clean(v) for v in values if v.strip()))
    return ", ".join(unique)


def _todo_block(book: WorkbookToSend) -> str:
    name = _clean(f"{book.student_name} ({book.class_name})")
    if not book.returned_on:
        return f"  - {name} : aucun retour reçu pour l'instant."
    if book.to_correct:
        what = "à compléter et à corriger" if book.to_complete else "à corriger"
    else:
        what = "à compléter"
    lines = [f"  - {name} : le classeur reçu le {book.returned_on} est {what} :"]
    lines += [f"      • {_clean(item)}" for item in book.todo]
    return "\n".join(lines)


_VOWELS = set("aeiouyàâäéèêëîïôöùûüÿæœ")


def _of(name: str) -> str:
    """« de Léa », « d'Inès », « d'ABADIE Chloé »: French elision before a vowel."""
    return f"d'{name}" if name[:1].casefold() in _VOWELS else f"de {name}"


def _evaluations(books: Sequence[WorkbookToSend]) -> str:
    """« l'évaluation de MARTIN Léa », or « les évaluations de vos 3 stagiaires »."""
    if len(books) == 1:
        return f"l'évaluation {_of(_clean(books[0].student_name))}"
    return f"les évaluations de vos {len(books)} stagiaires"


def template_values(config: CampaignConfig, message: TutorMessage) -> dict[str, str]:
    """The value of every template field for one tutor's message."""
    books = message.workbooks
    deadline = config.deadline
    tutor = _clean(message.tutor_name)
    return {
        "tuteur": tutor,
        "salutation": f"Bonjour {tutor}," if tutor else "Madame, Monsieur,",
        "les_evaluations": _evaluations(books),
        "stagiaires": "\n".join(
            f"  - {_clean(f'{w.student_name} ({w.class_name}, {w.company})')}" for w in books
        ),
        "noms": _joined([w.student_name for w in books]),
        "classes": _joined([w.class_name for w in books]),
        "entreprise": _joined([w.company for w in books]),
        "nombre": str(len(books)),
        "date_limite": f"{deadline:%d/%m/%Y}" if deadline else "",
        "delai": f"avant le {deadline:%d/%m/%Y}" if deadline else "dès que possible",
        "professeur": _clean(config.teacher_name) or "Le professeur coordinateur",
        "email_professeur": _clean(config.teacher_email),
        "etablissement": _clean(config.school),
        "session": _clean(config.session),
        "a_completer": "\n".join(_todo_block(w) for w in books),
    }


# ------------------------------------------------------------------ building


def _address(name: str, email: str, fault: str) -> Address:
    """An `Address` for exactly one dot-atom email; otherwise `MailError(fault)`."""
    if not is_email(email):  # no CR/LF, comma, space, quotes
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


def _attachment(book: WorkbookToSend) -> tuple[bytes, tuple[str, str], str]:
    """(bytes, MIME type, file name) of a workbook, checked against its recorded digest."""
    try:
        data = book.path.read_bytes()
    except OSError as exc:
        raise MailError(
            f"Classeur de {book.student_name} introuvable ou illisible ({book.path} : "
            f"{french_os_error(exc)}). Relancez « grille generate »."
        ) from exc
    if book.sha256 and hashlib.sha256(data).hexdigest() != book.sha256:
        raise MailError(
            f"Le fichier {book.path} n'est plus celui que grille a préparé pour "
            f"{book.student_name} (contenu modifié ou remplacé) : il n'est pas envoyé. "
            "Relancez « grille generate --force » pour le refaire."
        )
    suffix = book.path.suffix.lower()
    mime = {".ods": ODS_TYPE, ".xls": XLS_TYPE}.get(suffix, XLSX_TYPE)
    name = _clean(Path(book.attachment_name or book.path.name).name).replace("\\", "_")
    return data, mime, name or safe_name(book.student_name) + (suffix or ".xlsx")


def build_message(
    config: CampaignConfig,
    message: TutorMessage,
    template: MessageTemplate,
    *,
    message_id_domain: str = "grille.local",
) -> EmailMessage:
    """The French email for one tutor, with each student's workbook attached."""
    if not message.workbooks:
        raise MailError(f"Aucun classeur à envoyer à « {_clean(message.tutor_name)} ».")
    to, (sender, reply_to) = _tutor_address(message), _sender_addresses(config)
    values = template_values(config, message)
    subject, body = template.render(values, plural=len(message.workbooks) > 1)
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Reply-To"] = reply_to
    email["Subject"] = subject
    email["Date"] = format_datetime(datetime.now().astimezone())  # the teacher's local time
    email["Message-ID"] = make_msgid(domain=message_id_domain)
    email.set_content(body, cte="quoted-printable")
    for book in message.workbooks:
        data, (maintype, subtype), name = _attachment(book)
        email.add_attachment(data, maintype, subtype, filename=name)
    return email


def build_messages(
    config: CampaignConfig, pending: Sequence[TutorMessage], template: MessageTemplate
) -> tuple[list[tuple[TutorMessage, EmailMessage]], list[str]]:
    """Build every tutor's message; a bad roster line or file is reported, the others go on."""
    _sender_addresses(config)  # a wrong teacher address stops the batch, said once
    sender = config.smtp.sender or config.teacher_email
    domain = sender.rpartition("@")[2] or "grille.local"
    built: list[tuple[TutorMessage, EmailMessage]] = []
    errors: list[str] = []
    for message in pending:
        try:
            built.append(
                (message, build_message(config, message, template, message_id_domain=domain))
            )
        except MailError as exc:
            errors.append(str(exc))
    return built, errors


# ------------------------------------------------------------------ SMTP


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
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "le serveur a coupé la connexion"
    network = network_fault(exc)
    if network is not None:
        return network
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _clean(str(exc)) or type(exc).__name__


class _Client(smtplib.SMTP):
    """An SMTP client that knows whether the message data went out (see `in_data`)."""

    in_data = False

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        self.in_data = True  # from here on, a lost connection may have delivered the message
        reply = super().data(msg)
        self.in_data = False
        return reply


class _SSLClient(smtplib.SMTP_SSL, _Client):
    """Implicit TLS (port 465) with the same bookkeeping."""


def _connect(smtp: SmtpSettings, password: str | None, timeout: float) -> _Client:
    """An open, logged-in connection; a French `MailError` otherwise."""
    where = f"{smtp.host}:{smtp.port}"
    if smtp.user and password is None:
        raise MailError(f"Mot de passe du compte « {smtp.user} » sur {where} manquant.")
    client: _Client | None = None
    context = ssl.create_default_context()
    try:
        if smtp.security == "ssl":
            client = _SSLClient(smtp.host, smtp.port, timeout=timeout, context=context)
        else:
            client = _Client(smtp.host, smtp.port, timeout=timeout)
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


def _is_transient(exc: smtplib.SMTPException) -> bool:
    """4xx replies: the server asks to try again later."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and 400 <= exc.smtp_code < 500


@dataclass
class _Attempt:
    """The result of one try at sending one message."""

    outcome: str  # "sent", "transient", "permanent" or "uncertain"
    reason: str = ""
    reconnect: bool = False


def _try_send(client: _Client, email: EmailMessage) -> _Attempt:
    client.in_data = False
    try:
        refused = client.send_message(email)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
        transient = _is_transient(exc)
        reconnect = isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 421
        return _Attempt("transient" if transient else "permanent", _reason(exc), reconnect)
    except (OSError, smtplib.SMTPException) as exc:
        if client.in_data:  # the data went out and no answer came back
            return _Attempt("uncertain", _reason(exc), reconnect=True)
        return _Attempt("transient", _reason(exc), reconnect=True)
    if refused:  # some recipients accepted, others not
        return _Attempt("permanent", f"destinataire refusé : {', '.join(refused)}")
    return _Attempt("sent")


def send_messages(
    smtp: SmtpSettings,
    password: str | None,
    messages: Sequence[tuple[TutorMessage, EmailMessage]],
    *,
    on_sent: Callable[[TutorMessage, str], None] | None = None,
    on_uncertain: Callable[[TutorMessage, str], None] | None = None,
    timeout: float = 30,
    retry_delays: Sequence[float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int, int], None] | None = None,
) -> SendReport:
    """Send a batch over one connection, pausing between messages; never twice the same.

    A 4xx reply or a connection lost before the data went out is retried after each of
    `retry_delays` (by default 2, 5 and 10 times the pause), reconnecting when needed; a
    5xx reply fails that tutor only. `on_sent(message, message_id)` runs right after each
    accepted message, so the caller records it before the next one. A connection lost
    after the data went out may have delivered the message: it is reported in
    `uncertain` (and `on_uncertain` runs), never retried. Connection or login failures
    before the first message raise `MailError`. `progress(done, total)` runs after each
    message, whatever became of it.
    """
    report = SendReport()
    if not messages:
        return report
    pause = smtp.pause_seconds
    delays = list(retry_delays if retry_delays is not None else (2 * pause, 5 * pause, 10 * pause))
    client: _Client | None = _connect(smtp, password, timeout)
    try:
        for index, (tutor, email) in enumerate(messages):
            if index and pause:
                sleep(pause)
            if email["Message-ID"] is None:
                email["Message-ID"] = make_msgid(domain="grille.local")
            attempt = _Attempt("transient")
            for tries in range(len(delays) + 1):
                if tries:
                    sleep(delays[tries - 1])
                if client is None:
                    try:
                        client = _connect(smtp, password, timeout)
                    except MailError as exc:
                        attempt = _Attempt("transient", str(exc))
                        continue
                attempt = _try_send(client, email)
                if attempt.reconnect:
                    _close(client)
                    client = None
                if attempt.outcome != "transient":
                    break
            message_id = str(email["Message-ID"])
            if attempt.outcome == "sent":
                report.sent.append((tutor, message_id))
                if on_sent is not None:
                    on_sent(tutor, message_id)
            elif attempt.outcome == "uncertain":
                report.uncertain.append((tutor, attempt.reason))
                if on_uncertain is not None:
                    on_uncertain(tutor, message_id)
            elif attempt.outcome == "permanent":
                report.failed.append((tutor, f"message refusé par le serveur : {attempt.reason}"))
            else:
                report.failed.append(
                    (tutor, f"échec temporaire, {len(delays) + 1} essais : {attempt.reason}")
                )
                if client is None:  # the server is gone: the next run sends the rest
                    report.failed += [
                        (t, "non envoyé : serveur injoignable, relancez plus tard.")
                        for t, _ in messages[index + 1 :]
                    ]
                    break
            if progress is not None:
                progress(index + 1, len(messages))
    finally:
        _close(client)
    return report


# ------------------------------------------------------------------ records and outbox


def record_sending(
    db: sqlite3.Connection,
    message: TutorMessage,
    message_id: str,
    sent_at: str,
    *,
    channel: Channel = Channel.SMTP,
    file: str = "",
    uncertain: bool = False,
) -> None:
    """Store one `sendings` row per workbook of the message, in one transaction."""
    state.record_sendings(
        db,
        [
            state.Sending(b.student_id, b.workbook_id, message.tutor_email, message_id,
                          message.kind, channel, file, uncertain)
            for b in message.workbooks
        ],
        sent_at,
    )  # fmt: skip


def mark_sent_by_hand(
    campaign: Campaign,
    *,
    student_ids: set[str] | None = None,
    class_name: str | None = None,
) -> list[Student]:
    """`grille send --mark-sent`: record that the teacher sent the outbox messages herself
    (only the students of `student_ids` and of the class `class_name` if given); the
    students marked.

    Only latest workbooks written to the outbox and not yet sent are marked.
    """
    db = campaign.db
    rows = state.outbox_only_sendings(db)
    wanted_class = resolve_class(db, class_name) if class_name is not None else None
    chosen = [
        row
        for row in rows
        if (student_ids is None or row["student_id"] in student_ids)
        and (wanted_class is None or row["class_name"] == wanted_class)
    ]
    state.record_sendings(
        db,
        [
            state.Sending(r["student_id"], r["workbook_id"], r["recipient"], r["message_id"],
                          SEND, Channel.BY_HAND, r["file"])
            for r in chosen
        ],
    )  # fmt: skip
    return [state.student_from_row(r) for r in chosen]


def eml_path(message: EmailMessage, folder: Path, prefix: str) -> Path:
    """`folder/<prefix>_<recipient>-<hash>.eml`: the file name of a message's copy."""
    addresses = getattr(message["To"], "addresses", ())
    recipient = addresses[0].addr_spec.casefold() if addresses else "sans_destinataire"
    digest = hashlib.sha256(recipient.encode("utf-8", "replace")).hexdigest()[:8]
    return folder / f"{prefix}_{safe_name(recipient, 60)}-{digest}.eml"


def write_eml(message: EmailMessage, path: Path, *, draft: bool = True) -> Path:
    """Save `message` at `path` (atomic); a `draft` gets `X-Unsent: 1`, which makes
    Outlook open it as a message ready to send."""
    if draft and message["X-Unsent"] is None:
        message["X-Unsent"] = "1"
    atomic_write_bytes(path, message.as_bytes(), durable=False)
    return path


def deliver(
    campaign: Campaign,
    password: str | None,
    built: Sequence[tuple[TutorMessage, EmailMessage]],
    *,
    today: date | None = None,
    sleep: Callable[[float], None] = time.sleep,
    to_outbox: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SendReport:
    """Send over SMTP when a server is set (unless `to_outbox`), else write .eml files to
    `output/envoi/`; `progress(done, total)` after each message.

    Each delivery is recorded at once, so an interrupted run resumes where it stopped.
    """
    db, workspace, smtp = campaign.db, campaign.workspace, campaign.config.smtp
    folder = workspace.output_dir / OUTBOX
    day = today or date.today()

    def prefix(message: TutorMessage) -> str:
        return f"{message.kind}_{day:%Y-%m-%d}"

    if smtp.configured and not to_outbox:
        emails = {str(email["Message-ID"]): email for _, email in built}

        def keep(message: TutorMessage, message_id: str, uncertain: bool = False) -> None:
            """Record the sending, then keep a copy of what left (a trace for the teacher)."""
            email = emails[message_id]
            path = eml_path(email, folder / SENT_COPIES, prefix(message))
            relative = path.relative_to(workspace.root).as_posix()
            record_sending(db, message, message_id, state.now(), file=relative, uncertain=uncertain)
            write_eml(email, path, draft=False)

        return send_messages(
            smtp,
            password,
            built,
            on_sent=keep,
            on_uncertain=lambda m, mid: keep(m, mid, uncertain=True),
            sleep=sleep,
            progress=progress,
        )
    report = SendReport()
    for message, email in built:
        name = prefix(message) if message.kind == REMIND else SEND
        path = write_eml(email, eml_path(email, folder, name))
        relative = path.relative_to(workspace.root).as_posix()
        record_sending(
            db, message, str(email["Message-ID"]), state.now(), channel=Channel.FILE, file=relative
        )
        report.written.append((message, path))
        if progress is not None:
            progress(len(report.written), len(built))
    return report


# ------------------------------------------------------------------ the step


@dataclass
class DeliveryResult:
    """What `deliver_messages` did: the messages built (or not), and how each left."""

    kind: SendingKind
    dry_run: bool
    smtp: SmtpSettings  # configured: sent over the server; else written to `outbox`
    outbox: Path  # output/envoi/
    built: list[tuple[TutorMessage, EmailMessage]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # messages that could not be built
    report: SendReport = field(default_factory=SendReport)  # empty for a dry run
    fault: str = ""  # why nothing could be sent: the server cannot be reached or logged in

    @property
    def failures(self) -> int:
        """Messages not built, refused, or perhaps not delivered (uncertain); one more when
        the server could not be used at all."""
        report = self.report
        return len(self.errors) + len(report.failed) + len(report.uncertain) + bool(self.fault)

    @property
    def ok(self) -> bool:
        """True when every message was built and delivered (for a dry run: built)."""
        return self.failures == 0


def deliver_messages(
    campaign: Campaign,
    pending: Sequence[TutorMessage],
    kind: SendingKind,
    *,
    dry_run: bool = False,
    password: str | None = None,
    today: date | None = None,
    sleep: Callable[[float], None] = time.sleep,
    to_outbox: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DeliveryResult:
    """`grille send` and `grille remind`: build the messages of `pending` from the
    campaign's text for `kind`, then (unless `dry_run`) send them over the SMTP server of
    grille.toml (logged in with `password`) or write them to the outbox; each delivery is
    recorded as it happens.

    A message that cannot be built (a bad address, a workbook changed on disk) is reported
    in `errors` and the others go on; a server that cannot be reached or refuses the login
    is named in `fault`, before any message left. A wrong teacher address raises
    `MailError`. With `to_outbox`, the messages are written to the outbox even when a
    server is set (the interface's « .eml » download); `progress(done, total)` runs after
    each message delivered.
    """
    workspace = campaign.workspace
    smtp = replace(campaign.config.smtp, host="") if to_outbox else campaign.config.smtp
    result = DeliveryResult(kind, dry_run, smtp, workspace.output_dir / OUTBOX)
    template = load_template(workspace, kind)
    result.built, result.errors = build_messages(campaign.config, pending, template)
    if not dry_run:
        try:
            result.report = deliver(
                campaign,
                password,
                result.built,
                today=today,
                sleep=sleep,
                to_outbox=to_outbox,
                progress=progress,
            )
        except MailError as exc:
            result.fault = str(exc)
    return result


PASSWORD_VARIABLE = "GRILLE_SMTP_MOT_DE_PASSE"  # the SMTP password, when not asked


@dataclass
class SendResult:
    """What `send_step` (or `remind.remind_step`) did: the delivery, None when no message
    was due; the students left out, each with the reason (French)."""

    delivery: DeliveryResult | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when a message was not built or not delivered, else 0."""
        return 0 if self.delivery is None or self.delivery.ok else 1


def smtp_password(
    smtp: SmtpSettings, ask: Callable[[SmtpSettings], str | None] | None
) -> str | None:
    """The SMTP password when the server needs one: from `PASSWORD_VARIABLE`, else `ask`."""
    if not smtp.configured or not smtp.user:
        return None
    return os.environ.get(PASSWORD_VARIABLE) or (ask(smtp) if ask else None)


def deliver_step(
    campaign: Campaign,
    pending: Sequence[TutorMessage],
    kind: SendingKind,
    *,
    dry_run: bool = False,
    password: Callable[[SmtpSettings], str | None] | None = None,
    skipped: Sequence[str] = (),
) -> SendResult:
    """Deliver `pending` (`deliver_messages`), the password asked only when something
    leaves over a server that needs one; nothing when `pending` is empty."""
    result = SendResult(skipped=list(skipped))
    if pending:
        secret = None if dry_run else smtp_password(campaign.config.smtp, password)
        result.delivery = deliver_messages(
            campaign, pending, kind, dry_run=dry_run, password=secret
        )
    return result


def send_step(
    campaign: Campaign,
    *,
    dry_run: bool = False,
    resend: bool = False,
    student_ids: Collection[str] = (),
    class_name: str | None = None,
    password: Callable[[SmtpSettings], str | None] | None = None,
) -> SendResult:
    """The « send » step: the latest workbooks not delivered yet (every one with `resend`;
    only `student_ids` and the class `class_name` when given), one message per tutor, sent
    or written to the outbox (`deliver_messages`). The password is read from
    `PASSWORD_VARIABLE`, else asked through `password`, only when a message leaves."""
    chosen = set(student_ids) or None
    pending = pending_messages(campaign, resend=resend, student_ids=chosen, class_name=class_name)
    return deliver_step(campaign, pending, SEND, dry_run=dry_run, password=password)


@dataclass(frozen=True)
class DeliveryLine:
    """One thing a delivery says, per tutor then in sum: `kind` "ok", "attention" (perhaps
    not sent) or "erreur" (not sent, and why); `text` in French, as `grille send` says it;
    `per_tutor` False for the summary line."""

    kind: str
    text: str
    per_tutor: bool = True


def delivery_lines(workspace: Workspace, delivery: DeliveryResult) -> list[DeliveryLine]:
    """What a delivery (not a dry run) did, tutor by tutor, then in sum: the sentences of
    `grille send` and `grille remind`, on the terminal and in the interface."""
    if delivery.fault:
        return [DeliveryLine("erreur", delivery.fault, per_tutor=False)]
    lines = [DeliveryLine("erreur", f"Erreur — {error}") for error in delivery.errors]
    report = delivery.report
    lines += [
        DeliveryLine(
            "ok",
            f"envoyé : {m.tutor_name} <{m.tutor_email}>, {len(m.workbooks)} classeur(s)",
        )
        for m, _ in report.sent
    ]
    lines += [
        DeliveryLine(
            "ok",
            f"prêt : {m.tutor_name} <{m.tutor_email}>, {len(m.workbooks)} classeur(s) → "
            f"{path.relative_to(workspace.root).as_posix()}",
        )
        for m, path in report.written
    ]
    lines += [
        DeliveryLine(
            "attention",
            f"Attention — {m.tutor_name} <{m.tutor_email}> : {reason} après l'envoi du "
            "contenu ; le message est peut-être parti. Vérifiez vos messages envoyés ; au "
            "besoin : grille send --resend --student IDENTIFIANT.",
        )
        for m, reason in report.uncertain
    ]
    lines += [
        DeliveryLine("erreur", f"Erreur — {m.tutor_name} <{m.tutor_email}> : {reason}")
        for m, reason in report.failed
    ]
    kind = "ok" if delivery.ok else "erreur"
    if delivery.smtp.configured and not report.written:
        summary = f"{len(report.sent)} message(s) envoyé(s), {len(report.failed)} en échec" + (
            f", {len(report.uncertain)} incertain(s)." if report.uncertain else "."
        )
    else:
        outbox = delivery.outbox.relative_to(workspace.root).as_posix()
        why = (
            "" if delivery.smtp.configured else " (aucun serveur d'envoi dans grille.toml [envoi])"
        )
        summary = (
            f"{len(report.written)} message(s) prêt(s) à partir dans {outbox}/{why} : ouvrez "
            "chaque fichier .eml avec Thunderbird ou Outlook et envoyez-le."
        )
    lines.append(DeliveryLine(kind, summary, per_tutor=False))
    return lines
