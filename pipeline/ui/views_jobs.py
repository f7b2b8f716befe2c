"""The page of a long operation: its progress while it runs (polled by htmx every
second, or reloaded by the browser without JavaScript), then what it did."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.ui.app import ui_of
from pipeline.ui.jobs import Job


def _job(request: Request) -> Job:
    job = ui_of(request).jobs.get(request.path_params["job_id"])
    if job is None:
        raise HTTPException(
            404,
            "Cette opération n'est plus connue de l'interface (elle a été redémarrée) : "
            "son résultat est dans le suivi.",
        )
    return job


def job_page(request: Request) -> Response:
    """The whole page of one operation, under the navigation item of the page it came from."""
    job = _job(request)
    page = job.back.split("?")[0].split("#")[0].strip("/").split("/")[0]
    return ui_of(request).render(request, "travail.html", {"job": job, "page": page})


def job_state(request: Request) -> Response:
    """The part of the page that changes: progress, then the outcome (htmx fragment)."""
    job = _job(request)
    return ui_of(request).render(request, "_travail_etat.html", {"job": job})


ROUTES = [
    Route("/travail/{job_id}", job_page, name="travail"),
    Route("/travail/{job_id}/etat", job_state, name="travail_etat"),
]
