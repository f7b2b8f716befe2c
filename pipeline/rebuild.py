"""Rebuild a lost campaign database from the campaign's own files (`grille rebuild`).

When `output/grille.sqlite` is gone, blank or damaged and no backup is left, what grille
made and received is still on disk, and each piece says what it is:

- `output/classeurs/`: each workbook carries its signed hidden identity (campaign,
  student, grid). With the roster, the workbooks give back the students, their class
  folders and the workbook rows. A workbook that `generate` would make again identical
  (its save time aside) gets the roster line's fingerprint and the template's digest, so
  that `generate` leaves it alone; any other is made again by the next `generate`.
- `output/retours/`: every return, kept under its SHA-256, is collected again as `collect`
  does (recognised, verified, validated), in the order it first came and with that day
  (the file's time).
- `output/envoi/*.eml` (messages written for the teacher to send) and
  `output/envoi/envoyes/*.eml` (copies of those sent by the server): the workbooks attached
  give back what was delivered, so that nobody is mailed again, and the reminders.
  `output/suivi.xlsx`, written by grille after every command, adds what the files cannot
  tell: the messages the teacher marked as sent, and those whose copy a later message to
  the same tutor replaced.
- `output/rapports/`: a report that still holds grille's own marks (never saved again by
  Word or LibreOffice) is recorded as grille's; one edited by hand stays unrecorded, as it
  was, so the next `report` writes beside it.

Lost for good: the teacher's decisions on returns « à confirmer », the uncertain flag of
sendings, the mailbox messages already read by `collect --imap` (read again, their returns
are found already collected) and the archives' recorded digests. The teacher's notes come
back from suivi.xlsx with the next rewrite of it. The new database is built in a temp file
beside the old one, then renamed into place: an interrupted rebuild changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException, ElementTree
from openpyxl import load_workbook

from pipeline import collect, state
from pipeline.campaign import KEY_NAME, Campaign, KeyChangedError, rewrite_tracking
from pipeline.errors import GridError, GrilleError, french_os_error
from pipeline.grid import GRIDS_DIR, Grid, grid_source, load_grid, shipped_grids
from pipeline.kinds import Channel, Match, Status
from pipeline.mail import OUTBOX, REMIND, SEND, SENT_COPIES
from pipeline.report_files import bare_report_stem, report_stem
from pipeline.roster import RosterResult, Student, read_rosters
from pipeline.safe_zip import SafeZip, UnsafeFile
from pipeline.settings import CampaignConfig, Workspace, key_fingerprint
from pipeline.text import fold
from pipeline.validation import STATUS_LABELS
from pipeline.workbook import (
    META_KEYS,
    WorkbookStamper,
    build_template,
    identity_values,
    plan_layout,
    read_identity,
    template_bytes,
    verify_identity,
)
from pipeline.xlsx import XlsxPackage

SAVE_TIME_PART = "docProps/core.xml"  # the only part of a workbook that differs between runs
_PERIOD = re.compile(r"du (\d{2}/\d{2}/\d{4}) au (\d{2}/\d{2}/\d{4})")
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_CORE = {
    "cp": "http://schemas.openxmlformats.org/package/2006/metadata/core-properties",
    "dcterms": "http://purl.org/dc/terms/",
}
_SLACK = timedelta(seconds=2)
_MAX_MESSAGE = 200 * 1024 * 1024  # a message to a tutor: his workbooks, a few MB at most


@dataclass
class RebuildResult:
    """What `rebuild` put back in the database, and what it could not (French texts)."""

    students: int = 0
    workbooks: int = 0
    sent: int = 0  # students whose latest workbook left (server, or sent by the teacher)
    prepared: int = 0  # … only written to output/envoi/, not marked as sent
    reminders: int = 0  # reminder rows (one per student reminded)
    returns: int = 0  # returns recognised (signed or « à confirmer »)
    to_confirm: int = 0  # … of which matched « à confirmer », awaiting a decision again
    refused: int = 0  # returns refused, as they were when first collected
    reports: int = 0  # reports and PDFs recorded as grille's
    not_in_roster: list[str] = field(default_factory=list)  # rebuilt « retiré de la liste »
    without_workbook: list[str] = field(default_factory=list)  # roster students: to generate
    to_generate: list[tuple[str, str]] = field(default_factory=list)  # (student, why)
    not_sent: list[str] = field(default_factory=list)  # a workbook, no trace of a message
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why): not used
    edited_reports: list[str] = field(default_factory=list)  # left unrecorded
    archives: int = 0  # archives on disk, not recorded again
    mailbox_read: bool = False  # `collect --imap` had read messages (output/courrier/)
    replaced: state.Restored | None = None  # what became of the database replaced
    # `rebuild_step` only: the roster read (nothing is rebuilt when it has errors or no
    # student), the students whose notes suivi.xlsx gave back, what rewriting it said
    roster: RosterResult = field(default_factory=RosterResult)
    notes: int = 0
    tracking_warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Workbook:
    """A workbook of this campaign found in `output/classeurs/`, its signature verified."""

    path: Path
    relative: str
    mtime_ns: int
    sha256: str
    identity: dict[str, str]  # the hidden identity (META_KEYS)
    shown: dict[str, str]  # the identity printed on it (student_name, class_name…)
    grid: Grid

    @property
    def student_id(self) -> str:
        return self.identity["student_id"]


def _moment(mtime_ns: int) -> str:
    """A file time as grille records times: local, to the second."""
    return datetime.fromtimestamp(mtime_ns / 1e9).replace(microsecond=0).isoformat(sep=" ")


def _files(folder: Path, pattern: str) -> Iterator[Path]:
    """Regular files under `folder` matching `pattern`, not temp or lock files, by name."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob(pattern)):
        if path.name.startswith((".", "~$")) or path.is_symlink() or not path.is_file():
            continue
        yield path


