"""The pages that start a season: Campagne (create, open, settings of grille.toml),
Stagiaires (roster template, roster upload) and Classeurs (generate, download).

Each action calls the library step the CLI calls: `campaign_setup.create_campaign`
(`campaign.init_campaign`), `campaign_setup.edit_settings`, `roster.read_rosters` then
`campaign_setup.install_roster`, `campaign.generate_workbooks` (as a job). An uploaded
roster is streamed to a hidden folder of the campaign (`output/.televersements/`), under
a name made from the browser's (never trusted as a path), read there, then removed.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from pipeline import campaign_setup, state
from pipeline.campaign import Campaign, GenerateResult, InitResult, generate_workbooks
from pipeline.errors import ConfigError, GrilleError, Problem
from pipeline.parallel import default_jobs
from pipeline.roster import RosterResult, read_rosters
from pipeline.roster_template import build_roster_template
from pipeline.settings import CONFIG_NAME, SECURITY_CHOICES, Workspace
from pipeline.text import display_name, fold
from pipeline.ui import security, uploads
from pipeline.ui.app import Ui, ui_of
from pipeline.ui.jobs import Outcome, Progress

ROSTER_UPLOAD = "/stagiaires/liste"
ROSTER_LIMIT = 20 * 1024 * 1024  # 100,000 students in a CSV fit in about 15 MB
UPLOAD_LIMITS = {ROSTER_UPLOAD: ROSTER_LIMIT}
UPLOADS = ".televersements"  # under output/: hidden, so never offered for download
TEMPLATE_NAME = "modele_liste_stagiaires.xlsx"
LISTED = 30  # workbooks named one by one in a generation's outcome, the rest counted


# ------------------------------------------------------------------ campagne


def _notices(ui: Ui, request: Request) -> list[tuple[str, str]]:
    return ui.notices.take(request.query_params.get("avis"))


def _redirect(ui: Ui, url: str, notices: list[tuple[str, str]]) -> Response:
    key = ui.notices.add(notices)
    return RedirectResponse(f"{url}?{urlencode({'avis': key})}", status_code=303)


def _campaign_context(
    ui: Ui,
    request: Request,
    *,
    typed: dict[str, str] | None = None,
    faults: dict[str, str] | None = None,
    creation: dict[str, str] | None = None,
    creation_faults: dict[str, str] | None = None,
    folder_fault: str = "",
    opening: str = "",
    open_fault: str = "",
) -> dict[str, Any]:
    settings: campaign_setup.SettingsFile | None = None
    problem = ""
    if ui.access.has_campaign:
        try:
            settings = campaign_setup.read_settings(ui.workspace)
        except GrilleError as exc:
            problem = str(exc)
    shown = typed if typed is not None else (settings.values if settings else {})
    sections = [
        ("campagne", "La campagne"),
        ("professeur", "Le professeur"),
        ("envoi", "Envoi des messages aux tuteurs"),
        ("reception", "Réception des réponses (relève IMAP)"),
    ]
    return {
        "page": "campagne",
        "root": str(ui.root),
        "has_campaign": ui.access.has_campaign,
        "settings": settings,
        "problem": problem,
        "sections": [
            (title, [s for s in campaign_setup.SETTINGS if s.section == code])
            for code, title in sections
        ],
        "values": shown,
        "faults": faults or {},
        "security_choices": SECURITY_CHOICES,
        "creation_settings": [
            campaign_setup.SETTINGS_BY_KEY[key] for key in campaign_setup.CREATION_FIELDS
        ],
        "creation": creation or {},
        "creation_faults": creation_faults or {},
        "new_folder": (creation or {}).get(
            "dossier", "" if ui.access.has_campaign else str(ui.root)
        ),
        "folder_fault": folder_fault,
        "opening": opening,
        "open_fault": open_fault,
        "config_name": CONFIG_NAME,
        "notices": _notices(ui, request),
        "field_id": _field_id,
    }


def _field_id(key: str) -> str:
    return "champ-" + key.replace(".", "-")


def campaign_page(request: Request) -> Response:
    """The campaign: its settings in a form; create one, or open another folder."""
    ui = ui_of(request)
    return ui.render(request, "campagne.html", _campaign_context(ui, request))


def _folder(ui: Ui, typed: str) -> Path:
    """The folder typed by the teacher: `~` expanded, a relative path taken from the
    folder that holds the current one."""
    path = Path(typed.strip()).expanduser()
    return path if path.is_absolute() else ui.root.parent / path


async def save_settings(request: Request) -> Response:
    """Write the settings typed in the form to grille.toml (`edit_settings`)."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    typed = {s.key: str(form.get(s.key) or "") for s in campaign_setup.SETTINGS if s.key in form}
    fingerprint = str(form.get("empreinte") or "") or None

    def work() -> campaign_setup.EditResult:
        return campaign_setup.edit_settings(ui.workspace, typed, fingerprint=fingerprint)

    try:
        result = await run_in_threadpool(work)
    except campaign_setup.SettingsError as exc:
        context = _campaign_context(ui, request, typed=typed, faults=exc.faults)
        return ui.render(request, "campagne.html", context, 400)
    except campaign_setup.SettingsChanged as exc:
        return _redirect(ui, "/campagne", [("attention", str(exc))])
    except ConfigError as exc:  # the text written would not load: say why, keep the file
        context = _campaign_context(ui, request, typed=typed, faults={"": str(exc)})
        return ui.render(request, "campagne.html", context, 400)
    if not result.changed:
        return _redirect(ui, "/campagne", [("ok", "Rien n'a changé : aucun réglage modifié.")])
    names = ", ".join(f"« {s.label} »" for s in result.changed)
    notices = [("ok", f"{CONFIG_NAME} enregistré ({names}).")]
    if result.workbooks_affected:
        notices.append(
            (
                "attention",
                "Les classeurs affichent ces informations : les classeurs déjà fabriqués seront "
                "refaits à la prochaine génération (page Classeurs), à renvoyer aux tuteurs "
                "s'ils étaient déjà partis.",
            )
        )
    return _redirect(ui, "/campagne", notices)


