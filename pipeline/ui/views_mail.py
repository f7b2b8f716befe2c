"""Pages Envoi and Relances of `grille ui`: the tutors' messages shown one card each (built
as `grille send --dry-run` / `grille remind --dry-run` build them: `mail.pending_messages`
or `remind.pending_reminders`, then `mail.deliver_messages` as a dry run), then sent over
SMTP or written as .eml files (a .zip to download) by `mail.deliver_messages` as a job;
messages sent by hand are noted with `mail.mark_sent_by_hand`.

The SMTP password is typed in the form of the request that sends: it lives in that
request and the job's memory only, never written to disk, a page or the job's outcome.
"""

from __future__ import annotations

import io
import secrets
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pipeline import mail, remind, state
from pipeline.campaign import Campaign
from pipeline.kinds import SendingKind
from pipeline.text import fold
from pipeline.ui import security
from pipeline.ui.app import Ui, ui_of
from pipeline.ui.jobs import Outcome, Progress

PASSWORD_FIELD = "mot_de_passe"  # never stored, never shown, never logged
CARDS_SHOWN = 80  # cards on one page; the others are counted
DEFAULT_INTERVAL = 7  # days, as `grille remind --interval`
BATCHES_KEPT = 50


@dataclass(frozen=True)
class Card:
    """One tutor's message as it will leave."""

    to: str
    subject: str
    body: str
    attachments: list[tuple[str, str]]  # (file name, size as read)
    students: list[tuple[str, tuple[str, ...]]]  # (« NOM Prénom (classe) », what to do)


def _card(message: mail.TutorMessage, email: EmailMessage) -> Card:
    part = email.get_body(preferencelist=("plain",))
    body = part.get_content() if isinstance(part, EmailMessage) else ""
    attachments = []
    for attached in email.iter_attachments():
        data = attached.get_payload(decode=True)
        size = len(data) if isinstance(data, bytes) else 0
        attachments.append((attached.get_filename() or "?", security.human_size(size)))
    return Card(
        to=str(email["To"]),
        subject=str(email["Subject"]),
        body=str(body).strip(),
        attachments=attachments,
        students=[(f"{b.student_name} ({b.class_name})", b.todo) for b in message.workbooks],
    )


def _on_the_page(note: str) -> str:
    """A note of `grille remind` with the page's fields instead of the command's options."""
    return note.replace(
        "(voir --interval, ou --again)",
        "(voir « Pas de relance depuis », ou « Relancer même les tuteurs relancés récemment »)",
    ).replace("lancez « grille send »", "envoyez-le depuis la page Envoi")


def _classes(campaign: Campaign) -> list[str]:
    return sorted(state.class_names(campaign.db, in_roster=True), key=fold)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _interval(text: str) -> int:
    return int(text) if text.isdigit() else DEFAULT_INTERVAL


@dataclass(frozen=True)
class Choice:
    """What the teacher chose on the page (GET parameters, then the form's fields)."""

    class_name: str = ""
    resend: bool = False  # Envoi: the workbooks already sent too
    again: bool = False  # Relances: the tutors reminded recently too
    interval: int = DEFAULT_INTERVAL

    @classmethod
    def of(cls, values: Callable[[str], str]) -> Choice:
        return cls(
            values("classe"),
            values("renvoyer") == "oui",
            values("encore") == "oui",
            _interval(values("intervalle")),
        )

    def pending(
        self, campaign: Campaign, kind: SendingKind
    ) -> tuple[list[mail.TutorMessage], list[str]]:
        """The messages to deliver (and the students left out, for reminders)."""
        chosen_class = self.class_name or None
        if kind == mail.SEND:
            return mail.pending_messages(campaign, resend=self.resend, class_name=chosen_class), []
        reminders = remind.pending_reminders(
            campaign, class_name=chosen_class, interval_days=self.interval, again=self.again
        )
        return reminders.messages, [_on_the_page(note) for note in reminders.skipped]


# ------------------------------------------------------------------ pages