def _hidden_identity(
    package: XlsxPackage,
) -> tuple[dict[str, str], tuple[dict[str, str], dict[str, str], str | None]]:
    """The identity to trust (the hidden sheet when whole, else the properties; {} when
    neither), and what `read_identity` returned."""
    found = read_identity(package)
    meta, properties = found[0], found[1]
    if all(meta.get(k) for k in META_KEYS):
        return meta, found
    if all(properties.get(k) for k in META_KEYS):
        return properties, found
    return {}, found


def known_grids(grid_files: Sequence[Path]) -> dict[tuple[str, str], tuple[Grid, str]]:
    """The grids the workbooks may have been made with, by (id, version), with the text the
    campaign keeps of each: those shipped with grille, then `grid_files` (which win)."""
    grids = {
        (grid.id, grid.version): (grid, grid_source(GRIDS_DIR / f"{stem}.toml"))
        for stem, grid in shipped_grids()
    }
    for path in grid_files:
        grid = load_grid(path)
        grids[(grid.id, grid.version)] = (grid, grid_source(path))
    return grids


def _scan_workbooks(
    ws: Workspace,
    config: CampaignConfig,
    key: bytes,
    grids: dict[tuple[str, str], tuple[Grid, str]],
    result: RebuildResult,
) -> list[_Workbook]:
    """This campaign's workbooks in `output/classeurs/`, oldest first; refuses a key that
    signed none of them, and workbooks made with a grid it does not have."""
    found: list[_Workbook] = []
    forged: list[str] = []
    others: dict[str, int] = {}
    missing_grids: set[tuple[str, str]] = set()
    for path in _files(ws.workbooks_dir, "*.xlsx"):
        relative = path.relative_to(ws.root).as_posix()
        try:
            data = path.read_bytes()
            mtime_ns = path.stat().st_mtime_ns
        except OSError as exc:
            result.skipped.append((relative, f"illisible ({french_os_error(exc)})."))
            continue
        try:
            package = XlsxPackage(data, path.name)
            identity, _ = _hidden_identity(package)
        except (UnsafeFile, GrilleError) as exc:
            result.skipped.append((relative, f"classeur illisible ({exc})."))
            continue
        if not identity:
            result.skipped.append((relative, "ce n'est pas un classeur de grille."))
            continue
        if identity["campaign_id"] != config.campaign_id:
            others[identity["campaign_id"]] = others.get(identity["campaign_id"], 0) + 1
            result.skipped.append(
                (relative, f"classeur d'une autre campagne ({identity['campaign_id']}).")
            )
            continue
        if not verify_identity(key, identity):
            forged.append(relative)
            result.skipped.append(
                (relative, "signature invalide : classeur modifié, ou signé avec une autre clé.")
            )
            continue
        grid_key = (identity["grid_id"], identity["grid_version"])
        if grid_key not in grids:
            missing_grids.add(grid_key)
            continue
        grid = grids[grid_key][0]
        try:
            shown = _printed_identity(package, grid)
        except (UnsafeFile, GrilleError) as exc:
            result.skipped.append((relative, f"classeur illisible ({exc})."))
            continue
        found.append(
            _Workbook(
                path, relative, mtime_ns, hashlib.sha256(data).hexdigest(), identity, shown, grid
            )
        )
    folder = ws.workbooks_dir.relative_to(ws.root).as_posix()
    if forged and not found:
        raise KeyChangedError(
            f"La clé secrète de la campagne ({KEY_NAME}) ne vérifie la signature d'aucun de "
            f"ses {len(forged)} classeur(s) de {folder} : elle a été remplacée ou recréée, et "
            f"la base ne peut pas être reconstruite avec elle. Restaurez {KEY_NAME} depuis "
            "votre sauvegarde de la campagne, puis relancez « grille rebuild »."
        )
    if others and not found and not missing_grids:
        theirs = max(others, key=lambda name: others[name])
        raise KeyChangedError(
            f"Les classeurs de {folder} ont été faits par la campagne « {theirs} », alors "
            f"que grille.toml est celui de la campagne « {config.campaign_id} » : la base ne "
            "peut pas être reconstruite ainsi. Dans grille.toml, section [campagne], "
            f'remettez : identifiant = "{theirs}", puis relancez « grille rebuild ».'
        )
    if missing_grids:
        raise _missing_grids(missing_grids)
    if not found:
        raise GrilleError(
            f"Aucun classeur de cette campagne dans {folder} : il n'y a rien à partir de quoi "
            "reconstruire la base. Remettez output/grille.sqlite depuis votre propre "
            "sauvegarde du dossier de la campagne."
        )
    found.sort(key=lambda w: (w.mtime_ns, w.relative))
    return found