async def create(request: Request) -> Response:
    """Create a campaign (`grille init`), then work on it."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    creation = {key: str(form.get(key) or "") for key in campaign_setup.CREATION_FIELDS}
    creation["dossier"] = str(form.get("dossier") or "")
    if not creation["dossier"].strip():
        context = _campaign_context(
            ui, request, creation=creation, folder_fault="Indiquez le dossier de la campagne."
        )
        return ui.render(request, "campagne.html", context, 400)
    workspace = Workspace(_folder(ui, creation["dossier"]))

    def work() -> InitResult:
        result = campaign_setup.create_campaign(workspace, creation)
        if workspace.root != ui.root:
            ui.switch(workspace)
        return result

    try:
        result = await run_in_threadpool(work)
    except campaign_setup.SettingsError as exc:
        context = _campaign_context(ui, request, creation=creation, creation_faults=exc.faults)
        return ui.render(request, "campagne.html", context, 400)
    except GrilleError as exc:
        context = _campaign_context(ui, request, creation=creation, folder_fault=str(exc))
        return ui.render(request, "campagne.html", context, 400)
    notices = [("ok", f"Campagne créée dans « {workspace.root} » : {', '.join(result.created)}.")]
    notices.append(
        (
            "ok",
            "Ensuite : déposez la liste des stagiaires (page Stagiaires), puis fabriquez les "
            "classeurs (page Classeurs).",
        )
    )
    return _redirect(ui, "/campagne", notices)


async def open_folder(request: Request) -> Response:
    """Work on another campaign folder, once it opens without fault."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    typed = str(form.get("dossier") or "").strip()
    if not typed:
        context = _campaign_context(ui, request, open_fault="Indiquez le dossier à ouvrir.")
        return ui.render(request, "campagne.html", context, 400)
    workspace = Workspace(_folder(ui, typed))

    def work() -> None:
        if not workspace.root.is_dir():
            raise ConfigError(f"Le dossier « {workspace.root} » n'existe pas.")
        if not workspace.config_path.is_file():
            raise ConfigError(
                f"Le dossier « {workspace.root} » ne contient pas de campagne ({CONFIG_NAME} "
                "absent) : vérifiez le chemin, ou créez-y une campagne."
            )
        Campaign.open(workspace).close()  # configuration, key and database checked
        if workspace.root != ui.root:
            ui.switch(workspace)

    try:
        await run_in_threadpool(work)
    except GrilleError as exc:
        context = _campaign_context(ui, request, opening=typed, open_fault=str(exc))
        return ui.render(request, "campagne.html", context, 400)
    return _redirect(ui, "/campagne", [("ok", f"Campagne ouverte : « {workspace.root} ».")])


