"""How the interface reaches its campaign: reads, writes under the run lock, the student
statuses kept between requests, and suivi.xlsx rewritten off the request thread.

- Each request opens the campaign (`Campaign.open`: configuration, key and database
  checked) and closes it after: SQLite connections stay on their thread.
- A request that writes takes, like a CLI command, the campaign's run lock
  (`state.run_lock`): while a command works, it gets the French « Une autre commande
  grille travaille déjà… ». Inside the server, writes also take one thread lock, so a
  write waits for the interface's own suivi.xlsx rewrite instead of being refused.
- `tracking.student_statuses` reads every student: its result is kept and read again
  only when the database changed (`PRAGMA data_version`, which sees every commit made by
  another connection, CLI included); only the students whose rows changed are then
  decoded again (`tracking.KeptStatuses`).
- Rewriting suivi.xlsx takes seconds for 1,000 students: after the interface's writes it
  is done by a background thread, once the teacher has paused (`TrackingRefresher`), then
  the database is backed up, as a command does at its end; any rewrite still due is done
  when the interface stops (`flush`). A job that collects returns does both at its end
  instead, as `grille collect` (`jobs.Outcome.rewrite_tracking`). Until then the text is
  safe in the database, and what she types meanwhile in suivi.xlsx is read back as usual:
  nothing is lost.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline import state, tracking
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError, problem_text
from pipeline.settings import Workspace
from pipeline.tracking import StudentStatus

WRITE_WAIT = 120.0  # seconds a write waits for the interface's own suivi.xlsx rewrite
TRACKING_DELAY = 10.0  # seconds of quiet after a write before suivi.xlsx is rewritten
_NEVER = float("inf")  # a rewrite due, but only at the next write or at the stop


class CampaignAccess:
    """One campaign folder, as the requests of the interface reach it."""

    def __init__(
        self,
        workspace: Workspace,
        tracking_delay: float = TRACKING_DELAY,
        warm_interval: float | None = None,
    ):
        self.workspace = workspace
        self.warm_interval = warm_interval  # statuses read ahead (`StatusCache.warm`), or not
        self.tracking_delay = tracking_delay
        self._write_lock = threading.Lock()
        self.statuses = StatusCache(workspace.db_path)
        if warm_interval is not None:
            self.statuses.warm(warm_interval)
        self.refresher = TrackingRefresher(self, tracking_delay)

    @property
    def has_campaign(self) -> bool:
        """False while the folder has no grille.toml yet (the interface offers to create it)."""
        return self.workspace.config_path.is_file()

    @contextmanager
    def reading(self) -> Iterator[Campaign]:
        """The campaign, opened for one request that only reads."""
        opened = Campaign.open(self.workspace)
        try:
            yield opened
        finally:
            opened.close()

    @contextmanager
    def writing(self) -> Iterator[Campaign]:
        """The campaign, opened for one request that writes, under the run lock shared with
        the CLI. Another command at work: a French `GrilleError` (« Une autre commande… »)."""
        if not self._write_lock.acquire(timeout=WRITE_WAIT):
            raise GrilleError(
                "L'interface est encore en train de mettre à jour output/suivi.xlsx : "
                "réessayez dans un instant. Rien n'a été enregistré."
            )
        try:
            with state.run_lock(self.workspace.output_dir):
                opened = Campaign.open(self.workspace)
                try:
                    yield opened
                finally:
                    opened.close()
        finally:
            self._write_lock.release()

    def close(self) -> None:
        """Stop the background rewrite (without doing it) and close the kept connection."""
        self.refresher.stop()
        self.statuses.close()


class StatusCache:
    """`tracking.student_statuses`, computed again only when the database changed.

    A connection of its own, kept open, asks SQLite whether another connection committed
    since the last reading (`PRAGMA data_version`); a database file replaced on disk
    (another inode) is reopened.
    """

    def __init__(self, db_path: Path):
        self._path = db_path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None
        self._version: int | None = None
        self._statuses: list[StudentStatus] = []
        self._kept = tracking.KeptStatuses()  # only the students whose rows changed are read
        self._stop = threading.Event()
        self._warmer: threading.Thread | None = None

    def warm(self, interval: float) -> None:
        """Read the statuses again on a thread of its own, at most every `interval` seconds,
        as soon as the database changed (a command, a job): the next page finds them ready
        instead of computing them."""

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.get()
                except (sqlite3.Error, OSError, GrilleError):
                    continue  # no database yet, or one being replaced: the next turn

        if self._warmer is None:
            self._warmer = threading.Thread(target=run, name="grille-statuts", daemon=True)
            self._warmer.start()

    def get(self) -> list[StudentStatus]:
        """Every student's status (shared: do not modify), as the database is now."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN")  # one snapshot for the version and every query
            try:
                version = self._data_version()
                if version != self._version:
                    self._statuses = tracking.student_statuses(db, kept=self._kept)
                    self._version = version
            finally:
                db.execute("COMMIT")
            return self._statuses

    @contextmanager
    def kept_across(self) -> Iterator[None]:
        """Around a write that changes no status (the teacher's notes), made under the run
        lock: statuses that were up to date before it stay so after it, instead of being
        read again at the next page.

        Only a write that ignores the run lock, committed during this one, could be
        missed; grille's commands that write all take it.
        """
        fresh = self.fresh()
        yield
        if fresh:
            with self._lock:
                if self._db is not None:
                    self._version = self._data_version()

    def fresh(self) -> bool:
        """True when the statuses kept are those of the database as it is now."""
        with self._lock:
            return self._db is not None and self._version == self._data_version()

    def _data_version(self) -> int:
        assert self._db is not None
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _connection(self) -> sqlite3.Connection:
        stat = os.stat(self._path)
        identity = (stat.st_dev, stat.st_ino)
        if self._db is not None and identity != self._file:
            self._db.close()
            self._db = None
        if self._db is None:
            db = sqlite3.connect(
                self._path,
                timeout=30,
                isolation_level=None,
                check_same_thread=False,  # used under `_lock`, by one thread at a time
            )
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA query_only = ON")
            self._db, self._file, self._version = db, identity, None
        return self._db

    def close(self) -> None:
        self._stop.set()
        if self._warmer is not None:
            self._warmer.join()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class TrackingRefresher:
    """Rewrites suivi.xlsx (then backs the database up) a few seconds after the last write
    of the interface, on a thread of its own; `flush` does what is due at once."""

    def __init__(self, access: CampaignAccess, delay: float):
        self._access = access
        self._delay = delay
        self._condition = threading.Condition()
        self._due: float | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.problem = ""  # French: why the last rewrite failed ("" when it worked)
        self.warnings: list[str] = []  # of the last rewrite (a file kept aside, conflicts)

    @property
    def pending(self) -> bool:
        with self._condition:
            return self._due is not None

    def schedule(self) -> None:
        """Rewrite suivi.xlsx once the interface has had no write for `delay` seconds."""
        with self._condition:
            if self._stopped:
                return
            self._due = time.monotonic() + self._delay
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="grille-suivi", daemon=True)
                self._thread.start()
            self._condition.notify_all()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopped and (self._due is None or self._due > time.monotonic()):
                    due = self._due
                    self._condition.wait(
                        None if due is None or due == _NEVER else due - time.monotonic()
                    )
                if self._stopped:
                    return
                self._due = None
            self._refresh()

    def _refresh(self) -> None:
        ws = self._access.workspace
        try:
            with self._access.writing() as campaign:
                with self._access.statuses.kept_across():  # it writes notes only
                    outcome = tracking.write_tracking(ws.tracking_path, campaign.db)
                state.backup(ws.db_path, ws.backups_dir)
        except (GrilleError, OSError, sqlite3.Error) as exc:
            self.problem = problem_text(exc, ws.output_dir)
            with self._condition:  # done again at the next write, or when it stops
                if self._due is None:
                    self._due = _NEVER
            return
        self.problem = ""
        self.warnings = outcome.warnings(ws.root)

    def written(self) -> None:
        """suivi.xlsx was just rewritten and the database backed up (by a job, under the
        run lock): no rewrite is due any more."""
        with self._condition:
            self._due = None
        self.problem = ""

    def stop(self) -> None:
        """End the thread; a rewrite due is left undone (see `flush`)."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def flush(self, announce: Callable[[], None] | None = None) -> bool:
        """Stop the thread and do the rewrite still due, now; False when it failed
        (`problem` says why). `announce` is called first when there is one to do."""
        with self._condition:
            due = self._due is not None
        self.stop()
        if not due:
            return True
        if announce is not None:
            announce()
        with self._condition:
            self._due = None
        self._refresh()
        return not self.problem
