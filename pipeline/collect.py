"""Returned workbooks → recognised student, validated evaluation, recorded state.

`collect_step` is the step both front ends call: it reads the files given, and the
mailbox when asked (`inbox`), and says what failed. For each file gathered by
`returns.gather`: keep the original (content-addressed), recognise the student from the
hidden metadata or the document properties and verify the HMAC signature, or fall back to
the visible identity ("à confirmer": such a return does not replace a signed one until the
teacher confirms it); then read every answer where the tutor left it (`reading`), validate
and record it with the dates that order the versions of one student's workbook (its own
save date, the e-mail's, the file's). Which version counts is `state.counted_returns`'s
choice; each return says which one it replaces, or that an older one is kept aside.
Every file refused or unreadable is recorded (`state.record_refused_files`).
Files are processed in worker processes when there are enough of them; the database is
written by this process only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError, Problem
from pipeline.grid import Grid
from pipeline.kinds import Match, ReturnStatus
from pipeline.parallel import map_batches
from pipeline.reading import read_located
from pipeline.returns import Candidate, FileProblem, gather, store_original
from pipeline.safe_zip import UnsafeFile
from pipeline.settings import ImapSettings
from pipeline.text import fold
from pipeline.validation import IDENTITY_LABELS, ExpectedStudent, validate
from pipeline.workbook import (
    META_KEYS,
    ReturnedWorkbook,
    identity_values,
    read_identity,
    verify_identity,
)
from pipeline.xlsx import RawCell, XlsxPackage

if TYPE_CHECKING:
    from pipeline.inbox import MailboxResult

NOT_RECORDED = {"not_found"}  # problems that are no file received: not kept as refused
RECORDED_WARNINGS = {"unfilled_original"}  # warnings about a file set aside: kept too


@dataclass
class Outcome:
    """What processing one returned file gave (picklable: crosses processes)."""

    sha256: str
    match: Match
    match_note: str = ""
    student_id: str | None = None
    status: ReturnStatus | None = None
    saved_at: str | None = None  # the workbook's own save date, UTC (`state.UTC_FORMAT`)
    grid_id: str = ""
    grid_version: str = ""
    problems: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    answers: list[tuple[str, str, str, str | None, str | None]] = field(default_factory=list)


@dataclass
class Recorded:
    """One returned file as the teacher sees it after `collect`."""

    origin: str
    outcome: Outcome | None  # None: already collected before
    student_name: str = ""
    return_id: int | None = None
    in_roster: bool = True  # False: the student was removed from the roster since
    # The version that counts for the student instead of this one (an older return still
    # counting would be signed or chosen by the teacher; else this one is older).
    counted_instead: state.ReturnVersion | None = None
    # The version that counted before this one and no longer does.
    replaced: state.ReturnVersion | None = None


@dataclass
class CollectResult:
    """Everything `collect` did, in order; with `mailbox`, what became of the messages
    of the mailbox (its `collected` is this same result)."""

    recorded: list[Recorded] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # files that could not be used
    duplicates: list[str] = field(default_factory=list)
    mailbox: MailboxResult | None = None

    @property
    def rejected_count(self) -> int:
        """Workbooks read but refused (another campaign, tampered, not a grille workbook…)."""
        return sum(1 for r in self.recorded if r.outcome and r.outcome.match == Match.REJECTED)

    @property
    def failed_count(self) -> int:
        """Files refused or unreadable: rejected workbooks and errors."""
        return self.rejected_count + sum(1 for p in self.problems if p.severity == "error")

    @property
    def recorded_count(self) -> int:
        """Returns recorded for a student."""
        return len(self.recorded) - self.rejected_count

    @property
    def failed(self) -> bool:
        return self.failed_count > 0

    @property
    def exit_code(self) -> int:
        """1 when some file or message could not be used (the others were), else 0."""
        interrupted = self.mailbox is not None and bool(self.mailbox.interrupted)
        return 1 if self.failed or interrupted else 0


@dataclass(frozen=True)
class _Context:
    """What a worker needs to recognise and validate a file."""

    campaign_id: str
    key: bytes
    grids: dict[tuple[str, str], Grid]
    default_grid: tuple[str, str]
    students: dict[str, ExpectedStudent]
    names: dict[str, list[str]]  # folded visible name → student ids
    today: date


_context: _Context | None = None


def _init_worker(context: _Context) -> None:
    global _context
    _context = context


def _process_batch(batch: Sequence[tuple[str, str, bytes]]) -> list[Outcome]:
    assert _context is not None
    return [process_file(_context, sha, name, data) for sha, name, data in batch]


def _rejected(sha: str, note: str) -> Outcome:
    return Outcome(sha256=sha, match=Match.REJECTED, match_note=note)


def _identity(meta: dict[str, str], properties: dict[str, str]) -> dict[str, str]:
    """The metadata to trust: the hidden sheet when whole, else the properties."""
    if all(meta.get(k) for k in META_KEYS):
        return meta
    if all(properties.get(k) for k in META_KEYS):
        return properties
    return {}


def process_file(context: _Context, sha: str, name: str, data: bytes) -> Outcome:
    """Recognise and validate one returned workbook; never raises on bad input."""
    try:
        package = XlsxPackage(data, name)
        saved_at = state.utc_text(package.saved_at())
        found = read_identity(package)
        identity = _identity(found[0], found[1])
        note = ""
        if identity:
            if identity["campaign_id"] != context.campaign_id:
                return _rejected(
                    sha,
                    f"classeur d'une autre campagne ({identity['campaign_id']}) : "
                    "il n'a pas été envoyé par cette campagne.",
                )
            if not verify_identity(context.key, identity):
                return _rejected(
                    sha,
                    "signature invalide : l'identité cachée du classeur a été modifiée. "
                    "Demandez au tuteur de remplir le classeur d'origine.",
                )
            student_id = identity["student_id"]
            if student_id not in context.students:
                return _rejected(sha, f"stagiaire {student_id} inconnu de cette campagne.")
            grid_key = (identity["grid_id"], identity["grid_version"])
            if grid_key not in context.grids:
                return _rejected(
                    sha, f"grille {grid_key[0]} version {grid_key[1]} inconnue de cette campagne."
                )
            grid = context.grids[grid_key]
            match = Match.SIGNED
            located = read_located(package, grid, found)
        else:
            grid_key = context.default_grid
            grid = context.grids[grid_key]
            located = read_located(package, grid, found)
            matched, note = _match_visible(context, located.returned, located.grid_found)
            if matched is None:
                return _rejected(sha, note)
            student_id = matched
            match = Match.VISIBLE
        returned = located.returned
        expected = context.students[student_id]
        result = validate(
            grid,
            returned,
            expected,
            context.today,
            reading=located.problems,
            unread=located.unread,
        )
    except UnsafeFile as exc:
        return _rejected(sha, exc.reason)
    except GrilleError as exc:  # pragma: no cover - any other library refusal
        return _rejected(sha, str(exc))
    return Outcome(
        sha256=sha,
        match=match,
        match_note=note,
        student_id=student_id,
        status=result.status,
        grid_id=grid_key[0],
        grid_version=grid_key[1],
        problems=[_problem_json(p) for p in result.problems],
        evaluation=result.evaluation.to_json(),
        answers=_answers(returned, result.evaluation.to_json()),
        saved_at=saved_at,
    )


def _problem_json(problem: Problem) -> dict[str, Any]:
    """A problem as stored: the fields of `Problem` only."""
    return {name: getattr(problem, name) for name in Problem.__dataclass_fields__}


def _match_visible(
    context: _Context, returned: ReturnedWorkbook, grid_found: bool = True
) -> tuple[str | None, str]:
    """Fall back on the visible identity when the hidden one is gone."""
    shown = returned.identity.get("student_name", "").strip()
    candidates = context.names.get(fold(shown), [])
    if len(candidates) > 1:
        class_name = fold(returned.identity.get("class_name", ""))
        candidates = [
            c for c in candidates if fold(context.students[c].identity["class_name"]) == class_name
        ]
    if len(candidates) > 1:  # a student removed from the roster never wins over one in it
        candidates = [c for c in candidates if context.students[c].in_roster] or candidates
    if len(candidates) == 1:
        return candidates[0], (
            "à confirmer : l'identité cachée du classeur a disparu (fichier recopié ou "
            "ré-enregistré ?) ; reconnu par le nom affiché « " + shown + " »."
        )
    if not shown and grid_found:
        return None, (
            "classeur grille sans identité cachée ni nom de stagiaire lisible (feuilles "
            "recopiées sans la feuille Instructions ?) : impossible de savoir de quel stagiaire "
            "il s'agit. Demandez au tuteur de renvoyer le classeur qu'il a reçu."
        )
    if not shown:
        return None, "ce n'est pas un classeur grille (ni identité cachée, ni nom de stagiaire)."
    return None, (
        f"identité cachée absente et stagiaire « {shown[:60]} » introuvable dans la liste : "
        "ce n'est pas un classeur de cette campagne."
    )


def _raw_text(cell: RawCell | None) -> str | None:
    return None if cell is None else cell.value


def _answers(
    returned: ReturnedWorkbook, evaluation: dict[str, Any]
) -> list[tuple[str, str, str, str | None, str | None]]:
    values: dict[str, Any] = {**evaluation["ratings"], **evaluation["levels"]}
    values.update(
        appreciation=evaluation["tutor_appreciation"] or None,
        date=evaluation["date"],
        signature=evaluation["signature"] or None,
    )
    return [
        (
            key,
            ref.sheet,
            ref.cell,
            _raw_text(cell),
            None if values.get(key) is None else str(values[key]),
        )
        for key, (ref, cell) in returned.answers.items()
    ]


def _context_for(campaign: Campaign, today: date) -> _Context:
    students: dict[str, ExpectedStudent] = {}
    names: dict[str, list[str]] = {}
    for row in state.students_with_workbooks(campaign.db):
        student = state.student_from_row(row)
        identity = identity_values(student, campaign.grid, campaign.config.campaign_id, b"-")
        shown = {k: v for k, v in identity.items() if k in IDENTITY_LABELS}
        students[student.student_id] = ExpectedStudent(
            student.tutor_name, student.start, student.end, shown, bool(row["in_roster"])
        )
        names.setdefault(fold(student.display_name), []).append(student.student_id)
    grids = campaign.grids()
    return _Context(
        campaign_id=campaign.config.campaign_id,
        key=campaign.key,
        grids=grids,
        default_grid=(campaign.grid.id, campaign.grid.version),
        students=students,
        names=names,
        today=today,
    )


def collect(
    campaign: Campaign,
    paths: Sequence[Path],
    *,
    jobs: int = 1,
    today: date | None = None,
    progress: Callable[[int], None] | None = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> CollectResult:
    """Gather, keep, recognise, validate and record every returned file under `paths`;
    record the files refused or unreadable."""
    ws = campaign.workspace
    context = _context_for(campaign, today or date.today())
    if not context.students:
        raise GrilleError(
            "Aucun classeur n'a encore été généré dans cette campagne : "
            "lancez d'abord « grille generate »."
        )
    result = CollectResult()
    known = state.collected_sha256s(campaign.db)
    blank = state.generated_sha256s(campaign.db)
    pending: dict[str, tuple[Candidate, Path]] = {}

    def fresh_candidates() -> Iterator[tuple[str, str, bytes]]:
        for found in gather(paths):
            if isinstance(found, Problem):
                result.problems.append(found)
                if on_problem:
                    on_problem(found)
                continue
            if found.sha256 in known or found.sha256 in pending:
                result.duplicates.append(found.origin)
                continue
            if found.sha256 in blank:  # byte for byte a workbook grille made: nobody filled it
                result.problems.append(
                    FileProblem(
                        "unfilled_original",
                        "classeur vierge, tel que grille l'a produit : ignoré (le tuteur l'a-t-il "
                        "renvoyé sans le remplir ?).",
                        file=found.origin,
                        severity="warning",
                        sha256=found.sha256,
                    )
                )
                continue
            stored, _ = store_original(found, ws.returns_dir)
            pending[found.sha256] = (found, stored)
            yield found.sha256, found.name, found.data

    batches = map_batches(
        _process_batch,
        fresh_candidates(),
        jobs=jobs,
        parallel=jobs > 1,
        chunk_size=25,
        initializer=_init_worker,
        initargs=(context,),
        progress=progress,
    )
    for _, outcomes in batches:
        _record(campaign, [(pending.pop(o.sha256), o) for o in outcomes], result)
    record_refused(campaign, result.problems)
    return result


def _record(
    campaign: Campaign,
    items: list[tuple[tuple[Candidate, Path], Outcome]],
    result: CollectResult,
) -> None:
    root = campaign.workspace.root
    stamp = state.now()
    refused: list[state.RefusedFile] = []
    with state.transaction(campaign.db) as db:
        for (candidate, stored), outcome in items:
            before = state.counted_version(db, outcome.student_id) if outcome.student_id else None
            return_id = state.record_return(
                db, _new_return(candidate, stored, outcome, root, stamp)
            )
            recorded = Recorded(candidate.origin, outcome, return_id=return_id)
            if outcome.match == Match.REJECTED:
                refused.append(_refused(candidate.origin, "rejected", outcome.match_note, outcome))
            if outcome.student_id:
                after = state.counted_version(db, outcome.student_id)
                if after is not None and after.return_id == return_id:
                    recorded.replaced = before
                else:
                    recorded.counted_instead = after
                student = state.find_student(db, outcome.student_id)
                if student:  # with the class: two students may share a name
                    recorded.student_name = student.label
                    recorded.in_roster = state.student_in_roster(db, outcome.student_id)
            result.recorded.append(recorded)
        state.record_refused_files(db, refused)


_KEPT_AS_IS = (
    "sha256", "student_id", "match", "match_note", "status", "grid_id", "grid_version",
    "saved_at", "answers",
)  # fmt: skip


def _new_return(
    candidate: Candidate, stored: Path, outcome: Outcome, root: Path, stamp: str
) -> state.NewReturn:
    """The row `state.record_return` stores for a file collected at `stamp`."""
    evaluation = outcome.evaluation
    return state.NewReturn(
        **{name: getattr(outcome, name) for name in _KEPT_AS_IS},
        stored_file=stored.relative_to(root).as_posix(),
        origin=candidate.origin,
        file_name=candidate.name,
        converted_from=candidate.converted_from,
        collected_at=stamp,
        problems=json.dumps(outcome.problems, ensure_ascii=False),
        evaluation=None if evaluation is None else json.dumps(evaluation, ensure_ascii=False),
        mailed_at=state.utc_text(candidate.dates.mailed_at),
        file_time=state.utc_text(candidate.dates.file_time),
    )


def _shown_name(origin: str) -> str:
    """The file name at the end of an origin (« boîte.mbox › message 2 › pièce jointe
    « grille.xlsx » » → « grille.xlsx »)."""
    last = origin.rsplit(" › ", 1)[-1]
    attached = re.fullmatch(r"pièce jointe « (.*) »", last)
    return os.path.basename((attached.group(1) if attached else last).replace("\\", "/"))


def _refused(
    origin: str, code: str, reason: str, outcome: Outcome | None = None
) -> state.RefusedFile:
    return state.RefusedFile(
        file_name=_shown_name(origin),
        origin=origin,
        code=code,
        reason=reason,
        sha256=outcome.sha256 if outcome is not None else "",
    )


def record_refused(campaign: Campaign, problems: Sequence[Problem]) -> None:
    """Remember the files behind `problems` that were refused or unreadable (errors, and a
    blank workbook sent back), with their SHA-256 when their bytes were read. Recording
    the same again only updates when it was last seen."""
    refused = [
        state.RefusedFile(
            file_name=_shown_name(problem.file),
            origin=problem.file,
            code=problem.code,
            reason=problem.message,
            sha256=problem.sha256 if isinstance(problem, FileProblem) else "",
        )
        for problem in problems
        if problem.file
        and problem.code not in NOT_RECORDED
        and (problem.severity == "error" or problem.code in RECORDED_WARNINGS)
    ]
    if refused:
        state.record_refused_files(campaign.db, refused)


# ------------------------------------------------------------------ the step


@dataclass(frozen=True)
class MailboxRequest:
    """« collect --imap »: the folder of `[reception]` to read, with the command's overrides."""

    folder: str | None = None
    since: date | None = None
    mark_seen: bool = False


