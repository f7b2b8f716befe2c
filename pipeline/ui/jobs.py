"""Long operations of the interface (generate, collect, reports, archive…), run off the
request thread with a progress the page polls.

A view hands `Jobs.start` a title and a `work(campaign, progress) -> Outcome` function
that calls one library step (the same the CLI calls); `start` returns once the work
holds the campaign's run lock, or raises the French « Une autre commande… »
`GrilleError` when a command, another tab or another job already works: the view then
shows it like any refusal. The job page (`/travail/{id}`) shows the progress, then the
outcome: French lines and links to what was made.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from pipeline import state, tracking
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError, problem_text, storage_problem
from pipeline.ui.access import CampaignAccess

JOBS_KEPT = 50
START_WAIT = 30.0  # seconds `start` waits for the work to hold (or be refused) the lock


@dataclass
class Outcome:
    """What a finished job says: (kind, French text) lines, kind "ok" or "attention",
    and (label, address) links to what it made or where to go next."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    tracking_written: bool = False  # suivi.xlsx rewritten by the job (`rewrite_tracking`)

    def ok(self, text: str) -> Outcome:
        self.lines.append(("ok", text))
        return self

    def attention(self, text: str) -> Outcome:
        self.lines.append(("attention", text))
        return self

    def link(self, label: str, url: str) -> Outcome:
        self.links.append((label, url))
        return self

    def rewrite_tracking(self, campaign: Campaign) -> Outcome:
        """Rewrite suivi.xlsx, then back the database up, as a command does at its end
        (its warnings become lines): the interface's later rewrite is then not needed.
        A suivi.xlsx that cannot be written (open in Excel…) is a line too, and the
        interface's own rewrite tries again later (`TrackingRefresher`)."""
        workspace = campaign.workspace
        try:
            written = tracking.write_tracking(workspace.tracking_path, campaign.db)
        except (GrilleError, OSError, sqlite3.Error) as exc:
            reason = problem_text(exc, workspace.output_dir)
            return self.attention(
                f"Attention — suivi non mis à jour : {reason} Les retours sont enregistrés ; "
                "l'interface essaiera de nouveau de réécrire output/suivi.xlsx dans un instant."
            )
        for warning in written.warnings(workspace.root):
            self.attention(warning)
        try:
            state.backup(workspace.db_path, workspace.backups_dir)
        except (GrilleError, OSError, sqlite3.Error) as exc:
            reason = problem_text(exc, workspace.backups_dir)
            self.attention(f"Attention — sauvegarde de la base non faite : {reason}")
        self.tracking_written = True
        return self


class Progress:
    """Handed to the work: fits the steps' callbacks, `progress(done, total)` as well as
    `advance(n)` for those that count by increments."""

    def __init__(self, job: Job):
        self._job = job

    def __call__(self, done: int, total: int) -> None:
        with self._job.lock:
            self._job.done, self._job.total = done, total

    def advance(self, count: int = 1) -> None:
        with self._job.lock:
            self._job.done += count

    def expect(self, total: int, label: str = "") -> None:
        """Announce `total` units of work (and what is being done, in French)."""
        with self._job.lock:
            self._job.done, self._job.total = 0, total
            if label:
                self._job.label = label


RUNNING, DONE, FAILED = "en_cours", "termine", "echoue"


@dataclass
class Job:
    """One long operation and what the page shows of it."""

    job_id: str
    title: str  # French, e.g. « Fabrication des classeurs »
    back: str  # the page to go back to once it ended
    label: str = ""  # what is being done right now
    done: int = 0
    total: int = 0
    state: str = RUNNING
    outcome: Outcome = field(default_factory=Outcome)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def percent(self) -> int | None:
        """The share done, None while the total is unknown."""
        with self.lock:
            return int(100 * self.done / self.total) if self.total else None

    @property
    def seconds(self) -> int:
        return int((self.ended or time.monotonic()) - self.started)


Work = Callable[[Campaign, Progress], Outcome]


class Jobs:
    """The jobs of one interface; one at a time, since each holds the run lock."""

    def __init__(self, access: CampaignAccess, on_bug: Callable[[list[str]], str] | None = None):
        self._access = access
        self._on_bug = on_bug  # writes a crash log, returns its path ("" when it could not)
        self._jobs: dict[str, Job] = {}
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def current(self) -> Job | None:
        """The job still running, if any."""
        with self._lock:
            return next((job for job in self._jobs.values() if job.running), None)

    def start(self, title: str, work: Work, *, back: str = "/") -> Job:
        """Run `work` on a thread of its own, under the run lock; the job once it holds it.
        A command or job already at work: the French refusal (`GrilleError`)."""
        running = self.current()
        if running is not None:
            raise GrilleError(
                f"Une autre opération est en cours dans l'interface : « {running.title} ». "
                "Attendez qu'elle finisse, puis recommencez."
            )
        with self._lock:
            job = Job(str(next(self._serial)), title, back)
            self._jobs[job.job_id] = job
            for old in list(self._jobs)[:-JOBS_KEPT]:
                if not self._jobs[old].running:
                    del self._jobs[old]
        holding = threading.Event()
        refusal: list[GrilleError] = []
        thread = threading.Thread(
            target=self._run, args=(job, work, holding, refusal), name=f"grille-job-{job.job_id}"
        )
        thread.daemon = True
        thread.start()
        holding.wait(START_WAIT)
        if refusal:
            with self._lock:
                self._jobs.pop(job.job_id, None)
            raise refusal[0]
        return job

    def _run(
        self, job: Job, work: Work, holding: threading.Event, refusal: list[GrilleError]
    ) -> None:
        try:
            with ExitStack() as held:
                try:
                    campaign = held.enter_context(self._access.writing())
                except GrilleError as exc:
                    refusal.append(exc)
                    job.state, job.ended = FAILED, time.monotonic()
                    return
                finally:
                    holding.set()
                outcome = work(campaign, Progress(job))
                if outcome.tracking_written:  # under the lock: no note saved in between
                    self._access.refresher.written()
            job.outcome, job.state = outcome, DONE  # once the lock is released
        except GrilleError as exc:
            job.outcome, job.state = Outcome().attention(str(exc)), FAILED
        except (OSError, sqlite3.Error) as exc:
            job.outcome, job.state = Outcome().attention(self._problem(job, exc)), FAILED
        except Exception as exc:  # a bug: logged, named, never a traceback on the page
            job.outcome, job.state = Outcome().attention(self._problem(job, exc)), FAILED
        finally:
            job.ended = time.monotonic()
            if (job.state != FAILED or not refusal) and not job.outcome.tracking_written:
                self._access.refresher.schedule()

    def _problem(self, job: Job, exc: BaseException) -> str:
        storage = storage_problem(exc, self._access.workspace.output_dir)
        if storage is not None:
            return storage
        log = self._on_bug(["ui", "travail", job.title]) if self._on_bug else ""
        where = f" Détails techniques dans {log} : joignez ce fichier à votre signalement."
        return (
            "Erreur inattendue : l'opération s'est arrêtée. Ce qui était déjà enregistré "
            "est conservé." + (where if log else "")
        )