def _preview(ui: Ui, kind: SendingKind, choice: Choice) -> dict[str, Any]:
    """What both pages show: the cards, the problems, the server, the classes."""
    with ui.reading() as campaign:
        pending, skipped = choice.pending(campaign, kind)
        preview = mail.deliver_messages(campaign, pending, kind, dry_run=True)
        smtp = campaign.config.smtp
        classes = _classes(campaign)
        outbox = state.outbox_only_sendings(campaign.db) if kind == mail.SEND else []
    cards = [_card(message, email) for message, email in preview.built[:CARDS_SHOWN]]
    return {
        "cards": cards,
        "hidden": max(0, len(preview.built) - CARDS_SHOWN),
        "count": len(preview.built),
        "errors": preview.errors,
        "skipped": skipped,
        "smtp": smtp,
        "classes": classes,
        "choice": choice,
        "password_field": PASSWORD_FIELD,
        "drafts": _drafts(ui, outbox),
    }


@dataclass(frozen=True)
class Draft:
    """A message written to output/envoi/ and not noted as sent yet: one per tutor."""

    recipient: str
    tutor: str
    students: list[tuple[str, str]]  # (student id, « NOM Prénom (classe) »)
    file: str  # relative to the campaign folder
    available: bool


def _drafts(ui: Ui, rows: Sequence[Any]) -> list[Draft]:
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row["file"] or row["message_id"], []).append(row)
    drafts = []
    for file, items in grouped.items():
        first = state.student_from_row(items[0])
        students = [state.student_from_row(item) for item in items]
        drafts.append(
            Draft(
                items[0]["recipient"],
                first.tutor_name,
                [(s.student_id, f"{s.display_name} ({s.class_name})") for s in students],
                file,
                bool(file) and security.campaign_file(ui.root, file) is not None,
            )
        )
    return sorted(drafts, key=lambda d: (fold(d.tutor), d.recipient))


def sending_page(request: Request) -> Response:
    """Envoi: one card per tutor, then send, prepare the .eml files, or note as sent."""
    ui = ui_of(request)
    choice = Choice.of(lambda name: request.query_params.get(name, ""))
    context = _preview(ui, mail.SEND, choice)
    context.update(page="envoi", notices=ui.notices.take(request.query_params.get("avis")))
    return ui.render(request, "envoi.html", context)


def reminding_page(request: Request) -> Response:
    """Relances: one card per tutor to remind (what is missing), then send or prepare."""
    ui = ui_of(request)
    choice = Choice.of(lambda name: request.query_params.get(name, ""))
    context = _preview(ui, mail.REMIND, choice)
    context.update(page="relances", notices=ui.notices.take(request.query_params.get("avis")))
    return ui.render(request, "relances.html", context)


# ------------------------------------------------------------------ jobs


class Batches:
    """The .eml files each preparation wrote, by a random key, for the .zip of its outcome
    (made when downloaded: no copy of the messages is left on disk that a purge of the
    class would miss). Kept in memory, the last `BATCHES_KEPT` ones."""

    def __init__(self) -> None:
        self._files: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def add(self, files: list[str]) -> str:
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._files[key] = files
            for old in list(self._files)[:-BATCHES_KEPT]:
                del self._files[old]
        return key

    def get(self, key: str) -> list[str] | None:
        with self._lock:
            return self._files.get(key)


BATCHES = Batches()