def _printed_identity(package: XlsxPackage, grid: Grid) -> dict[str, str]:
    """The identity printed on a workbook (student_name, class_name…), "" when absent."""
    refs = plan_layout(grid).identity
    shown = dict.fromkeys(refs, "")
    for sheet_name in {ref.sheet for ref in refs.values()}:
        sheet = package.sheet(sheet_name)
        if sheet is None:
            continue
        wanted = {ref.cell: key for key, ref in refs.items() if ref.sheet == sheet_name}
        for cell, raw in package.read_cells(sheet, set(wanted)).items():
            shown[wanted[cell]] = raw.value
    return shown


def _missing_grids(missing: set[tuple[str, str]]) -> GridError:
    named = ", ".join(f"« {grid_id} » version {version}" for grid_id, version in sorted(missing))
    return GridError(
        f"Des classeurs ou des retours de la campagne ont été faits avec la grille {named}, "
        "qui n'est pas parmi les grilles fournies avec grille : donnez son fichier (celui "
        "donné à « grille generate --grid ») avec « grille rebuild --grid FICHIER »."
    )


def _student_from_workbook(student_id: str, shown: dict[str, str]) -> Student | None:
    """A student no longer in the roster, from what his or her workbook shows."""
    period = _PERIOD.search(shown.get("period", ""))
    words = shown.get("student_name", "").split()
    if period is None or not words or not shown.get("class_name"):
        return None
    upper = list(itertools.takewhile(lambda w: w == w.upper() and w != w.lower(), words))
    cut = min(max(len(upper), 1), max(len(words) - 1, 1))
    try:
        start, end = (datetime.strptime(day, "%d/%m/%Y").date() for day in period.groups())
    except ValueError:
        return None
    return Student(
        student_id=student_id,
        last_name=" ".join(words[:cut]),
        first_name=" ".join(words[cut:]),
        class_name=shown["class_name"],
        company=shown.get("company", ""),
        tutor_name=shown.get("tutor_name", ""),
        tutor_email=shown.get("tutor_email", ""),
        start=start,
        end=end,
    )


def _later(moment: str, than: str) -> bool:
    """True when `moment` is clearly after `than` (both « AAAA-MM-JJ hh:mm:ss »): a file's
    time and the time grille recorded for it differ by a second or two."""
    return datetime.fromisoformat(moment) - datetime.fromisoformat(than) > _SLACK


def _named(student: Student) -> str:
    return f"{student.display_name} ({student.class_name})"


