"""The pages that close the season: « Bilans » (write the reports, open each file) and
« Archive » (archive a class, download it, verify an archive sent back, purge a class).

Each action is the library step its command runs (`report_files.write_reports` for
`grille report`, `archive.build_archives` and `archive.verify_archive` for `grille
archive`, `purge.plan_purge` and `purge.purge` for `grille purge`), run as a job; the job
page then says what the command says (`lines()` of each result).

An archive to verify is streamed to disk by `uploads.receive_files`, as the files
dropped on « Retours » (never under the browser's path), checked as `grille archive
verify` checks a file found anywhere (hostile until proven intact: `safe_zip` limits),
then deleted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pipeline import archive, office, purge, report_files, state, tracking
from pipeline.campaign import Campaign
from pipeline.classes import select_classes
from pipeline.errors import GrilleError
from pipeline.tracking import StudentStatus
from pipeline.ui import security, uploads
from pipeline.ui.app import Ui, download_url, ui_of
from pipeline.ui.jobs import Outcome, Progress

ALL_CLASSES = ""  # the value of « Toutes les classes » in the forms


def _said(outcome: Outcome, lines: list[tuple[str, str]]) -> Outcome:
    """Add a command's lines (kind, text) to a job's outcome, as the command prints them;
    a run of indented lines of one kind (the files written…) makes one message, a line
    each, instead of one message per file."""
    for kind, text in lines:
        indented = text.startswith("  ")
        previous = outcome.lines[-1] if outcome.lines else None
        if indented and previous is not None and previous[0] == kind and _grouped(previous[1]):
            outcome.lines[-1] = (kind, f"{previous[1]}\n{text.strip()}")
        else:
            outcome.lines.append((kind, (GROUP if indented else "") + text.strip()))
    outcome.lines = [(kind, text.removeprefix(GROUP)) for kind, text in outcome.lines]
    return outcome


GROUP = "\x00"  # marks, while `_said` works, a message made of indented lines


def _grouped(text: str) -> bool:
    return text.startswith(GROUP)


def _wanted_class(form_value: object) -> str | None:
    value = str(form_value or "").strip()
    return value if value != ALL_CLASSES else None


def _checked(value: object) -> bool:
    return str(value or "") in ("1", "on", "oui")


def _to_job(ui: Ui, title: str, work: Any, back: str) -> Response:
    job = ui.jobs.start(title, work, back=back)
    return RedirectResponse(f"/travail/{job.job_id}", status_code=303)


def _available(ui: Ui, relative: str) -> bool:
    return security.campaign_file(ui.root, relative) is not None


# ------------------------------------------------------------------ bilans


@dataclass
class StudentBilans:
    """A student and the bilans grille wrote for them (paths relative to the campaign)."""

    status: StudentStatus
    words: list[str] = field(default_factory=list)
    pdfs: list[str] = field(default_factory=list)


@dataclass
class ClassBilans:
    """A class, its consolidated bilan (Word, PDF) and its students' bilans."""

    name: str
    class_files: list[str] = field(default_factory=list)
    students: list[StudentBilans] = field(default_factory=list)

    @property
    def written(self) -> int:
        return sum(bool(s.words) for s in self.students)


def _class_bilans(ui: Ui, campaign: Campaign, statuses: list[StudentStatus]) -> list[ClassBilans]:
    found = []
    for klass in select_classes(campaign, None):
        shown = ClassBilans(klass)
        by_student: dict[str, StudentBilans] = {}
        for status in statuses:
            if status.class_name == klass:
                by_student[status.student_id] = StudentBilans(status)
        for path, record in report_files.class_report_files(campaign, klass):
            relative = record.file
            if not _available(ui, relative):
                continue
            if record.student_id is None:
                shown.class_files.append(relative)
                continue
            owner = by_student.get(record.student_id)
            if owner is not None:
                (owner.pdfs if path.suffix.lower() == ".pdf" else owner.words).append(relative)
        shown.students = [s for s in by_student.values() if s.status.in_roster or s.words or s.pdfs]
        found.append(shown)
    return found


