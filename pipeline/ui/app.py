"""The web application of `grille ui`: routes, templates, errors as French pages.

`create_app` returns the ASGI application for one campaign folder, wrapped in the
`security.Guard` (host, secret token then cookie, origin, body size, headers). How the
requests reach the campaign (run lock, statuses kept, suivi.xlsx rewritten in the
background) is in `pipeline.ui.access`.
"""

from __future__ import annotations

import getpass
import itertools
import secrets as secret_tokens
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.campaign import Campaign
from pipeline.errors import GrilleError, storage_problem
from pipeline.settings import Workspace
from pipeline.tracking import StudentStatus
from pipeline.ui import security
from pipeline.ui.access import TRACKING_DELAY, CampaignAccess
from pipeline.ui.jobs import Jobs
from pipeline.ui.wording import in_interface

HERE = Path(__file__).resolve().parent
NOTICES_KEPT = 200


@dataclass
class Notices:
    """Messages shown once, on the page a form redirects to (Post/Redirect/Get)."""

    _items: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, items: list[tuple[str, str]]) -> str:
        """Keep `items` ((kind, French text): kind "ok" or "attention"); their key."""
        with self._lock:
            key = str(next(self._serial))
            self._items[key] = items
            for old in list(self._items)[:-NOTICES_KEPT]:
                del self._items[old]
            return key

    def take(self, key: str | None) -> list[tuple[str, str]]:
        with self._lock:
            return self._items.pop(key, []) if key else []


@dataclass
class Ui:
    """What every view needs: the campaign folder, the secrets, the templates."""

    access: CampaignAccess
    secrets: security.Secrets
    port: int
    templates: Jinja2Templates
    max_body: int = security.MAX_BODY
    upload_max: int = security.UPLOAD_MAX
    notices: Notices = field(default_factory=Notices)
    jobs: Jobs = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = Jobs(self.access, on_bug=_crash_log(self.access.workspace.root))

    @property
    def workspace(self) -> Workspace:
        return self.access.workspace

    @property
    def root(self) -> Path:
        return self.workspace.root

    @property
    def reading(self) -> Callable[[], AbstractContextManager[Campaign]]:
        return self.access.reading

    @property
    def writing(self) -> Callable[[], AbstractContextManager[Campaign]]:
        return self.access.writing

    def switch(self, workspace: Workspace) -> None:
        """Work on the campaign `workspace` from now on (« Ouvrir une campagne »): the
        current one's suivi.xlsx rewritten if due, then closed; a new CSRF token, so that a
        form shown for the previous campaign (another tab) is refused, never applied to
        this one. Refused (`GrilleError`) while a long operation runs."""
        running = self.jobs.current()
        if running is not None:
            raise GrilleError(
                f"Une opération est en cours : « {running.title} ». Attendez qu'elle finisse "
                "avant d'ouvrir une autre campagne."
            )
        old = self.access
        old.refresher.flush()
        old.close()
        self.access = CampaignAccess(workspace, old.tracking_delay, old.warm_interval)
        self.jobs = Jobs(self.access, on_bug=_crash_log(workspace.root))
        self.secrets = replace(self.secrets, csrf=secret_tokens.token_urlsafe(32))
        self.templates.env.globals["csrf_token"] = self.secrets.csrf

    def statuses(self) -> list[StudentStatus]:
        """Every student's status (`tracking.student_statuses`), kept between requests."""
        return self.access.statuses.get()

    def render(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)


