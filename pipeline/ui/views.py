"""The pages of `grille ui`: thin views over the library (`tracking`, `state`).

GET views are plain functions (Starlette runs them on a worker thread); POST views read
and check their form (CSRF), then do their work on a worker thread under the run lock,
and redirect to the page to show (Post/Redirect/Get), with a one-time notice.
"""

from __future__ import annotations

import mimetypes
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from pipeline import state, tracking
from pipeline.kinds import ReturnStatus
from pipeline.text import fold
from pipeline.tracking import StudentStatus
from pipeline.ui import security
from pipeline.ui.app import Ui, ui_of, who
from pipeline.validation import STATUS_LABELS

STATUS_ORDER: tuple[str, ...] = tuple(ReturnStatus)  # generated … complete, in order
TO_CONFIRM = "a_confirmer"  # not a status: a return awaits the teacher's decision
WITHDRAWN = "retire"  # no longer in the roster
FILTER_LABELS = {
    **{code: STATUS_LABELS[code] for code in STATUS_ORDER},
    TO_CONFIRM: "retour à confirmer",
    WITHDRAWN: "retiré de la liste",
}
NOTE_LABELS = {
    "team_appreciation": tracking.TEAM_HEADER,
    "notes": tracking.NOTES_HEADER,
}


def _matches(status: StudentStatus, wanted: str) -> bool:
    if wanted == TO_CONFIRM:
        return status.to_confirm or bool(status.pending_returns)
    if wanted == WITHDRAWN:
        return not status.in_roster
    return status.status == wanted


def _counts(statuses: list[StudentStatus]) -> list[tuple[str, str, int]]:
    """(filter code, French label, number of students) for each filter with students."""
    by_status = Counter(s.status for s in statuses)
    counts = [(code, FILTER_LABELS[code], by_status[code]) for code in STATUS_ORDER]
    counts.append(
        (TO_CONFIRM, FILTER_LABELS[TO_CONFIRM], sum(_matches(s, TO_CONFIRM) for s in statuses))
    )
    counts.append((WITHDRAWN, FILTER_LABELS[WITHDRAWN], sum(not s.in_roster for s in statuses)))
    return [item for item in counts if item[2]]


# ------------------------------------------------------------------ home


def home(request: Request) -> Response:
    """The campaign's identity (grille.toml), its numbers and where to go."""
    ui = ui_of(request)
    with ui.reading() as campaign:
        statuses = ui.statuses()
        pending = len(state.pending_returns(campaign.db))
        grid = campaign.grid
        config = campaign.config
    classes = Counter(s.class_name for s in statuses if s.in_roster)
    tracking_file = ui.workspace.tracking_path.relative_to(ui.root).as_posix()
    return ui.render(
        request,
        "accueil.html",
        {
            "config": config,
            "grid": grid,
            "root": str(ui.root),
            "total": len(statuses),
            "counts": _counts(statuses),
            "classes": sorted(classes.items(), key=lambda item: fold(item[0])),
            "pending": pending,
            "tracking_file": tracking_file
            if security.campaign_file(ui.root, tracking_file)
            else "",
            "tracking": ui.access.refresher,
            "page": "accueil",
        },
    )


# ------------------------------------------------------------------ suivi


def tracking_page(request: Request) -> Response:
    """Every student's status, filtered by class, status and name (GET parameters)."""
    ui = ui_of(request)
    wanted_class = request.query_params.get("classe", "")
    wanted_status = request.query_params.get("statut", "")
    search = request.query_params.get("q", "").strip()
    with ui.reading():  # the campaign checked (configuration, key, database) at each page
        statuses = ui.statuses()
    classes = sorted({s.class_name for s in statuses}, key=fold)
    in_class = [s for s in statuses if not wanted_class or s.class_name == wanted_class]
    shown = [s for s in in_class if not wanted_status or _matches(s, wanted_status)]
    if search:
        folded = fold(search)
        shown = [
            s
            for s in shown
            if folded in fold(f"{s.last_name} {s.first_name} {s.first_name} {s.last_name}")
            or folded == fold(s.student_id)
        ]
    return ui.render(
        request,
        "suivi.html",
        {
            "statuses": shown,
            "total": len(statuses),
            "classes": classes,
            "filters": FILTER_LABELS,
            "counts": _counts(in_class),
            "wanted_class": wanted_class,
            "wanted_status": wanted_status,
            "search": search,
            "filter_query": lambda code: urlencode(
                {k: v for k, v in (("classe", wanted_class), ("statut", code)) if v}
            ),
            "page": "suivi",
        },
    )