def collect_step(
    campaign: Campaign,
    paths: Sequence[Path] = (),
    *,
    mailbox: MailboxRequest | None = None,
    password: Callable[[ImapSettings], str] | None = None,
    jobs: int = 1,
    today: date | None = None,
    progress: Callable[[int], None] | None = None,
) -> CollectResult:
    """The « collect » step: the files of `paths` and, with `mailbox`, the new messages of
    the mailbox; everything recorded, refused files included. The IMAP password is read from
    the environment (`inbox.PASSWORD_VARIABLE`), else asked through `password`.
    `GrilleError` (French) when nothing was given or the mailbox cannot be reached."""
    if mailbox is None:
        if not paths:
            raise GrilleError(
                "indiquez les fichiers ou dossiers à lire, ou --imap pour relever la boîte aux "
                "lettres."
            )
        return collect(campaign, paths, jobs=jobs, today=today, progress=progress)
    from pipeline import inbox  # inbox builds on this module

    settings = inbox.mailbox_settings(
        campaign.config.imap, folder=mailbox.folder, since=mailbox.since
    )
    secret = os.environ.get(inbox.PASSWORD_VARIABLE) or (password(settings) if password else "")
    fetched = inbox.collect_mailbox(
        campaign,
        settings,
        secret,
        paths=list(paths),
        mark_seen=mailbox.mark_seen,
        jobs=jobs,
        today=today,
        progress=progress,
    )
    result = fetched.collected
    result.mailbox = fetched
    record_refused(campaign, result.problems)  # the messages too large to fetch, too
    return result