def who() -> str:
    """The login of the teacher running the interface, recorded with her decisions."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "inconnu"


def download_url(relative: str, name: str = "") -> str:
    """The guarded download address of a file of the campaign (POSIX path from its root),
    saved as `name` when given (a return's original name)."""
    url = "/fichier/" + quote(relative, safe="/")
    return f"{url}?{urlencode({'nom': name})}" if name and name != relative.rsplit("/")[-1] else url


def _templates(secrets: security.Secrets) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["csrf_field"] = security.CSRF_FIELD
    env.globals["csrf_token"] = secrets.csrf
    env.filters["download_url"] = download_url
    env.filters["day"] = _day
    env.filters["interface"] = in_interface
    return Jinja2Templates(env=env)


def _day(stamp: str) -> str:
    """« 2027-03-15 10:20:00 » → « 15/03/2027 à 10:20 »; a date alone → « 15/03/2027 »."""
    if not stamp:
        return ""
    day, _, clock = stamp.partition(" ")
    parts = day.split("-")
    if len(parts) != 3:
        return stamp
    shown = f"{parts[2]}/{parts[1]}/{parts[0]}"
    return f"{shown} à {clock[:5]}" if clock else shown


def _crash_log(root: Path) -> Callable[[list[str]], str]:
    def write(argv: list[str]) -> str:
        from pipeline.cli import write_crash_log

        log = write_crash_log(root, argv)
        return str(log) if log else ""

    return write


def ui_of(request: Request) -> Ui:
    ui: Ui = request.app.state.ui
    return ui


# ------------------------------------------------------------------ no campaign yet

WITHOUT_CAMPAIGN = ("/campagne", "/campagne/creer", "/campagne/ouvrir")


class CampaignRequired:
    """While the folder has no campaign (grille.toml), every page but the campaign's
    creation leads to it (`/campagne` explains why)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and path not in WITHOUT_CAMPAIGN
            and not path.startswith("/static/")
            and not scope["app"].state.ui.access.has_campaign
        ):
            await RedirectResponse("/campagne", status_code=303)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------ errors as pages


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    try:
        return ui_of(request).render(
            request, "erreur.html", {"title": title, "message": message}, status
        )
    except Exception:  # the templates themselves failed: a bare page still says it
        return HTMLResponse(security.refusal_page(title, message), status)


async def _grille_error(request: Request, exc: Exception) -> Response:
    return _error_page(request, 409, "Action impossible", str(exc))


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    return _error_page(request, 403, security.REFUSED_TITLE, security.BAD_CSRF)


async def _too_large(request: Request, exc: Exception) -> Response:
    ui = ui_of(request)
    upload = security.is_upload(request.headers.get("content-type", ""))
    limit = security.human_size(
        request.scope.get(security.BODY_LIMIT) or (ui.upload_max if upload else ui.max_body)
    )
    return _error_page(
        request, 413, "Envoi trop volumineux", security.TOO_LARGE.format(limit=limit)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = exc.detail if exc.detail != "Not Found" else "Cette page n'existe pas."
        return _error_page(request, 404, "Page introuvable", message)
    if exc.status_code == 405:
        return _error_page(request, 405, "Action impossible", "Cette adresse ne fait pas cela.")
    return _error_page(request, exc.status_code, "Requête refusée", str(exc.detail))


async def _storage_or_bug(request: Request, exc: Exception) -> Response:
    """A full disk or a read-only folder named as such; anything else is a bug: logged."""
    ui = ui_of(request)
    storage = storage_problem(exc, ui.workspace.output_dir)
    if storage is not None:
        return _error_page(request, 503, "Écriture impossible", storage)
    from pipeline.cli import write_crash_log

    log = write_crash_log(ui.root, ["ui", request.method, request.url.path])
    where = (
        f" Détails techniques dans {log} : joignez ce fichier à votre signalement." if log else ""
    )
    return _error_page(
        request,
        500,
        "Erreur inattendue",
        f"{security.UNEXPECTED}{where}",
    )


def create_app(
    workspace: Workspace,
    secrets: security.Secrets,
    port: int,
    *,
    max_body: int = security.MAX_BODY,
    upload_max: int = security.UPLOAD_MAX,
    tracking_delay: float = TRACKING_DELAY,
    warm_interval: float | None = None,
) -> security.Guard:
    """The interface of the campaign `workspace`, answering on 127.0.0.1:`port` only
    (`interface_of` gives its `Ui`: stop it with `ui.access.close()` or `flush`);
    `warm_interval`: read the statuses ahead after each change (`StatusCache.warm`)."""
    from pipeline.ui import views, views_closing, views_jobs, views_mail, views_returns, views_start

    app = Starlette(
        routes=[
            Route("/", views.home, name="home"),
            Route("/suivi", views.tracking_page, name="suivi"),
            Route("/stagiaire/{student_id}", views.student_page, name="stagiaire"),
            Route(
                "/stagiaire/{student_id}/notes",
                views.save_notes,
                methods=["POST"],
                name="notes",
            ),
            Route(
                "/stagiaire/{student_id}/retours/{return_id:int}",
                views.decide,
                methods=["POST"],
                name="decision",
            ),
            Route("/fichier/{path:path}", views.download, name="fichier"),
            *views_jobs.ROUTES,
            *views_start.ROUTES,
            *views_mail.ROUTES,
            *views_returns.ROUTES,
            *views_closing.ROUTES,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            GrilleError: _grille_error,
            security.CsrfRefused: _csrf_refused,
            security.BodyTooLarge: _too_large,
            HTTPException: _http_error,
            OSError: _storage_or_bug,
            sqlite3.Error: _storage_or_bug,
            Exception: _storage_or_bug,
        },
        middleware=[Middleware(CampaignRequired)],
    )
    access = CampaignAccess(workspace, tracking_delay, warm_interval)
    app.state.ui = Ui(access, secrets, port, _templates(secrets), max_body, upload_max=upload_max)
    guard = security.Guard(app, secrets, port, max_body, upload_max)
    guard.upload_limits.update(views_start.UPLOAD_LIMITS)
    guard.upload_limits.update(views_returns.UPLOAD_LIMITS)
    return guard


def interface_of(app: security.Guard) -> Ui:
    """The `Ui` of an application made by `create_app`."""
    inner = app.app
    assert isinstance(inner, Starlette)
    ui: Ui = inner.state.ui
    return ui
