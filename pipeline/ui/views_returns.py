"""Page Retours of `grille ui`: the tutors' files dropped on the page, or the mailbox read
(IMAP), then collected by `collect.collect_step` (the step of `grille collect`) as a job;
its outcome says, file by file, what `grille collect` says (`collect_report`)."""

from __future__ import annotations

import os
from datetime import date, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pipeline import collect_report, state
from pipeline.campaign import Campaign
from pipeline.collect import CollectResult, MailboxRequest, collect_step
from pipeline.inbox import describe_mailbox
from pipeline.parallel import default_jobs
from pipeline.returns import printable
from pipeline.settings import ImapSettings, Workspace
from pipeline.ui import security, uploads
from pipeline.ui.app import Ui, ui_of
from pipeline.ui.jobs import Outcome, Progress
from pipeline.ui.uploads import Dropped, UploadRefused

FILE_FIELD = "fichiers"
ACCEPTED = ".xlsx,.xlsm,.xls,.ods,.zip,.eml,.mbox,.msg"
PASSWORD_FIELD = "mot_de_passe"  # never stored, never shown, never logged
DROP = "/retours/deposer"
DROP_LIMIT = 200 * 1024 * 1024  # one drop: hundreds of returns, or a mailbox export
UPLOAD_LIMITS = {DROP: DROP_LIMIT}  # the guard's body limit of the upload (`security.Guard`)


def returns_page(request: Request) -> Response:
    """The drop zone, and « Relever la boîte » when [reception] is set."""
    ui = ui_of(request)
    with ui.reading() as campaign:
        imap = campaign.config.imap
    return ui.render(
        request,
        "retours.html",
        {
            "page": "retours",
            "limit": security.human_size(DROP_LIMIT),
            "accepted": ACCEPTED,
            "file_field": FILE_FIELD,
            "password_field": PASSWORD_FIELD,
            "imap": imap,
            "mailbox": describe_mailbox(imap) if imap.configured else "",
            "notices": ui.notices.take(request.query_params.get("avis")),
        },
    )


def _back(ui: Ui, notices: list[tuple[str, str]]) -> Response:
    return RedirectResponse(f"/retours?avis={ui.notices.add(notices)}", status_code=303)


def _outcome(workspace: Workspace, result: CollectResult, dropped: Dropped | None) -> Outcome:
    """The lines of `grille collect`, one per file, the dropped files named as given."""
    outcome = Outcome()
    lines = collect_report.file_lines(result)
    lines += collect_report.summary_lines(
        result, workspace, mark_seen=bool(result.mailbox and result.mailbox.marked_seen)
    )
    for line in lines:
        text = "\n".join(part.strip() for part in line.text.strip().splitlines())
        outcome.lines.append((line.kind, dropped.shown(text) if dropped else text))
    outcome.link("Voir le suivi", "/suivi")
    if any("à confirmer" in text for _, text in outcome.lines):
        outcome.link("Retours à confirmer", "/suivi?statut=a_confirmer")
    return outcome.link("Déposer d'autres fichiers", "/retours")


class _Counter:
    """`collect`'s progress (files read, one by one) as « n / total files dropped »."""

    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done = progress, total, 0
        progress.expect(total, "Lecture des fichiers…")

    def __call__(self, count: int) -> None:
        self.done += count
        self.progress(min(self.done, self.total), self.total)


async def drop(request: Request) -> Response:
    """The files dropped (streamed to disk, CSRF checked), collected as a job."""
    ui = ui_of(request)
    try:
        dropped = await uploads.receive_files(
            request, ui.workspace.output_dir, FILE_FIELD, ui.secrets.csrf
        )
    except UploadRefused as exc:
        return _back(ui, [("attention", str(exc))])
    if not security.same(dropped.fields.get(security.CSRF_FIELD), ui.secrets.csrf):
        dropped.remove()
        raise security.CsrfRefused
    if not dropped.files:
        dropped.remove()
        return _back(
            ui, [("attention", "Aucun fichier choisi : déposez ou choisissez les fichiers reçus.")]
        )

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        try:
            result = collect_step(
                campaign,
                [path for _, path in dropped.files],
                jobs=default_jobs(),  # as `grille collect`: every core (`parallel`: fork server)
                progress=_Counter(progress, len(dropped.files)),
            )
            renamed = {printable(os.fsdecode(path)): name for name, path in dropped.files}
            state.rename_origins(campaign.db, renamed)
        finally:
            dropped.remove()
        progress.expect(0, "Mise à jour de output/suivi.xlsx…")
        return _outcome(campaign.workspace, result, dropped).rewrite_tracking(campaign)

    try:
        job = ui.jobs.start("Lecture des retours déposés", work, back="/retours")
    except BaseException:
        dropped.remove()
        raise
    return RedirectResponse(f"/travail/{job.job_id}", status_code=303)


def _since(text: str) -> date | None:
    """The day typed (jj/mm/aaaa, or the browser's aaaa-mm-jj); None when empty."""
    text = text.strip()
    if not text:
        return None
    for shape in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, shape).date()
        except ValueError:
            continue
    raise ValueError(text)


async def read_mailbox(request: Request) -> Response:
    """« Relever la boîte »: the new messages of [reception], collected as a job; the
    password typed in the form lives only in this request and the job's memory."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    password = form.get(PASSWORD_FIELD)
    since_text = form.get("depuis")
    folder = form.get("dossier")
    try:
        since = _since(since_text if isinstance(since_text, str) else "")
    except ValueError:
        return _back(
            ui,
            [("attention", f"Date « {since_text} » invalide : écrivez-la jj/mm/aaaa.")],
        )
    request_ = MailboxRequest(
        folder if isinstance(folder, str) and folder.strip() else None,
        since,
        form.get("marquer_lus") == "oui",
    )
    secret = password if isinstance(password, str) else ""

    def typed(settings: ImapSettings) -> str:
        return secret

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        progress.expect(0, "Relève de la boîte aux lettres…")
        result = collect_step(
            campaign, [], mailbox=request_, password=typed, progress=progress.advance
        )
        progress.expect(0, "Mise à jour de output/suivi.xlsx…")
        return _outcome(campaign.workspace, result, None).rewrite_tracking(campaign)

    job = ui.jobs.start("Relève de la boîte aux lettres", work, back="/retours")
    return RedirectResponse(f"/travail/{job.job_id}", status_code=303)


ROUTES = [
    Route("/retours", returns_page, name="retours"),
    Route(DROP, drop, methods=["POST"], name="retours_deposer"),
    Route("/retours/boite", read_mailbox, methods=["POST"], name="retours_boite"),
]