def _zip_response(root: Path, files: Sequence[str], name: str) -> Response:
    """The files `files` of the campaign (those still there) in one .zip, sent as `name`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            path = security.campaign_file(root, file)
            if path is not None:
                archive.write(path, path.name)
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def _delivery_work(
    kind: SendingKind, choice: Choice, password: str, *, to_outbox: bool
) -> Callable[[Campaign, Progress], Outcome]:
    """The job: the messages of `choice` delivered by `mail.deliver_messages`."""

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        pending, skipped = choice.pending(campaign, kind)
        outcome = Outcome()
        for note in skipped:
            outcome.attention(f"pas de relance : {note}")
        if not pending:
            nothing = (
                "Rien à envoyer : chaque classeur a déjà été envoyé."
                if kind == mail.SEND
                else "Aucun tuteur à relancer."
            )
            return outcome.attention(nothing).link("Voir le suivi", "/suivi")
        progress.expect(len(pending), "Messages partis…" if not to_outbox else "Messages écrits…")
        smtp = campaign.config.smtp
        secret = password if smtp.configured and smtp.user and not to_outbox else None
        delivery = mail.deliver_messages(
            campaign, pending, kind, password=secret, to_outbox=to_outbox, progress=progress
        )
        workspace = campaign.workspace
        for line in mail.delivery_lines(workspace, delivery):
            outcome.lines.append((line.kind, line.text))
        written = [
            path.relative_to(workspace.root).as_posix() for _, path in delivery.report.written
        ]
        if written:
            label = f"Télécharger les {len(written)} message(s) (.zip)"
            outcome.link(label, f"/courrier/lot/{BATCHES.add(written)}/{kind}.zip")
        outcome.link("Voir le suivi", "/suivi")
        return outcome.link("Retour à la page", "/envoi" if kind == mail.SEND else "/relances")

    return work


async def _start(request: Request, kind: SendingKind, *, to_outbox: bool) -> Response:
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    choice = Choice.of(lambda name: _text(form, name))
    password = form.get(PASSWORD_FIELD)
    work = _delivery_work(
        kind, choice, password if isinstance(password, str) else "", to_outbox=to_outbox
    )
    if kind == mail.SEND:
        title = "Préparation des messages (.eml)" if to_outbox else "Envoi des messages aux tuteurs"
        back = "/envoi"
    else:
        title = "Préparation des relances (.eml)" if to_outbox else "Relance des tuteurs"
        back = "/relances"
    job = ui.jobs.start(title, work, back=back)
    return RedirectResponse(f"/travail/{job.job_id}", status_code=303)


async def send(request: Request) -> Response:
    return await _start(request, mail.SEND, to_outbox=False)


async def prepare(request: Request) -> Response:
    return await _start(request, mail.SEND, to_outbox=True)


async def send_reminders(request: Request) -> Response:
    return await _start(request, mail.REMIND, to_outbox=False)


async def prepare_reminders(request: Request) -> Response:
    return await _start(request, mail.REMIND, to_outbox=True)


# ------------------------------------------------------------------ by hand


async def mark_sent(request: Request) -> Response:
    """« Envoyé par moi »: the drafts of the chosen students (all when none is named)
    noted as sent (`mail.mark_sent_by_hand`, `grille send --mark-sent`)."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    chosen = {value for value in form.getlist("eleve") if isinstance(value, str) and value}

    def work() -> list[tuple[str, str]]:
        with ui.writing() as campaign:
            marked = mail.mark_sent_by_hand(campaign, student_ids=chosen or None)
        ui.access.refresher.schedule()
        if not marked:
            return [("attention", "Aucun message préparé en attente : rien à noter.")]
        names = "\n".join(f"envoyé par vous : {s.display_name} ({s.class_name})" for s in marked)
        return [("ok", f"{len(marked)} classeur(s) notés comme envoyés.\n{names}")]

    notices = await run_in_threadpool(work)
    return RedirectResponse(f"/envoi?avis={ui.notices.add(notices)}#a-la-main", status_code=303)


def drafts_zip(request: Request) -> Response:
    """Every message written to output/envoi/ and not noted as sent, in one .zip."""
    ui = ui_of(request)
    with ui.reading() as campaign:
        rows = state.outbox_only_sendings(campaign.db)
    files = sorted({row["file"] for row in rows if row["file"]})
    return _zip_response(ui.root, files, "messages_a_envoyer.zip")


def batch_zip(request: Request) -> Response:
    """The messages one preparation wrote, in one .zip."""
    files = BATCHES.get(request.path_params["key"])
    if files is None:
        raise HTTPException(
            404,
            "Ce lot de messages n'est plus connu de l'interface (elle a été redémarrée) : les "
            "messages sont dans output/envoi/.",
        )
    kind = request.path_params["kind"]
    stamp = datetime.now().strftime("%Y-%m-%d")
    return _zip_response(ui_of(request).root, files, f"{kind}_{stamp}.zip")


ROUTES = [
    Route("/envoi", sending_page, name="envoi"),
    Route("/envoi/envoyer", send, methods=["POST"], name="envoi_envoyer"),
    Route("/envoi/preparer", prepare, methods=["POST"], name="envoi_preparer"),
    Route("/envoi/envoye", mark_sent, methods=["POST"], name="envoi_envoye"),
    Route("/envoi/messages.zip", drafts_zip, name="envoi_zip"),
    Route("/courrier/lot/{key}/{kind:str}.zip", batch_zip, name="courrier_lot"),
    Route("/relances", reminding_page, name="relances"),
    Route("/relances/envoyer", send_reminders, methods=["POST"], name="relances_envoyer"),
    Route("/relances/preparer", prepare_reminders, methods=["POST"], name="relances_preparer"),
]