# ------------------------------------------------------------------ stagiaire


@dataclass(frozen=True)
class Download:
    """A file of the student offered for download, if it is there."""

    label: str
    file: str  # relative to the campaign folder
    name: str  # the name it is downloaded under
    available: bool


def _find_status(statuses: list[StudentStatus], student_id: str) -> StudentStatus:
    for status in statuses:
        if status.student_id == student_id:
            return status
    raise HTTPException(404, f"Aucun stagiaire d'identifiant « {student_id} » dans la campagne.")


def _buttons(return_id: int) -> str:
    """How to decide on a return « à confirmer » here: its buttons on the student's page."""
    return (
        f"confirmez-le ou rejetez-le avec les boutons « Confirmer le n° {return_id} » ou "
        f"« Rejeter le n° {return_id} » (Retours reçus, plus bas)"
    )


def student_page(request: Request) -> Response:
    """One student: identity, status, problems, returns, notes and their history, files."""
    ui = ui_of(request)
    student_id = request.path_params["student_id"]
    with ui.reading() as campaign:
        statuses = tracking.student_statuses(campaign.db, student_id, how_to_decide=_buttons)
        status = _find_status(statuses, student_id)
        returns = state.student_returns(campaign.db, student_id)
        note = state.teacher_notes(campaign.db).get(student_id, state.TeacherNote(student_id))
        history = state.teacher_note_history(campaign.db, student_id)
        reports = state.student_reports(campaign.db, student_id)
    counted = next((r for r in returns if r.counts), None)
    downloads = [
        Download(label, file, name, security.campaign_file(ui.root, file) is not None)
        for label, file, name in (
            ("Classeur envoyé au tuteur", status.workbook_file, _base(status.workbook_file)),
            (
                "Classeur retourné (celui qui compte)",
                status.return_file,
                counted.file_name if counted else _base(status.return_file),
            ),
            *((f"Bilan ({_kind(r.file)})", r.file, _base(r.file)) for r in reports),
        )
        if file
    ]
    return ui.render(
        request,
        "stagiaire.html",
        {
            "status": status,
            "student": status.student,
            "returns": returns,
            "counted": counted,
            "problems": counted.problems if counted else [],
            "note": note,
            "history": history,
            "note_labels": NOTE_LABELS,
            "downloads": downloads,
            "notices": ui.notices.take(request.query_params.get("avis")),
            "status_labels": STATUS_LABELS,
            "tracking": ui.access.refresher,
            "page": "suivi",
        },
    )


def _base(file: str) -> str:
    return file.rsplit("/", 1)[-1]


def _kind(file: str) -> str:
    return {".docx": "Word", ".pdf": "PDF"}.get(file[file.rfind(".") :].lower(), "fichier")


def _back_to(ui: Ui, student_id: str, notices: list[tuple[str, str]], anchor: str) -> Response:
    key = ui.notices.add(notices)
    url = f"/stagiaire/{student_id}?{urlencode({'avis': key})}#{anchor}"
    return RedirectResponse(url, status_code=303)