def _parts(data: bytes) -> dict[str, tuple[int, int]]:
    """The parts of a workbook, its save time aside: name → (CRC-32, size) of the content,
    as its zip directory gives them (nothing is decompressed)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {
            info.filename: (info.CRC, info.file_size)
            for info in archive.infolist()
            if info.filename != SAVE_TIME_PART
        }


class _Regeneration:
    """Tells, for a student's latest workbook, whether `generate` would make it the same."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self._stampers: dict[tuple[str, str], WorkbookStamper] = {}

    def _stamper(self, grid: Grid) -> WorkbookStamper:
        key = (grid.id, grid.version)
        if key not in self._stampers:
            data = template_bytes(build_template(grid, self.campaign.template_options()))
            self._stampers[key] = WorkbookStamper(data)
        return self._stampers[key]

    def compare(self, book: _Workbook, student: Student) -> tuple[str, str]:
        """(fingerprint, template digest) to record: each "" when it no longer matches.

        The workbook is compared, part by part (content checksum and size, its save time
        aside), with the one
        `generate` would make now from the roster line; if they differ, the identity
        printed on it tells whether the line changed, and the workbook made now with that
        printed identity tells whether the campaign's settings or grid did."""
        stamper = self._stamper(book.grid)
        values = identity_values(
            student, book.grid, self.campaign.config.campaign_id, self.campaign.key
        )
        try:
            actual = _parts(book.path.read_bytes())
        except (OSError, zipfile.BadZipFile):
            return "", ""
        if actual == _parts(stamper.stamp(values)):
            return student.fingerprint(), stamper.digest
        same_line = all(book.shown.get(k, "") == values[k] for k in book.shown)
        printed = {k: book.shown.get(k, v) for k, v in values.items()}
        same_template = actual == _parts(stamper.stamp(printed))
        return (
            student.fingerprint() if same_line else "",
            stamper.digest if same_template else "",
        )


def rebuild_step(
    workspace: Workspace,
    roster_paths: Sequence[Path] = (),
    grid_files: Sequence[Path] = (),
    *,
    replace: bool = False,
    jobs: int = 1,
) -> RebuildResult:
    """The « rebuild » step: read the roster (`roster_paths`, by default
    input_templates/roster.xlsx; when it has errors or no student, nothing is done and
    `roster` says why), then, under the run lock, `rebuild` the database, rewrite
    suivi.xlsx (which reads the teacher's notes back into it) and back the new database up.
    Raises `RosterError` when a roster file cannot be read at all, and what `rebuild`
    raises."""
    workspace.load_config()  # a campaign folder, or say so
    roster = read_rosters(list(roster_paths) or [workspace.roster_path])
    if not roster.valid or not roster.students:
        return RebuildResult(roster=roster)
    with state.run_lock(workspace.output_dir):
        result = rebuild(workspace, roster.students, grid_files, replace=replace, jobs=jobs)
        result.roster = roster
        opened = Campaign.open(workspace)
        try:
            result.tracking_warnings = rewrite_tracking(workspace, opened.db)
            result.notes = len(state.teacher_notes(opened.db))
        finally:
            opened.close()
        state.backup(workspace.db_path, workspace.backups_dir)
    return result


def rebuild(
    workspace: Workspace,
    students: Sequence[Student],
    grid_files: Sequence[Path] = (),
    *,
    replace: bool = False,
    jobs: int = 1,
) -> RebuildResult:
    """Build the campaign database again from its files and the roster `students`, then put
    it in place. Call it under the run lock.

    Refuses (French `GrilleError`) when a database holding a campaign is there (unless
    `replace`: it is backed up first), when the key signed none of the workbooks, and when
    a workbook's grid is neither shipped nor in `grid_files`.
    """
    config = workspace.load_config()
    key = workspace.load_key()
    if state.blank_database(workspace.db_path) is None and not replace:
        database = workspace.db_path.relative_to(workspace.root).as_posix()
        raise GrilleError(
            f"La base de la campagne ({database}) est présente : il n'y a rien à reconstruire. "
            "Si elle est abîmée, remettez plutôt une sauvegarde (« grille restore --list ») ; "
            "sans sauvegarde, ou pour la reconstruire quand même à partir des fichiers : "
            "« grille rebuild --replace » (la base actuelle est gardée dans une sauvegarde, ou "
            "mise de côté si elle est abîmée)."
        )
    result = RebuildResult()
    grids = known_grids(grid_files)
    workspace.output_dir.mkdir(parents=True, exist_ok=True)
    books = _scan_workbooks(workspace, config, key, grids, result)
    fd, name = tempfile.mkstemp(dir=workspace.output_dir, prefix=".grille.sqlite.", suffix=".tmp")
    os.close(fd)
    built = Path(name)
    try:
        db = state.connect(built)
        try:
            campaign = Campaign(workspace, config, key, books[-1].grid, db)
            _Builder(campaign, result, grids, jobs).build(books, students)
            db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename
        finally:
            db.close()
        result.replaced = state.install_database(built, workspace.db_path, workspace.backups_dir)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{built}{suffix}").unlink(missing_ok=True)
    archives = workspace.output_dir / "archive"
    result.archives = sum(1 for _ in _files(archives, "*.zip"))
    result.mailbox_read = any(_files(workspace.output_dir / "courrier", "*.eml"))
    return result