# ------------------------------------------------------------------ the teacher's choice


@dataclass(frozen=True)
class VersionChoice:
    """What « collect --use » did: the version chosen, and the one that counted before."""

    chosen: state.ReturnVersion
    before: state.ReturnVersion | None
    student_name: str


def find_return(campaign: Campaign, designation: str) -> int:
    """The number of the return the teacher designates by its number, by a file she has
    (the same bytes as a return collected) or by the name of a file collected; French
    `GrilleError` when none, or several, fit."""
    db = campaign.db
    text = designation.strip()
    if text.isdigit():
        return int(text)
    path = Path(text).expanduser()
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        found = state.return_with_sha256(db, digest)
        if found is None:
            raise GrilleError(
                f"« {text} » n'a pas été collecté : lancez d'abord « grille collect {text} »."
            )
        return found[0]
    named = state.returns_named(db, os.path.basename(text))
    if not named:
        raise GrilleError(
            f"aucun retour collecté ne s'appelle « {text} » : donnez le n° du retour "
            "(« grille status --format json », rubrique « versions »), ou le chemin du fichier."
        )
    if len(named) > 1:
        numbers = ", ".join(f"n° {v.return_id}" for v in named)
        raise GrilleError(
            f"plusieurs retours collectés s'appellent « {text} » ({numbers}) : donnez le n° du "
            "retour à retenir."
        )
    return named[0].return_id


def choose_version(campaign: Campaign, designation: str, chosen_by: str) -> VersionChoice:
    """« collect --use »: make the designated return the one that counts for its student,
    whatever its date; the choice is recorded with who made it and when."""
    db = campaign.db
    return_id = find_return(campaign, designation)
    target = state.return_version(db, return_id)
    before = state.counted_version(db, target.student_id) if target is not None else None
    chosen = state.choose_return(db, return_id, chosen_by)
    return VersionChoice(chosen, before, state.student_label(db, chosen.student_id))