# ------------------------------------------------------------------ uploads


# ------------------------------------------------------------------ stagiaires


def _roster_context(ui: Ui, request: Request, **extra: Any) -> dict[str, Any]:
    roster_path = ui.workspace.roster_path
    current: RosterResult | None = None
    current_fault = ""
    if roster_path.is_file():
        try:
            current = read_rosters([roster_path])
        except GrilleError as exc:
            current_fault = str(exc)
    relative = roster_path.relative_to(ui.root).as_posix()
    context: dict[str, Any] = {
        "page": "stagiaires",
        "roster_file": relative if roster_path.is_file() else "",
        "current": current,
        "current_fault": current_fault,
        "limit": security.human_size(ROSTER_LIMIT),
        "notices": _notices(ui, request),
        "uploaded": "",
        "checked": None,
        "upload_fault": "",
        "errors_count": 0,
    }
    context.update(extra)
    return context


def roster_page(request: Request) -> Response:
    """The roster in use (its students, or its problems), the template, the upload form."""
    ui = ui_of(request)
    with ui.reading():  # the campaign checked, as at every page
        pass
    return ui.render(request, "stagiaires.html", _roster_context(ui, request))


def roster_template(request: Request) -> Response:
    """The roster template to fill (the one `grille init` writes), freshly made."""
    buffer = io.BytesIO()
    build_roster_template().save(buffer)
    return Response(
        buffer.getvalue(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"content-disposition": f'attachment; filename="{TEMPLATE_NAME}"'},
    )


async def upload_roster(request: Request) -> Response:
    """Read an uploaded roster as `grille generate` does; without error, put it in place
    (`install_roster`): « Générer » then uses it. Else every problem, as a table."""
    ui = ui_of(request)
    try:
        upload = await uploads.receive_files(
            request, ui.workspace.output_dir, "liste", ui.secrets.csrf
        )
    except uploads.UploadRefused as exc:
        raise HTTPException(400, f"Envoi refusé : {exc}") from None
    try:
        if len(upload.files) > 1:
            raise HTTPException(400, "Envoi refusé : ce formulaire n'attend qu'un seul fichier.")
        if not upload.files or not upload.files[0][1].stat().st_size:
            context = _roster_context(
                ui, request, upload_fault="Choisissez le fichier de la liste (.xlsx ou .csv)."
            )
            return ui.render(request, "stagiaires.html", context, 400)
        shown, path = upload.files[0]

        def work() -> tuple[RosterResult | None, str]:
            try:
                result = read_rosters([path])
            except GrilleError as exc:
                return None, str(exc)
            if result.valid and result.students:
                with ui.writing():  # under the run lock, as a command
                    campaign_setup.install_roster(ui.workspace, path)
            return result, ""

        checked, fault = await run_in_threadpool(work)
    finally:
        upload.remove()
    if checked is None or not checked.valid or not checked.students:
        if checked is not None and checked.valid:
            fault = f"La liste des stagiaires « {shown} » ne contient aucun stagiaire."
        context = _roster_context(
            ui,
            request,
            uploaded=shown,
            checked=checked,
            upload_fault=fault,
            errors_count=sum(p.severity != "warning" for p in checked.problems) if checked else 0,
        )
        return ui.render(request, "stagiaires.html", context, 400)
    notices = [
        (
            "ok",
            f"Liste « {shown} » enregistrée : {len(checked.students)} stagiaire(s). "
            "Fabriquez maintenant les classeurs (page Classeurs).",
        ),
        *(("attention", f"Attention — {p}") for p in checked.problems),
    ]
    return _redirect(ui, "/stagiaires", notices)