@dataclass
class _Sendings:
    """The sendings found so far, in order, and by student and kind."""

    rows: list[state.RebuiltSending] = field(default_factory=list)
    seen: set[tuple[str, str, str, str]] = field(default_factory=set)
    by_student: dict[tuple[str, str], list[state.RebuiltSending]] = field(default_factory=dict)

    def add(self, sending: state.RebuiltSending) -> None:
        key = (sending.student_id, sending.kind, sending.message_id, sending.channel)
        if sending.message_id and key in self.seen:
            return
        self.seen.add(key)
        self.rows.append(sending)
        self.by_student.setdefault((sending.student_id, sending.kind), []).append(sending)

    def of(self, student_id: str, kind: str) -> list[state.RebuiltSending]:
        return self.by_student.get((student_id, kind), [])


class _Builder:
    """Fills a new database from the files, one kind of record after another."""

    def __init__(
        self,
        campaign: Campaign,
        result: RebuildResult,
        grids: dict[tuple[str, str], tuple[Grid, str]],
        jobs: int,
    ) -> None:
        self.campaign = campaign
        self.ws = campaign.workspace
        self.db = campaign.db
        self.result = result
        self.grids = grids
        self.jobs = jobs
        self.students: dict[str, Student] = {}
        self.workbook_of_sha: dict[str, tuple[int, str]] = {}  # sha → (workbook id, student)
        self.latest: dict[str, tuple[int, str]] = {}  # student → (workbook id, generated at)
        self.folders: dict[str, str] = {}  # folder (case folded) → class
        self.return_of_sha: dict[str, str] = {}  # sha of a return → student
        self.recorded_grids: set[tuple[str, str]] = set()

    def build(self, books: list[_Workbook], roster: Sequence[Student]) -> None:
        c = self.campaign
        state.record_identity(self.db, c.config.campaign_id, key_fingerprint(c.key))
        self._students_and_workbooks(books, roster)
        self._returns()
        self._sendings()
        self._reports()

    # ---------------------------------------------------------------- workbooks

    def _students_and_workbooks(self, books: list[_Workbook], roster: Sequence[Student]) -> None:
        in_roster = {s.student_id: s for s in roster}
        by_student: dict[str, list[_Workbook]] = {}
        for book in books:
            by_student.setdefault(book.student_id, []).append(book)
        stamp = state.now()
        regeneration = _Regeneration(self.campaign)
        latest_rows: dict[str, tuple[str, str]] = {}
        with state.transaction(self.db) as db:
            for student_id, own in by_student.items():
                student = in_roster.get(student_id)
                if student is None:
                    student = _student_from_workbook(student_id, own[-1].shown)
                    if student is None:
                        self.result.skipped.extend(
                            (b.relative, "stagiaire absent de la liste, et son identité "
                             "imprimée sur le classeur est illisible.")
                            for b in own
                        )  # fmt: skip
                        continue
                    self.result.not_in_roster.append(_named(student))
                    latest_rows[student_id] = ("", "")
                else:
                    latest_rows[student_id] = regeneration.compare(own[-1], student)
                    fingerprint, digest = latest_rows[student_id]
                    if not fingerprint:
                        why = "ligne de la liste modifiée depuis le classeur"
                        self.result.to_generate.append((_named(student), why))
                    elif not digest:
                        why = "configuration de la campagne modifiée depuis le classeur"
                        self.result.to_generate.append((_named(student), why))
                state.record_rebuilt_student(
                    db, student, in_roster=student_id in in_roster, updated_at=stamp
                )
                self.students[student_id] = student
            for grid_key in dict.fromkeys((b.grid.id, b.grid.version) for b in books):
                first = min(b.mtime_ns for b in books if (b.grid.id, b.grid.version) == grid_key)
                state.record_rebuilt_grid(db, *grid_key, self.grids[grid_key][1], _moment(first))
                self.recorded_grids.add(grid_key)
            for book in books:
                if book.student_id not in self.students:
                    continue
                self._workbook(db, book, by_student[book.student_id][-1] is book, latest_rows)
        self.result.students = len(self.students)
        self.result.without_workbook = [
            _named(s) for s in roster if s.student_id not in self.students
        ]

    def _workbook(
        self,
        db: Any,
        book: _Workbook,
        is_latest: bool,
        latest_rows: dict[str, tuple[str, str]],
    ) -> None:
        student = self.students[book.student_id]
        parent = book.path.parent
        if parent.parent == self.ws.workbooks_dir:
            class_name = book.shown.get("class_name") or student.class_name
            if state.record_class_folder(db, class_name, parent.name):
                self.folders[parent.name.casefold()] = class_name
        fingerprint, digest = latest_rows[book.student_id] if is_latest else ("", "")
        generated_at = _moment(book.mtime_ns)
        workbook_id = state.record_rebuilt_workbook(
            db,
            state.RebuiltWorkbook(
                student_id=book.student_id,
                file=book.relative,
                sha256=book.sha256,
                signature=book.identity["signature"],
                grid_id=book.grid.id,
                grid_version=book.grid.version,
                fingerprint=fingerprint,
                template_digest=digest,
                generated_at=generated_at,
            ),
        )
        self.workbook_of_sha[book.sha256] = (workbook_id, book.student_id)
        self.latest[book.student_id] = (workbook_id, generated_at)
        self.result.workbooks += 1

    # ---------------------------------------------------------------- returns

    def _returns(self) -> None:
        """Collect every stored return again, oldest first, each on the day it came."""
        stored = []
        for path in _files(self.ws.returns_dir, "*"):
            try:
                stored.append((path.stat().st_mtime_ns, path))
            except OSError as exc:
                self.result.skipped.append((self._relative(path), french_os_error(exc)))
        stored.sort(key=lambda item: (item[0], item[1].name))
        usable = [(mtime, path) for mtime, path in stored if self._collectable(path)]
        when = {path.stem: (mtime, path) for mtime, path in usable}
        days = itertools.groupby(
            usable, key=lambda item: datetime.fromtimestamp(item[0] / 1e9).date()
        )
        for day, group in days:
            self._collect_day(day, [path for _, path in group], when)

    def _collectable(self, path: Path) -> bool:
        """False (and said) for a signed return of a student who has no workbook left, or
        made with a grid grille does not have: collected now, it would be refused for good."""
        try:
            package = XlsxPackage(path.read_bytes(), path.name)
            identity, _ = _hidden_identity(package)
        except (OSError, UnsafeFile, GrilleError):
            return True  # converted, or unreadable: `collect` says what it is
        if not identity or identity["campaign_id"] != self.campaign.config.campaign_id:
            return True
        if not verify_identity(self.campaign.key, identity):
            return True
        grid_key = (identity["grid_id"], identity["grid_version"])
        if grid_key not in self.grids:
            raise _missing_grids({grid_key})
        if identity["student_id"] not in self.students:
            self.result.skipped.append(
                (
                    self._relative(path),
                    f"retour du stagiaire {identity['student_id']}, dont aucun classeur n'a "
                    "été retrouvé : non relu (« grille collect » le relira une fois son "
                    "classeur refait).",
                )
            )
            return False
        if grid_key not in self.recorded_grids:  # an older grid, no workbook left with it
            with state.transaction(self.db) as db:
                state.record_rebuilt_grid(db, *grid_key, self.grids[grid_key][1], state.now())
            self.recorded_grids.add(grid_key)
        return True

    def _collect_day(self, day: date, paths: list[Path], when: dict[str, tuple[int, Path]]) -> None:
        done = collect.collect(self.campaign, paths, jobs=self.jobs, today=day)
        for problem in done.problems:
            self.result.skipped.append((problem.file or "output/retours", problem.message))
        with state.transaction(self.db) as db:
            for recorded in done.recorded:
                outcome = recorded.outcome
                if outcome is None:
                    continue
                if outcome.sha256 in when:  # else a file put there by hand: collected today
                    mtime, path = when[outcome.sha256]
                    state.set_return_collected(
                        db, outcome.sha256, _moment(mtime), self._relative(path)
                    )
                if outcome.match == Match.REJECTED:
                    self.result.refused += 1
                    continue
                self.result.returns += 1
                self.result.to_confirm += outcome.match == Match.VISIBLE
                if outcome.student_id:
                    self.return_of_sha[outcome.sha256] = outcome.student_id

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.ws.root).as_posix()

    # ---------------------------------------------------------------- messages

    def _sendings(self) -> None:
        """The messages to the tutors, from their copies, then from suivi.xlsx."""
        outbox = self.ws.output_dir / OUTBOX
        copies = [(p, "fichier") for p in _files(outbox, "*.eml") if p.parent == outbox]
        copies += [(p, "smtp") for p in _files(outbox / SENT_COPIES, "*.eml")]
        dated = []
        for path, channel in copies:
            try:
                dated.append((path.stat().st_mtime_ns, path, channel))
            except OSError:
                continue
        found = _Sendings()
        for mtime, path, channel in sorted(dated, key=lambda item: (item[0], item[1].name)):
            self._message(path, channel, _moment(mtime), found)
        self._from_tracking(found)
        with state.transaction(self.db) as db:
            for sending in found.rows:
                state.record_rebuilt_sending(db, sending)
        returned = set(self.return_of_sha.values())
        for student_id, student in self.students.items():
            latest = self.latest[student_id][0]
            sends = [s for s in found.of(student_id, SEND) if s.workbook_id == latest]
            if any(s.channel != Channel.FILE for s in sends):
                self.result.sent += 1
            elif sends:
                self.result.prepared += 1
            elif not found.of(student_id, SEND) and student_id not in returned:
                self.result.not_sent.append(_named(student))
        self.result.reminders = len({s.student_id for s in found.rows if s.kind == REMIND})

    def _message(self, path: Path, channel: str, sent_at: str, found: _Sendings) -> None:
        relative = self._relative(path)
        try:
            if path.stat().st_size > _MAX_MESSAGE:
                raise OSError("message trop volumineux")
            message = BytesParser(policy=policy.compat32).parsebytes(path.read_bytes())
        except (OSError, ValueError) as exc:
            self.result.skipped.append((relative, f"message illisible ({exc})."))
            return
        kind = REMIND if path.name.startswith("relance_") else SEND
        addresses = getaddresses([str(message.get("To", ""))])
        recipient = addresses[0][1] if addresses else ""
        message_id = str(message.get("Message-ID", "")).strip()
        for part in message.walk():
            if part.get_content_disposition() != "attachment":
                continue
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes) or not data:
                continue
            student_id, workbook_id = self._attached(data, kind)
            if student_id is None:
                continue
            found.add(
                state.RebuiltSending(
                    student_id,
                    workbook_id,
                    recipient,
                    message_id,
                    sent_at,
                    kind,
                    channel,
                    relative,
                )
            )

    def _attached(self, data: bytes, kind: str) -> tuple[str | None, int | None]:
        """The student of an attached workbook and the workbook row it stands for."""
        sha = hashlib.sha256(data).hexdigest()
        if sha in self.workbook_of_sha:
            workbook_id, student_id = self.workbook_of_sha[sha]
            if kind == SEND:
                return student_id, workbook_id
        else:
            student_id = self.return_of_sha.get(sha) or self._signed_student(data) or ""
            if student_id not in self.students:
                return None, None
            if kind == SEND:  # a workbook made again since: no longer on disk
                return student_id, None
        return student_id, self.latest[student_id][0]  # a reminder: the latest workbook

    def _signed_student(self, data: bytes) -> str | None:
        try:
            identity, _ = _hidden_identity(XlsxPackage(data, "pièce jointe"))
        except (UnsafeFile, GrilleError):
            return None
        c = self.campaign
        ours = bool(identity) and identity["campaign_id"] == c.config.campaign_id
        return identity["student_id"] if ours and verify_identity(c.key, identity) else None

    def _from_tracking(self, found: _Sendings) -> None:
        """What suivi.xlsx, as grille last wrote it, adds to the messages' copies: the
        messages the teacher marked as sent, those whose copy a later message to the same
        tutor replaced, and the latest reminder of each student."""
        sent_label, prepared_label = (
            fold(STATUS_LABELS[Status.SENT]),
            fold(STATUS_LABELS[Status.PREPARED]),
        )
        for student_id, row in read_tracking_dates(self.ws.tracking_path).items():
            if student_id not in self.students:
                continue
            student = self.students[student_id]
            latest, generated_at = self.latest[student_id]
            status = fold(row.get("status", "")).split(" — ")[0]
            sent_at, made_at = row.get("sent", ""), row.get("generated", "")
            sends = [s for s in found.of(student_id, SEND) if s.workbook_id == latest]
            # The latest workbook was delivered after it was made, and it is the one on disk.
            delivered = bool(sent_at and made_at and sent_at >= made_at >= generated_at)
            if not sends and delivered:
                channel = "fichier" if status == prepared_label else "manuel"
                found.add(
                    state.RebuiltSending(
                        student_id, latest, student.tutor_email, "", sent_at, SEND, channel, ""
                    )
                )
            elif (
                delivered
                and all(s.channel == Channel.FILE for s in sends)
                and (status == sent_label or _later(sent_at, max(s.sent_at for s in sends)))
            ):
                first = sends[0]  # written to the outbox, then « grille send --mark-sent »
                found.add(
                    state.RebuiltSending(
                        student_id,
                        latest,
                        first.recipient,
                        first.message_id,
                        sent_at,
                        SEND,
                        "manuel",
                        first.file,
                    )
                )
            reminded = row.get("reminded", "")
            known = max((s.sent_at for s in found.of(student_id, REMIND)), default="")
            if reminded and (not known or _later(reminded, known)):
                found.add(
                    state.RebuiltSending(
                        student_id,
                        latest,
                        student.tutor_email,
                        "",
                        reminded,
                        REMIND,
                        "manuel",
                        "",
                    )
                )

    # ---------------------------------------------------------------- reports

    def _reports(self) -> None:
        """Record the reports (and their PDFs) that hold grille's own marks."""
        stems = {report_stem(s): s.student_id for s in self.students.values()}
        with state.transaction(self.db) as db:
            for path in _files(self.ws.reports_dir, "*.docx"):
                relative = self._relative(path)
                parent = path.parent
                class_name = (
                    self.folders.get(parent.name.casefold())
                    if parent.parent == self.ws.reports_dir
                    else None
                )
                if not written_by_grille(path):
                    self.result.edited_reports.append(relative)
                    continue
                stem = bare_report_stem(path.stem)  # « bilan_…_INCOMPLET_nouveau_2 »
                student_id = stems.get(stem)
                if student_id is None and not stem.startswith("bilan_classe_"):
                    self.result.skipped.append((relative, "bilan d'un stagiaire inconnu."))
                    continue
                if student_id is not None:
                    class_name = class_name or self.students[student_id].class_name
                for document in (path, path.with_suffix(".pdf")):
                    if not document.is_file():
                        continue
                    try:
                        data = document.read_bytes()
                        mtime = document.stat().st_mtime_ns
                    except OSError:
                        continue
                    state.record_rebuilt_report(
                        db,
                        self._relative(document),
                        hashlib.sha256(data).hexdigest(),
                        _moment(mtime),
                        class_name,
                        student_id,
                    )
                    self.result.reports += 1


