"""Reminders: one message per tutor whose students' evaluations are missing or unfinished.

A student is reminded about when the workbook was delivered (sent, or written to the
outbox) and no complete return has come back. The message lists, per student, exactly
what is missing or wrong (the problems `collect` found) and attaches the workbook to
complete: the one the tutor returned if any, else the one grille generated.
`pending_reminders` gives those messages; `remind_step`, the step both front ends call,
delivers them as `send`'s leave (`mail.deliver_step`), recorded in `sendings` with the
kind `relance`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from pipeline import state
from pipeline.campaign import Campaign
from pipeline.classes import resolve_class
from pipeline.kinds import ReturnStatus
from pipeline.mail import (
    REMIND,
    SendResult,
    TutorMessage,
    WorkbookToSend,
    deliver_step,
    group_by_tutor,
)
from pipeline.settings import SmtpSettings
from pipeline.tracking import StudentStatus, student_statuses

TO_REMIND = (
    ReturnStatus.PREPARED, ReturnStatus.SENT, ReturnStatus.INCOMPLETE, ReturnStatus.INVALID,
)  # fmt: skip


@dataclass
class Reminders:
    """The messages to send, and the students left out, with the reason (French)."""

    messages: list[TutorMessage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _display(status: StudentStatus) -> str:
    return f"{status.student.display_name} ({status.class_name})"


def _french_day(stamp: str) -> str:
    return f"{datetime.fromisoformat(stamp):%d/%m/%Y}"


def pending_reminders(
    campaign: Campaign,
    *,
    student_ids: set[str] | None = None,
    class_name: str | None = None,
    interval_days: int = 7,
    again: bool = False,
    now: datetime | None = None,
) -> Reminders:
    """`grille remind`: one reminder per tutor with students to remind (only the students
    of `student_ids` and of the class `class_name` if given), for `mail.deliver_messages`.

    A student reminded less than `interval_days` ago, with no new return since, is left
    out unless `again`; so is a student whose workbook was never delivered (`send` first).
    """
    db, root = campaign.db, campaign.workspace.root
    moment = now or datetime.now()
    latest = {
        student_id: (row["id"], row["sha256"])
        for student_id, row in state.latest_workbooks(db).items()
    }
    wanted_class = resolve_class(db, class_name) if class_name is not None else None
    result = Reminders()
    items: list[tuple[str, str, WorkbookToSend]] = []
    for status in student_statuses(db):
        if not status.in_roster or status.student_id not in latest:
            continue
        if student_ids is not None and status.student_id not in student_ids:
            continue
        if wanted_class is not None and status.class_name != wanted_class:
            continue
        if status.status == ReturnStatus.GENERATED:
            result.skipped.append(
                f"{_display(status)} : classeur jamais envoyé au tuteur ; lancez « grille send »."
            )
            continue
        if status.status not in TO_REMIND:
            continue
        if status.reminded_at and not again:
            reminded = datetime.fromisoformat(status.reminded_at)
            recent = moment - reminded < timedelta(days=interval_days)
            news = status.returned_at and status.returned_at > status.reminded_at
            if recent and not news:
                result.skipped.append(
                    f"{_display(status)} : tuteur déjà relancé le "
                    f"{_french_day(status.reminded_at)} (voir --interval, ou --again)."
                )
                continue
        items.append(
            (status.student.tutor_name, status.student.tutor_email,
             _workbook_to_complete(db, status, root, *latest[status.student_id]))
        )  # fmt: skip
    result.messages = group_by_tutor(items, REMIND)
    return result


# A validation message names its cell: « Section › Critère (cellule D15) : non renseigné. »
_LOCATED = re.compile(
    r"^(?:.*› )?(?P<label>.+?) \(cellule [A-Z]{1,3}[0-9]+\) : (?P<what>.+)$", re.S
)


def todo_item(problem: dict[str, str]) -> str:
    """A stored problem as the tutor must find it: « feuille « Intégration », cellule D15
    (Ponctualité) : non renseigné. »"""
    message, sheet, cell = problem["message"], problem.get("sheet"), problem.get("cell")
    if not sheet or not cell:
        return message
    where = f"feuille « {sheet} », cellule {cell}"
    match = _LOCATED.match(message)
    if match is None:
        return f"{where} : {message}"
    return f"{where} ({match.group('label')}) : {match.group('what')}"


def _problems(db: sqlite3.Connection, return_id: int | None) -> list[dict[str, str]]:
    """The blocking problems of a return (missing or wrong answers), in workbook order."""
    if return_id is None:
        return []
    return [
        p for p in state.return_problems(db, return_id) if p.get("severity", "error") == "error" and
        p["code"].startswith(("missing", "invalid"))
    ]  # fmt: skip


def _workbook_to_complete(
    db: sqlite3.Connection, status: StudentStatus, root: Path, workbook_id: int, workbook_sha: str
) -> WorkbookToSend:
    """The returned workbook (stored under its digest) if any, else the generated one."""
    generated = Path(status.workbook_file)
    name = status.student.display_name
    if status.return_file:
        stored = Path(status.return_file)
        problems = _problems(db, status.return_id)
        return WorkbookToSend(
            status.student_id, name, status.class_name, status.student.company, workbook_id,
            root / stored, stored.stem, generated.stem + stored.suffix,
            todo=tuple(todo_item(p) for p in problems),
            returned_on=_french_day(status.returned_at),
            to_complete=any(p["code"].startswith("missing") for p in problems),
            to_correct=any(p["code"].startswith("invalid") for p in problems),
        )  # fmt: skip
    return WorkbookToSend(
        status.student_id, name, status.class_name, status.student.company, workbook_id,
        root / generated, workbook_sha, generated.name,
    )  # fmt: skip


def remind_step(
    campaign: Campaign,
    *,
    dry_run: bool = False,
    student_ids: Collection[str] = (),
    class_name: str | None = None,
    interval_days: int = 7,
    again: bool = False,
    password: Callable[[SmtpSettings], str | None] | None = None,
) -> SendResult:
    """The « remind » step: the reminders due (`pending_reminders`; only `student_ids` and
    the class `class_name` when given), delivered as `send`'s messages are
    (`mail.deliver_step`); `skipped` says who was left out and why."""
    reminders = pending_reminders(
        campaign,
        student_ids=set(student_ids) or None,
        class_name=class_name,
        interval_days=interval_days,
        again=again,
    )
    return deliver_step(
        campaign,
        reminders.messages,
        REMIND,
        dry_run=dry_run,
        password=password,
        skipped=reminders.skipped,
    )