def reports_page(request: Request) -> Response:
    """Write the bilans; every bilan of each class, Word and PDF, to open or download."""
    ui = ui_of(request)
    wanted = request.query_params.get("classe", "")
    with ui.reading() as campaign:
        statuses = ui.statuses()
        classes = _class_bilans(ui, campaign, statuses)
    shown = [c for c in classes if not wanted or c.name == wanted]
    return ui.render(
        request,
        "bilans.html",
        {
            "classes": [c.name for c in classes],
            "shown": shown,
            "wanted_class": wanted,
            "soffice": office.find_soffice() is not None,
            "no_soffice": report_files.NO_LIBREOFFICE,
            "tracking": ui.access.refresher,
            "page": "bilans",
        },
    )


async def write_reports(request: Request) -> Response:
    """`grille report [--class] [--pdf]` as a job."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    class_name = _wanted_class(form.get("classe"))
    pdf = _checked(form.get("pdf"))
    workspace = ui.workspace

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        label = "Écriture des bilans Word" + (", puis des PDF…" if pdf else "…")
        progress.expect(0, label)
        result = report_files.write_reports(
            campaign,
            class_name=class_name,
            pdf=pdf,
            progress=progress.advance,
            announce=lambda total: progress.expect(total, label),
        )
        lines = result.lines(workspace)
        *listed, total = lines
        outcome = Outcome().ok(total[1])  # the count first: the list may be long
        _said(outcome, [line for line in listed if line[0] == "attention"])
        _said(outcome, [line for line in listed if line[0] != "attention"])
        if result.matched_nobody:
            outcome.attention("Aucun stagiaire ne correspond à ces critères (classe).")
        query = f"?classe={class_name}" if class_name else ""
        return outcome.link("Ouvrir les bilans", f"/bilans{query}")

    title = "Écriture des bilans" + (f" — {class_name}" if class_name else "")
    return _to_job(ui, title, work, "/bilans")


# ------------------------------------------------------------------ archive


@dataclass(frozen=True)
class ArchiveRow:
    """An archive the campaign wrote, as the page lists it."""

    class_name: str
    school_year: str
    file: str  # the zip, relative to the campaign folder
    sha256: str
    created_at: str
    verified_at: str
    available: bool
    purged: bool  # the class has no student left in the campaign


def archive_page(request: Request) -> Response:
    """Archive a class, download its archive, verify an archive, purge an archived class."""
    ui = ui_of(request)
    with ui.reading() as campaign:
        classes = select_classes(campaign, None)
        rows = state.archives(campaign.db)
        plan = purge.plan_purge(campaign) if classes else purge.PurgePlan()
    archives = [
        ArchiveRow(
            row["class_name"],
            row["school_year"],
            row["path"],
            row["sha256"],
            row["created_at"],
            row["verified_at"] or "",
            _available(ui, row["path"]),
            row["class_name"] not in classes,
        )
        for row in reversed(rows)
    ]
    return ui.render(
        request,
        "archive.html",
        {
            "classes": classes,
            "archives": archives,
            "purgeable": plan.classes,
            "refused": plan.refused,
            "upload_limit": security.human_size(ui.upload_max),
            "soffice": office.find_soffice() is not None,
            "tracking": ui.access.refresher,
            "page": "archive",
        },
    )


async def create_archive(request: Request) -> Response:
    """`grille archive [--class] [--pdf]` as a job."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    class_name = _wanted_class(form.get("classe"))
    pdf = _checked(form.get("pdf"))
    root = ui.root

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        progress.expect(0, "Archivage" + (" (PDF des bilans d'abord)…" if pdf else "…"))
        built = archive.build_archives(campaign, class_name=class_name, pdf=pdf)
        outcome = _said(Outcome(), built.lines(root))
        outcome.ok(
            "Téléchargez chaque archive, gardez-la en lieu sûr, puis vérifiez la copie gardée "
            "(page Archive, « Vérifier une archive ») : la purge n'est possible qu'ensuite."
        )
        for item in built.archives:
            relative = item.zip_path.relative_to(root).as_posix()
            outcome.link(
                f"Télécharger {item.zip_path.name} ({item.class_name})", download_url(relative)
            )
        return outcome.link("Revenir à la page Archive", "/archive")

    title = "Archivage" + (f" — {class_name}" if class_name else "")
    return _to_job(ui, title, work, "/archive")