async def save_notes(request: Request) -> Response:
    """Store the team's appreciation and the teacher's notes typed in the form."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    student_id = request.path_params["student_id"]
    typed = {name: str(form.get(name) or "") for name in NOTE_LABELS}
    shown = {name: str(form.get(f"shown_{name}") or "") for name in NOTE_LABELS}

    def work() -> list[tuple[str, str]]:
        with ui.writing() as campaign:
            db = campaign.db
            if not state.student_exists(db, student_id):
                raise HTTPException(
                    404, f"Aucun stagiaire d'identifiant « {student_id} » dans la campagne."
                )
            notices: list[tuple[str, str]] = []
            changed = False
            with ui.access.statuses.kept_across(), state.transaction(db):
                before = state.teacher_notes(db).get(student_id, state.TeacherNote(student_id))
                for name, text in typed.items():
                    text = tracking.clean_text(text)
                    was_shown = tracking.clean_text(shown[name])
                    if text == was_shown:
                        continue  # not edited in the form: whatever is stored stays
                    current = getattr(before, name)
                    # changed elsewhere (suivi.xlsx, another tab) since the form was shown
                    conflict = current not in (was_shown, text)
                    kwargs = {name: text}
                    if state.set_teacher_note(
                        db, student_id, source=SOURCE, conflict=conflict, **kwargs
                    ):
                        changed = True
                        if conflict:
                            notices.append(
                                (
                                    "attention",
                                    f"« {NOTE_LABELS[name]} » avait été modifié ailleurs "
                                    "depuis l'ouverture de la page ; votre texte est gardé, "
                                    "l'autre est conservé dans l'historique ci-dessous.",
                                )
                            )
        if not changed:
            return [("ok", "Rien n'a changé : aucun texte modifié.")]
        ui.access.refresher.schedule()
        notices.insert(0, ("ok", "Appréciation et notes enregistrées."))
        return notices

    notices = await run_in_threadpool(work)
    return _back_to(ui, student_id, notices, "notes")


SOURCE = "ui"  # the `source` of the notes typed in the interface
DECISIONS = {"confirmer": state.STANDING_CONFIRMED, "rejeter": state.STANDING_REJECTED}


async def decide(request: Request) -> Response:
    """Confirm or reject a return matched « à confirmer » (`state.decide_return`)."""
    ui = ui_of(request)
    form = await security.checked_form(request, ui.secrets.csrf)
    student_id = request.path_params["student_id"]
    return_id: int = request.path_params["return_id"]
    decision = DECISIONS.get(str(form.get("decision") or ""))
    if decision is None:
        raise HTTPException(400, "Décision inconnue : choisissez « confirmer » ou « rejeter ».")

    def work() -> list[tuple[str, str]]:
        with ui.writing() as campaign:
            db = campaign.db
            found = state.return_standing(db, return_id)
            if found is None or found.student.student_id != student_id:
                raise HTTPException(
                    404, f"Aucun retour n° {return_id} à décider pour ce stagiaire."
                )
            before, after = state.decide_return(db, return_id, decision, who())
            counted = state.counted_return(db, student_id)
            label = state.STANDING_LABELS[decision]
            if before.standing == decision:
                return [("ok", f"Le retour n° {return_id} était déjà {label} : rien à faire.")]
            notices = [
                (
                    "ok",
                    f"Retour n° {return_id} (« {after.file_name} ») {label} par "
                    f"{after.decided_by} le {after.decided_at}.",
                ),
                ("ok", _counted_text(counted, return_id)),
            ]
        ui.access.refresher.schedule()
        return notices

    notices = await run_in_threadpool(work)
    return _back_to(ui, student_id, notices, "retours")


def _counted_text(counted: state.ReturnStanding | None, decided: int) -> str:
    if counted is None:
        return "Aucun retour ne compte plus pour ce stagiaire."
    status = STATUS_LABELS.get(counted.status, counted.status)
    if counted.return_id == decided:
        return (
            f"Il compte désormais pour ce stagiaire ({status}). Refaites les bilans "
            "(page Bilans) pour qu'ils en tiennent compte."
        )
    standing = state.STANDING_LABELS[counted.standing]
    return (
        f"Le retour qui compte pour ce stagiaire : n° {counted.return_id} "
        f"(« {counted.file_name} », {standing}, {status}). Refaites les bilans "
        "(page Bilans) pour qu'ils en tiennent compte."
    )


# ------------------------------------------------------------------ files


def download(request: Request) -> Response:
    """A file of the campaign folder (see `security.campaign_file`), as an attachment."""
    ui = ui_of(request)
    relative = request.path_params["path"]
    found = security.campaign_file(ui.root, relative)
    if found is None:
        raise HTTPException(404, "Ce fichier n'est pas disponible.")
    media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    return FileResponse(
        found, media_type=media_type, filename=_shown_name(request.query_params.get("nom"), found)
    )


def _shown_name(wanted: str | None, found: Path) -> str:
    """The name a file is saved under: `wanted` (a return's original name, as the tutor
    sent it) when it is a plain file name with the same extension, else its own name."""
    if not wanted:
        return found.name
    name = wanted.replace("\\", "/").rsplit("/", 1)[-1].strip()
    clean = "".join(ch for ch in name if ch.isprintable())
    if clean in ("", ".", "..") or Path(clean).suffix.lower() != found.suffix.lower():
        return found.name
    return clean