# ------------------------------------------------------------------ classeurs


@dataclass(frozen=True)
class ClassWorkbooks:
    """The workbooks of one class, as the page lists them."""

    name: str
    folder: str
    rows: list[dict[str, Any]]

    @property
    def available(self) -> int:
        return sum(1 for row in self.rows if row["available"] and row["in_roster"])


def _classes(ui: Ui, campaign: Campaign) -> list[ClassWorkbooks]:
    by_class: dict[str, list[dict[str, Any]]] = {}
    folders: dict[str, str] = {}
    for row in state.students_with_workbooks(campaign.db):
        file = row["workbook_file"]
        by_class.setdefault(row["class_name"], []).append(
            {
                "student_id": row["student_id"],
                "name": display_name(row["last_name"], row["first_name"]),
                "company": row["company"],
                "tutor": row["tutor_name"],
                "file": file,
                "file_name": file.rsplit("/", 1)[-1],
                "in_roster": bool(row["in_roster"]),
                "available": security.campaign_file(ui.root, file) is not None,
            }
        )
        parts = file.split("/")
        folders.setdefault(row["class_name"], parts[-2] if len(parts) > 2 else "")
    return [
        ClassWorkbooks(name, folders[name], rows)
        for name, rows in sorted(by_class.items(), key=lambda item: fold(item[0]))
    ]


def workbooks_page(request: Request) -> Response:
    """The button that makes the workbooks, and the workbooks per class."""
    ui = ui_of(request)
    with ui.reading() as campaign:
        classes = _classes(ui, campaign)
    roster_path = ui.workspace.roster_path
    running = ui.jobs.current()
    return ui.render(
        request,
        "classeurs.html",
        {
            "page": "classeurs",
            "classes": classes,
            "total": sum(len(c.rows) for c in classes),
            "roster_file": roster_path.relative_to(ui.root).as_posix()
            if roster_path.is_file()
            else "",
            "running": running,
            "notices": _notices(ui, request),
            "quote": quote,
        },
    )


def generation_outcome(workspace: Workspace, result: GenerateResult, label: str) -> Outcome:
    """What `grille generate` prints, as the lines of a job's outcome."""
    outcome = Outcome()
    roster = result.roster
    if not roster.valid:
        errors = [p for p in roster.problems if p.severity != "warning"]
        outcome.attention(
            f"Liste des stagiaires {label} : {len(errors)} problème(s) à corriger ; aucun "
            "classeur n'a été produit."
        )
        for problem in roster.problems:
            outcome.attention(_problem_line(problem))
        return outcome.link("Corriger la liste (page Stagiaires)", "/stagiaires")
    for problem in roster.problems:
        outcome.attention(_problem_line(problem))
    if not roster.students:
        outcome.attention(f"La liste des stagiaires {label} ne contient aucun stagiaire.")
        return outcome.link("Déposer la liste (page Stagiaires)", "/stagiaires")

    def where(student_id: str) -> str:
        return result.files[student_id].relative_to(workspace.root).as_posix()

    folder = workspace.workbooks_dir.relative_to(workspace.root).as_posix()
    outcome.ok(  # the CLI's last line, first here: what the page says at a glance
        f"{len(result.created)} classeur(s) créé(s), {len(result.updated)} régénéré(s), "
        f"{len(result.unchanged)} inchangé(s), dans {folder}."
    )

    for student in result.created[:LISTED]:
        outcome.ok(
            f"créé : {student.display_name} ({student.class_name}) → {where(student.student_id)}"
        )
    if len(result.created) > LISTED:
        outcome.ok(f"… et {len(result.created) - LISTED} autre(s) classeur(s) créé(s).")
    for student, reason in result.updated:
        outcome.ok(
            f"régénéré ({reason}) : {student.display_name} ({student.class_name}) → "
            f"{where(student.student_id)}"
        )
    for student in result.removed:
        outcome.attention(
            f"{student.display_name} ({student.class_name}) n'est plus dans la liste : son "
            "classeur est conservé."
        )
    return outcome.link("Voir les classeurs", "/classeurs").link("Envoyer aux tuteurs", "/envoi")