async def verify_upload(request: Request) -> Response:
    """`grille archive verify` on an archive sent from the teacher's computer, as a job."""
    ui = ui_of(request)
    try:
        upload = await uploads.receive_files(
            request, ui.workspace.output_dir, "archive", ui.secrets.csrf
        )
    except uploads.UploadRefused as exc:
        raise HTTPException(400, f"Envoi refusé : {exc}") from None
    folder = upload.folder
    try:
        if not upload.files:
            raise HTTPException(
                400, "Aucun fichier reçu : choisissez l'archive (.zip) à vérifier, puis validez."
            )
        if len(upload.files) > 1:
            raise HTTPException(
                400, "Une archive à la fois : choisissez un seul fichier .zip, puis validez."
            )
        ((_, path),) = upload.files
        workspace = ui.workspace

        def work(campaign: Campaign, progress: Progress) -> Outcome:
            try:
                progress.expect(0, f"Vérification de {path.name}…")
                result = archive.verify_archive(path, workspace)
                outcome = _said(Outcome(), result.lines())
                if result.verdict:
                    outcome.attention(f"Erreur : {result.verdict}")
                return outcome.link("Revenir à la page Archive", "/archive")
            finally:
                shutil.rmtree(folder, ignore_errors=True)

        response = _to_job(ui, f"Vérification de l'archive {path.name}", work, "/archive")
    except BaseException:
        await run_in_threadpool(shutil.rmtree, folder, True)
        raise
    return response


def purge_page(request: Request) -> Response:
    """What purging a class deletes (`grille purge` before it asks), and the form where the
    teacher types the class's name to confirm."""
    ui = ui_of(request)
    wanted = request.query_params.get("classe", "").strip()
    if not wanted:
        return RedirectResponse("/archive#purge", status_code=303)
    with ui.reading() as campaign:
        plan = purge.plan_purge(campaign, wanted)
    return ui.render(
        request,
        "purge.html",
        {
            "class_name": plan.classes[0] if plan.classes else wanted,
            "lines": [
                (kind, text.strip(), text.startswith("  ")) for kind, text in plan.lines(ui.root)
            ],
            "possible": bool(plan.classes),
            "tracking": ui.access.refresher,
            "page": "archive",
        },
    )


def _same_name(typed: str, class_name: str) -> bool:
    return " ".join(typed.split()) == " ".join(class_name.split()) and bool(class_name.strip())


async def purge_class(request: Request) -> Response:
    """`grille purge --class`, once the teacher typed the class's name, as a job."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    class_name = str(form.get("classe") or "").strip()
    typed = str(form.get("confirmation") or "")
    if not class_name:
        raise HTTPException(400, "Purge refusée : aucune classe choisie. Rien n'a été supprimé.")
    if not _same_name(typed, class_name):
        raise HTTPException(
            400,
            f"Purge refusée : pour confirmer, tapez exactement le nom de la classe "
            f"« {class_name} » dans le champ prévu. Rien n'a été supprimé.",
        )
    workspace = ui.workspace

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        progress.expect(0, f"Purge de {class_name}…")
        plan = purge.plan_purge(campaign, class_name)
        if not plan.classes:
            reasons = " ".join(reason for reason in plan.refused)
            raise GrilleError(f"Purge refusée — {reasons} Rien n'a été supprimé.")
        lines = plan.lines(workspace.root)
        done = purge.purge(campaign, plan)
        outcome = Outcome().ok(f"Données personnelles supprimées : {', '.join(done.classes)}.")
        _said(outcome, lines[1:])  # what went, what stays
        try:
            written = tracking.write_tracking(workspace.tracking_path, campaign.db)
        except GrilleError as exc:
            outcome.attention(f"Attention — suivi non mis à jour : {exc}")
        else:
            for warning in written.warnings(workspace.root):
                outcome.attention(warning)
        return outcome.link("Revenir à la page Archive", "/archive")

    return _to_job(ui, f"Purge de {class_name}", work, "/archive")


ROUTES = [
    Route("/bilans", reports_page, name="bilans"),
    Route("/bilans/ecrire", write_reports, methods=["POST"], name="bilans_ecrire"),
    Route("/archive", archive_page, name="archive"),
    Route("/archive/creer", create_archive, methods=["POST"], name="archive_creer"),
    Route("/archive/verifier", verify_upload, methods=["POST"], name="archive_verifier"),
    Route("/archive/purge", purge_page, name="purge"),
    Route("/archive/purger", purge_class, methods=["POST"], name="purger"),
]