def written_by_grille(path: Path) -> bool:
    """True when the .docx at `path` still holds grille's marks: last saved by « grille »,
    revision 1, created and modified at the same moment. Word and LibreOffice change
    them all when they save a document."""
    try:
        archive = SafeZip(path.read_bytes(), path.name)
        core = archive.read_optional(SAVE_TIME_PART, 1024 * 1024)
        if core is None:
            return False
        root = ElementTree.fromstring(core)
    except (OSError, UnsafeFile, ElementTree.ParseError, DefusedXmlException, zipfile.BadZipFile):
        return False

    def text(tag: str) -> str:
        element = root.find(tag, _CORE)
        return (element.text or "").strip() if element is not None else ""

    created = text("dcterms:created")
    return (
        text("cp:lastModifiedBy") == "grille"
        and text("cp:revision") == "1"
        and bool(created)
        and created == text("dcterms:modified")
    )


_TRACKING_COLUMNS = {
    "identifiant": "student_id",
    "statut": "status",
    "genere le": "generated",
    "envoye le": "sent",
    "relance le": "reminded",
}
_HEADER_ROWS = 20


def _cell(value: object) -> str:
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat(sep=" ")
    return str(value).strip() if value is not None else ""


def read_tracking_dates(path: Path) -> dict[str, dict[str, str]]:
    """From suivi.xlsx: student id → status, and when generated, sent, reminded (as grille
    wrote them, « AAAA-MM-JJ hh:mm:ss »; other texts are left out). {} when unreadable."""
    if not path.is_file():
        return {}
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # a file the teacher broke: it only completes the messages' copies
        return {}
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        columns: dict[int, str] = {}
        for row in itertools.islice(rows, _HEADER_ROWS):
            named = {i: _TRACKING_COLUMNS.get(fold(_cell(v))) for i, v in enumerate(row)}
            columns = {i: name for i, name in named.items() if name}
            if "student_id" in columns.values():
                break
        if "student_id" not in columns.values():
            return {}
        found: dict[str, dict[str, str]] = {}
        for row in rows:
            values = {name: _cell(row[i]) for i, name in columns.items() if i < len(row)}
            student_id = values.pop("student_id", "")
            if not student_id:
                continue
            found[student_id] = {
                name: text
                for name, text in values.items()
                if name == "status" or _STAMP.match(text)
            }
        return found
    except Exception:  # likewise: never a reason to stop the rebuild
        return {}
    finally:
        wb.close()