def _problem_line(problem: Problem) -> str:
    prefix = "Attention" if problem.severity == "warning" else "Erreur"
    return f"{prefix} — {problem}"


async def generate(request: Request) -> Response:
    """Make the workbooks (`generate_workbooks`, the step of `grille generate`) as a job."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    force = form.get("refaire") == "oui"

    def work(campaign: Campaign, progress: Progress) -> Outcome:
        workspace = campaign.workspace
        progress.expect(0, "Fabrication des classeurs…")
        state.backup(workspace.db_path, workspace.backups_dir)  # as a command does first
        path = workspace.roster_path
        # every core, as `grille generate`: from the server, workers are forked from the
        # fork server (`parallel._start_method`), never beside the server's threads
        result = generate_workbooks(
            campaign, [path], force=force, jobs=default_jobs(), progress=progress
        )
        return generation_outcome(workspace, result, f"« {path.name} »")

    job = await run_in_threadpool(
        ui.jobs.start, "Fabrication des classeurs", work, back="/classeurs"
    )
    return RedirectResponse(f"/travail/{job.job_id}", status_code=303)


def class_zip(request: Request) -> Response:
    """The workbooks of one class (students still in the roster), as a .zip built in a
    temporary file of the campaign, streamed, then removed."""
    ui = ui_of(request)
    wanted = request.query_params.get("classe", "")
    with ui.reading() as campaign:
        found = next((c for c in _classes(ui, campaign) if c.name == wanted), None)
    if found is None:
        raise HTTPException(404, f"Aucun classeur pour la classe « {wanted} ».")
    files = [
        path
        for row in found.rows
        if row["in_roster"] and (path := security.campaign_file(ui.root, row["file"]))
    ]
    if not files:
        raise HTTPException(404, f"Aucun classeur disponible pour la classe « {wanted} ».")
    folder = ui.workspace.output_dir / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="classe-", suffix=".zip", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for path in files:
                zf.write(path, path.name)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return FileResponse(
        name,
        media_type="application/zip",
        filename=f"classeurs-{found.folder or 'classe'}.zip",
        background=BackgroundTask(Path(name).unlink, missing_ok=True),
    )


ROUTES = [
    Route("/campagne", campaign_page, name="campagne"),
    Route("/campagne/reglages", save_settings, methods=["POST"], name="reglages"),
    Route("/campagne/creer", create, methods=["POST"], name="creer"),
    Route("/campagne/ouvrir", open_folder, methods=["POST"], name="ouvrir"),
    Route("/stagiaires", roster_page, name="stagiaires"),
    Route("/stagiaires/modele", roster_template, name="modele_liste"),
    Route(ROSTER_UPLOAD, upload_roster, methods=["POST"], name="liste"),
    Route("/classeurs", workbooks_page, name="classeurs"),
    Route("/classeurs/generer", generate, methods=["POST"], name="generer"),
    Route("/classeurs/classe.zip", class_zip, name="classe_zip"),
]
