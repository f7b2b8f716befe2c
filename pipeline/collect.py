"""Returned workbooks → recognised student, validated evaluation, recorded state.

For each file gathered by `returns.gather`: keep the original (content-addressed),
recognise the student from the hidden metadata or the document properties and verify
the HMAC signature, or fall back to the visible identity ("à confirmer": such a return
does not replace a signed one until the teacher confirms it, see `state.counted_returns`);
then read and validate every answer and record it. Files are processed in worker processes
when there are enough of them; the database is written by this process only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.errors import GrilleError, Problem
from pipeline.grid import Grid
from pipeline.parallel import map_batches
from pipeline.returns import Candidate, gather, store_original
from pipeline.safe_zip import UnsafeFile
from pipeline.validation import IDENTITY_LABELS, ExpectedStudent, fold, validate
from pipeline.workbook import (
    META_KEYS,
    ReturnedWorkbook,
    identity_values,
    read_identity,
    read_returned,
    verify_identity,
)
from pipeline.xlsx import RawCell, XlsxPackage

MATCH_SIGNED = "signed"
MATCH_VISIBLE = "visible"  # no usable metadata: matched on the visible identity, to confirm
MATCH_REJECTED = "rejected"


@dataclass
class Outcome:
    """What processing one returned file gave (picklable: crosses processes)."""

    sha256: str
    match: str
    match_note: str = ""
    student_id: str | None = None
    status: str | None = None
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
    # For a return « à confirmer »: the signed or confirmed return that still counts instead.
    counted_instead: state.ReturnStanding | None = None


@dataclass
class CollectResult:
    """Everything `collect` did, in order."""

    recorded: list[Recorded] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # files that could not be used
    duplicates: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems) or any(
            r.outcome is not None and r.outcome.match == MATCH_REJECTED for r in self.recorded
        )


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
    return Outcome(sha256=sha, match=MATCH_REJECTED, match_note=note)


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
            match = MATCH_SIGNED
            returned = read_returned(package, grid, found)
        else:
            grid_key = context.default_grid
            grid = context.grids[grid_key]
            returned = read_returned(package, grid, found)
            matched, note = _match_visible(context, returned)
            if matched is None:
                return _rejected(sha, note)
            student_id = matched
            match = MATCH_VISIBLE
        expected = context.students[student_id]
        result = validate(grid, returned, expected, context.today)
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
        problems=[asdict(p) for p in result.problems],
        evaluation=result.evaluation.to_json(),
        answers=_answers(returned, result.evaluation.to_json()),
    )


def _match_visible(context: _Context, returned: ReturnedWorkbook) -> tuple[str | None, str]:
    """Fall back on the visible identity when the hidden one is gone."""
    shown = returned.identity.get("student_name", "")
    candidates = context.names.get(fold(shown), [])
    if len(candidates) > 1:
        class_name = fold(returned.identity.get("class_name", ""))
        candidates = [
            c for c in candidates if fold(context.students[c].identity["class_name"]) == class_name
        ]
    if len(candidates) == 1:
        return candidates[0], (
            "à confirmer : l'identité cachée du classeur a disparu (fichier recopié ou "
            "ré-enregistré ?) ; reconnu par le nom affiché « " + shown + " »."
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
    rows = campaign.db.execute(
        "SELECT s.*, w.grid_id FROM students s JOIN workbooks w ON w.id = "
        "(SELECT MAX(id) FROM workbooks WHERE student_id = s.student_id)"
    )
    for row in rows:
        student = state.student_from_row(row)
        identity = identity_values(student, campaign.grid, campaign.config.campaign_id, b"-")
        shown = {k: v for k, v in identity.items() if k in IDENTITY_LABELS}
        students[student.student_id] = ExpectedStudent(
            student.tutor_name, student.start, student.end, shown
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
    """Gather, keep, recognise, validate and record every returned file under `paths`."""
    ws = campaign.workspace
    context = _context_for(campaign, today or date.today())
    if not context.students:
        raise GrilleError(
            "Aucun classeur n'a encore été généré dans cette campagne : "
            "lancez d'abord « grille generate »."
        )
    result = CollectResult()
    known = {row[0] for row in campaign.db.execute("SELECT sha256 FROM returns")}
    blank = {row[0] for row in campaign.db.execute("SELECT sha256 FROM workbooks")}
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
                    Problem(
                        "unfilled_original",
                        "classeur vierge, tel que grille l'a produit : ignoré (le tuteur l'a-t-il "
                        "renvoyé sans le remplir ?).",
                        file=found.origin,
                        severity="warning",
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
    return result


def _record(
    campaign: Campaign,
    items: list[tuple[tuple[Candidate, Path], Outcome]],
    result: CollectResult,
) -> None:
    root = campaign.workspace.root
    stamp = state.now()
    with state.transaction(campaign.db) as db:
        for (candidate, stored), outcome in items:
            cursor = db.execute(
                "INSERT INTO returns (sha256, stored_file, origin, file_name, converted_from, "
                "collected_at, student_id, match, match_note, status, grid_id, grid_version, "
                "problems, evaluation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    outcome.sha256,
                    stored.relative_to(root).as_posix(),
                    candidate.origin,
                    candidate.name,
                    candidate.converted_from,
                    stamp,
                    outcome.student_id,
                    outcome.match,
                    outcome.match_note,
                    outcome.status,
                    outcome.grid_id,
                    outcome.grid_version,
                    json.dumps(outcome.problems, ensure_ascii=False),
                    json.dumps(outcome.evaluation, ensure_ascii=False)
                    if outcome.evaluation is not None
                    else None,
                ),
            )
            db.executemany(
                "INSERT INTO answers VALUES (?,?,?,?,?,?)",
                [(cursor.lastrowid, *answer) for answer in outcome.answers],
            )
            name, counted = "", None
            if outcome.match == MATCH_VISIBLE and outcome.student_id:
                counted = state.counted_return(db, outcome.student_id)
                if counted is not None and counted.return_id == cursor.lastrowid:
                    counted = None  # nothing signed or confirmed: this one counts meanwhile
            if outcome.student_id:
                row = db.execute(
                    "SELECT last_name, first_name, class_name FROM students WHERE student_id = ?",
                    (outcome.student_id,),
                ).fetchone()
                if row:  # with the class: two students may share a name
                    name = f"{row['last_name'].upper()} {row['first_name']} ({row['class_name']})"
            result.recorded.append(
                Recorded(candidate.origin, outcome, name, cursor.lastrowid, counted)
            )
